import { connectRedis, redisTarget, type RedisClient } from '../connectors/index.ts';
import { formatDuration } from '../core/index.ts';
import { previousNumber, previousString } from './previous.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import {
  formatBytes,
  fragmentationLevel,
  latencyLevel,
  latencySummary,
  levelFor,
  percentOf,
  restartedSince,
} from './thresholds.ts';
import type { Check, CheckContext, CheckResult, Finding } from './types.ts';

type Outcome = Omit<CheckResult, 'name' | 'durationMs'>;

/**
 * Runbook §1.1 step 3: Redis is reachable; restarts since the last check; memory against maxmemory and
 * fragmentation; latency from a bounded PING sample (never `redis-cli --latency`, which never ends);
 * persistence health (a failed last bgsave or AOF write fails the check).
 */
export const redisCheck: Check = {
  name: 'redis',
  configured: (config) => config.redis !== undefined,
  target: (config) => (config.redis ? `Redis at ${redisTarget(config.redis)}` : 'Redis'),
  async run(ctx) {
    const redis = ctx.config.redis;
    if (!redis) return { status: CheckStatus.skipped, summary: 'not configured', values: {}, findings: [] };
    const timeout = ctx.config.checks.timeout;
    // The server keeps its connection between checks (see KeptConnections).
    const kept = ctx.kept?.take('redis', redis, timeout);
    if (kept) {
      try {
        const outcome = await measure(kept, ctx);
        await ctx.kept?.keep('redis', redis, timeout, kept);
        return outcome;
      } catch (err) {
        // Dropped at once, without waiting for a polite QUIT (close() never throws).
        void kept.close();
        // The check's deadline or the caller's abort: no time is left to try again.
        if (ctx.signal.aborted) throw err;
        // It may have died while idle, unnoticed (server restarted, `timeout`, CLIENT KILL, network): once
        // more on a new connection, which reports whatever is wrong the way a first connection would.
      }
    }
    const client = await connectRedis(redis, {
      signal: ctx.signal,
      connectTimeoutMs: timeout,
      commandTimeoutMs: timeout,
    });
    let outcome: Outcome;
    try {
      outcome = await measure(client, ctx);
    } catch (err) {
      await client.close();
      throw err;
    }
    if (ctx.kept) await ctx.kept.keep('redis', redis, timeout, client);
    else await client.close();
    return outcome;
  },
};

