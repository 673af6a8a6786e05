/**
 * Benchmark of alert intake (issue #5, "Performance"), against a real `gameops serve` process on the
 * embedded (SQLite) store, over HTTP with a responder token, as Alertmanager sends:
 *   (a) a 1,000-alert Alertmanager webhook (about 360 KB; its size is printed) acknowledged (2xx): p50/p99
 *       over 100 posts whose content changes every time (annotations change, some alerts resolve),
 *       target p99 < 100 ms;
 *   (b) 200 webhooks/s sustained for 60 s, a realistic mix of small group updates (200 groups, each
 *       webhook a snapshot of 1 to 5 alerts: re-sent unchanged, with a new alert, or resolving one; one
 *       notification per group at a time, as Alertmanager sends): achieved rate, errors by kind,
 *       p50/p99/max, and after the run that nothing acknowledged was lost (every alert a 2xx acknowledged
 *       is in the store, resolved when it was sent resolved);
 *   baselines measured in the same run: GET /healthz one at a time (for a), and at 200/s (for b).
 * Latencies of (b) are measured from each request's scheduled send time (an open-loop schedule), so
 * falling behind shows in the figures instead of slowing the sender down.
 * Figures only: nothing here passes or fails a build. BENCH_SECONDS shortens (b) (default 60).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as delay } from 'node:timers/promises';
import { openStore } from '../src/store/index.ts';
import { freePort } from '../test/harness/proc.ts';
import { startServe, startWebhookSink, writePrivate } from '../test/e2e/ops.support.ts';
import { fmt } from './stats.ts';

/** A small seeded PRNG (mulberry32): the same mix on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
const RATE = 200;
const BIG_POSTS = 100;
const BIG_ALERTS = 1_000;
const GROUPS = 200;

const loadNote = (): string =>
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} on ${cpus().length} cores`;

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

function summary(xs: number[]): string {
  return `p50 ${fmt(percentile(xs, 50))}  p99 ${fmt(percentile(xs, 99))}  max ${fmt(Math.max(...xs))}  (n=${xs.length})`;
}

interface AmAlert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL: string;
  fingerprint: string;
}

const GO_ZERO = '0001-01-01T00:00:00Z';

/** An HTTP answer's status, or why there was none (0). */
interface Outcome {
  status: number;
  error?: string;
}

/** One request with a 10 s deadline (Alertmanager's webhook timeout is in that range). */
async function request(url: string, init: RequestInit): Promise<Outcome> {
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
    await response.body?.cancel();
    return { status: response.status };
  } catch (err) {
    const name = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.name) : 'error';
    return { status: 0, error: name };
  }
}

function amPayload(groupKey: string, group: Record<string, string>, alerts: AmAlert[]): string {
  return JSON.stringify({
    version: '4',
    groupKey,
    truncatedAlerts: 0,
    status: alerts.some((a) => a.status === 'firing') ? 'firing' : 'resolved',
    receiver: 'gameops',
    groupLabels: group,
    commonLabels: group,
    commonAnnotations: {},
    externalURL: 'http://alertmanager.bench:9093',
    alerts,
  });
}

/** Alert i of the big group, in version `round` (annotations change every round, some alerts resolve). */
function bigAlert(i: number, round: number, startsAt: string): AmAlert {
  const resolved = round > 0 && (i + round) % 50 === 0;
  return {
    status: resolved ? 'resolved' : 'firing',
    labels: {
      alertname: 'ShardLag',
      severity: 'warning',
      service: 'bench-game',
      shard: `s${String(i).padStart(4, '0')}`,
      instance: `game-${i % 40}:7700`,
    },
    annotations: { summary: `shard ${i} lag ${(i * 7 + round) % 900} ms (round ${round})` },
    startsAt,
    endsAt: resolved ? new Date(Date.parse(startsAt) + 60_000 + round).toISOString() : GO_ZERO,
    generatorURL: `http://prometheus:9090/graph?g0.expr=shard_lag_ms%3E500`,
    fingerprint: (0x1000000000000000n + BigInt(i)).toString(16),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'gameops-bench-intake-'));
