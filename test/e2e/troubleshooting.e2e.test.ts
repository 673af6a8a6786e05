/**
 * End to end (issue #4, "Done when"): the three troubleshooting runbooks of §3 run through the runbook
 * engine against the local stack (the shared MariaDB) and a local fleet of the reference game server:
 * a busy instance to find, profile and relieve by scaling up; a heap snapshot and a rolling restart; a
 * real long query to find and kill. Each mutation waits for an approval given by a second person.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, shutdown, type Resources } from '../../src/app/bootstrap.ts';
import { openRunbooks } from '../../src/app/runbooks.ts';
import { readEnv } from '../../src/config/index.ts';
import { connectMysql, type MysqlClient } from '../../src/connectors/mysql.ts';
import { statementDigest } from '../../src/connectors/mysql-ops.ts';
import { TERMINAL_RUN_STATUSES, type Actor, type RunView, type StepState } from '../../src/runbooks/model.ts';
import type { Engine } from '../../src/runbooks/engine.ts';
import { destroyFleet } from '../../src/platform/local/test-support.ts';
import { writeReferenceFleetConfig, type ReferenceFleetConfig } from '../support/fleet.ts';

/** Who asks (a responder may start troubleshooting runbooks) and who approves (operators). */
const alice: Actor = { id: 'token:alice', name: 'alice', role: 'responder', kind: 'token' };
const bob: Actor = { id: 'token:bob', name: 'bob', role: 'operator', kind: 'token' };
const carol: Actor = { id: 'token:carol', name: 'carol', role: 'operator', kind: 'token' };

function step(view: RunView, id: string): StepState {
  const found = view.steps.find((s) => s.id === id);
  if (!found) throw new Error(`run ${view.runbook} has no step ${id}`);
  return found;
}

function statuses(view: RunView): Record<string, string> {
  return Object.fromEntries(view.steps.map((s) => [s.id, s.status]));
}

