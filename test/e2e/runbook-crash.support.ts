/**
 * The runbook crash test's moving parts, shared by test/e2e/runbook-crash.e2e.test.ts (50 iterations)
 * and scripts/soak-runbooks.ts (200): one seeded iteration of kill -9 and restart, and the checks.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { openStore } from '../../src/store/index.ts';
import type { Engine } from '../../src/runbooks/engine.ts';
import type { Runbook, RunView } from '../../src/runbooks/model.ts';
import { CRASH_ACTOR, crashCatalog, crashEngine, crashRunbook } from '../fixtures/runbook-crash-worker.ts';

const WORKER = fileURLToPath(new URL('../fixtures/runbook-crash-worker.ts', import.meta.url));
/** A restarted worker must have picked its run up by then. */
export const PICKUP_LIMIT_MS = 10_000;
/** A worker that neither settles nor is killed by then is stuck. */
const WORKER_DEADLINE_MS = 60_000;

/** A small seeded PRNG (mulberry32): the same seed gives the same kill plan. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** The recording file's entries; none when no record step ever wrote. */
export function readRecording(file: string): Array<{ runId: string; stepId: string; attempt: number }> {
  return existsSync(file) ? parseRecording(readFileSync(file, 'utf8')) : [];
}

/** The recording file as (runId, stepId, attempt) entries. */
export function parseRecording(text: string): Array<{ runId: string; stepId: string; attempt: number }> {
  return text
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => {
      const [runId, stepId, attempt] = line.split(' ');
      if (!runId || !stepId || attempt === undefined) throw new Error(`malformed recording line "${line}"`);
      return { runId, stepId, attempt: Number(attempt) };
    });
}

export interface IterationResult {
  seed: number;
  kills: number;
  /** Kills at a kill point inside the worker (exactly replayable). */
  selfKills: number;
  needsVerification: number;
  /** Per restart: ms from spawn until the run was picked up (or the worker finished). */
  pickupMs: number[];
}

interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: string[];
  stderr: string;
  /** ms from spawn to `picked`, or to exit when it never printed it. */
  pickupMs: number;
}

function runWorker(
  dataDir: string,
  recording: string,
  plan: { killAt?: number; killAfterMs?: number },
): Promise<WorkerExit> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const args = [WORKER, dataDir, recording, ...(plan.killAt === undefined ? [] : [String(plan.killAt)])];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'gameops-crash-ncc'),
      },
    });
    const lines: string[] = [];
    let stderr = '';
    let pickupMs: number | undefined;
    let buffer = '';
    let killTimer: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => child.kill('SIGKILL'), WORKER_DEADLINE_MS);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        if (line === 'picked') pickupMs ??= Date.now() - started;
        if (line.startsWith('ready') && plan.killAfterMs !== undefined) {
          killTimer = setTimeout(() => child.kill('SIGKILL'), plan.killAfterMs);
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(deadline);
      clearTimeout(killTimer);
      resolve({ code, signal, lines, stderr, pickupMs: pickupMs ?? Date.now() - started });
    });
  });
}

/**
 * One iteration: a fresh data directory, the worker killed 1 to 3 times (at a kill point inside it, or
 * from outside after a random number of ms), restarted until its run settles; then the checks.
 */
