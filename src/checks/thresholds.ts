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
 * when the server restarts; then everything counted since the restart, i.e. the current value, is new. A
 * restart shows as the uptime being clearly less than the previous uptime plus the time that passed (see
 * {@link uptimeRestarted}; the same rule as for Redis), or as the counter going down (FLUSH STATUS).
 */
export function counterDelta(reading: {
  current: number;
  uptime: number | undefined;
  previous: number | undefined;
  previousUptime: number | undefined;
  /** Seconds between the previous reading and this one; without it only a decrease in uptime counts. */
  elapsedSeconds?: number | undefined;
}): CounterDelta {
  const { current, uptime, previous, previousUptime, elapsedSeconds } = reading;
  if (previous === undefined || !Number.isFinite(previous))
    return { delta: undefined, restarted: false, baseline: true };
  const restarted = uptimeRestarted(uptime, previousUptime, elapsedSeconds).restarted || current < previous;
  return { delta: restarted ? current : current - previous, restarted, baseline: false };
}

/**
 * Whether a server's uptime says it started again between two readings: the uptime is smaller than the
 * previous uptime plus the time that passed, minus a tolerance for whole-second uptimes and clock skew between
 * the checking host and the server (5 s, or 1 % of the elapsed time over long gaps). A negative or unknown
 * elapsed time (the clock went backwards) counts as 0, so only a decrease in uptime counts then. Unknown
 * uptimes decide nothing.
 */
export function uptimeRestarted(
  uptimeSeconds: number | undefined,
  previousUptimeSeconds: number | undefined,
  elapsedSeconds: number | undefined,
): { restarted: boolean; expected: number | undefined } {
  if (
    uptimeSeconds === undefined ||
    previousUptimeSeconds === undefined ||
    !Number.isFinite(uptimeSeconds) ||
    !Number.isFinite(previousUptimeSeconds)
  )
    return { restarted: false, expected: undefined };
  const elapsed =
    elapsedSeconds !== undefined && Number.isFinite(elapsedSeconds) && elapsedSeconds > 0
      ? elapsedSeconds
      : 0;
  const tolerance = Math.max(5, elapsed * 0.01);
  const expected = previousUptimeSeconds + elapsed;
  return { restarted: uptimeSeconds < expected - tolerance, expected };
}

/**
 * Whether a Redis server restarted between two readings. When both readings carry a `run_id` it decides
 * alone: Redis draws a new one on every start, so an unchanged run_id is the same process whatever the uptime
 * arithmetic says (a slow INFO, clock skew). Only when a run_id is missing (a result recorded by an older
 * gameops) does the uptime decide, as in {@link uptimeRestarted}.
 */
export function restartedSince(reading: {
  uptimeSeconds: number | undefined;
  runId: string | undefined;
  previousUptimeSeconds: number | undefined;
  previousRunId: string | undefined;
  elapsedSeconds: number | undefined;
}): { restarted: boolean; reason: string | undefined } {
  const { uptimeSeconds, runId, previousUptimeSeconds, previousRunId, elapsedSeconds } = reading;
  if (runId !== undefined && previousRunId !== undefined)
    return runId === previousRunId
      ? { restarted: false, reason: undefined }
      : { restarted: true, reason: 'run_id changed' };
  const { restarted, expected } = uptimeRestarted(uptimeSeconds, previousUptimeSeconds, elapsedSeconds);
  if (restarted)
    return {
      restarted: true,
      reason: `uptime ${uptimeSeconds} s, expected about ${Math.round(expected ?? 0)} s`,
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
 * The level of a PING sample: its median (p50) against the limits; p99 and max are reported, not judged.
 *
 * The sample is a few dozen PINGs timed on the checker's own event loop, which the other checks share: while
 * the alerts check parses the JSON of thousands of alerts (or the garbage collector runs), a PING answered in
 * 0.2 ms is read several milliseconds later. Those delays hit a few samples, and the p99 of 20 samples is
 * simply their maximum, so judging p99 warns about gameops, not about Redis. The median shrugs off up to half
 * the samples being delayed by the checker, yet moves as soon as Redis itself is slow for most of the sample.
 * (Discarding samples taken while the loop was blocked, e.g. with `monitorEventLoopDelay`, cannot be done per
 * PING: that histogram samples at a 10 ms resolution by default and is not attributable to one round trip.)
 */
export function latencyLevel(summary: LatencySummary, warnMs: number, failMs: number): CheckStatus {
  return levelFor(summary.p50Ms, warnMs, failMs);
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

/** Words that put credentials in a statement's literals: IDENTIFIED BY, PASSWORD(), MASTER_PASSWORD=, OPTIONS (PASSWORD …). */
const CREDENTIAL_WORDS = /PASSWORD|IDENTIFIED/i;

/**
 * A statement shortened for display: credentials redacted, whitespace collapsed, the first `max` characters
 * (then `…`).
 *
 * A statement that mentions PASSWORD or IDENTIFIED anywhere has every quoted literal replaced by `'***'`,
 * user names and hosts included: `'…'` and `"…"` with doubled quotes and backslash escapes, and `` `…` ``
 * with doubled backticks. Matching the quoting rules is what keeps `'it''s-secret'` from ending early and
 * leaking the end of the password. A literal that never ends (the server cuts `INFO` at a length), or holds
 * a backslash-quote (whose meaning depends on the SQL mode), takes the rest of the statement with it.
 */
export function shortStatement(sql: string, max = 100): string {
  const redacted = CREDENTIAL_WORDS.test(sql) ? redactLiterals(sql) : sql;
  const flat = redacted.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/**
 * Every quoted literal or identifier in `sql` replaced by `'***'`. A literal that does not end, or whose end
 * depends on the server's SQL mode, takes the rest of the text with it: `\'` inside quotes is an escaped quote
 * by default but ends the literal under NO_BACKSLASH_ESCAPES (and in ANSI_QUOTES identifiers), so reading it
 * either way could put a later literal, the password, outside the quotes.
 */
function redactLiterals(sql: string): string {
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < sql.length; i++) {
    const quote = sql[i];
    if (quote !== "'" && quote !== '"' && quote !== '`') continue;
    parts.push(sql.slice(from, i), "'***'");
    const end = literalEnd(sql, i);
    if (end === undefined) return parts.join('');
    i = end;
    from = end + 1;
  }
  parts.push(sql.slice(from));
  return parts.join('');
}

/** The index of the quote closing the literal opened at `start`; undefined when it does not end for sure. */
function literalEnd(sql: string, start: number): number | undefined {
  const quote = sql[start];
  for (let j = start + 1; j < sql.length; j++) {
    const c = sql[j];
    if (c === '\\' && quote !== '`') {
      if (sql[j + 1] === quote) return undefined;
      j++; // \\, \n, ...: two characters of the literal whatever the mode.
      continue;
    }
    if (c !== quote) continue;
    if (sql[j + 1] !== quote) return j;
    j++; // A doubled quote is one quote character of the literal.
  }
  return undefined;
}
