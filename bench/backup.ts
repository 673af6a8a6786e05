/**
 * Benchmark of backups (issue #6, "Performance"), side by side in one run on the same generated game
 * database (bench/backup-dataset.ts, about GAMEOPS_BENCH_BACKUP_MB MiB of plain dump text, default 1024):
 *   1. the seed's backup, `mysqldump --single-transaction --routines --triggers --events gamedb | gzip`,
 *      vs `gameops backup create` of the MySQL component to filesystem storage (zstd, SHA-256, age):
 *      time ratio (target ≤ 0.25), stored bytes vs gzip's (≤ 1.0), peak RSS of the gameops process
 *      (≤ 200 MB, VmHWM from /proc);
 *   2. the seed's restore, `gunzip < file | mysql gamedb_restore_a`, vs gameops's restore of the MySQL
 *      component into a restore target (≤ 0.7), both into a second MariaDB with the same settings, with
 *      row counts and CHECKSUM TABLE compared with the source;
 *   3. Redis with GAMEOPS_BENCH_REDIS_KEYS keys (default 2,000,000): a plain BGSAVE vs gameops's Redis
 *      snapshot (≤ 1.2), with PING p99 from a separate connection during each (< 2 ms).
 * gameops runs as its own process, as a user runs it: `bin/gameops backup create|restore` when the CLI
 * has the command, otherwise this file in "--service" mode, which calls the backup service in a fresh
 * process (the output says which). Credentials go through a 0600 defaults file and `file:` secrets, never
 * a command line. Figures only: nothing here passes or fails a build.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  createWriteStream,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { finished } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import mysql from 'mysql2/promise';
import { countRows, generateGameDatabase, tableDigests } from './backup-dataset.ts';

const ROOT = resolve(import.meta.dirname, '..');
const MIB = 1024 * 1024;
const BY = { id: 'local:bench', name: 'bench', role: 'admin', kind: 'local' } as const;
/** Every step is bounded: a child still running after this is killed and the bench fails. */
const STEP_TIMEOUT_MS = Number(process.env.GAMEOPS_BENCH_STEP_TIMEOUT_S ?? 1800) * 1000;

/** What a gameops run in its own process reports. */
interface GameopsRun {
  /** How it ran: the CLI or this file's service mode. */
  via: 'cli' | 'service';
  /** Wall time of the whole process, ms. */
  wallMs: number;
  /** Peak RSS of the process (VmHWM), bytes; NaN when it could not be read. */
  peakRss: number;
  stdout: string;
}

// ---------------------------------------------------------------------------------------------------
// Service mode: `node bench/backup.ts --service '<json>'` runs one backup operation in this process.

interface ServiceRequest {
  config: string;
  op: 'create' | 'restore';
  components?: Array<'mysql' | 'redis'>;
  id?: string;
  component?: 'mysql' | 'redis';
  target?: string;
}

