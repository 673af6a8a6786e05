import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, startSilentServer, type RedisHandle } from '../../../test/harness/index.ts';
import { testConfig } from '../../checks/test-support.ts';
import type { RedisConfig } from '../../config/index.ts';
import { InputError, UnavailableError } from '../../core/index.ts';
import type { ComponentBackup, ManifestComponent } from '../types.ts';
import {
  backupRedis,
  canonicalScore,
  drillRedis,
  REDIS_DUMP_OBJECT,
  REDIS_SAMPLES_OBJECT,
  restoreRedis,
  scratchRegistryDir,
  sweepOrphanedScratchServers,
  type RedisVerification,
} from './redis.ts';
import { TestObjectStore } from './test-support.ts';

const SOURCE_PASSWORD = 'src-Pa55word-canary-7f3a';
const TARGET_PASSWORD = 'tgt-Other-Pa55-91c2';
/** A value stored in the source: it must never show up outside the RDB object. */
const CANARY_VALUE = 'player-secret-canary-4e1d9b';

function redisConfig(handle: { host: string; port: number }, password?: string): RedisConfig {
  return testConfig({
    redis: { host: handle.host, port: handle.port, ...(password !== undefined ? { password } : {}) },
  }).redis!;
}

function client(handle: { host: string; port: number }, password?: string, db = 0): Redis {
  return new Redis({
    host: handle.host,
    port: handle.port,
    db,
    lazyConnect: false,
    maxRetriesPerRequest: 1,
    ...(password !== undefined ? { password } : {}),
  });
}

function manifestComponent(backup: ComponentBackup, store: TestObjectStore): ManifestComponent {
  return {
    ...backup,
    kind: 'redis',
    startedAt: new Date().toISOString(),
    completedAt: new Date().toISOString(),
    objects: [...store.records],
  };
}

const TYPES = ['string', 'binary', 'hash', 'list', 'set', 'zset', 'stream', 'ttl'] as const;

/** 20k keys of all types in db0 and db3: binary values, TTLs, a 2 MiB string and a canary value. */
async function fill(redis: Redis, count: number, prefix = 'k'): Promise<void> {
  for (let start = 0; start < count; start += 1000) {
    const pipe = redis.pipeline();
    for (let i = start; i < Math.min(count, start + 1000); i++) {
      const kind = TYPES[i % TYPES.length]!;
      const key = `${prefix}:${kind}:${i}`;
      switch (kind) {
        case 'string':
          pipe.set(key, `value-${i}`);
          break;
        case 'binary':
          pipe.set(
            Buffer.concat([Buffer.from([0, 0xff, 0x0d, 0x0a]), Buffer.from(key)]),
            Buffer.from([i & 0xff, 0, 0xfe, 0x0a, 0x0d, 1, 2]),
          );
          break;
        case 'hash':
          pipe.hset(key, {
            a: String(i),
            b: 'x'.repeat(i % 50),
            [`f${i}`]: Buffer.from([0, 1, 2, i & 0xff]),
          });
          break;
        case 'list':
          pipe.rpush(key, 'one', String(i), 'three');
          break;
        case 'set':
          pipe.sadd(key, 'm1', `m${i}`, 'm3');
          break;
        case 'zset':
          pipe.zadd(key, 1.5, 'a', i, 'b', -3.25, 'c');
          break;
        case 'stream':
          pipe.xadd(key, '*', 'event', 'login', 'player', String(i));
          break;
        case 'ttl':
          pipe.set(key, `expiring-${i}`, 'EX', 3600);
          break;
      }
    }
    await pipe.exec();
  }
}

async function fillSource(handle: RedisHandle): Promise<void> {
  const db0 = client(handle, handle.password);
  const db3 = client(handle, handle.password, 3);
  try {
    await fill(db0, 18_000);
    await fill(db3, 2_000, 'other');
    await db0.set('big:2mib', Buffer.alloc(2 * 1024 * 1024, 0x61));
    await db0.set('canary', CANARY_VALUE);
  } finally {
    db0.disconnect();
    db3.disconnect();
  }
}

