import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Signed acknowledge links: `<payload>.<mac>`, both base64url. The payload names the page, the person and
 * the expiry (unix seconds); the MAC is HMAC-SHA256 over the payload with a key generated once and kept
 * in the store (oncall_settings), so links survive restarts and work on every gameops instance.
 */
export interface AckClaim {
  pageId: string;
  person: string;
  /** When the link stops working. */
  expiresAt: Date;
}

/** The store setting holding the key. */
export const ACK_KEY_SETTING = 'ack-link-key';

/** A new random key (base64). */
export function newAckKey(): string {
  return randomBytes(32).toString('base64');
}

export function signAckToken(key: string, claim: AckClaim): string {
  const payload = Buffer.from(
    JSON.stringify([claim.pageId, claim.person, Math.floor(claim.expiresAt.getTime() / 1000)]),
  ).toString('base64url');
  return `${payload}.${mac(key, payload)}`;
}

/**
 * The claim of a token signed with `key`, or why it is refused: `invalid` (malformed, forged or changed)
 * or `expired` (with the claim, to say which page).
 */
export function readAckToken(
  key: string,
  token: string,
  now: Date,
):
  | { ok: true; claim: AckClaim }
  | { ok: false; reason: 'invalid' }
  | { ok: false; reason: 'expired'; claim: AckClaim } {
  if (typeof token !== 'string' || token.length > 1000) return { ok: false, reason: 'invalid' };
  const dot = token.indexOf('.');
  if (dot <= 0) return { ok: false, reason: 'invalid' };
  const payload = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const expected = Buffer.from(mac(key, payload), 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return { ok: false, reason: 'invalid' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'invalid' };
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 3 ||
    typeof parsed[0] !== 'string' ||
    typeof parsed[1] !== 'string' ||
    typeof parsed[2] !== 'number'
  )
    return { ok: false, reason: 'invalid' };
  const claim: AckClaim = { pageId: parsed[0], person: parsed[1], expiresAt: new Date(parsed[2] * 1000) };
  if (claim.expiresAt.getTime() <= now.getTime()) return { ok: false, reason: 'expired', claim };
  return { ok: true, claim };
}

function mac(key: string, payload: string): string {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(payload).digest('base64url');
}
