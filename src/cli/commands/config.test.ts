import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as age from 'age-encryption';
import { afterAll, describe, expect, it } from 'vitest';
import { gameops } from '../../../test/support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'gameops-config-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function keyFile(name: string): Promise<{ path: string; recipient: string }> {
  const identity = await age.generateIdentity();
  const path = join(dir, name);
  writeFileSync(path, `${identity}\n`, { mode: 0o600 });
  return { path, recipient: await age.identityToRecipient(identity) };
}

function config(name: string, recipient: string, identity: string): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    [
      'service: { name: g }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      `backups: { storage: { kind: filesystem, path: ${join(dir, 'b')} }, encryption: { recipients: [${recipient}], identity: "file:${identity}" } }`,
    ].join('\n'),
  );
  return path;
}

describe('gameops config check: backups keys', () => {
  it('passes a recipient with its identity; flags a bad checksum and an identity that opens nothing', async () => {
    const key = await keyFile('key.txt');
    const good = await gameops(['config', 'check', '--config', config('good.yaml', key.recipient, key.path)]);
    expect(good.stderr).toContain('is valid');
    expect(good.code).toBe(0);

    // Same shape, one character changed: the bech32 checksum no longer matches.
    const last = key.recipient.at(-1) === 'q' ? 'p' : 'q';
    const typo = `${key.recipient.slice(0, -1)}${last}`;
    const bad = await gameops(['config', 'check', '--config', config('typo.yaml', typo, key.path)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/backups problem: .*age1/);

    const other = await keyFile('other.txt');
    const mismatch = await gameops([
      'config',
      'check',
      '--config',
      config('mismatch.yaml', key.recipient, other.path),
    ]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/backups problem: the decryption key from file:.*other\.txt/);
    expect(mismatch.stderr).not.toContain('AGE-SECRET-KEY');
  });
});

describe('gameops config check: what serve would refuse, and what would silently do nothing', () => {
  function plain(name: string, lines: string[]): string {
    const path = join(dir, name);
    writeFileSync(
      path,
      ['service: { name: g }', `database: { dataDir: ${join(dir, 'data')} }`, ...lines].join('\n'),
    );
    return path;
  }

  it('names every bad maintenance.recurring and alerts.suppressions cron, one that never fires too', async () => {
    const bad = await gameops([
      'config',
      'check',
      '--config',
      plain('crons.yaml', [
        'maintenance:',
        '  recurring:',
        "    - { name: words, cron: 'every thursday', duration: 2h }",
        "    - { name: hour, cron: '0 25 * * 4', duration: 2h }",
        "    - { name: feb31, cron: '0 4 31 2 *', duration: 2h }",
        "    - { name: fine, cron: '0 4 * * 4', duration: 2h }",
        'alerts:',
        '  suppressions:',
        "    - { name: ok, cron: '0 4 * * 4', duration: 2h, matchers: ['service=\"g\"'] }",
        "    - { name: never, cron: '0 4 30 2 *', duration: 2h, matchers: ['service=\"g\"'] }",
      ]),
    ]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).not.toContain('is valid');
    expect(bad.stderr).toContain('maintenance.recurring[0].cron');
    expect(bad.stderr).toContain('maintenance.recurring[1].cron');
    expect(bad.stderr).toMatch(
      /maintenance\.recurring\[2\]\.cron: "0 4 31 2 \*" is not a valid cron expression: never occurs/,
    );
    expect(bad.stderr).not.toContain('maintenance.recurring[3]');
    expect(bad.stderr).toMatch(
      /alerts\.suppressions\[1\]\.cron: "0 4 30 2 \*" is not a valid cron expression: never occurs/,
    );
    expect(bad.stderr).not.toContain('alerts.suppressions[0]');
  });

  it('flags a maintenance.holdOff runbook that does not exist, suggesting the one meant', async () => {
    const typo = await gameops([
      'config',
      'check',
      '--config',
      plain('holdoff.yaml', ['maintenance: { holdOff: [bakup, db-maintenance] }']),
    ]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/maintenance\.holdOff\[0\]: unknown runbook "bakup" \(did you mean backup/);
    expect(typo.stderr).not.toContain('holdOff[1]');
  });
});
