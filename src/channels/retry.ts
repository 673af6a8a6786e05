/**
 * When to try a channel again: exponential backoff with jitter, and what the peer asked for (`Retry-After`,
 * Discord's `retry_after`). Pure functions; the time is always an argument.
 */
import { InputError } from '../core/index.ts';

/**
 * The longest wait gameops honours from a peer's Retry-After (1 hour). A receiver asking for more (or a
 * misconfigured proxy answering `Retry-After: 86400`) would otherwise park a page for a day; past this
 * cap the page is better off moving to the next channel, which the retry budget does on its own.
 */
export const RETRY_AFTER_CAP_MS = 60 * 60 * 1000;

/** The largest exponent of the backoff: 2^60 ms is millions of years, beyond any policy's maxMs. */
const MAX_EXPONENT = 60;

/**
 * The delay before the next attempt after `failures` failed ones (1 = the first attempt failed): a
 * random point between `firstMs` and `firstMs * 2^(failures-1)` (the latter capped at `maxMs`), so
 * the ceiling grows with every failure and several gameops instances retrying the same receiver
 * spread out ("full jitter" above a floor of `firstMs`: a retry never comes sooner than the policy's first
 * delay). When the peer said when to come back (`retryAfterMs`), the delay is at least that, even above
 * `maxMs`, but never above {@link RETRY_AFTER_CAP_MS} (or `maxMs` when that is larger).
 *
 * For a fixed `random()` value the result never decreases as `failures` grows.
 * @param random a number in [0, 1) (anything else counts as 0); @default Math.random
 * @throws InputError when the policy is not two finite non-negative numbers (the result is then never NaN)
 */
export function retryDelayMs(
  failures: number,
  policy: { firstMs: number; maxMs: number },
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const { firstMs, maxMs } = policy;
  if (!Number.isFinite(firstMs) || firstMs < 0)
    throw new InputError(`retry policy firstMs: ${firstMs} is not a non-negative number of ms`);
  if (!Number.isFinite(maxMs) || maxMs < 0)
    throw new InputError(`retry policy maxMs: ${maxMs} is not a non-negative number of ms`);
  const floor = Math.min(firstMs, maxMs);
  const n = Number.isFinite(failures) ? Math.max(1, Math.floor(failures)) : 1;
  // The exponent is capped: 2^(n-1) would overflow to Infinity for huge n, and 0 × Infinity is NaN when
  // firstMs is 0. 2^60 ms is far beyond any maxMs, so the cap changes no real delay.
  const ceiling = Math.min(maxMs, floor * 2 ** Math.min(n - 1, MAX_EXPONENT));
  const drawn = random();
  const r = Number.isFinite(drawn) ? Math.min(Math.max(drawn, 0), 1) : 0;
  const backoff = Math.round(floor + r * (ceiling - floor));
  const delay =
    retryAfterMs === undefined || !Number.isFinite(retryAfterMs) || retryAfterMs <= 0
      ? backoff
      : Math.max(backoff, Math.ceil(Math.min(retryAfterMs, Math.max(RETRY_AFTER_CAP_MS, maxMs))));
  if (!Number.isFinite(delay) || delay < 0)
    throw new InputError(
      `retry delay for ${failures} failures with firstMs ${firstMs}, maxMs ${maxMs} is not a number of ms`,
    );
  return delay;
}

/**
 * A `Retry-After` header value (delay in seconds, or an HTTP-date) as milliseconds from `nowMs`, capped at
 * {@link RETRY_AFTER_CAP_MS}; undefined when absent or unreadable. A date in the past is 0.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.min(Math.ceil(Number(text) * 1000), RETRY_AFTER_CAP_MS);
  // HTTP-date (IMF-fixdate, also the obsolete RFC 850 and asctime forms Date.parse reads); never a bare number.
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, at - nowMs), RETRY_AFTER_CAP_MS);
}

/** Discord's rate-limit answer (`{"retry_after": 1.5, …}`, seconds) as milliseconds, capped; else undefined. */
export function discordRetryAfter(body: string): number | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const value = (parsed as { retry_after?: unknown }).retry_after;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) return undefined;
  return Math.min(Math.ceil(value * 1000), RETRY_AFTER_CAP_MS);
}
