/**
 * Benchmark of the maintenance drain (issue #7): the time from "players online = 0" to the next step of
 * the maintenance run, target < 1 s.
 *
 * A local fleet of reference game servers (MariaDB and Redis from the test harness) with N players who
 * log in, and once the gate is closed leave by themselves after a random time within a few seconds
 * (they ignore drain messages: what is measured is waiting, not kicking); the window is shifted by a
 * random part of a second each round, so the last departure is not in step with either way's polls. Each round, an in-process engine
 * (`openRunbooks`, the store of the config) runs a two-step runbook, `fleet.drain-players` then `noop`;
 * an independent poller asks every instance `GET /ops/status` every 20 ms and notes the instant the
 * players online reach 0, and the instant the fleet is empty: 0 players and 0 `pendingWrites` (the last
 * logouts written, which is what drain-players waits for). The figure is the `noop` step's `startedAt`
 * minus the empty instant: the poller's own period and request make it up to ~20 ms short, so a round
 * where drain-players saw it first can print a small negative figure. The time from 0 players to empty
 * (the saves being written) is printed too.
 *
 * Baseline, in the same run and measured the same way: the old way, `Fleet.drain` (which asks every
 * instance to drain and polls each second), called directly; the figure is when it returned, before any
 * engine step (so it flatters the baseline by the engine's step overhead, a few ms). It does not wait for
 * the writes: a negative figure is it returning before the last saves were written. Its instances refuse
 * logins afterwards and are restarted between rounds.
 *
 *   node bench/maintenance-drain.ts         # BENCH_PLAYERS=20 BENCH_ROUNDS=8 BENCH_INSTANCES=2
 *
 * Figures only: nothing here passes or fails a build.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mysql from 'mysql2/promise';
import WebSocket from 'ws';
import { bootstrap, shutdown } from '../src/app/bootstrap.ts';
import { openFleet } from '../src/app/fleet.ts';
import { openRunbooks } from '../src/app/runbooks.ts';
import { readEnv } from '../src/config/index.ts';
import type { Actor } from '../src/runbooks/model.ts';
import { ensurePackages } from '../test/harness/packages.ts';
import { randomSecret } from '../test/harness/proc.ts';
import { startMariaDB, startRedis } from '../test/harness/servers.ts';
import { freePortBlock } from '../src/platform/local/test-support.ts';
import { median } from './stats.ts';

const PLAYERS = Number(process.env.BENCH_PLAYERS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const INSTANCES = Number(process.env.BENCH_INSTANCES ?? 2);
/** Players leave between these many ms after the gate closes. */
const LEAVE_MIN_MS = 500;
const LEAVE_MAX_MS = 3000;
const POLL_MS = 20;
const REPO = resolve(import.meta.dirname, '..');
const actor: Actor = { id: 'local:bench', name: 'bench', role: 'admin', kind: 'local' };

const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

await ensurePackages();
const [db, redis] = await Promise.all([startMariaDB(), startRedis({ password: randomSecret() })]);
const dir = mkdtempSync(join(tmpdir(), 'gameops-bench-drain-'));
let resources: Awaited<ReturnType<typeof bootstrap>> | undefined;
interface Watcher {
  /** Wall-clock ms when the players online reached 0, and when the pending writes did too after it. */
  done: Promise<{ zeroAt: number; emptyAt: number }>;
  stop: () => void;
}
/** Every watcher started: stopped in `finally`, so none polls a fleet that is being scaled to 0. */
const watchers = new Set<Watcher>();

