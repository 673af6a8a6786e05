/**
 * Benchmark of the reference game server (issue #3): can it hold 30 ticks/s with 500 bot players on one
 * core, with a tick p99 under 10 ms?
 *
 * Starts MariaDB and Redis (test harness), runs the server pinned to core 0 and `gameops-bots` pinned to
 * core 1 (`taskset`, when present), lets the bots ramp up, then measures a steady window and prints the
 * achieved tick rate, tick duration p50/p99/max, tick lag, inputs processed and dropped, and the server's
 * CPU, each beside its target. Figures only: nothing here passes or fails a build.
 *
 *   node bench/game-server.ts            # BENCH_PLAYERS=500 BENCH_SECONDS=30 BENCH_RAMP_SECONDS=5
 *
 * BENCH_CPU_PROFILE=<file> also takes a CPU profile of the server over the measured window (through
 * `POST /ops/diagnostics/cpu-profile`) and saves it there; the profiler's overhead then shows in the
 * figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import type { BotSummary } from '../examples/game-server/bot-runner.ts';
import { histogramQuantile, parsePrometheusText, type Sample } from '../src/platform/game-client.ts';
import { ensurePackages } from '../test/harness/packages.ts';
import { randomSecret } from '../test/harness/proc.ts';
import { startMariaDB, startRedis } from '../test/harness/servers.ts';
import { REPO_ROOT, startGameServer } from '../test/game-server/server-process.ts';

const PLAYERS = Number(process.env.BENCH_PLAYERS ?? 500);
const MEASURE_SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const RAMP_SECONDS = Number(process.env.BENCH_RAMP_SECONDS ?? 5);
const SETTLE_SECONDS = 3;
const PROFILE_FILE = process.env.BENCH_CPU_PROFILE;
const TARGET_TICK_RATE = 30;
const TARGET_P99_MS = 10;

const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const hasTaskset = spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;
const cores = cpus().length;
const pin = (core: number): string[] => (hasTaskset && cores > 1 ? ['taskset', '-c', String(core)] : []);

/** utime + stime of a process in seconds (from /proc; Linux only). */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks, USER_HZ = 100
  } catch {
    return undefined;
  }
}

interface Snapshot {
  at: number;
  samples: Sample[];
}

async function scrape(opsUrl: string): Promise<Snapshot> {
  const text = await (await fetch(`${opsUrl}/metrics`)).text();
  return { at: performance.now(), samples: parsePrometheusText(text) };
}

function value(s: Snapshot, name: string, labels: Record<string, string> = {}): number {
  return s.samples
    .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .reduce((sum, x) => sum + x.value, 0);
}

/** Bucket counts of a histogram over the window between two scrapes. */
function bucketDelta(a: Snapshot, b: Snapshot, name: string): Array<{ le: number; count: number }> {
  const at = (s: Snapshot) =>
    new Map(
      s.samples
        .filter((x) => x.name === `${name}_bucket`)
        .map((x) => [x.labels.le === '+Inf' ? Infinity : Number(x.labels.le), x.value]),
    );
  const before = at(a);
  return [...at(b)].map(([le, count]) => ({ le, count: count - (before.get(le) ?? 0) }));
}

const ms = (v: number): string => `${v.toFixed(2)} ms`;
const mark = (ok: boolean): string => (ok ? 'met' : 'MISSED');

