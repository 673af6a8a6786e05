/**
 * The pure arithmetic of the daily check: thresholds, counter deltas across restarts, percentiles, restart
 * detection. No IO and no clock: every input is a number passed in, so each rule is tested by tables.
 */
import { CheckStatus } from './statuses.ts';

/** The level of a measurement against two limits: `fail` at or above `fail`, `warn` at or above `warn`. */
export function levelFor(value: number, warn: number, fail: number): CheckStatus {
  if (!Number.isFinite(value)) return CheckStatus.ok;
  if (value >= fail) return CheckStatus.fail;
  if (value >= warn) return CheckStatus.warn;
  return CheckStatus.ok;
}

/** `part / whole` as a percentage with one decimal; undefined when `whole` is not positive. */
export function percentOf(part: number, whole: number): number | undefined {
  if (!(whole > 0) || !Number.isFinite(part)) return undefined;
  return Math.round((part / whole) * 1000) / 10;
}

export interface CounterDelta {
  /** Growth since the previous reading; undefined on the first reading (baseline). */
  delta: number | undefined;
  /** True when the server restarted since the previous reading (its counters started again from 0). */
  restarted: boolean;
  /** True when there was nothing to compare with. */
  baseline: boolean;
}

/**
 * Growth of a monotonic server counter (e.g. MySQL `Slow_queries`) since the previous reading. Counters reset
 * when the server restarts, which shows as uptime going down (or the counter going down): then everything
 * counted since the restart, i.e. the current value, is new.
 */
export function counterDelta(reading: {
  current: number;
  uptime: number | undefined;
  previous: number | undefined;
  previousUptime: number | undefined;
}): CounterDelta {
  const { current, uptime, previous, previousUptime } = reading;
  if (previous === undefined || !Number.isFinite(previous))
    return { delta: undefined, restarted: false, baseline: true };
  const restarted =
    (uptime !== undefined && previousUptime !== undefined && uptime < previousUptime) || current < previous;
  return { delta: restarted ? current : current - previous, restarted, baseline: false };
}

/**
 * Whether a server restarted between two readings: its run id changed, or its uptime is smaller than the
 * previous uptime plus the time that passed (minus a tolerance for clock skew and whole-second uptimes).
 * Without `elapsedSeconds` only a decrease in uptime counts.
 */
export function restartedSince(reading: {
  uptimeSeconds: number | undefined;
  runId: string | undefined;
  previousUptimeSeconds: number | undefined;
  previousRunId: string | undefined;
  elapsedSeconds: number | undefined;
}): { restarted: boolean; reason: string | undefined } {
  const { uptimeSeconds, runId, previousUptimeSeconds, previousRunId, elapsedSeconds } = reading;
  if (runId !== undefined && previousRunId !== undefined && runId !== previousRunId)
    return { restarted: true, reason: 'run_id changed' };
  if (uptimeSeconds === undefined || previousUptimeSeconds === undefined)
    return { restarted: false, reason: undefined };
  const elapsed = elapsedSeconds !== undefined && elapsedSeconds > 0 ? elapsedSeconds : 0;
  const tolerance = Math.max(5, elapsed * 0.01);
  const expected = previousUptimeSeconds + elapsed;
  if (uptimeSeconds < expected - tolerance)
    return {
      restarted: true,
      reason: `uptime ${uptimeSeconds} s, expected about ${Math.round(expected)} s`,
    };
  return { restarted: false, reason: undefined };
}

/**
 * The `p`-th percentile (0-100) by nearest rank: the smallest sample with at least p % of the samples at or
 * below it. Undefined for no samples. Nearest rank never invents a value that was not measured.
 */
export function percentile(samples: readonly number[], p: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const clamped = Math.min(100, Math.max(0, p));
  const rank = Math.max(1, Math.ceil((clamped / 100) * sorted.length));
  return sorted[rank - 1];
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** p50/p99/max of round-trip times, rounded to microseconds; undefined for no samples. */
export function latencySummary(samplesMs: readonly number[]): LatencySummary | undefined {
  if (samplesMs.length === 0) return undefined;
  const round = (ms: number | undefined): number => Math.round((ms ?? 0) * 1000) / 1000;
  return {
    count: samplesMs.length,
    p50Ms: round(percentile(samplesMs, 50)),
    p99Ms: round(percentile(samplesMs, 99)),
    maxMs: round(Math.max(...samplesMs)),
  };
}

/**
 * Redis memory fragmentation worth a warning: the ratio crosses `warnRatio` AND the wasted bytes (RSS minus
 * data) are at least `minWastedBytes`, by default 100 MiB, Redis's own `active-defrag-ignore-bytes`. A small
 * Redis always shows a high ratio (the process's own ~10 MiB of RSS over a few MiB of data) with nothing to
 * reclaim.
 */
export function fragmentationLevel(reading: {
  ratio: number | undefined;
  usedMemory: number | undefined;
  usedMemoryRss: number | undefined;
  warnRatio: number;
  minWastedBytes?: number;
}): CheckStatus {
  const { ratio, usedMemory, usedMemoryRss, warnRatio } = reading;
  if (ratio === undefined || ratio < warnRatio) return CheckStatus.ok;
  if (usedMemory === undefined || usedMemoryRss === undefined) return CheckStatus.warn;
  return usedMemoryRss - usedMemory >= (reading.minWastedBytes ?? 100 * 1024 * 1024)
    ? CheckStatus.warn
    : CheckStatus.ok;
}

/** Bytes in binary units for summaries: `512 B`, `3.4 KiB`, `79 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** A statement shortened for display: whitespace collapsed, credentials redacted, the first `max` characters (then `…`). */
export function shortStatement(sql: string, max = 100): string {
  const flat = sql
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/(IDENTIFIED\s+(?:WITH\s+\S+\s+)?(?:BY|AS)\s+)('[^']*'|"[^"]*")/gi, "$1'***'")
    .replace(/(PASSWORD\s*\(\s*)('[^']*'|"[^"]*")/gi, "$1'***'")
    .replace(/(PASSWORD\s*=\s*)('[^']*'|"[^"]*")/gi, "$1'***'");
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