async function measure(client: RedisClient, ctx: CheckContext): Promise<Outcome> {
  const t = ctx.config.checks.thresholds.redis;
  const info = await client.info({ signal: ctx.signal });
  // A quarter of the check's deadline, at most a second: enough for the default 20 PINGs on any sane link.
  const budgetMs = Math.max(50, Math.min(1000, ctx.config.checks.timeout / 4));
  const sample = await client.latency({ count: t.pings, budgetMs, signal: ctx.signal });
  const findings: Finding[] = [];
  const { server, memory, persistence } = info;

  const elapsedSeconds = ctx.previousAt
    ? (ctx.clock.now().getTime() - ctx.previousAt.getTime()) / 1000
    : undefined;
  const restart = restartedSince({
    uptimeSeconds: server.uptimeSeconds,
    runId: server.runId,
    previousUptimeSeconds: previousNumber(ctx.previous, 'uptimeSeconds'),
    previousRunId: previousString(ctx.previous, 'runId'),
    elapsedSeconds,
  });
  if (restart.restarted)
    findings.push({
      status: CheckStatus.warn,
      subject: 'server',
      message: `restarted since last check (${restart.reason ?? 'uptime reset'})`,
      ...(server.uptimeSeconds === undefined ? {} : { value: server.uptimeSeconds }),
    });

  const used = memory.usedMemory;
  const max = memory.maxmemory;
  const memoryPercent = used !== undefined && max !== undefined && max > 0 ? percentOf(used, max) : undefined;
  if (memoryPercent !== undefined) {
    const level = levelFor(memoryPercent, t.memoryWarnPercent, t.memoryFailPercent);
    if (level !== CheckStatus.ok)
      findings.push({
        status: level,
        subject: 'memory',
        message: `${formatBytes(used ?? 0)} used of maxmemory ${formatBytes(max ?? 0)} (${memoryPercent} %, policy ${memory.maxmemoryPolicy ?? '?'})`,
        value: memoryPercent,
        threshold: level === CheckStatus.fail ? t.memoryFailPercent : t.memoryWarnPercent,
      });
  }
  const fragmentation = fragmentationLevel({
    ratio: memory.memFragmentationRatio,
    usedMemory: memory.usedMemory,
    usedMemoryRss: memory.usedMemoryRss,
    warnRatio: t.fragmentationWarn,
  });
  if (fragmentation !== CheckStatus.ok)
    findings.push({
      status: fragmentation,
      subject: 'fragmentation',
      message: `mem_fragmentation_ratio ${memory.memFragmentationRatio ?? '?'} (RSS ${formatBytes(memory.usedMemoryRss ?? 0)} for ${formatBytes(used ?? 0)} of data)`,
      ...(memory.memFragmentationRatio === undefined ? {} : { value: memory.memFragmentationRatio }),
      threshold: t.fragmentationWarn,
    });

  const latency = latencySummary(sample.samplesMs);
  if (!latency) {
    findings.push({
      status: CheckStatus.fail,
      subject: 'latency',
      message: `no PING answered within ${budgetMs} ms`,
      threshold: t.latencyFailMs,
    });
  } else {
    // The median is judged, p99 and max only reported: the sample shares the event loop with the other
    // checks (see latencyLevel).
    const level = latencyLevel(latency, t.latencyWarnMs, t.latencyFailMs);
    if (level !== CheckStatus.ok)
      findings.push({
        status: level,
        subject: 'latency',
        message: `PING p50 ${latency.p50Ms} ms (p99 ${latency.p99Ms} ms, max ${latency.maxMs} ms, ${latency.count} PINGs)`,
        value: latency.p50Ms,
        threshold: level === CheckStatus.fail ? t.latencyFailMs : t.latencyWarnMs,
      });
  }

  if (persistence.rdbLastBgsaveStatus !== undefined && persistence.rdbLastBgsaveStatus !== 'ok')
    findings.push({
      status: CheckStatus.fail,
      subject: 'rdb',
      message: `last RDB background save ${persistence.rdbLastBgsaveStatus}: writes may be refused (stop-writes-on-bgsave-error)`,
      value: persistence.rdbLastBgsaveStatus,
    });
  if (persistence.aofEnabled) {
    for (const [what, state] of [
      ['write', persistence.aofLastWriteStatus],
      ['rewrite', persistence.aofLastBgrewriteStatus],
    ] as const)
      if (state !== undefined && state !== 'ok')
        findings.push({
          status: CheckStatus.fail,
          subject: 'aof',
          message: `last AOF ${what} ${state}`,
          value: state,
        });
  }

  const values = {
    target: client.target,
    version: server.redisVersion,
    mode: server.mode ?? null,
    uptimeSeconds: server.uptimeSeconds ?? null,
    runId: server.runId ?? null,
    restartedSinceLastCheck: restart.restarted,
    connectedClients: info.clients.connectedClients ?? null,
    usedMemoryBytes: used ?? null,
    usedMemoryRssBytes: memory.usedMemoryRss ?? null,
    // 0 means no limit.
    maxmemoryBytes: max ?? null,
    maxmemoryPolicy: memory.maxmemoryPolicy ?? null,
    memoryPercent: memoryPercent ?? null,
    fragmentationRatio: memory.memFragmentationRatio ?? null,
    latency: latency
      ? { ...latency, requested: sample.requested, truncated: sample.truncated, budgetMs }
      : { count: 0, requested: sample.requested, truncated: true, budgetMs },
    rdbLastBgsaveStatus: persistence.rdbLastBgsaveStatus ?? null,
    rdbLastSaveTime:
      persistence.rdbLastSaveTime === undefined
        ? null
        : new Date(persistence.rdbLastSaveTime * 1000).toISOString(),
    rdbChangesSinceLastSave: persistence.rdbChangesSinceLastSave ?? null,
    aofEnabled: persistence.aofEnabled ?? null,
    aofLastWriteStatus: persistence.aofLastWriteStatus ?? null,
    aofLastBgrewriteStatus: persistence.aofLastBgrewriteStatus ?? null,
  };

  const memoryText =
    max === undefined || max === 0
      ? `${formatBytes(used ?? 0)} used (no maxmemory limit)`
      : `${formatBytes(used ?? 0)} of ${formatBytes(max)} (${memoryPercent ?? '?'} %)`;
  const latencyText = latency
    ? `PING p50 ${latency.p50Ms} ms p99 ${latency.p99Ms} ms max ${latency.maxMs} ms (${latency.count})`
    : 'no PING answered';
  const persistenceText = `RDB ${persistence.rdbLastBgsaveStatus ?? '?'}, AOF ${
    persistence.aofEnabled ? (persistence.aofLastWriteStatus ?? '?') : 'off'
  }`;
  const uptimeText =
    server.uptimeSeconds === undefined ? '' : ` up ${formatDuration(server.uptimeSeconds * 1000)}`;
  return {
    status: worstOf([CheckStatus.ok, ...findings.map((f) => f.status)]),
    summary: `Redis ${server.redisVersion}${uptimeText}${restart.restarted ? ' (restarted since last check)' : ''}: ${memoryText}, frag ${memory.memFragmentationRatio ?? '?'}, ${latencyText}, ${persistenceText}`,
    values,
    findings,
  };
}