await ensurePackages();
say(
  `${PLAYERS} players, ${MEASURE_SECONDS} s measured after a ${RAMP_SECONDS} s ramp; node ${process.version}; ` +
    `${cores} cores; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
);
say('starting MariaDB and Redis…');
const [db, redis] = await Promise.all([startMariaDB(), startRedis({ password: randomSecret() })]);
try {
  const server = await startGameServer({
    mariadb: db,
    redis,
    instance: 'bench-0',
    version: 'bench',
    wrap: pin(0),
    env: { GAME_STATS_WINDOW_SECONDS: String(MEASURE_SECONDS), GAME_MAX_PLAYERS: String(PLAYERS + 100) },
  });
  try {
    say(`server pid ${server.pid} on ${server.opsUrl}${pin(0).length ? ' (taskset -c 0)' : ' (not pinned)'}`);
    const botArgs = [
      ...pin(1),
      process.execPath,
      path.join(REPO_ROOT, 'examples/game-server/bots.ts'),
      '--players',
      String(PLAYERS),
      '--duration',
      `${RAMP_SECONDS + SETTLE_SECONDS + MEASURE_SECONDS + 2}s`,
      '--ramp',
      `${RAMP_SECONDS}s`,
      '--url',
      server.wsUrl,
      '--name-prefix',
      'bench',
      '--json',
    ];
    const bots = spawn(botArgs[0]!, botArgs.slice(1), {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let botOutput = '';
    bots.stdout.setEncoding('utf8').on('data', (c: string) => (botOutput += c));
    const botsDone = new Promise<number | null>((resolve) => bots.once('close', resolve));

    await sleep((RAMP_SECONDS + SETTLE_SECONDS) * 1000);
    const statusAt = async () =>
      (await (await server.ops('/ops/status')).json()) as {
        playersOnline: number;
        ticksPerSecond: number;
        tickLagMs: { p50: number; p99: number; max: number };
        tickDurationMs: { p50: number; p99: number; max: number };
        tickCpuMs: { p50: number; p99: number; max: number };
      };
    const startStatus = await statusAt();
    const a = await scrape(server.opsUrl);
    const botCpuA = cpuSeconds(bots.pid!);
    say(`${startStatus.playersOnline} players online; measuring for ${MEASURE_SECONDS} s…`);
    if (PROFILE_FILE) {
      const seconds = Math.min(60, MEASURE_SECONDS - 1);
      const res = await server.ops(`/ops/diagnostics/cpu-profile?seconds=${seconds}`, { method: 'POST' });
      fs.writeFileSync(PROFILE_FILE, Buffer.from(await res.arrayBuffer()));
      say(`CPU profile (${seconds} s, HTTP ${res.status}) saved to ${PROFILE_FILE}`);
      await sleep(Math.max(0, a.at + MEASURE_SECONDS * 1000 - performance.now()));
    } else {
      await sleep(MEASURE_SECONDS * 1000);
    }
    const b = await scrape(server.opsUrl);
    const botCpuB = cpuSeconds(bots.pid!);
    const endStatus = await statusAt();
    await botsDone;
    const summary = JSON.parse(botOutput) as BotSummary;

    const seconds = (b.at - a.at) / 1000;
    const ticks = value(b, 'game_ticks_total') - value(a, 'game_ticks_total');
    const tickRate = ticks / seconds;
    const processed = value(b, 'game_inputs_processed_total') - value(a, 'game_inputs_processed_total');
    const dropped = (reason: string) =>
      value(b, 'game_inputs_dropped_total', { reason }) - value(a, 'game_inputs_dropped_total', { reason });
    const cpu = (value(b, 'process_cpu_seconds_total') - value(a, 'process_cpu_seconds_total')) / seconds;
    const botCpu = botCpuA !== undefined && botCpuB !== undefined ? (botCpuB - botCpuA) / seconds : undefined;
    const histP99 = histogramQuantile(0.99, bucketDelta(a, b, 'game_tick_duration_seconds'));
    const d = endStatus.tickDurationMs;
    const lag = endStatus.tickLagMs;
    const tickCpu = endStatus.tickCpuMs;
    const skipped = value(b, 'game_ticks_skipped_total') - value(a, 'game_ticks_skipped_total');

    const lines = [
      `gameops bench: reference game server, ${PLAYERS} bot players, ${seconds.toFixed(1)} s measured (${process.version}, ${cores} cores, load ${loadavg()[0]!.toFixed(2)})`,
      `  server pinned to core 0: ${pin(0).length ? 'yes (taskset -c 0)' : 'no (taskset missing or one core)'}; bots on core 1: ${pin(1).length ? 'yes' : 'no'}`,
      `  players online            ${startStatus.playersOnline} at start, ${endStatus.playersOnline} at end`,
      `  tick rate                 ${tickRate.toFixed(2)} ticks/s (${ticks} ticks, ${skipped} skipped)   target ${TARGET_TICK_RATE}: ${mark(tickRate >= TARGET_TICK_RATE * 0.99)}`,
      `  tick duration             p50 ${ms(d.p50)}  p99 ${ms(d.p99)}  max ${ms(d.max)}   target p99 < ${TARGET_P99_MS} ms: ${mark(d.p99 < TARGET_P99_MS)}`,
      `    from the histogram      p99 ${histP99 === null ? 'n/a' : ms(histP99 * 1000)} (bucket interpolation)`,
      `  tick CPU time             p50 ${ms(tickCpu.p50)}  p99 ${ms(tickCpu.p99)}  max ${ms(tickCpu.max)}   (duration minus this = waiting for a CPU)`,
      `  tick lag (start vs plan)  p50 ${ms(lag.p50)}  p99 ${ms(lag.p99)}  max ${ms(lag.max)}`,
      `  inputs                    ${processed} processed (${(processed / seconds).toFixed(0)}/s); dropped: late ${dropped('late')}, rate ${dropped('rate')}, overflow ${dropped('overflow')}`,
      `  server CPU                ${(cpu * 100).toFixed(1)} % of one core`,
      `  bots                      ${summary.connected} connected, ${summary.refused} refused, ${summary.errors} errors, ${summary.messagesPerSecond} messages/s` +
        (botCpu !== undefined ? `, CPU ${(botCpu * 100).toFixed(1)} % of one core` : ''),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await server.stop();
  }
} finally {
  await Promise.allSettled([db.stop(), redis.stop()]);
}
