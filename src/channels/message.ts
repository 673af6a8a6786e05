/**
 * The message as it crosses into this domain: validated once, so that every renderer can rely on one-line
 * subjects, http(s) links and bounded sizes.
 */
import { z } from 'zod';
import { SEVERITIES } from '../config/schema.ts';
import type { OutboundMessage } from '../ops/contracts.ts';
import { cut } from './render.ts';

/** The longest text sent; the renderers cut further where a chat service has a smaller limit. */
export const MAX_TEXT_CHARS = 20_000;
const MAX_SUBJECT_CHARS = 500;

/** Subjects are one line: line breaks become spaces, and a long one is cut rather than refused. */
const subjectSchema = z
  .string()
  .transform((s) => cut(s.replace(/[\r\n]+/g, ' ').trim(), MAX_SUBJECT_CHARS))
  .pipe(z.string().min(1, 'must not be empty'));

const linkSchema = z.object({
  title: z
    .string()
    .transform((s) => cut(s.replace(/[\r\n]+/g, ' ').trim(), 200))
    .pipe(z.string().min(1, 'must not be empty')),
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).max(2000),
});

/**
 * OutboundMessage, checked. Unknown properties are dropped (a caller handing over a whole person keeps
 * their contacts out of a webhook body); a text or subject too long is cut, not refused: a page must not
 * fail for its length. What would be wrong wherever it went (an unusable delivery id or link) is refused.
 */
export const outboundMessageSchema = z.object({
  deliveryId: z.string().regex(/^[\x21-\x7e]{1,200}$/, 'printable ASCII without spaces, 1 to 200 characters'),
  kind: z.enum(['page', 'reminder', 'notice', 'notification']),
  subject: subjectSchema,
  text: z.string().transform((s) => cut(s, MAX_TEXT_CHARS)),
  severity: z.enum(SEVERITIES).optional(),
  incidentId: z.string().min(1).max(100).optional(),
  pageId: z.string().min(1).max(100).optional(),
  recipient: z
    .object({
      id: z.string().min(1).max(100),
      name: z.string().min(1).max(200),
      email: z.email().optional(),
    })
    .optional(),
  links: z.array(linkSchema).max(20).optional(),
});

/** The message, or a one-line description of what is wrong with it (naming the field). */
export function checkMessage(
  message: OutboundMessage,
): { ok: true; message: OutboundMessage } | { ok: false; why: string } {
  const parsed = outboundMessageSchema.safeParse(message);
  if (parsed.success) return { ok: true, message: parsed.data };
  const issue = parsed.error.issues[0]!;
  const field = issue.path.map(String).join('.') || 'message';
  return { ok: false, why: `message ${field}: ${issue.message}` };
}
