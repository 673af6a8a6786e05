/**
 * Durability of the runbook engine: a worker process running a 20-step runbook whose `record` steps
 * append to a recording file is killed with SIGKILL at seeded random points and restarted until its run
 * settles. Then: no step lost, no `record` step executed twice, the run succeeded, failed or needs
 * verification, and each restart picked the run up within 10 s. Needs-verification steps are then
 * settled by a person's verify (done when the recording file has the line) and the run completes.
 *
 * A failing iteration prints its seed; `RUNBOOK_CRASH_SEED=<n>` runs exactly that iteration again.
 * `RUNBOOK_CRASH_ITERATIONS` sets the number of iterations (CI: 50; scripts/soak-runbooks.ts: 200).
 *
 * The same is then done in-process against PostgreSQL, where a dead worker's lease must expire
 * (ManualClock) before another worker takes the run over.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { ManualClock } from '../../src/core/index.ts';
import { openStore, type Store } from '../../src/store/index.ts';
import { services } from '../harness/index.ts';
import {
  CRASH_ACTOR,
  CRASH_RUNBOOK,
  crashCatalog,
  crashEngine,
  crashRunbook,
  SETTLED,
} from '../fixtures/runbook-crash-worker.ts';
import { crashIteration, mulberry32, parseRecording, settleAndCheck } from './runbook-crash.support.ts';

const ITERATIONS = Number(process.env.RUNBOOK_CRASH_ITERATIONS ?? 50);
const FIXED_SEED = process.env.RUNBOOK_CRASH_SEED;

describe('runbook engine under kill -9', () => {
  it(`loses no step and runs no record step twice over ${FIXED_SEED ? 1 : ITERATIONS} killed runs`, async () => {
    const base = FIXED_SEED ? Number(FIXED_SEED) : randomBytes(4).readUInt32BE(0);
    const seeds = FIXED_SEED ? [base] : Array.from({ length: ITERATIONS }, (_, i) => (base + i) >>> 0);
    console.log(
      `runbook crash test: seeds ${seeds[0]}..${seeds.at(-1)}; replay one with RUNBOOK_CRASH_SEED=<seed>`,
    );
    const summary = { kills: 0, selfKills: 0, needsVerification: 0, maxPickupMs: 0 };
    // Two at a time: one per core.
    let next = 0;
    const worker = async () => {
      while (next < seeds.length) {
        const seed = seeds[next++]!;
        try {
          const result = await crashIteration(seed);
          summary.kills += result.kills;
          summary.selfKills += result.selfKills;
          summary.needsVerification += result.needsVerification;
          summary.maxPickupMs = Math.max(summary.maxPickupMs, ...result.pickupMs);
        } catch (err) {
          throw new Error(
            `crash iteration with seed ${seed} failed (replay: RUNBOOK_CRASH_SEED=${seed}): ${(err as Error).message}`,
            { cause: err },
          );
        }
      }
    };
    await Promise.all([worker(), worker()]);
    console.log(`runbook crash test: ${JSON.stringify(summary)}`);
    expect(summary.kills).toBeGreaterThan(0);
  }, 600_000);
});

describe('runbook engine losing workers on PostgreSQL (leases expire)', () => {
  it('takes over from dead workers after their lease, never running a record step twice', async () => {
    const admin = services().postgres.url;
    const name = `gameops_crash_${randomBytes(6).toString('hex')}`;
    await pgQuery(admin, `CREATE DATABASE ${name}`);
    const url = new URL(admin);
    url.pathname = `/${name}`;
    const store = await openStore({ url: url.toString() });
    try {
      const base = FIXED_SEED ? Number(FIXED_SEED) : randomBytes(4).readUInt32BE(0);
      console.log(`runbook crash test on PostgreSQL: seeds ${base}..${base + 4}`);
      for (let i = 0; i < 5; i++) {
        const seed = (base + i) >>> 0;
        try {
          await inProcessIteration(store, seed);
        } catch (err) {
          throw new Error(`PostgreSQL crash iteration with seed ${seed} failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
      }
    } finally {
      await store.close();
      await pgQuery(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  }, 120_000);
});

async function pgQuery(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/**
 * One run driven by a series of workers in this process. A worker "dies" at a seeded commit: from then
 * on every transaction it tries fails, as if its process were gone, while its actions in flight still
 * finish (and their late results are refused). The next worker must wait for the lease to expire.
 */
async function inProcessIteration(store: Store, seed: number): Promise<void> {
  const rng = mulberry32(seed);
  const clock = new ManualClock('2026-03-02T09:00:00Z');
  const dir = mkdtempSync(join(tmpdir(), 'gameops-crash-pg-'));
  const file = join(dir, 'recording.log');
  let writing = 0;
  const catalog = crashCatalog(file, (where) => {
    if (where === 'record:before-write') writing++;
    if (where === 'record:after-write') writing--;
  });
  const read = async () => {
    // Late attempts of dead workers finish their write first (they are in this process).
    while (writing > 0) await delay(1);
    return existsSync(file) ? parseRecording(readFileSync(file, 'utf8')) : [];
  };
  try {
    let runId: string | undefined;
    let settled = false;
    for (let worker = 1; worker <= 8 && !settled; worker++) {
      const dieAfter = worker < 4 ? 1 + Math.floor(rng() * 30) : Infinity;
      let commits = 0;
      const mortal: Store = {
        ...store,
        runs: {
          ...store.runs,
          transaction: async (doing, work) => {
            if (commits >= dieAfter) throw new Error(`worker ${worker} is dead`);
            const result = await store.runs.transaction(doing, work);
            commits++;
            return result;
          },
        },
      };
      const engine = crashEngine(mortal, catalog, {
        clock,
        workerId: `pg-worker-${seed}-${worker}`,
        leaseTtlMs: 5_000,
      });
      try {
        runId ??= (
          await engine.start(
            { runbook: CRASH_RUNBOOK, params: {}, trigger: 'cli', idempotencyKey: `crash-${seed}` },
            CRASH_ACTOR,
          )
        ).id;
        for (let round = 0; round < 100 && !settled; round++) {
          const view = (await engine.runUntilIdle({ runId }))!;
          settled = SETTLED.includes(view.status);
          if (!settled) clock.advance(100); // a retry's backoff
        }
      } catch {
        // This worker died. Another worker may take over only once its lease has expired (a worker that
        // died before it ever claimed the run holds no lease: then anyone may run it at once).
        const held = runId === undefined ? undefined : await store.runs.getRun(runId);
        const leased =
          held?.leaseOwner === `pg-worker-${seed}-${worker}` &&
          held.leaseExpiresAt !== undefined &&
          Date.parse(held.leaseExpiresAt) > clock.now().getTime();
        if (runId !== undefined && leased) {
          const early = crashEngine(store, catalog, { clock, workerId: `pg-early-${seed}-${worker}` });
          const before = await early.get(runId, CRASH_ACTOR);
          const after = (await early.runUntilIdle({ runId }))!;
          expect(after.steps).toEqual(before.steps);
        }
        clock.advance(5_001);
      }
    }
    expect(settled).toBe(true);
    // The last worker stops here; the settler takes the run over once its lease has run out.
    clock.advance(5_001);
    const settler = crashEngine(store, catalog, { clock, workerId: `pg-settler-${seed}` });
    await settleAndCheck(settler, runId!, await read(), crashRunbook(), read, () => clock.advance(100));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
