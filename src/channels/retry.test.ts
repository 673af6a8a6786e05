import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { discordRetryAfter, parseRetryAfter, RETRY_AFTER_CAP_MS, retryDelayMs } from './index.ts';

const policy = fc
  .tuple(fc.integer({ min: 0, max: 10 * 60_000 }), fc.integer({ min: 0, max: 60 * 60_000 }))
  .map(([firstMs, maxMs]) => ({ firstMs, maxMs }));
const failures = fc.integer({ min: 1, max: 100 });
const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

describe('retryDelayMs', () => {
  it('is never below what the peer asked for (up to the cap), nor below the first delay', () => {
    fc.assert(
      fc.property(
        failures,
        policy,
        fc.integer({ min: 1, max: 3 * RETRY_AFTER_CAP_MS }),
        unit,
        (n, p, after, r) => {
          const delay = retryDelayMs(n, p, after, () => r);
          expect(delay).toBeGreaterThanOrEqual(Math.min(after, RETRY_AFTER_CAP_MS));
          expect(delay).toBeGreaterThanOrEqual(Math.min(p.firstMs, p.maxMs));
        },
      ),
    );
  });

  it('is never above maxMs unless Retry-After says more, and never above the cap then', () => {
    fc.assert(
      fc.property(
        failures,
        policy,
        fc.option(fc.integer({ min: 0, max: 3 * RETRY_AFTER_CAP_MS })),
        unit,
        (n, p, after, r) => {
          const delay = retryDelayMs(n, p, after ?? undefined, () => r);
          if (after === null || after <= p.maxMs) expect(delay).toBeLessThanOrEqual(p.maxMs);
          expect(delay).toBeLessThanOrEqual(Math.max(p.maxMs, RETRY_AFTER_CAP_MS));
        },
      ),
    );
  });

  it('grows with failures (for the same jitter) until it reaches maxMs', () => {
    fc.assert(
      fc.property(failures, policy, unit, (n, p, r) => {
        const now = retryDelayMs(n, p, undefined, () => r);
        const next = retryDelayMs(n + 1, p, undefined, () => r);
        expect(next).toBeGreaterThanOrEqual(now);
      }),
    );
    // The ceiling doubles: at the top of the jitter range 30 s, 60 s, 120 s … up to 10 min.
    const top = (n: number): number =>
      retryDelayMs(n, { firstMs: 30_000, maxMs: 600_000 }, undefined, () => 1);
    expect([1, 2, 3, 4, 5, 6, 7].map(top)).toEqual([
      30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000,
    ]);
  });

  it('spreads retries between the first delay and the ceiling (jitter)', () => {
    const p = { firstMs: 1000, maxMs: 60_000 };
    expect(retryDelayMs(4, p, undefined, () => 0)).toBe(1000);
    expect(retryDelayMs(4, p, undefined, () => 0.5)).toBe(4500);
    expect(retryDelayMs(1, p, undefined, () => 0.9)).toBe(1000);
    expect(retryDelayMs(3, p, 30_000, () => 0)).toBe(30_000);
  });

  it('refuses a policy that is not two non-negative numbers, naming the field', () => {
    expect(() => retryDelayMs(1, { firstMs: -1, maxMs: 10 })).toThrow(/firstMs: -1/);
    expect(() => retryDelayMs(1, { firstMs: 1, maxMs: Number.NaN })).toThrow(/maxMs: NaN/);
  });

  it('is a number for any failure count, a first delay of 0 and an unusable random value', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          failures,
          fc.integer({ min: 1000, max: Number.MAX_SAFE_INTEGER }),
          fc.constantFrom(Number.MAX_VALUE, Infinity, -Infinity, Number.NaN),
        ),
        policy,
        fc.oneof(unit, fc.constantFrom(Number.NaN, Infinity, -1, 2)),
        (n, p, r) => {
          const delay = retryDelayMs(n, p, undefined, () => r);
          expect(Number.isFinite(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(Math.min(p.firstMs, p.maxMs));
          expect(delay).toBeLessThanOrEqual(p.maxMs);
        },
      ),
    );
    expect(retryDelayMs(2000, { firstMs: 0, maxMs: 60_000 }, undefined, () => 0.9)).toBe(0);
    expect(retryDelayMs(2000, { firstMs: 1000, maxMs: 60_000 }, undefined, () => 0.5)).toBe(30_500);
    expect(retryDelayMs(3, { firstMs: 1000, maxMs: 60_000 }, undefined, () => Number.NaN)).toBe(1000);
  });
});

describe('Retry-After', () => {
  const now = Date.parse('2026-03-01T12:00:00Z');

  it.each([
    ['120', 120_000],
    ['0', 0],
    ['1.5', 1500],
    [' 7 ', 7000],
    ['Sun, 01 Mar 2026 12:02:30 GMT', 150_000],
    ['Sun, 01 Mar 2026 11:00:00 GMT', 0],
    ['999999', RETRY_AFTER_CAP_MS],
    ['Mon, 02 Mar 2026 12:00:00 GMT', RETRY_AFTER_CAP_MS],
    ['soon', undefined],
    ['-5', undefined],
    ['', undefined],
    [undefined, undefined],
  ])('%j → %j ms', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });

  it("reads Discord's retry_after (seconds) from a JSON body", () => {
    expect(
      discordRetryAfter('{"message":"You are being rate limited.","retry_after":0.64,"global":false}'),
    ).toBe(640);
    expect(discordRetryAfter('{"retry_after":"x"}')).toBeUndefined();
    expect(discordRetryAfter('<html>')).toBeUndefined();
    expect(discordRetryAfter('{"retry_after":1e9}')).toBe(RETRY_AFTER_CAP_MS);
  });
});