/** Collects every process command line seen while `work` runs (polled every few ms from /proc). */
async function watchCommandLines<T>(work: () => Promise<T>): Promise<{ result: T; seen: Set<string> }> {
  const seen = new Set<string>();
  let running = true;
  const poll = (async () => {
    while (running) {
      for (const pid of await fsp.readdir('/proc').catch(() => [])) {
        if (!/^\d+$/.test(pid)) continue;
        const cmdline = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmdline) seen.add(cmdline.split('\0').join(' ').trim());
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  try {
    return { result: await work(), seen };
  } finally {
    running = false;
    await poll;
  }
}

describe('Redis backup component (real redis-server)', () => {
  let source: RedisHandle;
  let store: TestObjectStore;
  let backup: ComponentBackup;
  let component: ManifestComponent;
  let seenDuringBackup: Set<string>;

  beforeAll(async () => {
    source = await startRedis({ password: SOURCE_PASSWORD });
    await fillSource(source);
    store = await TestObjectStore.create({ component: 'redis' });
    const watched = await watchCommandLines(async () =>
      backupRedis(
        { redis: redisConfig(source, SOURCE_PASSWORD), samples: 50 },
        store.writeContext(await store.tempDir()),
      ),
    );
    backup = watched.result;
    seenDuringBackup = watched.seen;
    component = manifestComponent(backup, store);
  }, 120_000);

  afterAll(async () => {
    await store?.cleanup();
    await source?.stop();
  });

  it('streams an RDB snapshot into one dump object and records position, counts and samples', async () => {
    expect(store.records.map((r) => r.name)).toEqual([REDIS_DUMP_OBJECT, REDIS_SAMPLES_OBJECT]);
    const rdb = await store.bytes(REDIS_DUMP_OBJECT);
    expect(rdb.subarray(0, 5).toString('latin1')).toBe('REDIS');
    // Opcode EOF (0xff) and an 8-byte CRC64 end an RDB: no protocol framing or EOF marker after them.
    expect(rdb[rdb.length - 9]).toBe(0xff);
    expect(backup.tool.name).toBe('gameops replica');
    expect(backup.source['master_replid']).toMatch(/^[0-9a-f]{40}$/);
    expect(typeof backup.source['master_repl_offset']).toBe('number');
    expect(backup.source['redis_version']).toMatch(/^\d+\.\d+\.\d+$/);
    const v = backup.verification as RedisVerification;
    expect(v.keyspaceBefore['db0']?.keys).toBe(18_002);
    expect(v.keyspaceBefore['db3']?.keys).toBe(2_000);
    expect(v.keyspaceAfter).toEqual(v.keyspaceBefore);
    expect(v.keyspaceBefore['db0']?.expires).toBe(2_250);
    expect(v.samples.kept).toBeGreaterThan(90);
    expect(v.samples.object).toBe(REDIS_SAMPLES_OBJECT);
    expect(v.rdbBytes).toBe(rdb.length);
    expect(backup.notes.join('\n')).toMatch(/carry a TTL/);
  });

  it('keeps values and passwords out of the manifest entry and out of every command line', () => {
    const manifestText = JSON.stringify(component);
    expect(manifestText).not.toContain(CANARY_VALUE);
    expect(manifestText).not.toContain(SOURCE_PASSWORD);
    expect(manifestText).not.toMatch(/k:(string|hash):\d+/); // no key names either
    for (const cmdline of seenDuringBackup) expect(cmdline).not.toContain(SOURCE_PASSWORD);
  });

  it('drills: the scratch copy has the recorded key counts and sampled values', async () => {
    const { result: drill, seen } = await watchCommandLines(async () =>
      drillRedis(component, store.readContext(await store.tempDir())),
    );
    expect(drill.ok).toBe(true);
    expect(drill.component).toBe('redis');
    expect(drill.checks.map((c) => c.subject)).toEqual(['db0 keys', 'db3 keys', 'sampled values']);
    expect(drill.checks[0]).toMatchObject({ expected: '18002', actual: '18002', ok: true });
    expect(drill.checks[2]?.actual).toMatch(/^\d+ equal, 0 expired, 0 differ$/);
    expect(drill.bytes).toBe((backup.verification as RedisVerification).rdbBytes);
    // The scratch server got its config (and password) on stdin: its argv is just `redis-server -`.
    const servers = [...seen].filter((c) => /redis-server/.test(c));
    expect(servers.some((c) => /redis-server -$/.test(c) || /redis-server \S*:\d+$/.test(c))).toBe(true);
    for (const cmdline of servers) expect(cmdline).not.toMatch(/requirepass|[0-9a-f]{48}/);
    for (const cmdline of seen) expect(cmdline).not.toContain(SOURCE_PASSWORD);
    // The scratch server and its file are gone.
    const temp = await fsp
      .readdir(path.join(store.dir))
      .then((names) => names.filter((n) => n.startsWith('tmp-')));
    for (const dir of temp) expect(await fsp.readdir(path.join(store.dir, dir))).toEqual([]);
  }, 60_000);

  it('a corrupted sample digest fails the drill and names the sample, not the key', async () => {
    const tampered = await TestObjectStore.create({ component: 'redis' });
    try {
      const dump = await store.bytes(REDIS_DUMP_OBJECT);
      const samples = JSON.parse((await store.bytes(REDIS_SAMPLES_OBJECT)).toString('utf8')) as {
        samples: Array<{ sha256: string; ttl: boolean }>;
      };
      samples.samples[0]!.sha256 = '0'.repeat(64);
      const ctx = tampered.writeContext(await tampered.tempDir());
      await ctx.write(REDIS_DUMP_OBJECT, Readable.from([dump]));
      await ctx.write(REDIS_SAMPLES_OBJECT, Readable.from([Buffer.from(JSON.stringify(samples))]));
      const drill = await drillRedis(
        { ...component, objects: [...tampered.records] },
        tampered.readContext(await tampered.tempDir()),
      );
      expect(drill.ok).toBe(false);
      const check = drill.checks.find((c) => c.subject === 'sampled values')!;
      expect(check.ok).toBe(false);
      expect(check.note).toMatch(/sample #1 \(db\d+, \w+\) differs/);
    } finally {
      await tampered.cleanup();
    }
  }, 60_000);

  it('restores into an AOF-enabled Redis with another password, and the data survives its restart', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-redis-aof-'));
    let target: RedisHandle | undefined = await startRedis({
      dir,
      appendonly: true,
      password: TARGET_PASSWORD,
    });
    try {
      const before = client(target, TARGET_PASSWORD);
      await before.set('stale', 'must be replaced');
      await before.config('SET', 'masterauth', 'previous-masterauth');
      before.disconnect();
      const { result: restored, seen } = await watchCommandLines(async () =>
        restoreRedis(
          component,
          redisConfig(target!, TARGET_PASSWORD),
          store.readContext(await store.tempDir()),
        ),
      );
      expect(restored.keys).toBe(20_002);
      expect(restored.bytes).toBe((backup.verification as RedisVerification).rdbBytes);
      for (const cmdline of seen) {
        expect(cmdline).not.toContain(TARGET_PASSWORD);
        expect(cmdline).not.toContain(SOURCE_PASSWORD);
      }
      // masterauth is back to what it was, and the target is a master again.
      const after = client(target, TARGET_PASSWORD);
      expect(await after.config('GET', 'masterauth')).toEqual(['masterauth', 'previous-masterauth']);
      expect(await after.info('replication')).toMatch(/role:master/);
      after.disconnect();

      // The pitfall: with AOF on, Redis loads the AOF at start and ignores dump.rdb. Restart on the same dir.
      await target.stop();
      target = await startRedis({ dir, appendonly: true, password: TARGET_PASSWORD });
      const check = client(target, TARGET_PASSWORD);
      const check3 = client(target, TARGET_PASSWORD, 3);
      try {
        expect(await check.dbsize()).toBe(18_002);
        expect(await check3.dbsize()).toBe(2_000);
        expect(await check.get('stale')).toBeNull();
        expect(await check.get('canary')).toBe(CANARY_VALUE);
        expect((await check.getBuffer('big:2mib'))?.length).toBe(2 * 1024 * 1024);
        const binKey = Buffer.concat([Buffer.from([0, 0xff, 0x0d, 0x0a]), Buffer.from('k:binary:1')]);
        expect(await check.getBuffer(binKey)).toEqual(Buffer.from([1, 0, 0xfe, 0x0a, 0x0d, 1, 2]));
        expect(await check.hgetall('k:hash:2')).toMatchObject({ a: '2' });
        expect(
          ((await check.call('ZRANGE', 'k:zset:5', '0', '-1', 'WITHSCORES')) as unknown[]).flat(),
        ).toEqual(['c', '-3.25', 'a', '1.5', 'b', '5']);
        expect(await check.xlen('k:stream:6')).toBe(1);
        expect(await check.ttl('k:ttl:7')).toBeGreaterThan(3000);
        expect(await check3.lrange('other:list:3', 0, -1)).toEqual(['one', '3', 'three']);
        expect(await check.info('persistence')).toMatch(/aof_enabled:1/);
      } finally {
        check.disconnect();
        check3.disconnect();
      }
    } finally {
      await target?.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('a key count below what was recorded fails the drill for that database', async () => {
    const v = backup.verification as RedisVerification;
    const inflated: RedisVerification = {
      ...v,
      keyspaceBefore: { ...v.keyspaceBefore, db3: { keys: 2_100, expires: 0 } },
      keyspaceAfter: { ...v.keyspaceAfter, db3: { keys: 2_100, expires: 0 } },
    };
    const drill = await drillRedis(
      { ...component, verification: inflated },
      store.readContext(await store.tempDir()),
    );
    expect(drill.ok).toBe(false);
    expect(drill.checks.find((c) => c.subject === 'db3 keys')).toMatchObject({
      expected: '2100',
      actual: '2000',
      ok: false,
    });
    expect(drill.checks.find((c) => c.subject === 'db0 keys')?.ok).toBe(true);
  }, 60_000);

  it('the pitfall the restore avoids: a dump.rdb copied into an AOF-enabled Redis is ignored at start', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-redis-naive-'));
    let target: RedisHandle | undefined = await startRedis({ dir, appendonly: true });
    try {
      await target.stop();
      await fsp.writeFile(path.join(dir, 'dump.rdb'), await store.bytes(REDIS_DUMP_OBJECT));
      target = await startRedis({ dir, appendonly: true });
      const check = client(target);
      expect(await check.dbsize()).toBe(0);
      check.disconnect();
    } finally {
      await target?.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('refuses to restore into a replica unless forced', async () => {
    const master = await startRedis();
    const replica = await startRedis();
    try {
      const r = client(replica);
      await r.replicaof(master.host, master.port);
      r.disconnect();
      const attempt = restoreRedis(component, redisConfig(replica), store.readContext(await store.tempDir()));
      await expect(attempt).rejects.toBeInstanceOf(InputError);
      await expect(attempt).rejects.toThrow(new RegExp(`is a replica of 127\\.0\\.0\\.1:${master.port}`));
      const forced = await restoreRedis(
        component,
        redisConfig(replica),
        store.readContext(await store.tempDir()),
        {
          force: true,
        },
      );
      expect(forced.keys).toBe(20_002);
      const after = client(replica);
      expect(await after.info('replication')).toMatch(/role:master/);
      after.disconnect();
    } finally {
      await replica.stop();
      await master.stop();
    }
  }, 120_000);

  it('a restore cancelled while the target loads the data still leaves the target a writable master', async () => {
    const target = await startRedis({ password: TARGET_PASSWORD });
    const admin = client(target, TARGET_PASSWORD);
    try {
      await admin.config('SET', 'masterauth', 'previous-masterauth');
      // 300 µs per key while loading: the 20k keys take about 6 s to load, so LOADING is observable; the
      // target answers (LOADING, INFO) every KiB loaded instead of every 2 MiB.
      await admin.config('SET', 'key-load-delay', '300');
      await admin.config('SET', 'loading-process-events-interval-bytes', '1024');
      const controller = new AbortController();
      let sawLoading = false;
      let watching = true;
      const watcher = (async () => {
        while (watching && !controller.signal.aborted) {
          if (/loading:1/.test(await admin.info('persistence').catch(() => ''))) {
            sawLoading = true;
            controller.abort(new UnavailableError('cancelled by operator'));
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      const started = performance.now();
      const attempt = restoreRedis(
        component,
        redisConfig(target, TARGET_PASSWORD),
        store.readContext(await store.tempDir(), { signal: controller.signal }),
      );
      await expect(attempt).rejects.toThrow(/cancelled by operator/);
      watching = false;
      await watcher;
      expect(sawLoading).toBe(true);
      const info = await admin.info('replication');
      expect(info).toMatch(/role:master/);
      expect(await admin.set('after-cancel', 'writable')).toBe('OK');
      expect(await admin.config('GET', 'masterauth')).toEqual(['masterauth', 'previous-masterauth']);
      console.log(
        `[redis cancel during load] restore ended ${(performance.now() - started).toFixed(0)} ms after it started; target is master and writable`,
      );
      // The temporary server is gone: nothing of ours left in the registry.
      const left = await fsp.readdir(scratchRegistryDir()).catch(() => [] as string[]);
      for (const name of left) {
        const record = JSON.parse(await fsp.readFile(path.join(scratchRegistryDir(), name), 'utf8')) as {
          ownerPid: number;
        };
        expect(record.ownerPid).not.toBe(process.pid);
      }
    } finally {
      admin.disconnect();
      await target.stop();
    }
  }, 120_000);

  it('a target that cannot be detached in time fails saying it is still a replica and how to fix it', async () => {
    const target = await startRedis({ password: TARGET_PASSWORD });
    const admin = client(target, TARGET_PASSWORD);
    try {
      // 5 ms per key: loading would take minutes, longer than the 1.5 s detach deadline.
      await admin.config('SET', 'key-load-delay', '5000');
      await admin.config('SET', 'loading-process-events-interval-bytes', '1024');
      const controller = new AbortController();
      const watcher = (async () => {
        while (!controller.signal.aborted) {
          if (/loading:1/.test(await admin.info('persistence').catch(() => '')))
            controller.abort(new Error('cancelled'));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      const attempt = restoreRedis(
        component,
        redisConfig(target, TARGET_PASSWORD),
        store.readContext(await store.tempDir(), { signal: controller.signal }),
        { detachTimeoutMs: 1_500 },
      );
      await expect(attempt).rejects.toBeInstanceOf(UnavailableError);
      await expect(attempt).rejects.toThrow(
        /is still a replica of the temporary server 127\.0\.0\.1:\d+, which is now stopped.*LOADING.*redis-cli -h 127\.0\.0\.1 -p \d+ REPLICAOF NO ONE/s,
      );
      await expect(attempt).rejects.not.toThrow(new RegExp(TARGET_PASSWORD));
      await watcher;
      await admin.config('SET', 'key-load-delay', '0');
    } finally {
      admin.disconnect();
      await target.stop();
    }
  }, 120_000);

  it('refuses a Redis Cluster node for backup and for restore (one node is not the dataset)', async () => {
    const node = await startRedis({ extraConfig: ['cluster-enabled yes'] });
    const other = await TestObjectStore.create({ component: 'redis' });
    try {
      const backupAttempt = backupRedis(
        { redis: redisConfig(node), samples: 5 },
        other.writeContext(await other.tempDir()),
      );
      await expect(backupAttempt).rejects.toBeInstanceOf(InputError);
      await expect(backupAttempt).rejects.toThrow(
        new RegExp(`Redis at 127\\.0\\.0\\.1:${node.port} is a Redis Cluster node \\(cluster_enabled:1\\)`),
      );
      expect(other.records).toEqual([]);
      const restoreAttempt = restoreRedis(
        component,
        redisConfig(node),
        store.readContext(await store.tempDir()),
      );
      await expect(restoreAttempt).rejects.toBeInstanceOf(InputError);
      await expect(restoreAttempt).rejects.toThrow(/cannot restore into a cluster/);
    } finally {
      await other.cleanup();
      await node.stop();
    }
  }, 60_000);

  it('refuses at once a target on another host while the temporary server would be on loopback', async () => {
    const started = performance.now();
    // 192.0.2.1 (TEST-NET-1) is no address of this host: it could never reach 127.0.0.1 here.
    const attempt = restoreRedis(
      component,
      redisConfig({ host: '192.0.2.1', port: 6379 }),
      store.readContext(await store.tempDir()),
    );
    await expect(attempt).rejects.toBeInstanceOf(InputError);
    await expect(attempt).rejects.toThrow(/not on the gameops host.*set backups\.redis\.restoreVia/);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('a drill after a gameops that was SIGKILLed mid-drill removes its scratch server and RDB copy', async () => {
    const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-redis-orphan-'));
    try {
      const dump = path.join(work, 'dump.rdb');
      await fsp.writeFile(dump, await store.bytes(REDIS_DUMP_OBJECT));
      const tempDir = path.join(work, 'temp');
      await fsp.mkdir(tempDir, { mode: 0o700 });
      // The child drills with a samples object that never ends: it is stuck with its scratch server up.
      const script = path.join(work, 'drill.mjs');
      await fsp.writeFile(
        script,
        `import fs from 'node:fs';
import { Readable } from 'node:stream';
const { drillRedis } = await import(process.env.REDIS_TS);
const input = JSON.parse(process.env.DRILL_INPUT);
const noop = () => {};
const log = { warn: noop, error: noop, info: noop, debug: noop, trace: noop, fatal: noop, child: () => log };
await drillRedis(input.component, {
  setId: 'orphan-test', objects: input.component.objects,
  read: (name) => (name === 'dump.rdb' ? fs.createReadStream(input.dump) : new Readable({ read() {} })),
  signal: new AbortController().signal, progress: { phase: noop, add: noop, note: noop },
  clock: { now: () => new Date() }, log, tempDir: input.tempDir,
});
`,
      );
      const child = spawn(process.execPath, [script], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: {
          ...process.env,
          REDIS_TS: new URL('./redis.ts', import.meta.url).href,
          DRILL_INPUT: JSON.stringify({ component, dump, tempDir }),
        },
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      let record: { pid: number; dir: string; file: string } | undefined;
      for (let i = 0; i < 600 && record === undefined && child.exitCode === null; i++) {
        for (const name of await fsp.readdir(scratchRegistryDir()).catch(() => [] as string[])) {
          const file = path.join(scratchRegistryDir(), name);
          const r = JSON.parse(await fsp.readFile(file, 'utf8').catch(() => '{}')) as {
            ownerPid?: number;
            pid: number;
            dir: string;
          };
          if (r.ownerPid === child.pid) record = { pid: r.pid, dir: r.dir, file };
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(record, `child drill never started its scratch server: ${stderr}`).toBeDefined();
      // Wait until the scratch server has loaded (its dir holds the RDB), then kill the child hard.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      child.kill('SIGKILL');
      await exited;
      expect(fs.existsSync(record!.dir)).toBe(true); // the RDB copy is left behind
      expect(fs.existsSync(record!.file)).toBe(true);
      // setpriv --pdeathsig: the kernel killed the scratch server with its parent.
      let alive = true;
      for (let i = 0; i < 100 && alive; i++) {
        alive =
          fs.existsSync(`/proc/${record!.pid}`) &&
          !/^\S+ \(.*\) Z/.test(
            await fsp.readFile(`/proc/${record!.pid}/stat`, 'utf8').catch(() => '0 (x) Z'),
          );
        if (alive) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(alive).toBe(false);

      const drill = await drillRedis(component, store.readContext(await store.tempDir()));
      expect(drill.ok).toBe(true);
      expect(fs.existsSync(record!.dir)).toBe(false);
      expect(fs.existsSync(record!.file)).toBe(false);
    } finally {
      await fsp.rm(work, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('Redis backup component: failures and load', () => {
  it('a wrong password fails clearly, without the password, and leaves no dump object', async () => {
    const server = await startRedis({ password: SOURCE_PASSWORD });
    const store = await TestObjectStore.create({ component: 'redis' });
    try {
      const wrong = 'wrong-Pa55-canary-3c8e';
      const attempt = backupRedis(
        { redis: redisConfig(server, wrong), samples: 5 },
        store.writeContext(await store.tempDir()),
      );
      await expect(attempt).rejects.toBeInstanceOf(InputError);
      const err = (await attempt.catch((e: unknown) => e)) as Error;
      expect(err.message).toContain(`127.0.0.1:${server.port}`);
      expect(err.message).toMatch(/WRONGPASS|invalid username-password/);
      expect(err.message).not.toContain(wrong);
      expect(await store.files()).toEqual([]);
    } finally {
      await store.cleanup();
      await server.stop();
    }
  }, 30_000);

  it('a server that accepts and never answers times out with UnavailableError', async () => {
    const silent = await startSilentServer();
    const store = await TestObjectStore.create({ component: 'redis' });
    try {
      const started = performance.now();
      const attempt = backupRedis(
        { redis: redisConfig(silent, 'some-Pa55word'), samples: 5, timeoutMs: 1_000 },
        store.writeContext(await store.tempDir()),
      );
      await expect(attempt).rejects.toBeInstanceOf(UnavailableError);
      await expect(attempt).rejects.toThrow(new RegExp(`127\\.0\\.0\\.1:${silent.port}`));
      await expect(attempt).rejects.not.toThrow(/some-Pa55word/);
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(await store.files()).toEqual([]);
    } finally {
      await store.cleanup();
      await silent.stop();
    }
  }, 30_000);

  it('a replication connection that never answers times out; nothing is left of the dump', async () => {
    const server = await startRedis();
    // The first connection (commands) goes through; the second (the replica handshake) is swallowed.
    const proxy = await startProxy(server, (index) => (index === 0 ? 'forward' : 'silent'));
    const store = await TestObjectStore.create({ component: 'redis' });
    try {
      const seed = client(server);
      await seed.set('a', 'b');
      seed.disconnect();
      const attempt = backupRedis(
        { redis: redisConfig(proxy), samples: 1, timeoutMs: 1_000 },
        store.writeContext(await store.tempDir()),
      );
      await expect(attempt).rejects.toBeInstanceOf(UnavailableError);
      await expect(attempt).rejects.toThrow(
        new RegExp(
          `127\\.0\\.0\\.1:${proxy.port} \\(waiting for REPLCONF rdb-only reply\\).*did not answer within 1000 ms`,
        ),
      );
      expect(await store.files()).toEqual([]);
    } finally {
      await proxy.stop();
      await store.cleanup();
      await server.stop();
    }
  }, 30_000);

  it('the server going away mid-transfer fails the backup and aborts the dump object', async () => {
    const server = await startRedis();
    const store = await TestObjectStore.create({ component: 'redis' });
    const seed = client(server);
    try {
      for (let start = 0; start < 40_000; start += 5_000) {
        const pipe = seed.pipeline();
        for (let i = start; i < start + 5_000; i++) pipe.set(`p:${i}`, randomBytes(64));
        await pipe.exec();
      }
      const proxy = await startProxy(server, (index) =>
        index === 0 ? 'forward' : { cutAfterBytes: 300_000 },
      );
      try {
        const attempt = backupRedis(
          { redis: redisConfig(proxy), samples: 3 },
          store.writeContext(await store.tempDir()),
        );
        await expect(attempt).rejects.toBeInstanceOf(UnavailableError);
        await expect(attempt).rejects.toThrow(/connection closed after \d+ of \d+ bytes/);
        expect(store.aborted).toEqual([REDIS_DUMP_OBJECT]);
        expect(await store.files()).toEqual([]);
      } finally {
        await proxy.stop();
      }
    } finally {
      seed.disconnect();
      await store.cleanup();
      await server.stop();
    }
  }, 60_000);

  it('a diskless transfer (EOF-marked) gives the same kind of RDB, without the marker', async () => {
    const server = await startRedis({
      extraConfig: ['repl-diskless-sync yes', 'repl-diskless-sync-delay 0'],
    });
    const store = await TestObjectStore.create({ component: 'redis' });
    const seed = client(server);
    try {
      await fill(seed, 2_000);
      const backup = await backupRedis(
        { redis: redisConfig(server), samples: 20, diskless: true },
        store.writeContext(await store.tempDir()),
      );
      expect(backup.notes.join('\n')).toMatch(/diskless sync/);
      expect(backup.tool.version).toMatch(/diskless/);
      const rdb = await store.bytes(REDIS_DUMP_OBJECT);
      expect(rdb.subarray(0, 5).toString('latin1')).toBe('REDIS');
      expect(rdb[rdb.length - 9]).toBe(0xff);
      const drill = await drillRedis(
        manifestComponent(backup, store),
        store.readContext(await store.tempDir()),
      );
      expect(drill.ok).toBe(true);
      expect(drill.checks[0]).toMatchObject({ subject: 'db0 keys', actual: '2000', ok: true });
    } finally {
      seed.disconnect();
      await store.cleanup();
      await server.stop();
    }
  }, 60_000);

  it('keys with a TTL that expired between backup and drill count as expired, not as failures', async () => {
    const server = await startRedis();
    const store = await TestObjectStore.create({ component: 'redis' });
    const seed = client(server);
    try {
      const pipe = seed.pipeline();
      for (let i = 0; i < 40; i++) pipe.set(`short:${i}`, `v${i}`, 'PX', 2_000);
      for (let i = 0; i < 40; i++) pipe.set(`long:${i}`, `v${i}`);
      await pipe.exec();
      const backup = await backupRedis(
        { redis: redisConfig(server), samples: 80 },
        store.writeContext(await store.tempDir()),
      );
      const v = backup.verification as RedisVerification;
      expect(v.keyspaceBefore['db0']).toEqual({ keys: 80, expires: 40 });
      expect(v.samples.withTtl).toBeGreaterThan(0);
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const drill = await drillRedis(
        manifestComponent(backup, store),
        store.readContext(await store.tempDir()),
      );
      expect(drill.ok).toBe(true);
      expect(drill.checks[0]).toMatchObject({ subject: 'db0 keys', expected: '80', actual: '40', ok: true });
      expect(drill.checks[0]?.note).toMatch(/40 fewer: keys with a TTL \(40 at backup time\) expired since/);
      expect(drill.checks[1]?.actual).toMatch(/^\d+ equal, [1-9]\d* expired, 0 differ$/);
      expect(drill.notes.join('\n')).toMatch(/sampled key\(s\) with a TTL had expired/);
    } finally {
      seed.disconnect();
      await store.cleanup();
      await server.stop();
    }
  }, 60_000);

  it('a server that goes away before the snapshot fails with UnavailableError naming it', async () => {
    const server = await startRedis();
    const port = server.port;
    await server.stop();
    const store = await TestObjectStore.create({ component: 'redis' });
    try {
      const attempt = backupRedis(
        { redis: redisConfig({ host: '127.0.0.1', port }), samples: 5, timeoutMs: 2_000 },
        store.writeContext(await store.tempDir()),
      );
      await expect(attempt).rejects.toBeInstanceOf(UnavailableError);
      await expect(attempt).rejects.toThrow(new RegExp(`127\\.0\\.0\\.1:${port}.*connection refused`));
    } finally {
      await store.cleanup();
    }
  }, 30_000);

  it('writes during the backup under load do not break the drill (drift is noted)', async () => {
    const server = await startRedis();
    const store = await TestObjectStore.create({ component: 'redis' });
    const writer = client(server);
    try {
      await fill(writer, 20_000);
      let running = true;
      let written = 0;
      const load = (async () => {
        while (running) {
          const pipe = writer.pipeline();
          for (let i = 0; i < 50; i++) {
            pipe.set(`live:${written}`, 'x');
            pipe.incr('live:counter');
            written++;
          }
          await pipe.exec();
        }
      })();
      let backup: ComponentBackup;
      try {
        backup = await backupRedis(
          { redis: redisConfig(server), samples: 100 },
          store.writeContext(await store.tempDir()),
        );
      } finally {
        running = false;
        await load;
      }
      const v = backup.verification as RedisVerification;
      expect(v.keyspaceAfter['db0']!.keys).toBeGreaterThan(v.keyspaceBefore['db0']!.keys);
      expect(backup.notes.join('\n')).toMatch(/Key counts changed during the snapshot \(db0 \d+→\d+\)/);
      const drill = await drillRedis(
        manifestComponent(backup, store),
        store.readContext(await store.tempDir()),
      );
      expect(drill.ok).toBe(true);
      const db0 = drill.checks.find((c) => c.subject === 'db0 keys')!;
      expect(db0.expected).toMatch(/^\d+\.\.\d+$/);
      expect(db0.note).toMatch(/changed during the snapshot/);
      expect(drill.notes.join('\n')).toMatch(/db0: counts changed during the snapshot/);
      console.log(
        `[redis drift] ${written} writes during the backup; db0 ${db0.expected}, restored ${db0.actual}`,
      );
    } finally {
      writer.disconnect();
      await store.cleanup();
      await server.stop();
    }
  }, 120_000);

  it('measures the snapshot of 500k keys against BGSAVE, and PING p99 during it', async () => {
    const server = await startRedis();
    const store = await TestObjectStore.create({ component: 'redis' });
    const admin = client(server);
    try {
      // DEBUG POPULATE is disabled by default; fill through pipelines instead.
      for (let start = 0; start < 500_000; start += 5_000) {
        const pipe = admin.pipeline();
        for (let i = start; i < start + 5_000; i++) pipe.set(`player:${i}`, `{"id":${i},"xp":${i * 7}}`);
        await pipe.exec();
      }
      const pinger = client(server);
      const pingDuring = async <T>(
        work: () => Promise<T>,
      ): Promise<{ result: T; p99: number; p50: number; n: number }> => {
        const samples: number[] = [];
        let running = true;
        const loop = (async () => {
          while (running) {
            const t = performance.now();
            await pinger.ping();
            samples.push(performance.now() - t);
            await new Promise((resolve) => setTimeout(resolve, 2));
          }
        })();
        try {
          const result = await work();
          return { result, ...percentiles(samples) };
        } finally {
          running = false;
          await loop;
        }
      };
      await pinger.ping(); // connect and warm up outside the measurement
      const idle = await pingDuring(() => new Promise((resolve) => setTimeout(resolve, 500)));

      const runBgsave = () =>
        pingDuring(async () => {
          const t = performance.now();
          await admin.bgsave();
          while (!/rdb_bgsave_in_progress:0/.test(await admin.info('persistence')))
            await new Promise((resolve) => setTimeout(resolve, 5));
          return performance.now() - t;
        });
      const stores: TestObjectStore[] = [];
      const runSnapshot = (diskless: boolean) =>
        pingDuring(async () => {
          const own = await TestObjectStore.create({ component: 'redis' });
          stores.push(own);
          const t = performance.now();
          await backupRedis(
            { redis: redisConfig(server), samples: 10, diskless },
            own.writeContext(await own.tempDir()),
          );
          return performance.now() - t;
        });
      try {
        const bgsave1 = await runBgsave();
        const disk = await runSnapshot(false);
        const bgsave2 = await runBgsave();
        // A diskless transfer starts after repl-diskless-sync-delay (5 s by default); 0 here to compare.
        await admin.config('SET', 'repl-diskless-sync-delay', '0');
        const socket = await runSnapshot(true);
        pinger.disconnect();
        const bgsave = Math.min(bgsave1.result, bgsave2.result);
        const rdb = stores[0]!.records.find((r) => r.name === REDIS_DUMP_OBJECT)!;
        const fmt = (x: { p50: number; p99: number; n: number }): string =>
          `${x.p50.toFixed(2)}/${x.p99.toFixed(2)} ms (n=${x.n})`;
        console.log(
          `[redis 500k keys, ${(rdb.plainSize / 1048576).toFixed(1)} MiB RDB] BGSAVE ${bgsave1.result.toFixed(0)}/${bgsave2.result.toFixed(0)} ms; ` +
            `gameops snapshot disk-based ${disk.result.toFixed(0)} ms (${(disk.result / bgsave).toFixed(2)}x), ` +
            `diskless ${socket.result.toFixed(0)} ms (${(socket.result / bgsave).toFixed(2)}x). ` +
            `PING p50/p99 idle ${fmt(idle)}, during BGSAVE ${fmt(bgsave1)}, during disk-based snapshot ${fmt(disk)}, ` +
            `during diskless snapshot ${fmt(socket)}`,
        );
        expect(rdb.plainSize).toBeGreaterThan(1_000_000);
        const rdb2 = stores[1]!.records.find((r) => r.name === REDIS_DUMP_OBJECT)!;
        expect(rdb2.plainSize).toBeGreaterThan(1_000_000);
      } finally {
        for (const own of stores) await own.cleanup();
      }
    } finally {
      admin.disconnect();
      await store.cleanup();
      await server.stop();
    }
  }, 300_000);
});

function percentiles(samples: number[]): { p50: number; p99: number; n: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), n: sorted.length };
}

type ProxyBehaviour = 'forward' | 'silent' | { cutAfterBytes: number };

/** A TCP proxy to `target`; `behaviour(n)` decides what the n-th connection (from 0) gets. */
async function startProxy(
  target: { host: string; port: number },
  behaviour: (index: number) => ProxyBehaviour,
): Promise<{ host: string; port: number; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let count = 0;
  const server = net.createServer((socket) => {
    const mode = behaviour(count++);
    sockets.add(socket);
    socket.on('error', () => undefined);
    if (mode === 'silent') return;
    const upstream = net.connect({ host: target.host, port: target.port });
    sockets.add(upstream);
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
    socket.pipe(upstream);
    if (mode === 'forward') {
      upstream.pipe(socket);
      return;
    }
    let sent = 0;
    upstream.on('data', (chunk: Buffer) => {
      const room = mode.cutAfterBytes - sent;
      sent += chunk.length;
      if (room > 0) socket.write(room >= chunk.length ? chunk : chunk.subarray(0, room));
      if (sent >= mode.cutAfterBytes) {
        socket.end();
        upstream.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('Redis backup component: pure parts and scratch registry', () => {
  it('renders sorted-set scores canonically, whatever the server version printed', () => {
    // Redis 7.0 prints %.17g, 7.2+ the shortest round-trip form: both give one canonical text.
    expect(canonicalScore('0.10000000000000001')).toBe('0.1');
    expect(canonicalScore('0.1')).toBe('0.1');
    expect(canonicalScore('1.5')).toBe('1.5');
    expect(canonicalScore('1.1000000000000001')).toBe(canonicalScore('1.1'));
    expect(canonicalScore('1e+21')).toBe('1e+21');
    expect(canonicalScore('1e21')).toBe('1e+21');
    expect(canonicalScore('1000000000000000000000')).toBe('1e+21');
    expect(canonicalScore('3.0000000000000004')).toBe('3.0000000000000004');
    expect(canonicalScore('3')).toBe('3');
    expect(canonicalScore('-3.25')).toBe('-3.25');
    expect(canonicalScore('-inf')).toBe('-inf');
    expect(canonicalScore('inf')).toBe('inf');
    expect(canonicalScore('+inf')).toBe('inf');
    expect(canonicalScore('-0')).toBe('0');
    expect(() => canonicalScore('nan')).toThrow(InputError);
    expect(() => canonicalScore('')).toThrow(InputError);
  });

  it('the sweep kills a live scratch server whose gameops is gone, and leaves those of live ones', async () => {
    const registry = scratchRegistryDir();
    await fsp.mkdir(registry, { recursive: true, mode: 0o700 });
    const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-redis-sweep-'));
    const startTime = (pid: number): string => {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    };
    const servers = [await startRedis(), await startRedis()];
    const files: string[] = [];
    try {
      const pids = servers.map((server) => {
        const pid = Number(
          fs
            .readdirSync('/proc')
            .filter((p) => /^\d+$/.test(p))
            .find((p) => {
              const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
              return cmd.includes('redis-server') && cmd.includes(`:${server.port}`);
            }),
        );
        expect(pid).toBeGreaterThan(0);
        return pid;
      });
      const deadOwner = spawn(process.execPath, ['-e', '']);
      await new Promise((resolve) => deadOwner.once('exit', resolve));
      const dirs = [path.join(work, 'redis-dead'), path.join(work, 'redis-live')];
      for (const dir of dirs) await fsp.mkdir(dir);
      await fsp.writeFile(path.join(dirs[0]!, 'dump.rdb'), 'data');
      const records = [
        { pid: pids[0], start: startTime(pids[0]!), ownerPid: deadOwner.pid, ownerStart: '1', dir: dirs[0] },
        {
          pid: pids[1],
          start: startTime(pids[1]!),
          ownerPid: process.pid,
          ownerStart: startTime(process.pid),
          dir: dirs[1],
        },
      ];
      for (const record of records) {
        const file = path.join(registry, `${record.pid}.json`);
        files.push(file);
        await fsp.writeFile(file, JSON.stringify(record), { mode: 0o600 });
      }
      const cleaned = await sweepOrphanedScratchServers();
      expect(cleaned.filter((line) => line.includes(`pid ${pids[0]} killed`))).toHaveLength(1);
      expect(cleaned.join('\n')).not.toContain(`pid ${pids[1]}`);
      expect(fs.existsSync(dirs[0]!)).toBe(false);
      expect(fs.existsSync(files[0]!)).toBe(false);
      expect(fs.existsSync(dirs[1]!)).toBe(true);
      expect(fs.existsSync(files[1]!)).toBe(true);
      const live = client(servers[1]!);
      expect(await live.ping()).toBe('PONG');
      live.disconnect();
    } finally {
      for (const file of files) await fsp.rm(file, { force: true });
      for (const server of servers) await server.stop().catch(() => undefined);
      await fsp.rm(work, { recursive: true, force: true });
    }
  }, 60_000);
});