export async function crashIteration(seed: number): Promise<IterationResult> {
  const rng = mulberry32(seed);
  const dir = mkdtempSync(join(tmpdir(), 'gameops-crash-'));
  const dataDir = join(dir, 'data');
  const recording = join(dir, 'recording.log');
  const result: IterationResult = { seed, kills: 0, selfKills: 0, needsVerification: 0, pickupMs: [] };
  try {
    const maxKills = 1 + Math.floor(rng() * 3);
    let runId: string | undefined;
    for (let spawnNo = 0; ; spawnNo++) {
      if (spawnNo > maxKills + 3) throw new Error(`the run did not settle after ${spawnNo} workers`);
      const plan: { killAt?: number; killAfterMs?: number } = {};
      if (result.kills < maxKills) {
        if (rng() < 0.5) plan.killAt = 1 + Math.floor(rng() * 80);
        else plan.killAfterMs = Math.floor(rng() * 400);
      }
      const exit = await runWorker(dataDir, recording, plan);
      runId ??= exit.lines.find((l) => l.startsWith('ready '))?.slice(6);
      if (spawnNo > 0) {
        result.pickupMs.push(exit.pickupMs);
        if (exit.pickupMs > PICKUP_LIMIT_MS) {
          throw new Error(
            `restart ${spawnNo} picked the run up after ${exit.pickupMs} ms (limit ${PICKUP_LIMIT_MS})`,
          );
        }
      }
      if (exit.signal === 'SIGKILL') {
        result.kills++;
        if (plan.killAt !== undefined) result.selfKills++;
        continue;
      }
      const line = exit.lines.find((l) => l.startsWith('result '));
      if (exit.code !== 0 || !line) {
        throw new Error(`worker exited with ${exit.code ?? exit.signal}: ${exit.stderr.slice(-2000)}`);
      }
      const settled = JSON.parse(line.slice(7)) as { id: string; status: string };
      if (!['succeeded', 'failed', 'needs-verification'].includes(settled.status)) {
        throw new Error(`the run ended ${settled.status}`);
      }
      runId = settled.id;
      break;
    }
    const store = await openStore({ dataDir });
    try {
      const engine = crashEngine(store, crashCatalog(recording), { workerId: `settler-${seed}` });
      result.needsVerification = await settleAndCheck(
        engine,
        runId,
        readRecording(recording),
        crashRunbook(),
        async () => readRecording(recording),
      );
    } finally {
      await store.close();
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Checks a settled run against its recording (no step lost, no record step twice), settles its
 * needs-verification steps as a person would (done when the recording has the line), works it to the
 * end and checks again. Returns how many steps needed verification.
 */
export async function settleAndCheck(
  engine: Engine,
  runId: string,
  recorded: Array<{ runId: string; stepId: string }>,
  rb: Runbook,
  reread: () => Promise<Array<{ runId: string; stepId: string }>>,
  passTime: () => void = () => undefined,
): Promise<number> {
  const recordSteps = new Set(
    rb.steps.filter((s) => s.kind === 'action' && s.action === 'record').map((s) => s.id),
  );
  let view = await engine.get(runId, CRASH_ACTOR);
  if (!['succeeded', 'failed', 'needs-verification'].includes(view.status)) {
    throw new Error(`run ${runId} settled as ${view.status}`);
  }
  // Steps after a needs-verification step wait (pending) until a person verified it.
  const allowed = ['succeeded', 'skipped', 'needs-verification'];
  if (view.status === 'needs-verification') allowed.push('pending');
  const lost = view.steps.filter((s) => !allowed.includes(s.status));
  if (lost.length > 0) {
    throw new Error(
      `steps lost: ${lost.map((s) => `${s.id}=${s.status}`).join(', ')} (run ${view.status}: ${view.reason ?? ''})`,
    );
  }
  checkOnce(recorded, runId, recordSteps, view, false);
  const unverified = view.steps.filter((s) => s.status === 'needs-verification');
  for (const step of unverified) {
    if (step.kind === 'action' && !recordSteps.has(step.id)) {
      throw new Error(`read-only step ${step.id} was sent to needs-verification`);
    }
    const happened = recorded.some((r) => r.runId === runId && r.stepId === step.id);
    view = await engine.verify(
      { runId, stepId: step.id, outcome: happened ? 'done' : 'not-done' },
      CRASH_ACTOR,
    );
  }
  for (let round = 0; round < 200; round++) {
    view = (await engine.runUntilIdle({ runId }))!;
    if (view.status === 'succeeded' || view.status === 'failed' || view.status === 'cancelled') break;
    if (view.status === 'needs-verification') break;
    passTime();
    await delay(5);
  }
  if (view.status !== 'succeeded')
    throw new Error(`after verification the run is ${view.status}: ${view.reason ?? ''}`);
  const unfinished = view.steps.filter((s) => s.status !== 'succeeded' && s.status !== 'skipped');
  if (unfinished.length > 0) {
    throw new Error(
      `steps lost after verification: ${unfinished.map((s) => `${s.id}=${s.status}`).join(', ')}`,
    );
  }
  checkOnce(await reread(), runId, recordSteps, view, true);
  return unverified.length;
}

/** No record step twice; every succeeded record step exactly once (unless verified done: once too). */
function checkOnce(
  recorded: Array<{ runId: string; stepId: string }>,
  runId: string,
  recordSteps: Set<string>,
  view: RunView,
  final: boolean,
): void {
  const counts = new Map<string, number>();
  for (const r of recorded) {
    if (r.runId !== runId) throw new Error(`recording has a line of another run ${r.runId}`);
    counts.set(r.stepId, (counts.get(r.stepId) ?? 0) + 1);
  }
  for (const [stepId, count] of counts) {
    if (count > 1) throw new Error(`record step ${stepId} ran ${count} times`);
    if (!recordSteps.has(stepId)) throw new Error(`recording has step ${stepId}, which is not a record step`);
  }
  for (const step of view.steps) {
    if (!recordSteps.has(step.id) || step.status !== 'succeeded') continue;
    if (counts.get(step.id) !== 1) {
      throw new Error(
        `record step ${step.id} succeeded but ran ${counts.get(step.id) ?? 0} times${final ? ' (after verification)' : ''}`,
      );
    }
  }
}
