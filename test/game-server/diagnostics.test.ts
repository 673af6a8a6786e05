/**
 * Diagnostics of the reference game server against what can go wrong with them: a report must not leak
 * the environment, a heap snapshot must not outlive its request on disk nor be served truncated, and a
 * client that stops reading must not hold the one diagnostic slot.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Diagnostics } from '../../examples/game-server/diagnostics.ts';
import { parsePrometheusText } from '../../src/platform/game-client.ts';
import { services, smallFilesystem, type SmallFilesystemHandle } from '../harness/index.ts';
import { eventually } from './player.ts';
import { startGameServer, type GameServerProcess } from './server-process.ts';

const secret = (label: string): string => `${label}-${randomBytes(12).toString('hex')}`;

/** Secrets under names that do not say so, and some that do. */
const SECRETS: Record<string, string> = {
  DATABASE_URL: `mysql://game:${secret('dburl')}@db.internal:3306/game`,
  REDIS_URL: `redis://:${secret('redisurl')}@cache.internal:6379/0`,
  DB_PASS: secret('dbpass'),
  STRIPE_API: secret('stripe'),
  SENTRY_DSN: `https://${secret('sentry')}@o1.ingest.sentry.io/1`,
  AWS_ACCESS_KEY_ID: secret('awsid'),
  PAYMENTS_AUTH: secret('auth'),
  MY_APP_SETTING: secret('innocuous'),
  GAME_ADMIN_TOKEN: secret('token'),
};

let dir: string;
let server: GameServerProcess;

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'game-diag-test-'));
  // Left by a process killed mid-snapshot (older versions also left the snapshot itself).
  const stale = path.join(dir, 'game-heap-AbC123');
  await fsp.mkdir(stale, { mode: 0o700 });
  await fsp.writeFile(path.join(stale, 'snapshot.heapsnapshot'), 'secrets', { mode: 0o600 });
  const old = new Date(Date.now() - 3600_000);
  await fsp.utimes(stale, old, old);
  // Someone else's work in progress (too recent to be stale) stays.
  await fsp.mkdir(path.join(dir, 'game-heap-fresh1'));
  const { mariadb, redis } = services();
  server = await startGameServer({
    mariadb,
    redis,
    instance: 'game-diag-0',
    env: { ...SECRETS, GAME_DIAGNOSTICS_DIR: dir, GAME_DIAGNOSTICS_IDLE_TIMEOUT_MS: '1000' },
  });
});

