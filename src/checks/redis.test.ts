import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { services, startRedis, type RedisHandle } from '../../test/harness/index.ts';
import { ManualClock, systemClock, type Clock } from '../core/index.ts';
import { runDailyCheck } from './daily.ts';
import { redisCheck } from './redis.ts';
import { testConfig } from './test-support.ts';
import type { CheckResult, CheckRun } from './types.ts';

const started: RedisHandle[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((r) => r.stop()));
});

async function privateRedis(options: Parameters<typeof startRedis>[0] = {}): Promise<RedisHandle> {
  const handle = await startRedis(options);
  started.push(handle);
  return handle;
}

function config(
  target: { host: string; port: number; password?: string },
  thresholds: Record<string, unknown> = {},
) {
  const { host, port, password } = target;
  // Latency limits far out of reach: these tests make no timing assertions.
  const redis = { latencyWarnMs: 1_000, latencyFailMs: 2_000, ...thresholds };
  return testConfig({ redis: { host, port, ...(password ? { password } : {}) }, thresholds: { redis } });
}

async function runRedis(cfg: ReturnType<typeof config>, previous?: CheckRun, clock: Clock = systemClock) {
  return runDailyCheck({
    config: cfg,
    clock,
    trigger: 'cli',
    checks: [redisCheck],
    ...(previous ? { previous } : {}),
  });
}

function only(run: CheckRun): CheckResult {
  expect(run.results).toHaveLength(1);
  return run.results[0]!;
}

/** Direct client for setting up data (the product code never writes to Redis). */
async function writer(handle: RedisHandle): Promise<Redis> {
  const redis = new Redis({
    host: handle.host,
    port: handle.port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
  });
  await redis.connect();
  return redis;
}

