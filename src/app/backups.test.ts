import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupKey, backupsSection, bootstrapIn } from '../../test/support/backups.ts';
import type { Actor } from '../runbooks/model.ts';
import { backupsOpened, backupStatus, checkBackupIdInput, formatSetSize, openBackups } from './backups.ts';
import { bootstrap, shutdown, type Resources } from './bootstrap.ts';

const by: Actor = { id: 'local:t', name: 't', role: 'admin', kind: 'local' };

describe('openBackups: one service per process; a failed backup is notified, logged and measured', () => {
  let dir: string;
  let hook: Server;
  const received: string[] = [];
  let resources: Resources;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gameops-app-backups-'));
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const port = (hook.address() as AddressInfo).port;
    resources = await bootstrapIn(
      dir,
      [
        'notifications:',
        `  channels: [{ name: ops, kind: webhook, url: "http://127.0.0.1:${port}/hook" }]`,
        '  allowPrivate: [127.0.0.1]',
        'incidents: { notices: { stakeholders: [ops] } }',
        ...backupsSection(dir, await backupKey()),
      ],
      { metrics: true },
    );
  });

  afterAll(async () => {
    if (resources) await shutdown(resources);
    await new Promise<void>((resolve) => hook.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  const metric = async (name: string): Promise<number | undefined> => {
    const text = await resources.metrics!.registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.split(' ')[1]);
  };

  it('shares one service between callers arriving together', async () => {
    const [a, b] = await Promise.all([openBackups(resources), openBackups(resources)]);
    expect(a).toBe(b);
    expect(backupsOpened(resources)).toBe(true);
  });

  it('a failed backup goes to the stakeholder channel and the failure gauge; a good one to the success gauge', async () => {
    const service = await openBackups(resources);
    // The files path does not exist yet: the backup fails.
    await expect(service.create({ by })).rejects.toThrow();
    const [failed] = await service.list();
    expect(failed?.state).toBe('failed');
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(received).toHaveLength(1);
    expect(received[0]).toContain(`Backup ${failed!.id} of test-game (test) FAILED`);
    expect(await metric('gameops_backup_last_failure_timestamp_seconds')).toBeGreaterThan(1.7e9);
    expect(await metric('gameops_backup_last_success_timestamp_seconds')).toBe(0);

    mkdirSync(join(dir, 'game'));
    writeFileSync(join(dir, 'game', 'a.txt'), 'a');
    const set = await service.create({ by });
    expect(backupStatus(set)).toBe('complete');
    expect(await metric('gameops_backup_last_success_timestamp_seconds')).toBe(
      Date.parse(set.completedAt!) / 1000,
    );
    expect(received).toHaveLength(1);
  });

  it('checks ids without loading the backup modules, naming the value', () => {
    expect(checkBackupIdInput('bk-20261126T170500Z-3f9a2c')).toBe('bk-20261126T170500Z-3f9a2c');
    expect(() => checkBackupIdInput('../../etc')).toThrow('"../../etc" is not a backup id');
  });

  it('refuses without a store (naming it) and keeps nothing half-open', async () => {
    const other = await bootstrap({
      configPath: join(dir, 'gameops.yaml'),
      store: 'none',
      logLevel: 'silent',
    });
    await expect(openBackups(other)).rejects.toThrow(/store/);
    expect(backupsOpened(other)).toBe(false);
    await shutdown(other);
  });
});

describe('formatSetSize: create, verify and show say a set size the same way', () => {
  it('objects and their bytes, then the manifest', () => {
    expect(formatSetSize(4, 1721, 5800)).toBe('4 object(s), 1.7 KiB (+ manifest 4.0 KiB)');
    expect(formatSetSize(4, 1721)).toBe('4 object(s), 1.7 KiB');
    expect(formatSetSize(0, 0, 0)).toBe('0 object(s), 0 B');
  });
});
