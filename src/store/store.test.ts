import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket, connect } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closedPort, services, startSilentServer } from '../../test/harness/index.ts';
import { ManualClock, type GameopsError } from '../core/index.ts';
import type { CheckRun } from '../checks/index.ts';
import { openStore, type Store, type StoreOptions } from './index.ts';
import { postgresPlace, sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function open(options: StoreOptions): Promise<Store> {
  const store = await openStore(options);
  stores.push(store);
  return store;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-store-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function makeRun(id: string, startedAt: string, overrides: Partial<CheckRun> = {}): CheckRun {
  const started = new Date(startedAt);
  return {
    id,
    kind: 'daily',
    service: 'dragon-realm',
    environment: 'prod',
    trigger: 'schedule',
    status: 'warn',
    startedAt: started.toISOString(),
    finishedAt: new Date(started.getTime() + 1_234).toISOString(),
    durationMs: 1_234,
    results: [
      {
        name: 'database',
        status: 'warn',
        summary: 'MariaDB 11.4.2: 140/151 connections (93 %)',
        durationMs: 40,
        values: { connections: 140, max: 151, version: '11.4.2', nested: { ratio: 0.927, tags: ['a', 'b'] } },
        findings: [
          { status: 'warn', subject: 'connections', message: '93 % of max', value: 140, threshold: 80 },
        ],
      },
      {
        name: 'redis',
        status: 'error',
        summary: 'Redis did not answer',
        durationMs: 5_000,
        values: {},
        findings: [],
        error: { code: 'unavailable', message: 'redis at 127.0.0.1:6379 did not answer within 5000 ms' },
      },
    ],
    ...overrides,
  };
}

/** Runs started one hour apart from 2026-03-01T00:00Z: r00, r01, ... */
function hourly(count: number): CheckRun[] {
  return Array.from({ length: count }, (_, i) =>
    makeRun(`r${String(i).padStart(3, '0')}`, new Date(Date.UTC(2026, 2, 1, i)).toISOString()),
  );
}

async function rejection(promise: Promise<unknown>): Promise<GameopsError> {
  try {
    await promise;
  } catch (err) {
    return err as GameopsError;
  }
  throw new Error('expected a rejection');
}

const backends = [
  { backend: 'sqlite' as const, place: () => Promise.resolve(sqlitePlace(cleanups)) },
  { backend: 'postgres' as const, place: () => postgresPlace(cleanups) },
];

describe.each(backends)('store on $backend', ({ backend, place }) => {
  it('applies the migrations once, and reopening keeps schema and data', async () => {
    const p = await place();
    const store = await open(p.options);
    expect(store.backend).toBe(backend);
    if (backend === 'postgres') {
      const { user, password, port } = services().postgres;
      expect(store.location).toMatch(
        new RegExp(`^postgres://${user}:\\*\\*\\*@127\\.0\\.0\\.1:${port}/gameops_[0-9a-f]+$`),
      );
      expect(store.location).not.toContain(password);
    } else {
      expect(store.location).toBe(join(p.options.dataDir!, 'gameops.db'));
    }
    await store.checkRuns.record(makeRun('kept', '2026-03-01T00:00:00Z'));
    await store.close();
    const migrations = async () =>
      (await p.query('SELECT name FROM kysely_migration ORDER BY name')).map((row) => row.name);
    expect(await migrations()).toEqual([
      '001_check_runs',
      '002_check_runs_scope',
      '003_runbooks',
      '004_incidents',
      '005_oncall',
      '006_alerts',
      '007_backups',
      '008_maintenance',
      '009_check_runs_listing',
    ]);

    const reopened = await open(p.options);
    expect(await reopened.checkRuns.get('kept')).toEqual(makeRun('kept', '2026-03-01T00:00:00Z'));
    await reopened.close();
    expect(await migrations()).toEqual([
      '001_check_runs',
      '002_check_runs_scope',
      '003_runbooks',
      '004_incidents',
      '005_oncall',
      '006_alerts',
      '007_backups',
      '008_maintenance',
      '009_check_runs_listing',
    ]);
    const indexes =
      backend === 'sqlite'
        ? await p.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'check_runs'")
        : await p.query("SELECT indexname AS name FROM pg_indexes WHERE tablename = 'check_runs'");
    expect(indexes.map((row) => row.name)).toContain('check_runs_kind_started_at_idx');
    expect(indexes.map((row) => row.name)).toContain('check_runs_scope_kind_started_at_idx');
    expect(indexes.map((row) => row.name)).toContain('check_runs_scope_started_at_id_idx');
  });

  it('upgrades a database that has only migration 001, keeping its runs', async () => {
    const p = await place();
    await (await open(p.options)).close();
    // Back to the schema gameops had before 002 shipped, with a run recorded then.
    await backTo001((text) => p.query(text));
    const store = await open(p.options);
    await store.checkRuns.record(makeRun('old', '2026-03-01T00:00:00Z'));
    await store.close();
    await backTo001((text) => p.query(text));

    const upgraded = await open(p.options);
    expect(
      (await upgraded.checkRuns.latest('daily', { service: 'dragon-realm', environment: 'prod' }))?.id,
    ).toBe('old');
    await upgraded.close();
    expect((await p.query('SELECT name FROM kysely_migration ORDER BY name')).map((row) => row.name)).toEqual(
      [
        '001_check_runs',
        '002_check_runs_scope',
        '003_runbooks',
        '004_incidents',
        '005_oncall',
        '006_alerts',
        '007_backups',
        '008_maintenance',
        '009_check_runs_listing',
      ],
    );
  });

  it('keeps gameops instances sharing a database apart: latest, list and prune by service and environment', async () => {
    const store = await open((await place()).options);
    const scopes = [
      { service: 'dragon-realm', environment: 'prod' },
      { service: 'dragon-realm', environment: 'staging' },
      { service: 'space-race', environment: 'prod' },
    ];
    // Interleaved: each scope's runs start an hour apart, the scopes a minute apart.
    const runs = hourly(4).flatMap((run, hour) =>
      scopes.map((scope, s) =>
        makeRun(`${scope.service}/${scope.environment}/${hour}`, run.startedAt, {
          ...scope,
          startedAt: new Date(Date.parse(run.startedAt) + s * 60_000).toISOString(),
        }),
      ),
    );
    await Promise.all(runs.map((run) => store.checkRuns.record(run)));

    expect((await store.checkRuns.latest('daily'))?.id).toBe('space-race/prod/3');
    for (const scope of scopes) {
      expect((await store.checkRuns.latest('daily', scope))?.id).toBe(
        `${scope.service}/${scope.environment}/3`,
      );
      expect((await store.checkRuns.latest(undefined, scope))?.id).toBe(
        `${scope.service}/${scope.environment}/3`,
      );
    }
    expect(
      await store.checkRuns.latest('daily', { service: 'dragon-realm', environment: 'nowhere' }),
    ).toBeUndefined();

    const ids = async (options: Parameters<Store['checkRuns']['list']>[0]) =>
      (await store.checkRuns.list(options)).map((run) => run.id);
    expect(await ids({ service: 'dragon-realm', environment: 'staging' })).toEqual([
      'dragon-realm/staging/3',
      'dragon-realm/staging/2',
      'dragon-realm/staging/1',
      'dragon-realm/staging/0',
    ]);
    expect(await ids({ service: 'dragon-realm', limit: 3 })).toEqual([
      'dragon-realm/staging/3',
      'dragon-realm/prod/3',
      'dragon-realm/staging/2',
    ]);
    expect(await ids({ environment: 'prod', since: new Date(runs[6]!.startedAt), limit: 10 })).toEqual([
      'space-race/prod/3',
      'dragon-realm/prod/3',
      'space-race/prod/2',
      'dragon-realm/prod/2',
    ]);
    expect(await ids({ service: 'nobody' })).toEqual([]);

    // Pruning one instance's old runs leaves the other instances' alone.
    const cutoff = new Date(Date.UTC(2026, 2, 1, 2));
    expect(await store.checkRuns.prune(cutoff, scopes[2])).toBe(2);
    expect(await ids({ service: 'space-race' })).toEqual(['space-race/prod/3', 'space-race/prod/2']);
    expect(await ids({ service: 'dragon-realm', limit: 100 })).toHaveLength(8);
    expect(await store.checkRuns.prune(cutoff)).toBe(4);
    expect(await ids({ limit: 100 })).toHaveLength(6);
  });

  it('records a run and reads it back unchanged, with timestamps in UTC', async () => {
    const store = await open((await place()).options);
    const run = makeRun('a1', '2026-03-01T00:00:00Z');
    await store.checkRuns.record(run);
    expect(await store.checkRuns.get('a1')).toEqual(run);
    expect(await store.checkRuns.get('missing')).toBeUndefined();

    await store.checkRuns.record({
      ...makeRun('a2', '2026-03-01T00:00:00Z'),
      startedAt: '2026-03-01T09:30:00+09:00',
      finishedAt: '2026-03-01T09:30:01.5+09:00',
    });
    const back = await store.checkRuns.get('a2');
    expect(back?.startedAt).toBe('2026-03-01T00:30:00.000Z');
    expect(back?.finishedAt).toBe('2026-03-01T00:30:01.500Z');
  });

  it('records idempotently on id and refuses a different run under the same id', async () => {
    const p = await place();
    const store = await open(p.options);
    const run = makeRun('same', '2026-03-01T00:00:00Z');
    await store.checkRuns.record(run);
    await store.checkRuns.record(run);
    await store.checkRuns.record(structuredClone(run));
    const err = await rejection(store.checkRuns.record({ ...run, status: 'ok' }));
    expect(err.code).toBe('conflict');
    expect(err.message).toContain('check run same is already recorded with different content');
    expect(await store.checkRuns.get('same')).toEqual(run);
    expect(await store.checkRuns.list()).toHaveLength(1);
  });

  it('rejects a malformed run with InputError and records nothing', async () => {
    const store = await open((await place()).options);
    const local = { ...makeRun('bad', '2026-03-01T00:00:00Z'), startedAt: '2026-03-01T00:00:00' };
    const err = await rejection(store.checkRuns.record(local));
    expect(err.code).toBe('input');
    expect(err.message).toContain('startedAt');
    const negative = { ...makeRun('bad', '2026-03-01T00:00:00Z'), durationMs: -1 };
    expect((await rejection(store.checkRuns.record(negative))).code).toBe('input');
    expect(await store.checkRuns.get('bad')).toBeUndefined();
  });

  it('latest is the newest by start time, whatever the order of recording', async () => {
    const store = await open((await place()).options);
    expect(await store.checkRuns.latest()).toBeUndefined();
    const [first, second, third] = hourly(3);
    for (const run of [second!, third!, first!]) await store.checkRuns.record(run);
    expect((await store.checkRuns.latest('daily'))?.id).toBe(third!.id);
    expect((await store.checkRuns.latest())?.id).toBe(third!.id);
  });

  it('lists newest first within [since, until), limited', async () => {
    const store = await open((await place()).options);
    const runs = hourly(10);
    await Promise.all(runs.map((run) => store.checkRuns.record(run)));
    const ids = async (options: Parameters<Store['checkRuns']['list']>[0]) =>
      (await store.checkRuns.list(options)).map((run) => run.id);

    expect(await ids({})).toEqual(runs.map((run) => run.id).reverse());
    expect(await ids({ limit: 3 })).toEqual(['r009', 'r008', 'r007']);
    const since = new Date(runs[2]!.startedAt);
    const until = new Date(runs[5]!.startedAt);
    expect(await ids({ since })).toEqual(['r009', 'r008', 'r007', 'r006', 'r005', 'r004', 'r003', 'r002']);
    expect(await ids({ until })).toEqual(['r004', 'r003', 'r002', 'r001', 'r000']);
    expect(await ids({ since, until })).toEqual(['r004', 'r003', 'r002']);
    expect(await ids({ since, until, limit: 2 })).toEqual(['r004', 'r003']);
    expect(await ids({ since: until, until: since })).toEqual([]);
    // Bounds beyond the four-digit years of stored timestamps still compare as time.
    expect(await ids({ since: new Date(-8.64e15), until: new Date(8.64e15), limit: 2 })).toEqual([
      'r009',
      'r008',
    ]);
  });

  it('lists 50 by default and at most 500, and refuses a bad limit or date', async () => {
    const store = await open((await place()).options);
    const runs = hourly(501);
    for (let i = 0; i < runs.length; i += 50) {
      await Promise.all(runs.slice(i, i + 50).map((run) => store.checkRuns.record(run)));
    }
    expect(await store.checkRuns.list()).toHaveLength(50);
    expect(await store.checkRuns.list({ limit: 10_000 })).toHaveLength(500);
    for (const limit of [0, -1, 2.5, Number.NaN]) {
      expect((await rejection(store.checkRuns.list({ limit }))).code).toBe('input');
    }
    expect((await rejection(store.checkRuns.list({ since: new Date('nope') }))).code).toBe('input');
  });

  it('prunes runs started before a date and keeps the rest', async () => {
    const store = await open((await place()).options);
    const runs = hourly(6);
    await Promise.all(runs.map((run) => store.checkRuns.record(run)));
    expect(await store.checkRuns.prune(new Date(runs[4]!.startedAt))).toBe(4);
    expect((await store.checkRuns.list()).map((run) => run.id)).toEqual(['r005', 'r004']);
    expect(await store.checkRuns.prune(new Date(runs[4]!.startedAt))).toBe(0);
  });

  it('answers ping, and after close rejects calls with UnavailableError; close twice is fine', async () => {
    const store = await open((await place()).options);
    await store.ping();
    await store.close();
    await store.close();
    const err = await rejection(store.checkRuns.latest());
    expect(err.code).toBe('unavailable');
    expect(err.message).toMatch(/^(SQLite|PostgreSQL) store at .* is closed$/);
    expect((await rejection(store.ping())).code).toBe('unavailable');
  });

  it('names the row when a stored run is corrupt', async () => {
    const p = await place();
    const store = await open(p.options);
    await store.checkRuns.record(makeRun('good', '2026-03-01T00:00:00Z'));
    await store.checkRuns.record(makeRun('broken', '2026-03-01T01:00:00Z'));
    await store.close();
    await p.query(`UPDATE check_runs SET results = '[{"name": "database", "status"' WHERE id = 'broken'`);

    const reopened = await open(p.options);
    expect(await reopened.checkRuns.get('good')).toEqual(makeRun('good', '2026-03-01T00:00:00Z'));
    for (const call of [reopened.checkRuns.get('broken'), reopened.checkRuns.list()]) {
      const err = await rejection(call);
      expect(err.code).toBe('internal');
      expect(err.message).toMatch(/^check run broken in the store is corrupt: results are not valid JSON/);
    }
    await reopened.close();
    await p.query(`UPDATE check_runs SET results = '{}', status = 'fine' WHERE id = 'broken'`);
    const again = await open(p.options);
    expect((await rejection(again.checkRuns.latest())).message).toMatch(
      /^check run broken .* corrupt: status:/,
    );
  });

  it('refuses a database migrated by a newer gameops', async () => {
    const p = await place();
    await (await open(p.options)).close();
    await p.query(
      `INSERT INTO kysely_migration (name, timestamp) VALUES ('999_from_the_future', '2030-01-01')`,
    );
    const err = await rejection(openStore(p.options));
    expect(err.code).toBe('conflict');
    expect(err.message).toContain('has migration 999_from_the_future, which this gameops does not know');
  });
});

describe('store on sqlite: listing runs', () => {
  it("walks the scope's index newest first instead of sorting every stored run", async () => {
    const p = sqlitePlace(cleanups);
    const store = await open(p.options);
    for (const run of hourly(3)) await store.checkRuns.record(run);
    await store.close();
    // The statement `checkRuns.list` sends for a scope (what every daily check reads its previous run with).
    const plan = await p.query(
      "EXPLAIN QUERY PLAN SELECT * FROM check_runs WHERE service = 'dragon-realm' AND environment = 'prod' " +
        "AND started_at >= '2026-01-01T00:00:00.000Z' ORDER BY started_at DESC, id DESC LIMIT 1",
    );
    const detail = plan.map((row) => String(row['detail'])).join('\n');
    expect(detail).toContain('check_runs_scope_started_at_id_idx');
    expect(detail).not.toContain('TEMP B-TREE');
  });
});

describe('store on sqlite: the data directory', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });

  /** Starts a real second gameops process holding `dataDir`; resolves once it has the lock. */
  async function holder(dataDir: string, runId: string): Promise<ChildProcess> {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, 'hold-data-dir.fixture.ts'), dataDir, runId],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    let output = '';
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`fixture exited with ${code}: ${output}`)));
    });
    return child;
  }

  it('is created with mode 0700, nested directories included', async () => {
    const dataDir = join(tempDir(), 'a', 'b');
    const store = await open({ dataDir });
    expect(store.location).toBe(join(dataDir, 'gameops.db'));
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, '..')).mode & 0o777).toBe(0o700);
  });

  it('refuses a data directory that is a file', async () => {
    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, '');
    const err = await rejection(openStore({ dataDir: file }));
    expect(err.code).toBe('input');
    expect(err.message).toBe(`data directory ${file} is not a directory`);
  });

  it('is refused to a second process with ConflictError naming the holder, and free again after SIGKILL', async () => {
    const dataDir = join(tempDir(), 'data');
    const child = await holder(dataDir, 'from-child');

    const err = await rejection(openStore({ dataDir }));
    expect(err.code).toBe('conflict');
    expect(err.message).toMatch(
      new RegExp(
        `^data directory ${dataDir} is in use by another gameops process \\(pid ${child.pid}, started at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)$`,
      ),
    );

    child.kill('SIGKILL');
    await once(child, 'exit');
    const store = await open({ dataDir });
    expect((await store.checkRuns.get('from-child'))?.service).toBe('fixture');
  });

  it('is refused to a second store in the same process until the first closes', async () => {
    const dataDir = join(tempDir(), 'data');
    const clock = new ManualClock('2026-05-01T12:00:00Z');
    const first = await open({ dataDir, clock });
    expect(existsSync(join(dataDir, 'gameops.pid'))).toBe(true);
    const err = await rejection(openStore({ dataDir }));
    expect(err.code).toBe('conflict');
    expect(err.message).toBe(
      `data directory ${dataDir} is already open in this process (opened at 2026-05-01T12:00:00.000Z)`,
    );
    await first.close();
    expect(existsSync(join(dataDir, 'gameops.pid'))).toBe(false);
    await open({ dataDir });
  });

  it('a second process gets a clear message even when the info file is missing', async () => {
    const dataDir = join(tempDir(), 'data');
    await holder(dataDir, 'r1');
    rmSync(join(dataDir, 'gameops.pid'));
    const err = await rejection(openStore({ dataDir }));
    expect(err.code).toBe('conflict');
    expect(err.message).toBe(
      `data directory ${dataDir} is locked by another process (pid unknown: no gameops pid is recorded)`,
    );
  });

  /** Another program (an sqlite3 shell, a backup tool) holding the database's lock; it writes no pid file. */
  async function foreignLock(dataDir: string): Promise<ChildProcess> {
    const script = [
      "const { DatabaseSync } = require('node:sqlite');",
      `const db = new DatabaseSync(${JSON.stringify(join(dataDir, 'gameops.db'))});`,
      "db.exec('PRAGMA locking_mode = EXCLUSIVE; BEGIN IMMEDIATE; COMMIT');",
      "process.stdout.write('ready\\n');",
      'setInterval(() => undefined, 60_000);',
    ].join('\n');
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`lock holder exited with ${code}: ${output}`)));
    });
    return child;
  }

  it('after gameops was killed, names another program holding the lock, not the dead gameops pid', async () => {
    const dataDir = join(tempDir(), 'data');
    const gameops = await holder(dataDir, 'before-the-kill');
    gameops.kill('SIGKILL');
    await once(gameops, 'exit');
    // kill -9 leaves gameops.pid behind, naming the dead process.
    expect(JSON.parse(readFileSync(join(dataDir, 'gameops.pid'), 'utf8'))).toMatchObject({
      pid: gameops.pid,
    });
    const other = await foreignLock(dataDir);

    const err = await rejection(openStore({ dataDir }));
    expect(err.code).toBe('conflict');
    expect(err.message).toBe(
      `data directory ${dataDir} is locked by another process (not gameops pid ${gameops.pid}, which is no longer running)`,
    );
    expect(err.details).toMatchObject({ dataDir, pid: gameops.pid, running: false });

    other.kill('SIGKILL');
    await once(other, 'exit');
    const store = await open({ dataDir });
    expect((await store.checkRuns.get('before-the-kill'))?.service).toBe('fixture');
  });

  it('does not take a stale pid file naming this very pid for its own open store', async () => {
    const dataDir = join(tempDir(), 'data');
    await (await open({ dataDir })).close();
    // As left by an earlier gameops with the same pid (a container's pid 1), killed with SIGKILL.
    writeFileSync(
      join(dataDir, 'gameops.pid'),
      JSON.stringify({ pid: process.pid, startedAt: '2026-01-01T00:00:00.000Z', hostname: hostname() }),
    );
    await foreignLock(dataDir);
    const err = await rejection(openStore({ dataDir }));
    expect(err.code).toBe('conflict');
    expect(err.message).toBe(
      `data directory ${dataDir} is locked by another process (not gameops pid ${process.pid}, which is no longer running)`,
    );
  });

  it('needs a data directory or a URL', async () => {
    expect((await rejection(openStore({}))).code).toBe('input');
  });
});

