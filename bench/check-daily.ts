/**
 * Benchmark of the daily check (issue #2). Starts a real local stack (MariaDB, Redis, Alertmanager with
 * 1,000 active alerts), then measures and prints:
 *   - a full `gameops check daily --json` as a cold CLI process (median of 10; target <= 300 ms), beside
 *     the cost of starting a bare `node` process, measured in the same run, as the floor;
 *   - one check cycle inside a running server process (median; target <= 25 ms);
 *   - the same probes one after another (concurrency 1), to show what running them concurrently gains.
 * Figures only: nothing here passes or fails a build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { bootstrap, runAndRecordDailyCheck, shutdown } from '../src/app/index.ts';
import { runDailyCheck } from '../src/checks/index.ts';
import { ensurePackages } from '../test/harness/packages.ts';
import { postAlerts, startAlertmanager, startMariaDB, startRedis } from '../test/harness/servers.ts';
import { median, stats } from './stats.ts';

const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 10);
const WARM_RUNS = Number(process.env.BENCH_WARM_RUNS ?? 50);
const ALERTS = 1000;

// A benchmark's figures are only comparable on a quiet machine: say how busy this one was.
const loadNote = (): string =>
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} on ${cpus().length} cores`;

/** GET through node:http and Node's keep-alive agent, as gameops's Alertmanager client asks. */
function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    }).on('error', reject);
  });
}

function timeProcess([command, ...args]: string[]): number {
  const t0 = performance.now();
  const res = spawnSync(command!, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (res.status !== 0 && res.status !== 1 && res.status !== 2)
    throw new Error(`${args.join(' ')} exited ${res.status}: ${res.stderr}`);
  return ms;
}

await ensurePackages();
process.stderr.write(`bench: starting MariaDB, Redis, Alertmanager… (${loadNote()})\n`);
const [db, redis, am] = await Promise.all([
  startMariaDB(),
  startRedis({ password: 'bench-redis-pw' }),
  startAlertmanager(),
]);
const dir = mkdtempSync(join(tmpdir(), 'gameops-bench-'));
try {
  const endsAt = new Date(Date.now() + 3_600_000);
  await postAlerts(
    am.url,
    Array.from({ length: ALERTS }, (_, i) => ({
      labels: {
        alertname: `BenchAlert${i % 50}`,
        instance: `game-${i}`,
        severity: ['critical', 'warning', 'info'][i % 3]!,
      },
      annotations: {
        summary: `bench alert ${i}`,
        ...(i % 2 ? { runbook_url: `https://wiki.example/runbooks/${i % 50}` } : {}),
      },
      endsAt,
    })),
  );
  writeFileSync(join(dir, 'mysql-password'), db.password, { mode: 0o600 });
  writeFileSync(join(dir, 'redis-password'), 'bench-redis-pw', { mode: 0o600 });
  const configPath = join(dir, 'gameops.yaml');
  writeFileSync(
    configPath,
    [
      'service: { name: bench-game, environment: bench }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      `mysql: { host: 127.0.0.1, port: ${db.port}, user: root, password: "file:${join(dir, 'mysql-password')}" }`,
      `redis: { host: 127.0.0.1, port: ${redis.port}, password: "file:${join(dir, 'redis-password')}" }`,
      `alertmanager: { url: "${am.url}" }`,
      `checks: { thresholds: { disk: { paths: ["${dir}"] } } }`,
    ].join('\n'),
  );

  const root = join(import.meta.dirname, '..');
  const checkArgs = ['check', 'daily', '--json', '--config', configPath];
  // What a person runs: bin/gameops (bash → the bundle in dist/ with its code cache, kept in the bench's
  // temp dir so that every bench starts from the same state).
  process.env['GAMEOPS_CODE_CACHE'] = join(dir, 'code-cache');
  const binArgs = [join(root, 'bin/gameops'), ...checkArgs];
  const sourceArgs = [process.execPath, join(root, 'src/cli/main.ts'), ...checkArgs];
  if (!existsSync(join(root, 'dist/gameops.mjs')))
    throw new Error('dist/ is missing: run `npm run build` first');
  timeProcess(binArgs); // first run creates and migrates the store and fills the code cache; not counted
  const nodeFloor = Array.from({ length: COLD_RUNS }, () => timeProcess([process.execPath, '-e', '0']));
  const cold = Array.from({ length: COLD_RUNS }, () => timeProcess(binArgs));
  const coldSources = Array.from({ length: COLD_RUNS }, () => timeProcess(sourceArgs));

  const resources = await bootstrap({ configPath, store: 'required', logLevel: 'silent' });
  const warm: number[] = [];
  const sequential: number[] = [];
  const concurrentOnly: number[] = [];
  const alertmanagerAlone: number[] = [];
  const alertsUrl = `${am.url}/api/v2/alerts?active=true&silenced=false&inhibited=false`;
  try {
    for (let i = 0; i < 3; i++) await runAndRecordDailyCheck(resources, 'api');
    for (let i = 0; i < WARM_RUNS; i++) {
      let t0 = performance.now();
      const { run } = await runAndRecordDailyCheck(resources, 'api');
      warm.push(performance.now() - t0);
      if (i === 0) {
        const alerts = run.results.find((r) => r.name === 'alerts');
        process.stderr.write(
          `bench: alerts check saw ${JSON.stringify(alerts?.values.total ?? alerts?.values)} active alerts\n`,
        );
      }
      t0 = performance.now();
      await runDailyCheck({ config: resources.config, clock: resources.clock, trigger: 'api' });
      concurrentOnly.push(performance.now() - t0);
      t0 = performance.now();
      await runDailyCheck({
        config: resources.config,
        clock: resources.clock,
        trigger: 'api',
        concurrency: 1,
      });
      sequential.push(performance.now() - t0);
      t0 = performance.now();
      await getText(alertsUrl);
      alertmanagerAlone.push(performance.now() - t0);
    }
  } finally {
    await shutdown(resources);
  }

  const lines = [
    `gameops bench: daily check against MariaDB, Redis and Alertmanager with ${ALERTS} active alerts (node ${process.version})`,
    `  cold CLI \`bin/gameops check daily --json\`  ${stats(cold)}   target <= 300 ms`,
    `    same, from TypeScript sources           ${stats(coldSources)}`,
    `    baseline: bare \`node -e 0\` start       ${stats(nodeFloor)}`,
    `  in-server cycle (check + record)          ${stats(warm)}   target <= 25 ms`,
    `    baseline: Alertmanager alone answering GET /api/v2/alerts (${ALERTS} alerts)  ${stats(alertmanagerAlone)}`,
    `  checks only, concurrent                   ${stats(concurrentOnly)}`,
    `  checks only, one after another            ${stats(sequential)}`,
    `  concurrency gain: ${(median(sequential) / median(concurrentOnly)).toFixed(2)}x`,
    `  (${loadNote()})`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await Promise.allSettled([db.stop(), redis.stop(), am.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
