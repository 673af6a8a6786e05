import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore } from '../store/index.ts';
import { auditRows, recordConfigLoad, renderVerification } from './index.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
const carol: Actor = { id: 'local:carol', name: 'carol', role: 'admin', kind: 'local' };

describe('config changes in the audit log', () => {
  it('records config.load once per distinct content of a file, with its hash and path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-audit-config-'));
    dirs.push(dir);
    const clock = new ManualClock('2026-03-01T10:00:00Z');
    const store = await openStore({ dataDir: join(dir, 'data'), clock });
    try {
      const file = join(dir, 'gameops.yaml');
      writeFileSync(file, 'service: { name: a }\n');
      const first = await recordConfigLoad(store, file, carol, clock);
      expect(first).toMatchObject({
        action: 'config.load',
        target: `config:${file}`,
        actor: carol,
        data: { path: file, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) as string },
      });
      expect(await recordConfigLoad(store, file, carol, clock), 'unchanged: nothing new').toBeUndefined();
      clock.advance(60_000);
      writeFileSync(file, 'service: { name: b }\n');
      const edited = await recordConfigLoad(store, file, carol, clock);
      expect(edited?.data).toMatchObject({ previousSha256: first?.data.sha256 });
      expect(edited?.at).toBe('2026-03-01T10:01:00.000Z');
      expect(await recordConfigLoad(store, undefined, carol, clock), 'no file: nothing').toBeUndefined();
      expect((await store.audit.list()).map((r) => r.seq)).toEqual([1, 2]);
    } finally {
      await store.close();
    }
  });
});

describe('audit rendering', () => {
  it('renders an intact log in one line and problems one per line', () => {
    expect(
      renderVerification({ ok: true, records: 3, head: { seq: 3, hash: 'ab'.repeat(32) }, problems: [] }),
    ).toBe(`audit log intact: 3 records verified (head seq 3, hash ${'ab'.repeat(8)}…)`);
    expect(
      renderVerification({
        ok: false,
        records: 4,
        head: { seq: 5, hash: 'cd'.repeat(32) },
        problems: [
          { seq: 3, problem: 'record 3 is missing (deleted)' },
          { seq: 0, problem: 'the audit head row is missing (the log has 4 records)' },
        ],
      }),
    ).toBe(
      [
        `audit log NOT intact: 2 problems in 4 records (head seq 5, hash ${'cd'.repeat(8)}…)`,
        '  #3: record 3 is missing (deleted)',
        '  -: the audit head row is missing (the log has 4 records)',
      ].join('\n'),
    );
  });

  it('renders records as rows with the actor and compact data', () => {
    expect(
      auditRows([
        {
          seq: 7,
          at: '2026-03-01T10:00:00.000Z',
          actor: carol,
          action: 'token.create',
          target: 'token:0123456789ab',
          data: { name: 'ci', role: 'viewer' },
          prevHash: '0',
          hash: '1',
        },
      ]),
    ).toEqual([
      [
        '7',
        '2026-03-01T10:00:00.000Z',
        'carol (local:carol, admin)',
        'token.create',
        'token:0123456789ab',
        '{"name":"ci","role":"viewer"}',
      ],
    ]);
  });
});
