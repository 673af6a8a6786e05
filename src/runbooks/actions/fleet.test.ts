/**
 * The fleet actions and checks against a real local fleet of the reference game server (with a busy
 * instance burning CPU through its ops endpoint), and the Prometheus actions against a real Prometheus
 * scraping that fleet.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrometheus, type PrometheusHandle } from '../../../test/harness/index.ts';
import { writeReferenceFleetConfig, type ReferenceFleetConfig } from '../../../test/support/fleet.ts';
import type { Resources } from '../../app/bootstrap.ts';
import type { Artefact, AutoscalerStatus, FleetStatus, GateResult } from '../../platform/index.ts';
import { destroyFleet } from '../../platform/local/test-support.ts';
import type { CheckOutcome } from '../model.ts';
import type { CpuValues, MemoryTrend, ScalePlan, UsageOutput } from './fleet.ts';
import { createCatalog } from './index.ts';
import type { RunbookServices } from './services.ts';
import {
  catalogAction,
  createRunbookServices,
  resourcesFromFile,
  shutdown,
  stepContext,
  type TestStep,
} from './test-support.ts';

const catalog = createCatalog();

describe('fleet and prometheus actions on a local reference fleet', () => {
  let written: ReferenceFleetConfig;
  let prometheus: PrometheusHandle;
  let resources: Resources;
  let services: RunbookServices;
  const runId = `fleet-test-${Date.now()}`;

  async function run<T>(name: string, args: unknown, ctx: TestStep = stepContext(services, { runId })) {
    const def = catalogAction(name);
    return (await def.run(def.args.parse(args), ctx)) as T;
  }

  async function check(name: string, args: unknown): Promise<CheckOutcome> {
    const def = catalog.check(name)!;
    return def.run(def.args.parse(args), stepContext(services, { runId }));
  }

  async function burn(instance: number, ms: number): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${written.basePort + instance}/ops/debug/burn?ms=${ms}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${written.token}` },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ burning: ms > 0, ms });
  }

  beforeAll(async () => {
    written = await writeReferenceFleetConfig({ prefix: 'rbfleet' });
    const targets = [0, 1, 2, 3].map((i) => `"127.0.0.1:${written.basePort + i}"`).join(', ');
    prometheus = await startPrometheus({
      configYaml: [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        `  - job_name: game\n    scrape_interval: 1s\n    static_configs: [{ targets: [${targets}] }]`,
        '',
      ].join('\n'),
    });
    appendFileSync(written.path, `prometheus: { url: "${prometheus.url}" }\n`);
    resources = await resourcesFromFile(written.path);
    services = createRunbookServices(resources);
    const fleet = await services.fleet();
    await fleet.platform.scale(2);
  });

  afterAll(async () => {
    if (resources) await shutdown(resources);
    if (written) await destroyFleet(written.dataDir);
    await prometheus?.stop();
  });

  it('ranks instances by CPU with the busy one first, and profiles it into an artefact of the run', async () => {
    await burn(1, 60_000);
    let usage: UsageOutput | undefined;
    // The burn starts on the next turn of the instance's event loop: the first window may miss part of it.
    const burning = (u: UsageOutput | undefined) =>
      u?.hottest?.name === 'game-1' && u.byCpu[0]!.cpuPercent > 2 * u.byCpu[1]!.cpuPercent + 10;
    for (let i = 0; i < 15 && !burning(usage); i++)
      usage = await run<UsageOutput>('fleet.usage', { top: 5, atLeast: 2 });
    expect(usage!.instances).toBe(2);
    expect(usage!.hottest).toMatchObject({ name: 'game-1' });
    expect(burning(usage)).toBe(true);
    expect(usage!.byCpu.map((u) => u.name)).toEqual(['game-1', 'game-0']);
    expect(usage!.byMemory).toHaveLength(2);
    expect(usage!.largest!.memoryBytes).toBeGreaterThan(1024 * 1024);
    await expect(run('fleet.usage', { atLeast: 3 })).rejects.toMatchObject({ code: 'not_found' });

    const ctx = stepContext(services, { runId });
    const profile = await run<Artefact>(
      'fleet.diagnostics',
      { instance: 'game-1', kind: 'cpu-profile', seconds: 1 },
      ctx,
    );
    expect(profile.path.startsWith(join(written.dataDir, 'artefacts', 'runs', runId))).toBe(true);
    const bytes = readFileSync(profile.path);
    expect(profile.bytes).toBe(bytes.length);
    expect(profile.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    // The burn is what the profile shows.
    expect(bytes.toString('utf8')).toContain('burnSlice');
    expect(ctx.lines.join('\n')).toContain('taking a cpu-profile of game-1 for 1 s');

    const stack = await run<Artefact>('fleet.diagnostics', { instance: 'game-1', kind: 'stack-dump' });
    expect(JSON.parse(readFileSync(stack.path, 'utf8'))).toHaveProperty('javascriptStack');
    expect(statSync(stack.path).mode & 0o777).toBe(0o600);

    await expect(run('fleet.diagnostics', { instance: 'game-9', kind: 'stack-dump' })).rejects.toMatchObject({
      code: 'not_found',
    });
    expect(
      catalogAction('fleet.diagnostics').args.safeParse({ instance: 'game-0', kind: 'core-dump' }).error
        ?.issues[0]?.path,
    ).toEqual(['kind']);
  });

  it('fleet.cpu fails while the busy instance is over the target and passes once the burn stops', async () => {
    await burn(1, 60_000);
    let busy: CheckOutcome | undefined;
    for (let i = 0; i < 10 && busy?.status !== 'fail'; i++)
      busy = await check('fleet.cpu', { targetPercent: 40 });
    expect(busy!.status).toBe('fail');
    const values = busy!.values as CpuValues;
    expect(values.hottest).toBe('game-1');
    expect(values.targetPercent).toBe(40);
    expect(busy!.summary).toContain('not under 40 %');
    expect(Object.keys(values.perInstance).sort()).toEqual(['game-0', 'game-1']);
    await burn(1, 0);
    let calm: CheckOutcome | undefined;
    for (let i = 0; i < 20 && calm?.status !== 'ok'; i++)
      calm = await check('fleet.cpu', { targetPercent: 40 });
    expect(calm!.status).toBe('ok');
    expect((calm!.values as CpuValues).hottestPercent).toBeLessThan(40);
    // Without a target, the config's (runbooks.highCpu.cpuTargetPercent, 70 by default).
    expect(((await check('fleet.cpu', {})).values as CpuValues).targetPercent).toBe(70);
  });

  it('autoscaler status, a scale plan bound before approval, scale with verify, and readiness', async () => {
    const autoscaler = await run<AutoscalerStatus>('fleet.autoscaler', {});
    expect(autoscaler).toMatchObject({ enabled: false, currentReplicas: 2, desiredReplicas: 2 });
    expect(await run<ScalePlan>('fleet.plan-scale', {})).toEqual({
      current: 2,
      replicas: 3,
      scaleUp: true,
      from: 'current + 50 %',
    });
    expect(await run<ScalePlan>('fleet.plan-scale', { replicas: 2 })).toMatchObject({
      scaleUp: false,
      from: 'param',
    });

    const scale = catalogAction('fleet.scale');
    expect(await scale.verify!(scale.args.parse({ replicas: 3 }), stepContext(services))).toBe('not-done');
    const ctx = stepContext(services, { runId });
    const result = await run<{ replicas: number }>('fleet.scale', { replicas: 3 }, ctx);
    expect(result.replicas).toBe(3);
    expect(ctx.lines.some((l) => l.startsWith('scale: '))).toBe(true);
    expect(await scale.verify!(scale.args.parse({ replicas: 3 }), stepContext(services))).toBe('done');
    expect(await scale.verify!(scale.args.parse({ replicas: 4 }), stepContext(services))).toBe('not-done');
    expect(scale.target(scale.args.parse({ replicas: 3 }), services)).toBe(
      `local fleet in ${join(written.dataDir, 'fleet')}`,
    );
    const ready = await check('fleet.ready', {});
    expect(ready).toMatchObject({ status: 'ok', values: { desired: 3, ready: 3, notReady: [] } });
  });

  it('rolling restart of one instance: it comes back ready with a new start time', async () => {
    const before = (await run<FleetStatus>('fleet.status', { names: ['game-0'] })).instances[0]!;
    const ctx = stepContext(services, { runId });
    const result = await run<{ instances: Array<{ name: string; ready: boolean; startedAt: string }> }>(
      'fleet.restart',
      { names: ['game-0'] },
      ctx,
    );
    expect(result.instances).toHaveLength(1);
    expect(result.instances[0]).toMatchObject({ name: 'game-0', ready: true });
    expect(result.instances[0]!.startedAt).not.toBe(before.startedAt);
    expect(ctx.lines.join('\n')).toMatch(/restart: .*1 at a time/);
    // One at a time, always.
    expect(
      catalogAction('fleet.restart').args.safeParse({ maxUnavailable: 2 }).error?.issues[0]?.path,
    ).toEqual(['maxUnavailable']);
    expect('verify' in catalogAction('fleet.restart')).toBe(false);
  });

  it('memory: sampled from the platform, and from Prometheus when it scrapes the fleet', async () => {
    const sampled = await run<MemoryTrend>('fleet.sample-memory', { samples: 3, intervalMs: 100 });
    expect(sampled.source).toBe('sampled');
    expect(sampled.instances.map((i) => i.name)).toEqual(['game-0', 'game-1', 'game-2']);
    for (const i of sampled.instances) {
      expect(i.series).toHaveLength(3);
      expect(Number.isInteger(i.slopeBytesPerMinute)).toBe(true);
    }
    expect(sampled.largest?.memoryBytes).toBeGreaterThan(0);

    // Prometheus scrapes every second; wait until it has every instance.
    let trend: MemoryTrend | undefined;
    for (let i = 0; i < 50; i++) {
      trend = await run<MemoryTrend>('fleet.memory-trend', { windowMinutes: 5 });
      if (trend.source === 'prometheus' && trend.instances.length === 3) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(trend).toMatchObject({ source: 'prometheus', metric: 'process_resident_memory_bytes' });
    expect(trend!.instances.map((i) => i.name)).toEqual(['game-0', 'game-1', 'game-2']);
    expect(trend!.largest!.memoryBytes).toBeGreaterThan(1024 * 1024);
    // A metric nobody exports: sampled instead, saying why.
    const missing = await run<MemoryTrend>('fleet.memory-trend', {
      metric: 'no_such_metric_bytes',
      samples: 2,
      intervalMs: 0,
    });
    expect(missing.source).toBe('sampled');
    expect(missing.note).toContain('has no no_such_metric_bytes series');
    expect(catalogAction('fleet.memory-trend').args.safeParse({ metric: 'up) or vector(1' }).success).toBe(
      false,
    );
  });

  it('prometheus.query and prometheus.range against the real Prometheus; a bad query is an input error', async () => {
    let up: { series: Array<{ metric: Record<string, string>; value: number | null }> } | undefined;
    for (let i = 0; i < 50; i++) {
      up = await run('prometheus.query', { query: 'up{job="game"}' });
      if (up!.series.filter((s) => s.value === 1).length >= 3) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const instances = up!.series
      .filter((s) => s.value === 1)
      .map((s) => s.metric['instance'])
      .sort();
    expect(instances).toEqual([0, 1, 2].map((i) => `127.0.0.1:${written.basePort + i}`));
    const range = await run<{
      series: Array<{ values: Array<[number, number | null]> }>;
      stepSeconds: number;
    }>('prometheus.range', { query: 'sum(up{job="game"})', windowMs: 60_000, stepSeconds: 1 });
    expect(range.series).toHaveLength(1);
    expect(range.stepSeconds).toBe(1);
    expect(range.series[0]!.values.length).toBeGreaterThan(0);
    await expect(run('prometheus.query', { query: 'sum(' })).rejects.toMatchObject({
      code: 'input',
      message: expect.stringContaining('refused the query: bad_data') as unknown,
    });
    await expect(
      run('prometheus.range', { query: 'up', windowMs: 86_400_000, stepSeconds: 1 }),
    ).rejects.toThrow(/86401 points per series/);
  });

  it('the gate closes and opens, verified from the game config', async () => {
    const closed = await run<GateResult>('fleet.gate', { closed: true, message: 'maintenance drill' });
    expect(closed.status).toBe('ok');
    expect(closed.instances.every((i) => i.ok)).toBe(true);
    const gate = catalogAction('fleet.gate');
    expect(await gate.verify!(gate.args.parse({ closed: true }), stepContext(services))).toBe('done');
    expect(await gate.verify!(gate.args.parse({ closed: false }), stepContext(services))).toBe('not-done');
    await run('fleet.gate', { closed: false });
    expect((await run<FleetStatus>('fleet.status', {})).gate.closed).toBe(false);
  });

  it('artefacts of a run stay in their own directory', () => {
    expect(existsSync(join(written.dataDir, 'artefacts', 'runs', runId))).toBe(true);
    expect(() => services.artefactDir('../escape')).toThrow(/cannot name an artefact directory/);
  });
});