try {
  const database = `drainbench_${randomBytes(4).toString('hex')}`;
  const root = await mysql.createConnection({
    socketPath: db.socketPath,
    user: 'root',
    password: db.password,
  });
  await root.query(`CREATE DATABASE ${database}`);
  await root.end();
  const basePort = await freePortBlock(INSTANCES + 1);
  const token = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'ops-token'), token, { mode: 0o600 });
  writeFileSync(join(dir, 'mysql-password'), db.password, { mode: 0o600 });
  writeFileSync(join(dir, 'redis-password'), redis.password ?? '', { mode: 0o600 });
  mkdirSync(join(dir, 'runbooks'));
  writeFileSync(
    join(dir, 'runbooks', 'drain-bench.yaml'),
    [
      'name: drain-bench',
      'steps:',
      '  - id: drain',
      '    action: fleet.drain-players',
      '    args: { deadlineMs: 60000, kickNoticeSeconds: 5 }',
      '  - id: next',
      '    action: noop',
      '',
    ].join('\n'),
  );
  const server = JSON.stringify([process.execPath, join(REPO, 'examples/game-server/main.ts')]);
  writeFileSync(
    join(dir, 'gameops.yaml'),
    [
      'service: { name: drain-bench, environment: bench }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      'runbooks: { dir: runbooks }',
      'platform:',
      '  kind: local',
      `  basePort: ${basePort}`,
      '  replicas: 0',
      '  version: "1.0.0"',
      '  readinessTimeout: 30s',
      '  minReady: 1s',
      '  versions:',
      `    "1.0.0": { command: ${server}, cwd: ${JSON.stringify(REPO)} }`,
      '  env:',
      `    GAME_MYSQL_HOST: "${db.host}"`,
      `    GAME_MYSQL_PORT: "${db.port}"`,
      '    GAME_MYSQL_USER: root',
      `    GAME_MYSQL_DATABASE: ${database}`,
      `    GAME_REDIS_HOST: "${redis.host}"`,
      `    GAME_REDIS_PORT: "${redis.port}"`,
      `    GAME_REDIS_KEY_PREFIX: "${database}:"`,
      '    GAME_SHUTDOWN_DRAIN_SECONDS: "1"',
      '  secretEnv:',
      `    GAME_MYSQL_PASSWORD: "file:${join(dir, 'mysql-password')}"`,
      `    GAME_REDIS_PASSWORD: "file:${join(dir, 'redis-password')}"`,
      `game: { opsToken: "file:${join(dir, 'ops-token')}", requestTimeout: 5s }`,
      '',
    ].join('\n'),
  );
  resources = await bootstrap({
    configPath: join(dir, 'gameops.yaml'),
    store: 'required',
    logLevel: 'silent',
    env: readEnv({}),
  });
  const fleet = await openFleet(resources);
  const engine = await openRunbooks(resources);
  say(`starting ${INSTANCES} reference game servers`);
  await fleet.platform.scale(INSTANCES);
  const opsUrls = Array.from({ length: INSTANCES }, (_, i) => `http://127.0.0.1:${basePort + i}`);
  const wsUrls = Array.from({ length: INSTANCES }, (_, i) => `ws://127.0.0.1:${basePort + i}/play`);

  /** Players log in (gate open), the gate closes, and each leaves at a random time within a few seconds. */
  async function populate(round: string): Promise<void> {
    await fleet.setGate({ closed: false });
    const sockets = await Promise.all(
      Array.from({ length: PLAYERS }, async (_, i) => {
        const ws = new WebSocket(wsUrls[i % INSTANCES]!, { perMessageDeflate: false });
        await new Promise<void>((ok, fail) => {
          ws.once('error', fail);
          ws.once('open', () => ws.send(JSON.stringify({ type: 'login', name: `${round}-${i}` })));
          ws.on('message', (data: Buffer) => {
            const m = JSON.parse(data.toString()) as { type: string };
            if (m.type === 'welcome') ok();
            if (m.type === 'refused') fail(new Error(`player ${i} refused`));
          });
        });
        return ws;
      }),
    );
    await fleet.setGate({ closed: true, message: 'maintenance (bench)' });
    // A random shift per round, so the last departure does not fall in step with either way's polls.
    const shift = Math.random() * 1000;
    for (const ws of sockets) {
      const after = shift + LEAVE_MIN_MS + Math.random() * (LEAVE_MAX_MS - LEAVE_MIN_MS);
      setTimeout(() => ws.send(JSON.stringify({ type: 'leave' })), after);
    }
  }

  /** Polls every instance every 20 ms until 0 players and 0 pending writes (NaN when stopped first). */
  function zeroWatcher(): Watcher {
    let stopped = false;
    const done = (async () => {
      let zeroAt = Number.NaN;
      while (!stopped) {
        let counts: Array<{ playersOnline: number; pendingWrites?: number }>;
        try {
          counts = await Promise.all(
            opsUrls.map(async (url) => {
              const res = await fetch(`${url}/ops/status`, {
                headers: { authorization: `Bearer ${token}` },
              });
              return (await res.json()) as { playersOnline: number; pendingWrites?: number };
            }),
          );
        } catch (err) {
          // Stopped meanwhile (the fleet going away): no figure, and no unhandled rejection.
          if (stopped) break;
          throw err;
        }
        const now = Date.now();
        if (counts.every((c) => c.playersOnline === 0)) {
          if (Number.isNaN(zeroAt)) zeroAt = now;
          if (counts.every((c) => (c.pendingWrites ?? 0) === 0)) return { zeroAt, emptyAt: now };
        } else zeroAt = Number.NaN;
        await sleep(POLL_MS);
      }
      return { zeroAt, emptyAt: Number.NaN };
    })();
    const watcher: Watcher = {
      done,
      stop: () => {
        stopped = true;
        watchers.delete(watcher);
      },
    };
    watchers.add(watcher);
    return watcher;
  }

  const newGaps: number[] = [];
  const oldGaps: number[] = [];
  const saveDelays: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // New: fleet.drain-players then noop, through the engine.
    await populate(`n${round}`);
    const watcher = zeroWatcher();
    const started = await engine.start({ runbook: 'drain-bench', params: {}, trigger: 'cli' }, actor);
    const view = await engine.runUntilIdle({ runId: started.id });
    const { zeroAt, emptyAt } = await watcher.done;
    watcher.stop();
    if (view?.status !== 'succeeded') throw new Error(`the run ended ${view?.status}: ${view?.reason}`);
    const next = view.steps.find((s) => s.id === 'next');
    const gap = Date.parse(next!.startedAt!) - emptyAt;
    newGaps.push(gap);
    saveDelays.push(emptyAt - zeroAt);
    say(
      `round ${round + 1}: drain-players → noop ${gap} ms after empty (0 players, then saves written ${emptyAt - zeroAt} ms later)`,
    );

    // Old: Fleet.drain polling each second, measured the same way.
    await populate(`o${round}`);
    const oldWatcher = zeroWatcher();
    await fleet.drain({ deadlineSeconds: 3600, waitMs: 60_000 });
    const returnedAt = Date.now();
    const oldGap = returnedAt - (await oldWatcher.done).emptyAt;
    oldWatcher.stop();
    oldGaps.push(oldGap);
    say(
      `round ${round + 1}: Fleet.drain returned ${oldGap} ms after empty; restarting the drained instances`,
    );
    await fleet.platform.restart({ maxUnavailable: 1 });
  }
  await fleet.setGate({ closed: false });

  const line = (xs: number[]): string =>
    `p50 ${median(xs).toFixed(0)} ms  max ${Math.max(...xs).toFixed(0)} ms  min ${Math.min(...xs).toFixed(0)} ms  (n=${xs.length})`;
  process.stdout.write(
    [
      `gameops bench: maintenance drain, ${PLAYERS} players on ${INSTANCES} reference game servers leaving ${LEAVE_MIN_MS / 1000}–${LEAVE_MAX_MS / 1000} s after a random 0–1 s shift (node ${process.version})`,
      `  empty (0 players, 0 pendingWrites) → next step starts (fleet.drain-players, 250 ms polls)  ${line(newGaps)}   target < 1 s`,
      `    baseline: Fleet.drain (1 s polls, players only) returns                               ${line(oldGaps)}`,
      `  0 players → 0 pendingWrites (the last saves written)                                    ${line(saveDelays)}`,
      `  (0 seen by an independent poller every ${POLL_MS} ms, so figures are up to ~${POLL_MS} ms short; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} on ${cpus().length} cores)`,
      '',
    ].join('\n'),
  );
} finally {
  for (const watcher of [...watchers]) watcher.stop();
  if (resources) {
    // Never leave game servers running, whatever failed.
    const opened = resources;
    await openFleet(opened)
      .then((fleet) => fleet.platform.scale(0))
      .catch((err: unknown) => say(`stopping the game servers failed: ${String(err)}`));
    await shutdown(opened);
  }
  await Promise.allSettled([db.stop(), redis.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