describe('end to end: troubleshooting runbooks through the engine', () => {
  let written: ReferenceFleetConfig;
  let resources: Resources;
  let engine: Engine;

  /** Drives the run until it waits for a person or ends; polls again while a wait step waits for the clock. */
  async function drive(
    runId: string,
    until: (view: RunView) => boolean,
    deadlineMs = 120_000,
  ): Promise<RunView> {
    const started = performance.now();
    for (;;) {
      const view = (await engine.runUntilIdle({ runId }))!;
      if (until(view) || TERMINAL_RUN_STATUSES.includes(view.status)) return view;
      if (performance.now() - started > deadlineMs)
        throw new Error(`run ${runId} did not get there: ${JSON.stringify(statuses(view))}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  const waitingFor = (stepId: string) => (view: RunView) => step(view, stepId).status === 'waiting';

  async function approve(view: RunView, stepId: string, actor: Actor): Promise<RunView> {
    const approval = step(view, stepId).approval!;
    return engine.decide({ runId: view.id, stepId, decision: 'approve', planHash: approval.planHash }, actor);
  }

  async function burn(instance: number, ms: number): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${written.basePort + instance}/ops/debug/burn?ms=${ms}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${written.token}` },
    });
    expect(res.status).toBe(200);
  }

  function artefact(output: unknown): { path: string; bytes: number; sha256: string } {
    const a = output as { path: string; bytes: number; sha256: string };
    expect(existsSync(a.path)).toBe(true);
    const content = readFileSync(a.path);
    expect(content.length).toBe(a.bytes);
    expect(createHash('sha256').update(content).digest('hex')).toBe(a.sha256);
    return a;
  }

  beforeAll(async () => {
    written = await writeReferenceFleetConfig({
      prefix: 'rbtrouble',
      withServices: true,
      rolloutTimeout: '3m',
    });
    resources = await bootstrap({
      configPath: written.path,
      store: 'required',
      logLevel: 'silent',
      env: readEnv({}),
    });
    engine = await openRunbooks(resources);
    const { openFleet } = await import('../../src/app/fleet.ts');
    await (await openFleet(resources)).platform.scale(2);
  });

  afterAll(async () => {
    if (resources) await shutdown(resources);
    if (written) await destroyFleet(written.dataDir);
  });

  it('high-cpu: finds and profiles the busy instance, scales up after approval, then sees CPU come down', async () => {
    await burn(1, 120_000);
    // Let the burn show before the run measures.
    await new Promise((r) => setTimeout(r, 300));
    let view = await engine.start(
      { runbook: 'high-cpu', params: { profileSeconds: 2, cpuTargetPercent: 50 }, trigger: 'api' },
      alice,
    );
    view = await drive(view.id, waitingFor('approve'));
    expect(statuses(view)).toMatchObject({
      usage: 'succeeded',
      profile: 'succeeded',
      stack: 'succeeded',
      autoscaler: 'succeeded',
      plan: 'succeeded',
      approve: 'waiting',
      scale: 'pending',
    });
    const usage = step(view, 'usage').output as { hottest: { name: string; cpuPercent: number } };
    expect(usage.hottest.name).toBe('game-1');
    const profile = artefact(step(view, 'profile').output);
    expect(readFileSync(profile.path, 'utf8')).toContain('burnSlice');
    artefact(step(view, 'stack').output);
    expect(step(view, 'autoscaler').output).toMatchObject({ enabled: false, currentReplicas: 2 });
    // The approval binds the exact count, worked out before it: 2 + 50 % → 3.
    const approval = step(view, 'approve').approval!;
    expect(approval.covers).toEqual([
      expect.objectContaining({
        id: 'scale',
        action: 'fleet.scale',
        effect: 'mutating',
        args: { replicas: 3 },
      }),
    ]);
    // The requester is a responder: she may start it, not approve the scale-up.
    await expect(approve(view, 'approve', alice)).rejects.toMatchObject({ code: 'not_allowed' });

    // Relief arrives (the load is spread); an operator approves the scale-up.
    await burn(1, 0);
    view = await approve(view, 'approve', bob);
    view = await drive(view.id, () => false, 180_000);
    expect(view.status, JSON.stringify(view.steps.map((s) => [s.id, s.status, s.error]))).toBe('succeeded');
    expect(step(view, 'scale').output).toMatchObject({ replicas: 3 });
    const fleet = await (await import('../../src/app/fleet.ts')).openFleet(resources);
    expect((await fleet.platform.autoscaler()).currentReplicas).toBe(3);
    const cpu = step(view, 'cpu-down').output as {
      hottestPercent: number;
      targetPercent: number;
      instances: number;
    };
    expect(cpu.targetPercent).toBe(50);
    expect(cpu.hottestPercent).toBeLessThan(50);
    expect(cpu.instances).toBe(3);
  }, 300_000);

  it('memory-leak: memory and its trend, a heap snapshot kept, then an approved rolling restart', async () => {
    const fleet = await (await import('../../src/app/fleet.ts')).openFleet(resources);
    const before = await fleet.platform.instances();
    let view = await engine.start(
      { runbook: 'memory-leak', params: { samples: 2, sampleIntervalMs: 200 }, trigger: 'api' },
      alice,
    );
    view = await drive(view.id, waitingFor('approve'));
    expect(statuses(view)).toMatchObject({ usage: 'succeeded', trend: 'succeeded', heap: 'succeeded' });
    expect(step(view, 'trend').output).toMatchObject({ source: 'sampled', samples: 2 });
    const heap = artefact(step(view, 'heap').output);
    expect(heap.path).toMatch(/\.heapsnapshot$/);
    expect(step(view, 'approve').approval!.covers).toEqual([
      expect.objectContaining({ id: 'restart', action: 'fleet.restart', args: { maxUnavailable: 1 } }),
    ]);
    view = await approve(view, 'approve', bob);
    view = await drive(view.id, () => false, 300_000);
    expect(view.status, JSON.stringify(view.steps.map((s) => [s.id, s.status, s.error]))).toBe('succeeded');
    const restarted = (
      step(view, 'restart').output as { instances: Array<{ name: string; startedAt: string }> }
    ).instances;
    expect(restarted.map((i) => i.name)).toEqual(before.map((i) => i.name));
    for (const i of restarted) expect(i.startedAt).not.toBe(before.find((b) => b.name === i.name)!.startedAt);
    expect(step(view, 'ready').output).toMatchObject({ ready: 3, desired: 3 });
  }, 300_000);

  it('slow-queries: lists a real long query and kills exactly it after a four-eyes approval', async () => {
    const mysql = resources.config.mysql!;
    const victim: MysqlClient = await connectMysql(mysql, { queryTimeoutMs: 120_000 });
    const sql = `SELECT SLEEP(60) AS troubleshooting_${Date.now()}`;
    const done = victim.query(sql, [], { timeoutMs: 120_000 }).catch((err: unknown) => err);
    try {
      // The process list counts whole seconds.
      await new Promise((r) => setTimeout(r, 1500));
      // Requested by an operator, who may not approve her own kill.
      let view = await engine.start(
        { runbook: 'slow-queries', params: { minSeconds: 1, killId: victim.threadId }, trigger: 'api' },
        carol,
      );
      view = await drive(view.id, waitingFor('approve-kill'));
      const long = step(view, 'long').output as { queries: Array<{ id: number; statement: string }> };
      expect(long.queries).toContainEqual(expect.objectContaining({ id: victim.threadId, statement: sql }));
      expect(step(view, 'slow-log').output).toMatchObject({ source: 'table' });
      expect(statuses(view)).toMatchObject({
        indexes: 'succeeded',
        tables: 'succeeded',
        inspect: 'succeeded',
      });
      expect(step(view, 'approve-kill').approval!.covers).toEqual([
        expect.objectContaining({
          id: 'kill',
          effect: 'destructive',
          args: { id: victim.threadId, user: mysql.user, statementDigest: statementDigest(sql) },
        }),
      ]);
      await expect(approve(view, 'approve-kill', carol)).rejects.toMatchObject({ code: 'not_allowed' });
      view = await approve(view, 'approve-kill', bob);
      view = await drive(view.id, () => false);
      expect(view.status, JSON.stringify(view.steps.map((s) => [s.id, s.status, s.error]))).toBe('succeeded');
      expect(step(view, 'kill').output).toMatchObject({
        outcome: 'killed',
        id: victim.threadId,
        confirmed: true,
      });
      expect(await done).toMatchObject({ details: { driverCode: 'ER_QUERY_INTERRUPTED' } });
    } finally {
      victim.destroy();
    }
  }, 300_000);

  it('daily-check: every check as a check step at once, recorded as one check run under the run id', async () => {
    const schedule: Actor = {
      id: 'schedule:daily-check',
      name: 'scheduler',
      role: 'responder',
      kind: 'schedule',
    };
    let view = await engine.start({ runbook: 'daily-check', params: {}, trigger: 'schedule' }, schedule);
    view = await drive(view.id, () => false);
    expect(step(view, 'record').status, JSON.stringify(statuses(view))).toBe('succeeded');
    const recorded = await resources.store!.checkRuns.get(view.id);
    expect(recorded).toMatchObject({ id: view.id, kind: 'daily', trigger: 'schedule' });
    expect(recorded!.results.map((r) => r.name)).toEqual([
      'database',
      'redis',
      'disk',
      'alerts',
      'fleet',
      'logs',
      'game',
      'backups',
    ]);
    // The fleet runs: the game-server checks measured it.
    expect(recorded!.results.find((r) => r.name === 'fleet')!.values).toMatchObject({ total: 3, ready: 3 });
  }, 300_000);

  // A skipped approval skips the steps it covers (they never run unapproved), and the run ends.
  it('slow-queries without killId: diagnosis only, the approval and kill skipped', async () => {
    let view = await engine.start({ runbook: 'slow-queries', params: {}, trigger: 'api' }, alice);
    view = await drive(view.id, () => false, 10_000);
    expect(view.status).toBe('succeeded');
    expect(statuses(view)).toMatchObject({
      long: 'succeeded',
      inspect: 'skipped',
      'approve-kill': 'skipped',
      kill: 'skipped',
    });
    // The default threshold comes from runbooks.slowQueries.minSeconds.
    expect(step(view, 'long').output).toMatchObject({ minSeconds: 10 });
  }, 300_000);
});
