/**
 * age keys: identity files written by the real `age-keygen`, public keys as `age-keygen -y` prints them,
 * and refusals that name the key's source and public key but never the secret key.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError, secret } from '../core/index.ts';
import { serverBinaries } from '../../test/harness/index.ts';
import { checkIdentityFor, checkRecipients, loadIdentities } from './keys.ts';

const dir = mkdtempSync(join(tmpdir(), 'gameops-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An identity file made by the real age-keygen, its content and its public key per `age-keygen -y`. */
function ageKeygen(name: string): { file: string; content: string; publicKey: string } {
  const file = join(dir, name);
  execFileSync(serverBinaries().ageKeygen, ['-o', file], { stdio: 'ignore' });
  const publicKey = execFileSync(serverBinaries().ageKeygen, ['-y', file], { encoding: 'utf8' }).trim();
  return { file, content: readFileSync(file, 'utf8'), publicKey };
}

async function refusal(promise: Promise<unknown>): Promise<InputError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  return err as InputError;
}

describe('loadIdentities', () => {
  it('reads an age-keygen file: comments, blank lines, the key; the public key is what age-keygen -y prints', async () => {
    const key = ageKeygen('one.txt');
    expect(key.content).toMatch(/^# created: /m);
    const ids = await loadIdentities(secret(key.content, `file:${key.file}`));
    expect(ids.publicKeys).toEqual([key.publicKey]);
    expect(ids.identities).toHaveLength(1);
    expect(ids.identities[0]).toMatch(/^AGE-SECRET-KEY-1/);
    expect(ids.source).toBe(`file:${key.file}`);
  });

  it('accepts several identities, CRLF line ends and surrounding blank lines', async () => {
    const a = ageKeygen('a.txt');
    const b = generateX25519Identity();
    const text = `\r\n${a.content.replace(/\n/g, '\r\n')}\r\n# second key\r\n${await b}\r\n\r\n`;
    const ids = await loadIdentities(secret(text, 'env:BACKUP_KEY'));
    expect(ids.publicKeys).toEqual([a.publicKey, await identityToRecipient(await b)]);
  });

  it('refuses a missing key with the setting to fill in', async () => {
    const err = await refusal(loadIdentities(undefined));
    expect(err.message).toBe(
      'no decryption key: set backups.encryption.identity (file:/path to an age identity file made by age-keygen)',
    );
  });

  it('refuses a damaged key naming the source and line, never showing the key', async () => {
    const key = ageKeygen('damaged.txt');
    const lines = key.content.split('\n');
    const at = lines.findIndex((l) => l.startsWith('AGE-SECRET-KEY-1'));
    const original = lines[at] as string;
    // Change one data character: the bech32 checksum no longer matches.
    const damaged = original.slice(0, 20) + (original[20] === 'Q' ? 'P' : 'Q') + original.slice(21);
    lines[at] = damaged;
    const err = await refusal(loadIdentities(secret(lines.join('\n'), `file:${key.file}`)));
    expect(err.message).toContain(`file:${key.file}, line ${at + 1}`);
    expect(err.message).not.toContain(damaged.slice(16, 40));
    expect(err.message).not.toContain(original.slice(16, 40));
  });

  it('refuses text that is not an identity file, naming the line, and a file with no key', async () => {
    const err = await refusal(loadIdentities(secret('# comment\nhunter2-password\n', 'file:/etc/k')));
    expect(err.message).toContain('file:/etc/k, line 2: not an age identity');
    expect(err.message).not.toContain('hunter2');
    const none = await refusal(loadIdentities(secret('# only a comment\n\n', 'file:/etc/k')));
    expect(none.message).toContain('file:/etc/k has no identity');
    const pq = await refusal(loadIdentities(secret('AGE-SECRET-KEY-PQ-1ABCDEF\n', 'file:/etc/k')));
    expect(pq.message).toContain('line 1: a post-quantum identity');
  });
});

describe('checkIdentityFor', () => {
  it('passes when the key is one of the recipients and names source, public key and recipients otherwise', async () => {
    const mine = ageKeygen('mine.txt');
    const other = ageKeygen('other.txt');
    const third = ageKeygen('third.txt');
    const ids = await loadIdentities(secret(mine.content, `file:${mine.file}`));
    checkIdentityFor(ids, [other.publicKey, mine.publicKey], 'backup set bk-20261126T170500Z-3f9a2c');
    let err: unknown;
    try {
      checkIdentityFor(ids, [other.publicKey, third.publicKey], 'backup set bk-20261126T170500Z-3f9a2c');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toBe(
      `the decryption key from file:${mine.file} (public key ${mine.publicKey}) cannot open backup set bk-20261126T170500Z-3f9a2c: it is encrypted to ${other.publicKey}, ${third.publicKey}`,
    );
    expect((err as Error).message).not.toContain('AGE-SECRET-KEY');
  });
});

describe('checkRecipients', () => {
  it('accepts recipients printed by age-keygen -y', async () => {
    await checkRecipients([ageKeygen('r1.txt').publicKey, ageKeygen('r2.txt').publicKey]);
  });

  it('refuses none, a bad checksum, a post-quantum recipient and garbage, naming the recipient', async () => {
    const good = ageKeygen('r3.txt').publicKey;
    expect((await refusal(checkRecipients([]))).message).toContain('no age recipient');
    const last = good.at(-1) === 'q' ? 'p' : 'q';
    const badChecksum = good.slice(0, -1) + last;
    expect((await refusal(checkRecipients([good, badChecksum]))).message).toContain(
      JSON.stringify(badChecksum),
    );
    expect((await refusal(checkRecipients(['age1pq1xyz']))).message).toContain('"age1pq1xyz"');
    expect((await refusal(checkRecipients(['ssh-ed25519 AAAA']))).message).toContain('"ssh-ed25519 AAAA"');
  });
});
