/**
 * age keys of backups: the recipients objects are encrypted to (public, from the config) and the
 * identity that decrypts them (a Secret: an age-keygen file, needed by verify, drill and restore only).
 * Error messages name where a key came from and its public key, never the secret key itself.
 */
import { Encrypter, identityToRecipient } from 'age-encryption';
import { InputError, type Secret } from '../core/index.ts';

/** Identities read from one age-keygen file, with the public key (recipient) of each. */
export interface AgeIdentities {
  /** `AGE-SECRET-KEY-1...`: secret, never shown. */
  identities: string[];
  /** `age1...`, one per identity, in the same order. */
  publicKeys: string[];
  /** Where they came from (`file:/etc/gameops/backup.key`): safe to show. */
  source: string;
}

/** An age X25519 recipient: `age1` and 58 bech32 characters (the config's rule too). */
const X25519_RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;

/**
 * Reads the age identities of `identity` (the content of an age-keygen file: `#` comments, blank lines
 * and one or more `AGE-SECRET-KEY-1...` lines; CRLF line ends are accepted).
 *
 * @throws InputError when `identity` is undefined (no key configured), and naming the source and the
 *   line number when a line is not an X25519 identity or the file has none. The key text is never shown.
 */
export async function loadIdentities(identity: Secret | undefined): Promise<AgeIdentities> {
  if (identity === undefined) {
    throw new InputError(
      'no decryption key: set backups.encryption.identity (file:/path to an age identity file made by age-keygen)',
    );
  }
  const source = identity.source;
  const identities: string[] = [];
  const publicKeys: string[] = [];
  const lines = identity.reveal().split('\n');
  for (const [index, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `the decryption key ${source}, line ${index + 1}`;
    if (line.startsWith('AGE-SECRET-KEY-PQ-1')) {
      throw new InputError(
        `${where}: a post-quantum identity; backups are encrypted to X25519 recipients (age-keygen without -pq)`,
      );
    }
    if (!line.startsWith('AGE-SECRET-KEY-1')) {
      throw new InputError(
        `${where}: not an age identity (expected AGE-SECRET-KEY-1..., a comment or a blank line)`,
      );
    }
    let publicKey: string;
    try {
      publicKey = await identityToRecipient(line);
    } catch {
      // The library's message may quote the input; ours never does.
      throw new InputError(`${where}: not a valid age identity (bad checksum or length)`);
    }
    identities.push(line);
    publicKeys.push(publicKey);
  }
  if (identities.length === 0) {
    throw new InputError(
      `the decryption key ${source} has no identity (AGE-SECRET-KEY-1... line); is it an age-keygen file?`,
    );
  }
  return { identities, publicKeys, source };
}

function describeKeys(ids: AgeIdentities): string {
  const keys = ids.publicKeys.join(', ');
  return `the decryption key from ${ids.source} (public key${ids.publicKeys.length > 1 ? 's' : ''} ${keys})`;
}

/**
 * Checks that one of `ids` can open something encrypted to `recipients` (e.g. a backup set, from its
 * manifest), before anything is downloaded.
 *
 * @throws InputError naming the key's source, its public key, `what`, and the recipients it is
 *   encrypted to (public keys, safe to show).
 */
export function checkIdentityFor(ids: AgeIdentities, recipients: readonly string[], what: string): void {
  if (ids.publicKeys.some((key) => recipients.includes(key))) return;
  throw new InputError(
    `${describeKeys(ids)} cannot open ${what}: it is encrypted to ${recipients.length > 0 ? recipients.join(', ') : 'no recipient'}`,
  );
}

/** The message for an object whose header names none of our keys (the object is named by the caller). */
export function wrongKeyMessage(ids: AgeIdentities, what: string): string {
  return `${describeKeys(ids)} cannot open ${what}: none of its recipients is this key`;
}

/**
 * Checks that every recipient is an age X25519 recipient (`age1...`, as `age-keygen -y` prints), by
 * parsing it as age does.
 *
 * @throws InputError naming the recipient (public, safe to show) when there is none or one is not valid.
 */
export async function checkRecipients(recipients: readonly string[]): Promise<void> {
  if (recipients.length === 0) {
    throw new InputError(
      'no age recipient: set backups.encryption.recipients (age-keygen -y key.txt prints one)',
    );
  }
  for (const recipient of recipients) {
    let valid = X25519_RECIPIENT.test(recipient);
    if (valid) {
      try {
        const encrypter = new Encrypter();
        encrypter.addRecipient(recipient);
        // Encrypting a byte uses the key as every backup will (a point X25519 rejects fails here).
        await encrypter.encrypt(new Uint8Array(1));
      } catch {
        valid = false;
      }
    }
    if (!valid) {
      throw new InputError(
        `age recipient ${JSON.stringify(recipient)} is not an X25519 recipient (age1 and 58 characters, as age-keygen -y prints; the checksum must match)`,
      );
    }
  }
}
