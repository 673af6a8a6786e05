import { z } from 'zod';

/**
 * The first character of `text` that must not reach a player's screen, as `U+XXXX`: C0 and C1 control
 * characters (a newline too: a notice is one line), DEL, and the invisible direction marks and overrides
 * (U+061C, U+200E/F, U+2028–202E, U+2066–2069) that make a message read other than it is written. The
 * reference server refuses the same set (its chat check, `hasControlCharacters` in its protocol).
 */
export function unsafeCharacter(text: string): string | undefined {
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (
      code < 0x20 ||
      (code >= 0x7f && code <= 0x9f) ||
      code === 0x061c ||
      code === 0x200e ||
      code === 0x200f ||
      (code >= 0x2028 && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069)
    )
      return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return undefined;
}

/** A message players read (gate, notice, drain, a window's message): one line, nothing {@link unsafeCharacter} finds. */
export const playerTextSchema = z
  .string()
  .min(1)
  .max(500)
  .superRefine((text, ctx) => {
    const bad = unsafeCharacter(text);
    if (bad !== undefined)
      ctx.addIssue({
        code: 'custom',
        message: `control and text-direction characters are not allowed (found ${bad}); one line of text`,
      });
  });
