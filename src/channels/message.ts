/**
 * The message as it crosses into this domain: validated once, so that every renderer can rely on one-line
 * subjects, http(s) links and bounded sizes.
 */
import { z } from 'zod';
import { SEVERITIES } from '../config/schema.ts';
import type { OutboundMessage } from '../ops/contracts.ts';

/** The longest text accepted; the renderers cut further where a chat service has a smaller limit. */
export const MAX_TEXT_CHARS = 20_000;
const MAX_SUBJECT_CHARS = 500;

const oneLine = z
  .string()
  .min(1)
  .refine((s) => !/[\r\n]/.test(s), { error: 'must be one line' });

const linkSchema = z.strictObject({
  title: oneLine.max(200),
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).max(2000),
});

/** OutboundMessage, checked. */
export const outboundMessageSchema = z.strictObject({
  deliveryId: z.string().regex(/^[\x21-\x7e]{1,200}$/, 'printable ASCII without spaces, 1 to 200 characters'),
  kind: z.enum(['page', 'reminder', 'notice', 'notification']),
  subject: oneLine.max(MAX_SUBJECT_CHARS),
  text: z.string().max(MAX_TEXT_CHARS),
  severity: z.enum(SEVERITIES).optional(),
  incidentId: z.string().min(1).max(100).optional(),
  pageId: z.string().min(1).max(100).optional(),
  recipient: z
    .strictObject({
      id: z.string().min(1).max(100),
      name: z.string().min(1).max(200),
      email: z.email().optional(),
    })
    .optional(),
  links: z.array(linkSchema).max(20).optional(),
}) satisfies z.ZodType<OutboundMessage>;

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