async function serviceMode(request: ServiceRequest): Promise<void> {
  const [{ loadConfig, readEnv }, { openStore }, { createBackupService }, { createLogger }, { systemClock }] =
    await Promise.all([
      import('../src/config/index.ts'),
      import('../src/store/index.ts'),
      import('../src/backups/service.ts'),
      import('../src/app/log.ts'),
      import('../src/core/clock.ts'),
    ]);
  const { config } = loadConfig({ path: request.config, env: readEnv() });
  const store = await openStore({ dataDir: config.database.dataDir });
  const service = createBackupService({ config, store, clock: systemClock, log: createLogger('warn') });
  try {
    const t0 = performance.now();
    if (request.op === 'create') {
      const set = await service.create({ by: BY, components: request.components });
      console.log(JSON.stringify({ id: set.id, ms: performance.now() - t0, sizeBytes: set.sizeBytes }));
    } else {
      const report = await service.restoreComponent(request.id!, request.component!, {
        by: BY,
        target: request.target,
      });
      console.log(JSON.stringify({ ms: performance.now() - t0, summary: report.summary }));
    }
  } finally {
    await service.close();
    await store.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Helpers

const loadNote = (): string =>
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} on ${cpus().length} cores`;

const mb = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MiB`;
const sec = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Resolves when `child` exits with 0; rejects naming `what` and the tail of its stderr otherwise. */
function exited(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} took longer than ${STEP_TIMEOUT_MS / 1000} s; killed`));
    }, STEP_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise();
      else {
        // The error lines, not Node's stack frames.
        const lines = stderr.split('\n').filter((l) => l.trim() && !/^\s+at |^Node\.js v/.test(l));
        reject(
          new Error(`${what} exited with ${code ?? signal}: ${lines.slice(-4).join(' | ').slice(-1500)}`),
        );
      }
    });
  });
}

/** Polls /proc/<pid>/status for VmHWM (the peak resident set) until stopped; the last value read wins. */
function watchPeakRss(pid: number): () => number {
  let peak = NaN;
  const read = (): void => {
    try {
      const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) peak = Math.max(Number.isNaN(peak) ? 0 : peak, Number(match[1]) * 1024);
    } catch {
      // The process is gone: the last value read stands.
    }
  };
  read();
  const timer = setInterval(read, 20);
  return () => {
    clearInterval(timer);
    return peak;
  };
}

/** Total size of the regular files under `dir`. */
function treeBytes(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    bytes += statSync(join(entry.parentPath, entry.name)).size;
    files++;
  }
  return { bytes, files };
}

/** A 0600 MySQL option file for the client tools (`--defaults-extra-file=` as their first argument). */
function writeDefaultsFile(
  file: string,
  server: { host: string; port: number; user: string; password: string },
) {
  const quote = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  writeFileSync(
    file,
    `[client]\nhost=${server.host}\nport=${server.port}\nuser=${quote(server.user)}\npassword=${quote(server.password)}\n`,
    { mode: 0o600 },
  );
}

/** The first of `names` on PATH. */
function which(...names: string[]): string {
  for (const name of names) {
    const found = spawnSync('bash', ['-c', 'command -v "$1"', 'which', name], { encoding: 'utf8' });
    if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  }
  throw new Error(`none of ${names.join(', ')} is installed (the MariaDB client package provides them)`);
}

/** PINGs over one raw connection every `everyMs` until stopped; latencies in ms. */
function pingSampler(port: number, everyMs = 5): { stop(): Promise<number[]> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  const times: number[] = [];
  let running = true;
  let pending: ((ok: boolean) => void) | undefined;
  let buffered = '';
  socket.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('latin1');
    while (buffered.includes('\r\n')) {
      buffered = buffered.slice(buffered.indexOf('\r\n') + 2);
      pending?.(true);
      pending = undefined;
    }
  });
  socket.on('error', () => pending?.(false));
  const loop = (async () => {
    await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
    while (running) {
      const t0 = performance.now();
      const ok = await new Promise<boolean>((r) => {
        pending = r;
        socket.write('PING\r\n');
      });
      if (!ok) throw new Error('the PING connection failed');
      times.push(performance.now() - t0);
      await delay(everyMs);
    }
  })();
  loop.catch(() => {}); // Reported by stop().
  return {
    async stop() {
      running = false;
      await loop;
      socket.destroy();
      return times;
    },
  };
}

/** Runs gameops once (the CLI when it has the command, else the service mode) and measures it. */
async function runGameops(
  cli: boolean,
  cliArgs: string[],
  request: ServiceRequest,
  what: string,
): Promise<GameopsRun> {
  const [command, args] = cli
    ? [join(ROOT, 'bin/gameops'), [...cliArgs, '--config', request.config]]
    : [process.execPath, [import.meta.filename, '--service', JSON.stringify(request)]];
  const t0 = performance.now();
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const stopWatch = watchPeakRss(child.pid!);
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  try {
    await exited(child, what);
  } finally {
    stopWatch();
  }
  const wallMs = performance.now() - t0;
  return { via: cli ? 'cli' : 'service', wallMs, peakRss: stopWatch(), stdout };
}

/** Whether `bin/gameops backup <sub>` exists in this tree (`--help` succeeds). */
function cliHas(sub: string): boolean {
  const probe = spawnSync(join(ROOT, 'bin/gameops'), ['backup', sub, '--help'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  // commander prints the top-level help (and exits 0) for an unknown command: look for the command's own.
  return probe.status === 0 && probe.stdout.includes(`Usage: gameops backup ${sub}`);
}

// ---------------------------------------------------------------------------------------------------
// The benchmark

async function main(): Promise<void> {
  const sizeMiB = Number(process.env.GAMEOPS_BENCH_BACKUP_MB ?? 1024);
  const redisKeys = Number(process.env.GAMEOPS_BENCH_REDIS_KEYS ?? 2_000_000);
  if (!(sizeMiB > 0) || !(redisKeys > 0))
    throw new Error('GAMEOPS_BENCH_BACKUP_MB and GAMEOPS_BENCH_REDIS_KEYS must be positive numbers');
  const via = process.env.GAMEOPS_BENCH_BACKUP_VIA ?? 'auto';
  const { ensurePackages } = await import('../test/harness/packages.ts');
  const { startMariaDB, startRedis } = await import('../test/harness/servers.ts');
  await ensurePackages();
  const mysqldump = which('mysqldump', 'mariadb-dump');
  const mysqlClient = which('mysql', 'mariadb');
  const gzip = which('gzip');

  const dir = mkdtempSync(join(tmpdir(), 'gameops-bench-backup-'));
  // The same settings for the source and the restore server: a buffer pool and redo log sized for bulk
  // loads, and no durability (throwaway data).
  const mariadbArgs = [
    '--innodb-buffer-pool-size=512M',
    '--innodb-log-file-size=256M',
    '--innodb-flush-log-at-trx-commit=0',
    '--max-allowed-packet=256M',
  ];
  const rows: Array<[string, string, string, string]> = [];
  const figure = (name: string, value: string, target = '', met?: boolean) =>
    rows.push([name, value, target, met === undefined ? '' : met ? 'met' : 'NOT MET']);
  /** Runs a gameops step; a failure is printed and tabled (the baselines still run) and fails the bench. */
  const attempt = async <T>(what: string, step: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await step();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      console.log(`   ${what.padEnd(29)} FAILED: ${message}`);
      figure(what, 'FAILED', '', false);
      process.exitCode = 1;
      return undefined;
    }
  };

  // One at a time: two mariadb-install-db at once on a loaded machine have been seen to fail.
  const source = await startMariaDB({ extraArgs: mariadbArgs });
  const restoreServer = await startMariaDB({ extraArgs: mariadbArgs }).catch(async (err: unknown) => {
    await source.stop();
    throw err;
  });
  const redis = await startRedis().catch(async (err: unknown) => {
    await Promise.allSettled([source.stop(), restoreServer.stop()]);
    throw err;
  });
  try {
    console.log(`backup benchmark: ${sizeMiB} MiB of dump text wanted, ${redisKeys} Redis keys`);
    console.log(`  ${loadNote()}`);
    const admin = { host: source.host, port: source.port, user: source.user, password: source.password };
    const restoreAdmin = {
      host: restoreServer.host,
      port: restoreServer.port,
      user: restoreServer.user,
      password: restoreServer.password,
    };
    const sourceCnf = join(dir, 'source.cnf');
    const restoreCnf = join(dir, 'restore.cnf');
    writeDefaultsFile(sourceCnf, admin);
    writeDefaultsFile(restoreCnf, restoreAdmin);

    // ---- the dataset
    let lastNote = 0;
    const generated = await generateGameDatabase(
      { ...admin, database: 'gamedb' },
      {
        targetBytes: sizeMiB * MIB,
        onProgress: (table, done, total) => {
          if (performance.now() - lastNote < 10_000) return;
          lastNote = performance.now();
          console.log(`  generating: ${table} ${done}/${total} rows`);
        },
      },
    );
    const sourceCounts = await countRows(admin, 'gamedb');
    console.log(
      `\ndataset: gamedb generated in ${generated.seconds.toFixed(1)} s: ` +
        Object.entries(sourceCounts)
          .map(([t, n]) => `${t} ${n}`)
          .join(', '),
    );

    // ---- gameops's config: filesystem storage, an age identity, the source and a restore target
    const identity = await generateIdentity();
    const recipient = await identityToRecipient(identity);
    writeFileSync(join(dir, 'age-identity.txt'), `${identity}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'source-password'), `${source.password}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'restore-password'), `${restoreServer.password}\n`, { mode: 0o600 });
    const storageDir = join(dir, 'storage');
    const configFile = join(dir, 'gameops.yaml');
    writeFileSync(
      configFile,
      `service: { name: bench-game, environment: bench }
