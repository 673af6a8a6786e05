/**
 * The webhook signature: `X-Gameops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, t + "." + raw body)>`.
 * The timestamp is inside the signed text, so a captured request cannot be replayed later with a fresh `t`;
 * receivers check it against their clock within a tolerance. Several `v1=` values may appear (a key being
 * rotated); one matching is enough.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The header name, as sent (HTTP header names are case-insensitive). */
export const SIGNATURE_HEADER = 'X-Gameops-Signature';
/** The delivery id header, stable across retries of one message. */
export const DELIVERY_HEADER = 'X-Gameops-Delivery';

const DEFAULT_TOLERANCE_MS = 5 * 60 * 1000;

function hmacHex(secret: string, t: string, body: string | Buffer): string {
  return createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
}

/** The `X-Gameops-Signature` value for `body` sent at `nowMs`. */
export function signatureHeader(secret: string, body: string | Buffer, nowMs: number): string {
  const t = String(Math.floor(nowMs / 1000));
  return `t=${t},v1=${hmacHex(secret, t, body)}`;
}

/**
 * For receivers: checks `X-Gameops-Signature` (t=…,v1=…) over the raw body, within toleranceMs
 * (default 5 min) of `nowMs` either way. False for a missing or malformed header, a wrong key, a changed
 * body, or a timestamp outside the tolerance; the comparison takes the same time whatever matches.
 * Fails closed: false as well for an empty secret (anyone could sign with it) and for a `nowMs` or
 * `toleranceMs` that is not a finite number (a NaN would otherwise make every timestamp fresh) or a
 * negative tolerance.
 */
export function verifySignature(
  secret: string,
  header: string | undefined,
  body: string | Buffer,
  nowMs: number,
  toleranceMs: number = DEFAULT_TOLERANCE_MS,
): boolean {
  if (secret.length === 0 || !Number.isFinite(nowMs)) return false;
  if (!Number.isFinite(toleranceMs) || toleranceMs < 0) return false;
  if (header === undefined || header.length > 4096) return false;
  let t: string | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    const key = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (key === 't') t = value;
    else if (key === 'v1' && /^[0-9a-f]{64}$/i.test(value)) signatures.push(Buffer.from(value, 'hex'));
  }
  if (t === undefined || !/^\d{1,15}$/.test(t) || signatures.length === 0) return false;
  if (!(Math.abs(nowMs - Number(t) * 1000) <= toleranceMs)) return false;
  const expected = Buffer.from(hmacHex(secret, t, body), 'hex');
  let ok = false;
  for (const s of signatures) if (timingSafeEqual(s, expected)) ok = true;
  return ok;
}
