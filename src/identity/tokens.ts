import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { InputError, errorMessage, parseDuration } from '../core/index.ts';

/**
 * The API token format: `gops_<id>_<secret>`, where `<id>` is 12 lowercase hex characters (the row key,
 * not secret) and `<secret>` is 32 random bytes in base64url (43 characters). Only the sha256 of the whole
 * token is stored. A pure module: the store, the audit log and the server all share it.
 */
export const TOKEN_PREFIX = 'gops_';
/** The token row a running `gameops serve` issues for CLI processes on the same machine. */
export const LOCAL_ADMIN_TOKEN_NAME = 'local-admin';
const ID_BYTES = 6;
const SECRET_BYTES = 32;
const TOKEN_RE = /^gops_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
/** Anything in a text that looks like one of our tokens (for refusing it in logs and audit data). */
export const TOKEN_LIKE_RE = /gops_[0-9a-f]{12}_[A-Za-z0-9_-]{43}/;

/** A fresh token and its id. */
export function generateToken(): { id: string; token: string } {
  const id = randomBytes(ID_BYTES).toString('hex');
  return { id, token: `${TOKEN_PREFIX}${id}_${randomBytes(SECRET_BYTES).toString('base64url')}` };
}

/** The id of a well-formed token, or undefined for anything else. */
export function tokenId(token: string): string | undefined {
  return TOKEN_RE.exec(token)?.[1];
}

/** The stored form of a token: sha256 hex. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Compares a presented token with a stored hash in time that does not depend on where they differ. */
export function tokenMatches(token: string, storedHash: string): boolean {
  const presented = Buffer.from(hashToken(token), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return stored.length === presented.length && timingSafeEqual(presented, stored);
}

const MIN_EXPIRY_MS = 60_000;
const MAX_EXPIRY_MS = 3650 * 86_400_000;

/**
 * A token lifetime such as `30d` or `12h` in milliseconds, between 1m and 3650d.
 * @throws InputError naming `field`.
 */
export function tokenExpiryMs(text: string, field = 'expiresIn'): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new InputError(`${field}: ${errorMessage(err)}`, { details: { field } });
  }
  if (ms < MIN_EXPIRY_MS || ms > MAX_EXPIRY_MS) {
    throw new InputError(`${field} must be between 1m and 3650d (got ${text})`, { details: { field } });
  }
  return ms;
}