database: { dataDir: "${join(dir, 'store')}" }
mysql: { host: 127.0.0.1, port: ${source.port}, user: root, password: "file:${join(dir, 'source-password')}", database: gamedb }
redis: { host: 127.0.0.1, port: ${redis.port} }
backups:
  storage: { kind: filesystem, path: "${storageDir}" }
  encryption:
    recipients: ["${recipient}"]
    identity: "file:${join(dir, 'age-identity.txt')}"
  targets:
    - name: bench-restore
      mysql: { host: 127.0.0.1, port: ${restoreServer.port}, user: root, password: "file:${join(dir, 'restore-password')}", database: gamedb }
`,
      { mode: 0o600 },
    );
    const cliCreate = via === 'cli' || (via === 'auto' && cliHas('create'));
    // `gameops backup restore` runs the backup-restore runbook, which stops at an operator's approval:
    // the restore step itself is timed through the service (in a fresh process, as the runbook's step runs).
    const cliRestore = false;
    console.log(
      `gameops runs as: ${cliCreate ? 'bin/gameops backup create' : 'the backup service in a fresh process (bin/gameops has no `backup create` yet)'}; ` +
        `restore: the backup service's restoreComponent in a fresh process (the backup-restore runbook waits for an operator's approval)`,
    );

    // ---- 1. backup: the seed's pipeline
    const gzFile = join(dir, 'seed-gamedb.sql.gz');
    let plainBytes = 0;
    const seedStart = performance.now();
    {
      const dump = spawn(
        mysqldump,
        [
          `--defaults-extra-file=${sourceCnf}`,
          '--single-transaction',
          '--routines',
          '--triggers',
          '--events',
          'gamedb',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const zip = spawn(gzip, [], { stdio: ['pipe', 'pipe', 'pipe'] });
      const out = createWriteStream(gzFile);
      dump.stdout.on('data', (chunk: Buffer) => (plainBytes += chunk.length));
      dump.stdout.pipe(zip.stdin);
      zip.stdout.pipe(out);
      await Promise.all([exited(dump, 'mysqldump'), exited(zip, 'gzip'), finished(out)]);
    }
    const seedMs = performance.now() - seedStart;
    const gzBytes = statSync(gzFile).size;
    console.log(
      `\n1. backup\n   seed: mysqldump | gzip      ${sec(seedMs)}, plain dump ${mb(plainBytes)} (${plainBytes} bytes), ` +
        `gzip ${mb(gzBytes)} (${gzBytes} bytes, ${(plainBytes / gzBytes).toFixed(2)}x)`,
    );

    figure('plain dump size', `${mb(plainBytes)}`);
    figure('seed backup (mysqldump | gzip)', `${sec(seedMs)}, ${mb(gzBytes)}`);
    const { openStore } = await import('../src/store/index.ts');
    const catalog = async () => {
      const store = await openStore({ dataDir: join(dir, 'store') });
      try {
        return await store.backups.list({ service: 'bench-game', environment: 'bench' }, { limit: 10 });
      } finally {
        await store.close();
      }
    };
    const mysqlSet = await attempt('gameops backup create (mysql)', async () => {
      const createRun = await runGameops(
        cliCreate,
        ['backup', 'create', '--component', 'mysql', '--json'],
        { config: configFile, op: 'create', components: ['mysql'] },
        'gameops backup create (mysql)',
      );
      const set = (await catalog())[0];
      if (!set || set.state !== 'complete' || !set.components.includes('mysql'))
        throw new Error(
          `it left no complete set (${set?.state ?? 'none'}: ${set?.error ?? createRun.stdout})`,
        );
      const stored = treeBytes(storageDir);
      const mysqlServiceMs = Date.parse(set.completedAt!) - Date.parse(set.createdAt);
      const verifyMs = set.verifiedAt ? Date.parse(set.verifiedAt) - Date.parse(set.completedAt!) : NaN;
      console.log(
        `   gameops backup create       ${sec(createRun.wallMs)} (the create step ${sec(mysqlServiceMs)}` +
          `${Number.isNaN(verifyMs) ? '' : `, then verify ${sec(verifyMs)}`}), ` +
          `${set.objectCount} objects, ${mb(set.sizeBytes)} recorded, ${mb(stored.bytes)} in ${stored.files} files on disk, ` +
          `peak RSS ${mb(createRun.peakRss)} (via ${createRun.via})`,
      );
      const timeRatio = createRun.wallMs / seedMs;
      const sizeRatio = stored.bytes / gzBytes;
      figure(
        'gameops backup create (mysql)',
        `${sec(createRun.wallMs)} via ${createRun.via}, ${mb(stored.bytes)}`,
      );
      figure('backup time ratio gameops/seed', timeRatio.toFixed(3), '≤ 0.25', timeRatio <= 0.25);
      if (createRun.via === 'cli') {
        const stepRatio = mysqlServiceMs / seedMs;
        figure(
          '  the create step alone / seed',
          `${stepRatio.toFixed(3)} (${sec(mysqlServiceMs)}; the command also verifies)`,
          '≤ 0.25',
          stepRatio <= 0.25,
        );
      }
      figure(
        'backup size ratio gameops/gzip',
        `${sizeRatio.toFixed(3)} (${mb(stored.bytes)} / ${mb(gzBytes)})`,
        '≤ 1.0',
        sizeRatio <= 1,
      );
      figure(
        'gameops peak RSS',
        `${(createRun.peakRss / 1e6).toFixed(1)} MB`,
        '≤ 200 MB',
        createRun.peakRss <= 200 * 1e6,
      );
      return set;
    });

    // ---- 2. restore
    const sourceDigests = await tableDigests(admin, 'gamedb');
    /** Rows and content (FLOAT as printed) must match; exact CHECKSUM TABLE differences are listed. */
    const compare = async (database: string): Promise<{ ok: boolean; text: string }> => {
      const restored = await tableDigests(restoreAdmin, database);
      const tables = Object.keys(sourceDigests);
      const bad = tables.filter(
        (t) =>
          restored[t]?.rows !== sourceDigests[t]!.rows || restored[t]?.content !== sourceDigests[t]!.content,
      );
      const inexact = tables.filter(
        (t) => !bad.includes(t) && restored[t]!.checksum !== sourceDigests[t]!.checksum,
      );
      const missing =
        Object.keys(restored).length < tables.length
          ? ` (${Object.keys(restored).length} tables restored)`
          : '';
      if (bad.length > 0) return { ok: false, text: `MISMATCH in ${bad.join(', ')}${missing}` };
      const note =
        inexact.length === 0
          ? 'CHECKSUM TABLE equal everywhere'
          : `CHECKSUM TABLE differs in ${inexact
              .map((t) => `${t} (FLOAT ${sourceDigests[t]!.floatColumns.join(', ') || 'none'})`)
              .join(', ')}`;
      return { ok: true, text: `all ${tables.length} tables match in rows and content; ${note}` };
    };
    const restoreConnection = await mysql.createConnection(restoreAdmin);
    await restoreConnection.query('DROP DATABASE IF EXISTS gamedb_restore_a');
    await restoreConnection.query('CREATE DATABASE gamedb_restore_a');
    const seedRestoreStart = performance.now();
    {
      const unzip = spawn(gzip, ['-dc', gzFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      const load = spawn(mysqlClient, [`--defaults-extra-file=${restoreCnf}`, 'gamedb_restore_a'], {
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      unzip.stdout.pipe(load.stdin);
      await Promise.all([exited(unzip, 'gunzip'), exited(load, 'mysql < dump')]);
    }
    const seedRestoreMs = performance.now() - seedRestoreStart;
    const seedCheck = await compare('gamedb_restore_a');
    console.log(`\n2. restore\n   seed: gunzip | mysql        ${sec(seedRestoreMs)}: ${seedCheck.text}`);
    // The restore server gets the same room for gameops's restore.
    await restoreConnection.query('DROP DATABASE gamedb_restore_a');
    await restoreConnection.query('DROP DATABASE IF EXISTS gamedb');
    await restoreConnection.end();
    figure(
      'seed restore (gunzip | mysql)',
      `${sec(seedRestoreMs)}, ${seedCheck.ok ? 'matches' : 'MISMATCH'}`,
      '',
      seedCheck.ok,
    );
    if (mysqlSet) {
      const id = mysqlSet.id;
      await attempt('gameops restore (mysql)', async () => {
        const restoreRun = await runGameops(
          cliRestore,
          ['backup', 'restore', id, '--component', 'mysql', '--target', 'bench-restore', '--yes'],
          { config: configFile, op: 'restore', id, component: 'mysql', target: 'bench-restore' },
          'gameops backup restore (mysql)',
        );
        const restoreCheck = await compare('gamedb');
        console.log(
          `   gameops restore (mysql)     ${sec(restoreRun.wallMs)}, peak RSS ${mb(restoreRun.peakRss)} (via ${restoreRun.via}): ${restoreCheck.text}`,
        );
        const restoreRatio = restoreRun.wallMs / seedRestoreMs;
        const matches = restoreCheck.ok;
        figure(
          'gameops restore (mysql)',
          `${sec(restoreRun.wallMs)}, ${matches ? 'matches' : 'MISMATCH'}`,
          '',
          matches,
        );
        figure('restore time ratio gameops/seed', restoreRatio.toFixed(3), '≤ 0.7', restoreRatio <= 0.7);
      });
    } else {
      console.log('   gameops restore (mysql)     not run: there is no backup set to restore');
      figure('gameops restore (mysql)', 'not run (no set)', '', false);
    }

    // ---- 3. Redis
    console.log(`\n3. Redis`);
    const { Redis } = await import('ioredis');
    const client = new Redis({
      host: '127.0.0.1',
      port: redis.port,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    await client.connect();
    try {
      const fillStart = performance.now();
      // Server-side, in batches: player hashes, sessions with a TTL, presence JSON, friend sets, inboxes.
      const fill = `
        local from, to = tonumber(ARGV[1]), tonumber(ARGV[2])
        for i = from, to do
          local r = math.random(0, 2147483647)
          local k = i % 5
          if k == 0 then
            redis.call('HSET', 'player:' .. i, 'name', string.format('p%x', r), 'level', r % 100,
              'gold', string.format('%.2f', (r % 10000000) / 100), 'guild', r % 5000, 'rating', (r % 300000) / 100)
          elseif k == 1 then
            redis.call('SET', 'session:' .. string.format('%08x%08x', r, i), 'player:' .. (r % 1000000), 'EX', 86400 + r % 3600)
          elseif k == 2 then
            redis.call('SET', 'presence:' .. i, string.format('{"room":"r%d","x":%.2f,"y":%.2f,"seen":%d}', r % 400, (r % 40960) / 10, (r % 20480) / 10, 1790000000 + r % 86400))
          elseif k == 3 then
            redis.call('SADD', 'friends:' .. i, r % 1000003, (r * 7) % 1000003, (r * 13) % 1000003, (r * 31) % 1000003)
          else
            redis.call('RPUSH', 'inbox:' .. i, string.format('gift:%x', r), string.format('mail:%x', r * 3))
          end
        end
        return to - from + 1`;
      const batch = 100_000;
      for (let from = 1; from <= redisKeys; from += batch)
        await client.eval(fill, 0, String(from), String(Math.min(redisKeys, from + batch - 1)));
      const keys = await client.dbsize();
      const memory = /used_memory:(\d+)/.exec(await client.info('memory'))?.[1];
      console.log(
        `   dataset: ${keys} keys, ${mb(Number(memory))} used, filled in ${sec(performance.now() - fillStart)}`,
      );
      const idle = pingSampler(redis.port);
      await delay(2000);
      const idlePings = await idle.stop();

      // BGSAVE, timed by polling INFO persistence (rdb_bgsave_in_progress back to 0, rdb_saves moved on).
      const persistence = async () => {
        const info = await client.info('persistence');
        const field = (name: string) => new RegExp(`^${name}:(.*?)\r?$`, 'm').exec(info)?.[1];
        return {
          inProgress: field('rdb_bgsave_in_progress') === '1',
          saves: Number(field('rdb_saves') ?? NaN),
          lastSave: Number(field('rdb_last_save_time')),
          status: String(field('rdb_last_bgsave_status')),
        };
      };
      const before = await persistence();
      const bgPings = pingSampler(redis.port);
      const bgStart = performance.now();
      await client.bgsave();
      for (;;) {
        await delay(5);
        const now = await persistence();
        const done = Number.isNaN(before.saves) ? now.lastSave !== before.lastSave : now.saves > before.saves;
        if (!now.inProgress && done) {
          if (now.status !== 'ok') throw new Error(`BGSAVE failed: rdb_last_bgsave_status ${now.status}`);
          break;
        }
        if (performance.now() - bgStart > STEP_TIMEOUT_MS) throw new Error('BGSAVE did not finish in time');
      }
      const bgsaveMs = performance.now() - bgStart;
      const bgsavePings = await bgPings.stop();
      const rdbBytes = statSync(join(redis.dir, 'dump.rdb')).size;
      console.log(
        `   BGSAVE                      ${sec(bgsaveMs)}, dump.rdb ${mb(rdbBytes)}, PING p99 ${percentile(bgsavePings, 99).toFixed(3)} ms ` +
          `(n=${bgsavePings.length}; idle p99 ${percentile(idlePings, 99).toFixed(3)} ms)`,
      );

      const p99Bg = percentile(bgsavePings, 99);
      figure('Redis BGSAVE', `${sec(bgsaveMs)} (${keys} keys)`);
      figure('PING p99 during BGSAVE', `${p99Bg.toFixed(3)} ms`, '< 2 ms', p99Bg < 2);

      await attempt('gameops Redis snapshot', async () => {
        const gPings = pingSampler(redis.port);
        let redisRun: GameopsRun;
        try {
          redisRun = await runGameops(
            cliCreate,
            ['backup', 'create', '--component', 'redis', '--json'],
            { config: configFile, op: 'create', components: ['redis'] },
            'gameops backup create (redis)',
          );
        } finally {
          await gPings.stop();
        }
        const gameopsPings = await gPings.stop();
        const redisSet = (await catalog())[0];
        if (!redisSet || redisSet.state !== 'complete' || redisSet.components.join() !== 'redis')
          throw new Error(
            `it left no complete Redis set (${redisSet?.state ?? 'none'}: ${redisSet?.error ?? redisRun.stdout})`,
          );
        const redisServiceMs = Date.parse(redisSet.completedAt!) - Date.parse(redisSet.createdAt);
        const p99G = percentile(gameopsPings, 99);
        console.log(
          `   gameops snapshot (redis)    ${sec(redisServiceMs)} for the set, ${sec(redisRun.wallMs)} for the process, ` +
            `${mb(redisSet.sizeBytes)} stored, peak RSS ${mb(redisRun.peakRss)} (via ${redisRun.via}), PING p99 ${p99G.toFixed(3)} ms (n=${gameopsPings.length})`,
        );
        const redisRatio = redisServiceMs / bgsaveMs;
        figure(
          'gameops Redis snapshot (the set)',
          `${sec(redisServiceMs)} (process ${sec(redisRun.wallMs)})`,
        );
        figure('Redis time ratio gameops/BGSAVE', redisRatio.toFixed(3), '≤ 1.2', redisRatio <= 1.2);
        figure(
          'Redis process time ratio gameops/BGSAVE',
          (redisRun.wallMs / bgsaveMs).toFixed(3),
          '(informative: with Node start-up)',
        );
        figure('PING p99 during gameops snapshot', `${p99G.toFixed(3)} ms`, '< 2 ms', p99G < 2);
      });
    } finally {
      client.disconnect();
    }

    // ---- the table
    const widths = [0, 1, 2, 3].map((i) =>
      Math.max(...[['figure', 'value', 'target', ''], ...rows].map((r) => r[i]!.length)),
    );
    const line = (r: readonly string[]) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd();
    console.log(
      `\nsummary (${sizeMiB} MiB wanted, ${mb(plainBytes)} of plain dump, ${redisKeys} Redis keys)`,
    );
    console.log(line(['figure', 'value', 'target', '']));
    for (const r of rows) console.log(line(r));
    console.log(`  ${loadNote()}`);
  } finally {
    await Promise.allSettled([source.stop(), restoreServer.stop(), redis.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--service') await serviceMode(JSON.parse(process.argv[3]!) as ServiceRequest);
else await main();