describe('redis check', () => {
  it('reports version, memory without limit, PING latency and persistence on the shared Redis', async () => {
    const result = only(await runRedis(config(services().redis, { pings: 15 })));
    expect(result.status).toBe('ok');
    expect(result.values).toMatchObject({
      maxmemoryBytes: 0,
      memoryPercent: null,
      rdbLastBgsaveStatus: 'ok',
      aofEnabled: false,
      restartedSinceLastCheck: false,
      latency: { count: 15, requested: 15, truncated: false },
    });
    expect(result.summary).toMatch(
      /^Redis \d+\.\d+\.\d+ up \S+: [\d.]+ [KM]iB used \(no maxmemory limit\), frag [\d.]+, PING p50 [\d.]+ ms p99 [\d.]+ ms max [\d.]+ ms \(15\), RDB ok, AOF off$/,
    );
    expect(JSON.stringify(result)).not.toContain(services().redis.password);
  });

  it('warns above 80 % of maxmemory and fails above 95 %', async () => {
    const redis = await privateRedis({ maxmemory: '4mb' });
    const client = await writer(redis);
    try {
      const percent = async (): Promise<number> => {
        const info = await client.info('memory');
        const used = Number(/used_memory:(\d+)/.exec(info)?.[1]);
        return (used / (4 * 1024 * 1024)) * 100;
      };
      const fillTo = async (target: number): Promise<void> => {
        for (let i = 0; (await percent()) < target; i++)
          await client.set(`fill:${target}:${i}`, 'x'.repeat(16 * 1024));
      };
      await fillTo(82);
      let result = only(await runRedis(config(redis)));
      expect(result.status).toBe('warn');
      expect(result.values['memoryPercent']).toBeGreaterThanOrEqual(80);
      expect(result.findings).toContainEqual(
        expect.objectContaining({ subject: 'memory', status: 'warn', threshold: 80 }),
      );
      expect(result.summary).toMatch(/of 4\.0 MiB \(8\d(\.\d)? %\)/);

      await fillTo(96);
      result = only(await runRedis(config(redis)));
      expect(result.status).toBe('fail');
      expect(result.findings).toContainEqual(
        expect.objectContaining({ subject: 'memory', status: 'fail', threshold: 95 }),
      );
    } finally {
      client.disconnect();
    }
  });

  it('flags a restart since the last check (a real restart on the same port)', async () => {
    const first = await privateRedis();
    const before = await runRedis(config(first));
    expect(only(before).status).toBe('ok');
    await first.stop();
    const second = await privateRedis({ port: first.port });
    const after = only(await runRedis(config(second), before));
    expect(after.status).toBe('warn');
    expect(after.values['restartedSinceLastCheck']).toBe(true);
    expect(after.findings).toContainEqual(
      expect.objectContaining({
        subject: 'server',
        status: 'warn',
        message: 'restarted since last check (run_id changed)',
      }),
    );
    expect(after.summary).toContain('(restarted since last check)');

    const again = only(await runRedis(config(second), await runRedis(config(second))));
    expect(again.values['restartedSinceLastCheck']).toBe(false);
  });

  it('flags a restart from uptime when the previous result has no run_id', async () => {
    const clock = new ManualClock(Date.now());
    const cfg = config(services().redis);
    const base = await runRedis(cfg, undefined, clock);
    const uptime = only(base).values['uptimeSeconds'] as number;
    // Recorded an hour ago by an older gameops (no run_id), when the server had been up a day longer.
    const previous: CheckRun = {
      ...base,
      startedAt: new Date(clock.now().getTime() - 3_600_000).toISOString(),
      results: [
        { ...only(base), values: { ...only(base).values, runId: undefined, uptimeSeconds: uptime + 86_400 } },
      ],
    };
    const result = only(await runRedis(cfg, previous, clock));
    expect(result.values['restartedSinceLastCheck']).toBe(true);
    expect(result.findings[0]?.message).toMatch(
      /^restarted since last check \(uptime \d+ s, expected about \d+ s\)$/,
    );
  });

  it('an unchanged run_id is the same server, whatever the uptime arithmetic says', async () => {
    const clock = new ManualClock(Date.now());
    const cfg = config(services().redis);
    const base = only(await runRedis(cfg, undefined, clock));
    // Recorded "an hour ago" with the uptime of now: the arithmetic alone would call that a restart.
    const previous: CheckRun = {
      id: 'previous',
      kind: 'daily',
      service: 'test-game',
      environment: 'test',
      trigger: 'schedule',
      status: base.status,
      startedAt: new Date(clock.now().getTime() - 3_600_000).toISOString(),
      finishedAt: new Date(clock.now().getTime() - 3_600_000).toISOString(),
      durationMs: 1,
      results: [base],
    };
    const result = only(await runRedis(cfg, previous, clock));
    expect(result.values['runId']).toBe(base.values['runId']);
    expect(result.values['restartedSinceLastCheck']).toBe(false);
    expect(result.findings.some((f) => f.subject === 'server')).toBe(false);
  });

  it('judges PING latency on the median and reports p99 and max', async () => {
    const result = only(
      await runRedis(config(services().redis, { latencyWarnMs: 0.000_001, latencyFailMs: 1_000 })),
    );
    expect(result.status).toBe('warn');
    const latency = result.values['latency'] as { p50Ms: number; p99Ms: number; maxMs: number };
    expect(result.findings).toContainEqual({
      status: 'warn',
      subject: 'latency',
      message: `PING p50 ${latency.p50Ms} ms (p99 ${latency.p99Ms} ms, max ${latency.maxMs} ms, 20 PINGs)`,
      value: latency.p50Ms,
      threshold: 0.000_001,
    });
  });

  it('fails when the last RDB background save failed', async () => {
    const redis = await privateRedis({ extraConfig: ['enable-protected-configs yes'] });
    const client = await writer(redis);
    const gone = await mkdtemp(join(tmpdir(), 'gameops-rdb-'));
    try {
      await client.set('k', 'v');
      await client.config('SET', 'dir', gone);
      await rm(gone, { recursive: true });
      await client.bgsave();
      for (let i = 0; i < 100 && /rdb_bgsave_in_progress:1/.test(await client.info('persistence')); i++)
        await new Promise((resolve) => setTimeout(resolve, 50));
      const result = only(await runRedis(config(redis)));
      expect(result.status).toBe('fail');
      expect(result.values['rdbLastBgsaveStatus']).toBe('err');
      expect(result.findings).toContainEqual(
        expect.objectContaining({ subject: 'rdb', status: 'fail', value: 'err' }),
      );
      expect(result.summary).toContain('RDB err');
    } finally {
      client.disconnect();
    }
  });
});
