/**
 * Benchmark of the runbook engine (issue #4): the engine's overhead per no-op step on the embedded
 * (SQLite) store, for a 1,000-step runbook of read-only no-op actions run one after another. Prints
 *   - the median time from one step's action to the next (claim, record, audit, events: the overhead
 *     per step), target < 5 ms, and steps/s over whole runs;
 *   - the baseline measured in the same run: two bare store transactions per step (an update and an
 *     event insert each), the least a durable step could cost with one transaction per transition.
 * Figures only: nothing here passes or fails a build.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { z } from 'zod';
import { systemClock } from '../src/core/index.ts';
import type { GameopsConfig } from '../src/config/index.ts';
import { createAccessPolicy } from '../src/identity/index.ts';
import { createEngine } from '../src/runbooks/engine.ts';
import type { ActionDefinition, Actor, Catalog, Runbook, Step } from '../src/runbooks/model.ts';
import { openStore } from '../src/store/index.ts';
import { median, stats } from './stats.ts';

const STEPS = Number(process.env.BENCH_STEPS ?? 1_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const actor: Actor = { id: 'local:bench', name: 'bench', role: 'admin', kind: 'local' };

const loadNote = (): string =>
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} on ${cpus().length} cores`;

let marks: number[] = [];
const noop: ActionDefinition<Record<string, unknown>> = {
  name: 'noop',
  description: 'does nothing',
  effect: 'read-only',
  idempotent: true,
  args: z.record(z.string(), z.unknown()).default({}),
  target: () => 'nothing',
  run: async () => {
    marks.push(performance.now());
    return {};
  },
};
const catalog: Catalog = {
  action: (name) => (name === 'noop' ? noop : undefined),
  check: () => undefined,
  actions: () => [noop],
  checks: () => [],
};
const steps: Step[] = Array.from({ length: STEPS }, (_, i) => ({
  id: `s${i}`,
  kind: 'action',
  title: `step ${i}`,
  needs: i === 0 ? [] : [`s${i - 1}`],
  onFailure: 'abort',
  action: 'noop',
  args: {},
}));
const runbook: Runbook = {
  name: 'bench',
  version: '1',
  title: 'bench',
  description: `${STEPS} no-op steps`,
  source: { kind: 'builtin' },
  params: z.object({}),
  paramsJsonSchema: {},
  steps,
  runBy: ['admin'],
  hash: 'bench',
  tags: [],
};

const dir = mkdtempSync(join(tmpdir(), 'gameops-bench-engine-'));
const store = await openStore({ dataDir: join(dir, 'data') });
try {
  const engine = createEngine({
    store,
    clock: systemClock,
    catalog,
    library: { get: (name) => (name === 'bench' ? runbook : undefined), list: () => [runbook] },
    policy: createAccessPolicy({ runbooks: { access: {} } } as unknown as Pick<GameopsConfig, 'runbooks'>),
    services: {},
    scope: { service: 'bench', environment: 'bench' },
    leaseTtlMs: 8_000,
    mask: (v) => v,
    log: pino({ level: 'silent' }),
  });
  const gaps: number[] = [];
  const perStep: number[] = [];
  for (let run = 0; run <= RUNS; run++) {
    marks = [];
    const t0 = performance.now();
    const started = await engine.start({ runbook: 'bench', params: {}, trigger: 'cli' }, actor);
    const view = await engine.runUntilIdle({ runId: started.id });
    const ms = performance.now() - t0;
    if (view?.status !== 'succeeded') throw new Error(`bench run ended ${view?.status}: ${view?.reason}`);
    if (run === 0) continue; // warm-up
    perStep.push(ms / STEPS);
    for (let i = 1; i < marks.length; i++) gaps.push(marks[i]! - marks[i - 1]!);
  }

  // Baseline: two bare transactions per step, each updating the run row and inserting one event.
  const baseline: number[] = [];
  const [anyRun] = await store.runs.listRuns({ service: 'bench', environment: 'bench', limit: 1 });
  let seq = 1_000_000;
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    for (let k = 0; k < 2; k++) {
      await store.runs.transaction('baseline', async (tx) => {
        await tx.lockRun(anyRun!.id);
        await tx.updateRun(anyRun!.id, { updatedAt: new Date().toISOString() });
        await tx.insertEvents([
          { runId: anyRun!.id, seq: ++seq, at: new Date().toISOString(), type: 'log', message: 'x' },
        ]);
      });
    }
    baseline.push(performance.now() - t0);
  }

  const lines = [
    `gameops bench: runbook engine, ${STEPS} no-op steps one after another on the embedded store (node ${process.version})`,
    `  overhead per step (action to next action)  ${stats(gaps)}   target < 5 ms`,
    `  whole run, per step                        ${stats(perStep)}`,
    `  steps/s (median run)                       ${(1000 / median(perStep)).toFixed(0)}`,
    `    baseline: two bare store transactions   ${stats(baseline)}`,
    `  (${loadNote()})`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
