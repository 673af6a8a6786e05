import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock, type GameopsError } from '../core/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { ConflictError } from '../core/index.ts';
import { cliActor, localActor, publishServe, readServeDiscovery, storeBusyError } from './local.ts';

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function freshStore(): Promise<{ store: Store; dataDir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-local-'));
  dirs.push(dir);
  const dataDir = join(dir, 'data');
  const store = await openStore({ dataDir, clock: new ManualClock('2026-03-01T10:00:00Z') });
  stores.push(store);
  return { store, dataDir };
}

describe('local identity', () => {
  it('the local actor is the OS user, as admin', () => {
    const user = userInfo().username;
    expect(localActor()).toEqual({ id: `local:${user}`, name: user, role: 'admin', kind: 'local' });
  });

  it('a CLI acts as GAMEOPS_TOKEN when set, refusing an invalid one without repeating it', async () => {
    const { store } = await freshStore();
    expect(await cliActor(store, {})).toEqual(localActor());
    const { token, record } = await store.tokens.create({
      name: 'alice',
      role: 'responder',
      createdBy: localActor(),
    });
    expect(await cliActor(store, { GAMEOPS_TOKEN: token })).toEqual({
      id: `token:${record.id}`,
      name: 'alice',
      role: 'responder',
      kind: 'token',
    });
    await store.tokens.revoke(record.id, localActor());
    const err = (await cliActor(store, { GAMEOPS_TOKEN: token }).catch((e: unknown) => e)) as GameopsError;
    expect(err.code).toBe('not_allowed');
    expect(err.message).toContain('GAMEOPS_TOKEN is not a valid token here');
    expect(err.message).not.toContain(token);
    const shape = (await cliActor(store, { GAMEOPS_TOKEN: 'hunter2' }).catch(
      (e: unknown) => e,
    )) as GameopsError;
    expect(shape.message).toMatch(/^GAMEOPS_TOKEN is not a gameops token \(expected gops_\.\.\.\)/);
    expect(shape.message).not.toContain('hunter2');
  });

  it('a store held by another CLI command says to wait for it; one held by serve says how to reach it', async () => {
    const { dataDir } = await freshStore();
    const held = new ConflictError('data directory x is in use by another gameops process (pid 4242)', {
      details: { pid: 4242, running: true },
    });
    expect(storeBusyError(held, dataDir).message).toBe(
      'another gameops command (pid 4242) is using the store; try again when it finishes',
    );
    writeFileSync(
      join(dataDir, 'serve.json'),
      JSON.stringify({ url: 'http://127.0.0.1:1', pid: 4242, startedAt: 'x' }),
    );
    expect(storeBusyError(held, dataDir).message).toContain('it is `gameops serve` (pid 4242)');
    expect(storeBusyError(held, dataDir).message).toContain('GAMEOPS_URL');
  });
});

describe('serve discovery', () => {
  it('publishes serve.json and a fresh local admin token (0600), revoking the previous one', async () => {
    const { store, dataDir } = await freshStore();
    const first = await publishServe(
      store,
      dataDir,
      'http://127.0.0.1:8787',
      new Date('2026-03-01T10:00:00Z'),
    );
    expect(statSync(join(dataDir, 'serve.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'local-admin.token')).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(dataDir, 'serve.json'), 'utf8'))).toEqual({
      url: 'http://127.0.0.1:8787',
      pid: process.pid,
      startedAt: '2026-03-01T10:00:00.000Z',
    });
    expect(readServeDiscovery(dataDir)).toEqual({
      url: 'http://127.0.0.1:8787',
      token: first.token,
      pid: process.pid,
    });
    expect(readServeDiscovery(dataDir, { GAMEOPS_TOKEN: 'gops_mine' })?.token).toBe('gops_mine');
    // It acts as the OS user running serve, the same person as a CLI holding the store (four-eyes).
    expect(await store.tokens.resolve(first.token)).toMatchObject({ name: localActor().name, role: 'admin' });

    const second = await publishServe(
      store,
      dataDir,
      'http://127.0.0.1:9999',
      new Date('2026-03-01T11:00:00Z'),
    );
    expect(await store.tokens.resolve(first.token)).toBeUndefined();
    expect(await store.tokens.resolve(second.token)).toBeDefined();
    expect(readServeDiscovery(dataDir)?.token).toBe(second.token);
    // Both were created at the same (test) instant, so list order between them is by random id.
    const localAdmins = (await store.tokens.list()).filter((t) => t.name === 'local-admin');
    const revoked = Object.fromEntries(localAdmins.map((t) => [t.id, Boolean(t.revokedAt)]));
    expect(revoked).toEqual({ [first.token.slice(5, 17)]: true, [second.token.slice(5, 17)]: false });

    await second.unpublish();
    expect(existsSync(join(dataDir, 'serve.json'))).toBe(false);
    expect(existsSync(join(dataDir, 'local-admin.token'))).toBe(false);
    expect(await store.tokens.resolve(second.token), 'revoked at a clean stop').toBeUndefined();
    expect(readServeDiscovery(dataDir)).toBeUndefined();
  });

  it('ignores a serve.json of a process that is gone, or that is not ours to remove', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-local-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'data'));
    const dataDir = join(dir, 'data');
    const child = spawn(process.execPath, ['-e', '0']);
    await once(child, 'exit');
    writeFileSync(
      join(dataDir, 'serve.json'),
      JSON.stringify({ url: 'http://127.0.0.1:1', pid: child.pid, startedAt: 'x' }),
    );
    writeFileSync(join(dataDir, 'local-admin.token'), 'gops_x\n');
    expect(readServeDiscovery(dataDir)).toBeUndefined();
    writeFileSync(join(dataDir, 'serve.json'), '{ not json');
    expect(readServeDiscovery(dataDir)).toBeUndefined();
    expect(readServeDiscovery(join(dir, 'nothing-here'))).toBeUndefined();
  });

  it('unpublish leaves a serve.json written by another serve', async () => {
    const { store, dataDir } = await freshStore();
    const published = await publishServe(store, dataDir, 'http://127.0.0.1:8787', new Date());
    const other = JSON.stringify({ url: 'http://127.0.0.1:1', pid: 1, startedAt: 'x' });
    writeFileSync(join(dataDir, 'serve.json'), other);
    await published.unpublish();
    expect(readFileSync(join(dataDir, 'serve.json'), 'utf8')).toBe(other);
  });
});