afterAll(async () => {
  await server?.stop();
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${server.opsUrl}/metrics`)).text();
  return parsePrometheusText(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

const heapEntries = (): string[] => fs.readdirSync(dir).filter((name) => name.startsWith('game-heap-'));

test('the stack dump shows no environment value but a short list of harmless names', async () => {
  const res = await server.ops('/ops/diagnostics/stack-dump', { method: 'POST' });
  expect(res.status).toBe(200);
  const text = await res.text();
  for (const [name, value] of Object.entries(SECRETS)) {
    expect(text, name).not.toContain(value);
    // Nor any recognisable part of it.
    const core = /[a-z]+-[0-9a-f]{24}/.exec(value)![0];
    expect(text, name).not.toContain(core);
  }
  expect(text).not.toContain(server.token);
  expect(text).not.toContain(services().mariadb.password);
  const report = JSON.parse(text) as { environmentVariables: Record<string, string> };
  expect(report.environmentVariables.GAME_INSTANCE).toBe('game-diag-0');
  expect(Object.keys(report.environmentVariables).sort()).toEqual(
    expect.arrayContaining(['GAME_INSTANCE', 'GAME_PORT', 'GAME_VERSION', 'PATH']),
  );
  for (const name of Object.keys(report.environmentVariables))
    expect(name).toMatch(/^(PATH|NODE_ENV|TZ|LANG|HOSTNAME|GAME_[A-Z_]+)$/);
  expect(report.environmentVariables).not.toHaveProperty('GAME_ADMIN_TOKEN');
  expect(report.environmentVariables).not.toHaveProperty('GAME_MYSQL_USER');
});

test('stale snapshot directories of ours are swept at start; recent ones are left', () => {
  expect(heapEntries()).toEqual(['game-heap-fresh1']);
  expect(
    server.logs().some((l) => l.level === 'WARN' && l.msg === 'removed 1 stale heap snapshot directories'),
  ).toBe(true);
});

describe('a client that stops reading a heap snapshot', () => {
  test('is cut off after the idle timeout: the slot is free again, a WARN not an ERROR, and no file on disk meanwhile', async () => {
    const internalBefore = await metric('game_errors_total', { kind: 'internal' });
    const since = server.logs().length;
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `POST /ops/diagnostics/heap-snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.token}\r\n` +
        'Content-Length: 0\r\n\r\n',
    );
    // Read the status line, then nothing more.
    const head = await new Promise<string>((resolve) =>
      socket.once('data', (chunk: Buffer) => {
        socket.pause();
        resolve(chunk.toString('latin1'));
      }),
    );
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    // While the snapshot is being sent, it is nowhere in the directory (only an open descriptor has it).
    expect(heapEntries()).toEqual(['game-heap-fresh1']);
    const busy = await server.ops('/ops/diagnostics/stack-dump', { method: 'POST' });
    expect(busy.status).toBe(409);
    await busy.text();

    // The client's buffers fill, then nothing moves for a second: cut off, slot free.
    const report = await eventually(
      'the slot freed',
      async () => {
        const res = await server.ops('/ops/diagnostics/stack-dump', { method: 'POST' });
        const body = await res.text();
        return res.status === 200 ? body : undefined;
      },
      20_000,
      200,
    );
    expect(JSON.parse(report)).toHaveProperty('header');
    const abandoned = await server.waitForLog(
      (l) => l.msg?.startsWith('diagnostic heap-snapshot abandoned') === true,
      {
        since,
      },
    );
    expect(abandoned.level).toBe('WARN');
    expect(abandoned.msg).toBe('diagnostic heap-snapshot abandoned: the client read nothing for 1000 ms');
    expect(
      server
        .logs()
        .slice(since)
        .filter((l) => l.level === 'ERROR'),
    ).toEqual([]);
    expect(await metric('game_errors_total', { kind: 'internal' })).toBe(internalBefore);
    socket.destroy();
  });

  test('a client that disconnects mid-download is an abort too', async () => {
    const since = server.logs().length;
    const res = await server.ops('/ops/diagnostics/heap-snapshot', { method: 'POST' });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const abandoned = await server.waitForLog(
      (l) => l.msg?.startsWith('diagnostic heap-snapshot abandoned') === true,
      {
        since,
      },
    );
    expect(abandoned.level).toBe('WARN');
    expect(
      server
        .logs()
        .slice(since)
        .filter((l) => l.level === 'ERROR'),
    ).toEqual([]);
    expect(await metric('game_errors_total', { kind: 'internal' })).toBe(0);
  });
});

describe('heap snapshots and disk space', () => {
  let small: SmallFilesystemHandle | undefined;
  let cramped: GameServerProcess | undefined;

  afterAll(async () => {
    await cramped?.stop();
    await small?.stop();
  });

  test('not enough free space in GAME_DIAGNOSTICS_DIR: 503 before anything is written, nothing left behind', async () => {
    small = await smallFilesystem(4);
    const { mariadb, redis } = services();
    cramped = await startGameServer({ mariadb, redis, env: { GAME_DIAGNOSTICS_DIR: small.path } });
    const res = await cramped.ops('/ops/diagnostics/heap-snapshot', { method: 'POST' });
    expect(res.status).toBe(503);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('unavailable');
    expect(error.message).toMatch(
      new RegExp(
        `^not enough free space in ${small.path} for a heap snapshot: [\\d.]+ MiB free, about [\\d.]+ MiB needed`,
      ),
    );
    expect(fs.readdirSync(small.path).filter((n) => n.startsWith('game-heap-'))).toEqual([]);
    // The slot is free again.
    expect((await cramped.ops('/ops/diagnostics/stack-dump', { method: 'POST' })).status).toBe(200);
  });

  test('a write that fails along the way (ENOSPC) fails the snapshot instead of serving a truncated file', async () => {
    const local = await fsp.mkdtemp(path.join(os.tmpdir(), 'game-diag-unit-'));
    try {
      let writes = 0;
      const diagnostics = new Diagnostics({
        instance: 'unit',
        dir: local,
        writeChunk: (fd, chunk) => {
          writes += 1;
          if (writes > 2)
            throw Object.assign(new Error('no space left on device, write'), { code: 'ENOSPC' });
          fs.writeSync(fd, chunk);
        },
      });
      const err = await diagnostics.heapSnapshot().then(
        () => undefined,
        (e: unknown) => e as Error & { failed?: boolean },
      );
      expect(err?.name).toBe('DiagnosticUnavailableError');
      expect(err?.message).toMatch(
        /^could not write the heap snapshot to .* after [\d.]+ MiB: ENOSPC: no space left/,
      );
      expect(err?.failed).toBe(true);
      expect(fs.readdirSync(local)).toEqual([]);
    } finally {
      await fsp.rm(local, { recursive: true, force: true });
    }
  });
});