const dataDir = join(dir, 'data');
const hooks = await startWebhookSink();
try {
  // Pages go to a local receiver that answers 204 at once.
  const config = writePrivate(
    dir,
    'gameops.yaml',
    `service: { name: bench-game, environment: bench }
database: { dataDir: "${dataDir}" }
notifications:
  allowPrivate: ['127.0.0.1']
  channels:
    - { name: hook, kind: webhook, url: "${hooks.url}" }
people:
  - { id: alice, name: Alice, contacts: [hook] }
oncall:
  policies:
    - { name: bench, levels: [{ after: 0s, targets: [{ person: alice }] }] }
`,
  );
  const setup = await openStore({ dataDir });
  const token = (
    await setup.tokens.create({
      name: 'alertmanager',
      role: 'responder',
      createdBy: { id: 'local:bench', name: 'bench', role: 'admin', kind: 'local' },
    })
  ).token;
  await setup.close();
  const port = await freePort();
  const serve = await startServe({ config, port, logFile: join(dir, 'serve.log') });
  const endpoint = `${serve.url}/api/alerts/alertmanager`;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const post = (body: string): Promise<Outcome> => request(endpoint, { method: 'POST', headers, body });
  const healthz = (): Promise<Outcome> => request(`${serve.url}/healthz`, {});
  /** Fingerprints a 2xx acknowledged, as firing and as resolved (the loss check). */
  const ackedFiring = new Set<string>();
  const ackedResolved = new Set<string>();
  try {
    console.log(`alert intake benchmark: gameops serve (pid ${serve.process.pid}) on the embedded store`);
    console.log(`  ${loadNote()}`);

    // (a) the big webhook
    const startsAt = new Date(Date.now() - 3_600_000).toISOString();
    const bigGroup = { alertname: 'ShardLag' };
    const bodies = Array.from({ length: BIG_POSTS + 5 }, (_, round) =>
      amPayload(
        '{}:{alertname="ShardLag"}',
        bigGroup,
        Array.from({ length: BIG_ALERTS }, (_, i) => bigAlert(i, round, startsAt)),
      ),
    );
    const size = Buffer.byteLength(bodies[0]!);
    // Warm-up (connection, JIT, the incident for the group): not measured.
    for (const body of bodies.slice(0, 5)) {
      const { status, error } = await post(body);
      if (status < 200 || status > 299) throw new Error(`warm-up post answered ${error ?? status}`);
    }
    const bigTimes: number[] = [];
    let bigErrors = 0;
    for (const body of bodies.slice(5)) {
      const t0 = performance.now();
      const { status } = await post(body);
      bigTimes.push(performance.now() - t0);
      if (status < 200 || status > 299) bigErrors++;
      await delay(20);
    }
    const healthTimes: number[] = [];
    for (let i = 0; i < BIG_POSTS; i++) {
      const t0 = performance.now();
      await healthz();
      healthTimes.push(performance.now() - t0);
    }
    console.log(
      `\n(a) a ${BIG_ALERTS}-alert Alertmanager webhook, ${(size / 1024).toFixed(0)} KB (${size} bytes), acknowledged:`,
    );
    console.log(`    webhook      ${summary(bigTimes)}  errors ${bigErrors}   target p99 < 100 ms`);
    console.log(`    GET /healthz ${summary(healthTimes)}  (baseline: the same connection, no work)`);

    // (b) 200 webhooks/s, small group updates
    const groups = Array.from({ length: GROUPS }, (_, g) => ({
      key: `{}:{alertname="RoomLatency",room="r${g}"}`,
      labels: { alertname: 'RoomLatency', room: `r${g}` },
      alerts: [] as AmAlert[],
      next: 0,
    }));
    /**
     * `RATE` requests/s for `SECONDS` s on an open-loop schedule, in `lanes` lanes that each send one
     * request at a time (Alertmanager sends one notification per group at a time): request i goes out at
     * its due time, or when its lane's previous request is answered if that is later. Latency counts from
     * the due time, so falling behind shows in the figures.
     */
    const sustained = async (
      lanes: number,
      send: (i: number) => Promise<Outcome>,
    ): Promise<{ times: number[]; errors: Map<string, number>; sent: number; seconds: number }> => {
      const total = SECONDS * RATE;
      const interval = 1000 / RATE;
      const times: number[] = [];
      const errors = new Map<string, number>();
      const t0 = performance.now();
      const lane = async (first: number): Promise<void> => {
        for (let i = first; i < total; i += lanes) {
          const due = t0 + i * interval;
          const wait = due - performance.now();
          if (wait > 1) await delay(wait);
          const outcome = await send(i);
          times.push(performance.now() - due);
          const problem =
            outcome.error ??
            (outcome.status >= 200 && outcome.status < 300 ? undefined : `HTTP ${outcome.status}`);
          if (problem !== undefined) errors.set(problem, (errors.get(problem) ?? 0) + 1);
        }
      };
      await Promise.all(Array.from({ length: lanes }, (_, l) => lane(l)));
      const seconds = (performance.now() - t0) / 1000;
      return { times, errors, sent: total, seconds };
    };
    // The mix, from a seeded PRNG: 60% a group re-sent unchanged (group_interval/repeat_interval
    // re-sends and an HA pair's duplicates), 30% a new alert in the group (its oldest resolving by
    // absence once it has 5), 10% an alert resolved (sent as resolved, then gone from the group).
    const random = mulberry32(5);
    const mix = { unchanged: 0, added: 0, resolved: 0 };
    const fire = (group: (typeof groups)[number], g: number): void => {
      const n = group.next++;
      group.alerts.push({
        status: 'firing',
        labels: { ...group.labels, severity: 'warning', service: 'bench-game', player: `p${n}` },
        annotations: { summary: `room ${group.labels.room} tick latency high (${n})` },
        startsAt: new Date(Date.parse(startsAt) + n * 1000).toISOString(),
        endsAt: GO_ZERO,
        generatorURL: 'http://prometheus.bench:9090/graph',
        fingerprint: `${g.toString(16).padStart(4, '0')}${n.toString(16).padStart(12, '0')}`,
      });
      if (group.alerts.length > 5) group.alerts.shift();
      mix.added++;
    };
    /** Posts a group's payload; what a 2xx acknowledged is remembered for the loss check. */
    const postGroup = async (alerts: AmAlert[], group: (typeof groups)[number]): Promise<Outcome> => {
      const outcome = await post(amPayload(group.key, group.labels, alerts));
      if (outcome.status >= 200 && outcome.status < 300)
        for (const a of alerts) (a.status === 'firing' ? ackedFiring : ackedResolved).add(a.fingerprint);
      return outcome;
    };
    const small = await sustained(GROUPS, (i) => {
      const g = i % GROUPS;
      const group = groups[g]!;
      const r = random();
      if (group.alerts.length === 0 || (r >= 0.6 && r < 0.9)) {
        fire(group, g);
        return postGroup(group.alerts, group);
      }
      if (r >= 0.9) {
        const [gone, ...rest] = group.alerts;
        const resolved: AmAlert = { ...gone!, status: 'resolved', endsAt: new Date().toISOString() };
        group.alerts = rest;
        mix.resolved++;
        return postGroup([resolved, ...rest], group);
      }
      mix.unchanged++;
      return postGroup(group.alerts, group);
    });
    const base = await sustained(GROUPS, () => healthz());
    console.log(
      `\n(b) ${RATE} webhooks/s for ${SECONDS} s, small group updates over ${GROUPS} groups ` +
        `(${mix.unchanged} re-sent unchanged, ${mix.added} with a new alert, ${mix.resolved} resolving one):`,
    );
    const errorsOf = (errors: Map<string, number>): string => {
      const n = [...errors.values()].reduce((a, b) => a + b, 0);
      return n === 0 ? 'errors 0' : `errors ${n} (${[...errors].map(([k, v]) => `${k}: ${v}`).join(', ')})`;
    };
    console.log(
      `    webhook      ${(small.sent / small.seconds).toFixed(1)}/s achieved, ${errorsOf(small.errors)}, ${summary(small.times)}`,
    );
    console.log(
      `    GET /healthz ${(base.sent / base.seconds).toFixed(1)}/s achieved, ${errorsOf(base.errors)}, ${summary(base.times)}  (baseline)`,
    );
  } finally {
    await serve.stop();
  }
  // Nothing lost: every alert a 2xx acknowledged is in the store, and resolved there when it was sent
  // resolved (a refused webhook is Alertmanager's to retry, and is counted as an error above).
  const db = new DatabaseSync(join(dataDir, 'gameops.db'), { readOnly: true });
  try {
    const rows = db.prepare('select fingerprint, status from alert_records').all() as Array<{
      fingerprint: string;
      status: string;
    }>;
    const stored = new Map(rows.map((r) => [r.fingerprint, r.status]));
    const missing = [...ackedFiring].filter((f) => !stored.has(f)).length;
    const unresolved = [...ackedResolved].filter((f) => stored.get(f) !== 'resolved').length;
    console.log(
      `\n    acknowledged alerts ${ackedFiring.size}, in the store ${ackedFiring.size - missing}` +
        `${missing === 0 ? ' (none lost)' : ` (${missing} LOST)`}; acknowledged resolves ${ackedResolved.size}, ` +
        `resolved in the store ${ackedResolved.size - unresolved}${unresolved === 0 ? '' : ` (${unresolved} LOST)`}`,
    );
  } finally {
    db.close();
  }
  console.log(`  ${loadNote()}`);
} finally {
  await hooks.close();
  rmSync(dir, { recursive: true, force: true });
}