describe('store on postgres: failures', () => {
  const PASSWORD = 'hunter2-Sup3r-s3cret';
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  afterEach(async () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  });

  async function listen(onConnection: (socket: Socket) => void, port = 0): Promise<number> {
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      onConnection(socket);
    });
    servers.push(server);
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  }

  it('a closed port gives UnavailableError at once, without the password', async () => {
    const port = await closedPort();
    const started = performance.now();
    const err = await rejection(
      openStore({ url: `postgres://gameops:${PASSWORD}@127.0.0.1:${port}/gameops` }),
    );
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(err.code).toBe('unavailable');
    expect(err.message).toContain(`PostgreSQL store at postgres://gameops:***@127.0.0.1:${port}/gameops`);
    expect(err.message).toContain('ECONNREFUSED');
    expect(JSON.stringify({ message: err.message, details: err.details, stack: err.stack })).not.toContain(
      PASSWORD,
    );
  });

  it('a server that accepts TCP and never answers gives UnavailableError within the connect timeout', async () => {
    const silent = await startSilentServer();
    cleanups.push(() => silent.stop());
    const started = performance.now();
    const err = await rejection(
      openStore({ url: `postgres://gameops:${PASSWORD}@127.0.0.1:${silent.port}/gameops` }),
    );
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThan(4_000);
    expect(elapsed).toBeLessThan(8_000);
    expect(err.code).toBe('unavailable');
    expect(err.message).toMatch(
      /^PostgreSQL store at postgres:\/\/gameops:\*\*\*@127\.0\.0\.1:\d+\/gameops: /,
    );
    expect(err.message).not.toContain(PASSWORD);
    expect(silent.connections()).toBeGreaterThan(0);
  });

  it('a server that goes silent, or away, mid-run gives UnavailableError, never a hang, and comes back', async () => {
    const p = await postgresPlace(cleanups);
    const target = new URL(p.options.url as string);
    let mode: 'forward' | 'silent' = 'forward';
    // A TCP proxy to the real server that can stop forwarding (a hung server) or vanish (a dead one).
    const proxy = (port = 0) =>
      listen((client) => {
        const upstream = connect(Number(target.port || 5432), target.hostname);
        sockets.add(upstream);
        upstream.on('close', () => sockets.delete(upstream));
        client.on('data', (chunk) => mode === 'forward' && upstream.write(chunk));
        upstream.on('data', (chunk) => mode === 'forward' && client.write(chunk));
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      }, port);
    const vanish = async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
    };
    const port = await proxy();
    const proxied = new URL(target);
    proxied.host = `127.0.0.1:${port}`;
    const store = await open({ url: proxied.toString(), statementTimeoutMs: 1_000, connectTimeoutMs: 1_000 });
    await store.checkRuns.record(makeRun('before', '2026-03-01T00:00:00Z'));
    const timed = async (call: Promise<unknown>) => {
      const started = performance.now();
      const err = await rejection(call);
      return { err, ms: performance.now() - started };
    };

    mode = 'silent';
    let { err, ms } = await timed(store.checkRuns.record(makeRun('during', '2026-03-01T01:00:00Z')));
    expect(ms).toBeLessThan(5_000);
    expect(err.code).toBe('unavailable');
    expect(err.message).toMatch(/^PostgreSQL store at postgres:\/\/.*: recording check run during: /);

    // The server dies while a query is in flight: the query fails, and nothing else throws.
    const inFlight = timed(store.checkRuns.latest());
    await vanish();
    ({ err, ms } = await inFlight);
    expect(ms).toBeLessThan(1_000);
    expect(err.code).toBe('unavailable');
    expect(err.message).toMatch(/^PostgreSQL store at .*: reading the latest check run: /);

    ({ err, ms } = await timed(store.checkRuns.list()));
    expect(ms).toBeLessThan(2_000);
    expect(err.code).toBe('unavailable');
    expect(err.message).toContain('ECONNREFUSED');

    mode = 'forward';
    await proxy(port);
    expect((await store.checkRuns.latest())?.id).toBe('before');
  });

  it('refuses a URL that is not postgres:// without repeating it', async () => {
    for (const url of [`mysql://root:${PASSWORD}@db/game`, `postgres://u:${PASSWORD}@db:notaport/game`]) {
      const err = await rejection(openStore({ url }));
      expect(err.code).toBe('input');
      expect(err.message).not.toContain(PASSWORD);
    }
  });
});

/** Takes a store's schema back to migration 001 alone (what gameops had before 002 shipped). */
async function backTo001(query: (text: string) => Promise<unknown>): Promise<void> {
  for (const table of [
    ...['incidents', 'incident_counters', 'incident_timeline', 'incident_runs'],
    ...['incident_postmortems', 'incident_action_items'],
    ...['oncall_settings', 'oncall_overrides', 'oncall_pages', 'oncall_notifications'],
    ...['oncall_attempts', 'oncall_stalls'],
    ...['alert_records', 'suppression_windows', 'heartbeat_states'],
    ...['backup_sets', 'backup_lock', 'backup_restorable'],
    ...['maintenance_windows', 'maintenance_notices'],
    'runs',
    'run_steps',
    'step_attempts',
    'run_events',
    'counters',
    'audit_log',
    'audit_head',
    'api_tokens',
    'schedule_fires',
  ])
    await query(`DROP TABLE ${table}`);
  await query('DROP INDEX check_runs_scope_kind_started_at_idx');
  await query('DROP INDEX check_runs_scope_started_at_id_idx');
  await query("DELETE FROM kysely_migration WHERE name <> '001_check_runs'");
}
