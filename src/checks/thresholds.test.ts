import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CheckStatus } from './statuses.ts';
import {
  counterDelta,
  formatBytes,
  fragmentationLevel,
  latencySummary,
  levelFor,
  percentOf,
  percentile,
  restartedSince,
  shortStatement,
} from './thresholds.ts';

const RANK: Record<CheckStatus, number> = { skipped: 0, ok: 1, warn: 2, fail: 3, error: 4 };

describe('levelFor', () => {
  it.each([
    [0, 80, 90, 'ok'],
    [79.9, 80, 90, 'ok'],
    [80, 80, 90, 'warn'],
    [89.99, 80, 90, 'warn'],
    [90, 80, 90, 'fail'],
    [100, 80, 90, 'fail'],
    [150, 80, 90, 'fail'],
    [85, 90, 90, 'ok'],
    [90, 90, 90, 'fail'],
    [1, 1, 5, 'warn'],
    [0, 1, 5, 'ok'],
    [5, 1, 5, 'fail'],
    [Number.NaN, 80, 90, 'ok'],
  ] as const)('%d with warn %d / fail %d is %s', (value, warn, fail, expected) => {
    expect(levelFor(value, warn, fail)).toBe(expected);
  });

  it('is monotonic in the measured value (more usage is never a better status)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 200, noNaN: true }),
        fc.double({ min: 0, max: 200, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (a, b, x, y) => {
          const [warn, fail] = x <= y ? [x, y] : [y, x];
          const [low, high] = a <= b ? [a, b] : [b, a];
          expect(RANK[levelFor(low, warn, fail)]).toBeLessThanOrEqual(RANK[levelFor(high, warn, fail)]);
        },
      ),
    );
  });

  it('is ok below the warning threshold and fail from the fail threshold on', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (x, y, f) => {
          const [warn, fail] = x <= y ? [x, y] : [y, x];
          if (warn * f < warn) expect(levelFor(warn * f, warn, fail)).toBe('ok');
          expect(levelFor(fail + f, warn, fail)).toBe('fail');
        },
      ),
    );
  });
});

describe('percentOf', () => {
  it.each([
    [0, 100, 0],
    [12, 151, 7.9],
    [121, 151, 80.1],
    [1, 3, 33.3],
    [2, 3, 66.7],
    [5, 0, undefined],
    [5, -1, undefined],
    [150, 100, 150],
  ] as const)('%d of %d is %s %', (part, whole, expected) => {
    expect(percentOf(part, whole)).toBe(expected);
  });
});

describe('counterDelta (Slow_queries since the last check)', () => {
  it.each([
    {
      name: 'first reading is a baseline',
      input: { current: 42, uptime: 1000, previous: undefined, previousUptime: undefined },
      expected: { delta: undefined, restarted: false, baseline: true },
    },
    {
      name: 'growth while up',
      input: { current: 50, uptime: 2000, previous: 42, previousUptime: 1000 },
      expected: { delta: 8, restarted: false, baseline: false },
    },
    {
      name: 'no growth',
      input: { current: 42, uptime: 2000, previous: 42, previousUptime: 1000 },
      expected: { delta: 0, restarted: false, baseline: false },
    },
    {
      name: 'uptime went down: restarted, everything counted since is new',
      input: { current: 3, uptime: 60, previous: 42, previousUptime: 1000 },
      expected: { delta: 3, restarted: true, baseline: false },
    },
    {
      name: 'restarted and already counted more than before',
      input: { current: 100, uptime: 60, previous: 42, previousUptime: 86_400 },
      expected: { delta: 100, restarted: true, baseline: false },
    },
    {
      name: 'counter went down without uptime (FLUSH STATUS or unknown uptime)',
      input: { current: 2, uptime: undefined, previous: 42, previousUptime: undefined },
      expected: { delta: 2, restarted: true, baseline: false },
    },
    {
      name: 'previous uptime unknown, counter grew',
      input: { current: 45, uptime: 100, previous: 42, previousUptime: undefined },
      expected: { delta: 3, restarted: false, baseline: false },
    },
  ])('$name', ({ input, expected }) => {
    expect(counterDelta(input)).toEqual(expected);
  });

  it('never reports a negative delta', () => {
    fc.assert(
      fc.property(
        fc.nat(),
        fc.option(fc.nat(), { nil: undefined }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.option(fc.nat(), { nil: undefined }),
        (current, uptime, previous, previousUptime) => {
          const { delta } = counterDelta({ current, uptime, previous, previousUptime });
          if (delta !== undefined) expect(delta).toBeGreaterThanOrEqual(0);
        },
      ),
    );
  });
});

describe('restartedSince (Redis)', () => {
  const base = { runId: 'a', previousRunId: 'a' };
  it.each([
    {
      name: 'no previous reading',
      input: {
        uptimeSeconds: 10,
        runId: 'a',
        previousUptimeSeconds: undefined,
        previousRunId: undefined,
        elapsedSeconds: undefined,
      },
      restarted: false,
    },
    {
      name: 'run_id changed',
      input: {
        uptimeSeconds: 999_999,
        runId: 'b',
        previousUptimeSeconds: 10,
        previousRunId: 'a',
        elapsedSeconds: 60,
      },
      restarted: true,
    },
    {
      name: 'uptime grew by the elapsed time',
      input: { ...base, uptimeSeconds: 3_700, previousUptimeSeconds: 100, elapsedSeconds: 3_600 },
      restarted: false,
    },
    {
      name: 'uptime grew a little less (whole seconds, skew)',
      input: { ...base, uptimeSeconds: 3_697, previousUptimeSeconds: 100, elapsedSeconds: 3_600 },
      restarted: false,
    },
    {
      name: 'uptime smaller than previous + elapsed',
      input: { ...base, uptimeSeconds: 600, previousUptimeSeconds: 100, elapsedSeconds: 3_600 },
      restarted: true,
    },
    {
      name: 'uptime went down, elapsed unknown',
      input: { ...base, uptimeSeconds: 5, previousUptimeSeconds: 100, elapsedSeconds: undefined },
      restarted: true,
    },
    {
      name: 'uptime same, elapsed unknown',
      input: { ...base, uptimeSeconds: 100, previousUptimeSeconds: 100, elapsedSeconds: undefined },
      restarted: false,
    },
    {
      name: 'a day later, 1 % tolerance',
      input: { ...base, uptimeSeconds: 86_000, previousUptimeSeconds: 0, elapsedSeconds: 86_400 },
      restarted: false,
    },
    {
      name: 'clock went backwards: elapsed treated as 0',
      input: { ...base, uptimeSeconds: 100, previousUptimeSeconds: 100, elapsedSeconds: -30 },
      restarted: false,
    },
  ])('$name', ({ input, restarted }) => {
    expect(restartedSince(input).restarted).toBe(restarted);
  });
});

describe('percentile (nearest rank)', () => {
  it.each([
    [[], 50, undefined],
    [[7], 50, 7],
    [[7], 99, 7],
    [[1, 2, 3, 4], 50, 2],
    [[4, 3, 2, 1], 50, 2],
    [[1, 2, 3, 4, 5], 50, 3],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99, 10],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0, 1],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100, 10],
    [[0.2, 0.1, 5, 0.3], 99, 5],
  ] as const)('%j p%d is %s', (samples, p, expected) => {
    expect(percentile(samples, p)).toBe(expected);
  });

  it('is a measured sample, between min and max, and grows with p', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 200 }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (samples, p, q) => {
          const [lo, hi] = p <= q ? [p, q] : [q, p];
          const a = percentile(samples, lo)!;
          const b = percentile(samples, hi)!;
          expect(samples).toContain(a);
          expect(a).toBeGreaterThanOrEqual(Math.min(...samples));
          expect(b).toBeLessThanOrEqual(Math.max(...samples));
          expect(a).toBeLessThanOrEqual(b);
        },
      ),
    );
  });
});

describe('latencySummary', () => {
  it('gives p50, p99 and max', () => {
    expect(latencySummary([0.1, 0.2, 0.3, 0.4, 10])).toEqual({ count: 5, p50Ms: 0.3, p99Ms: 10, maxMs: 10 });
  });
  it('is undefined without samples', () => {
    expect(latencySummary([])).toBeUndefined();
  });
});

describe('fragmentationLevel', () => {
  const MiB = 1024 * 1024;
  it.each([
    { name: 'below the ratio', ratio: 1.2, used: 500 * MiB, rss: 600 * MiB, expected: 'ok' },
    { name: 'high ratio, real waste', ratio: 2, used: 500 * MiB, rss: 1000 * MiB, expected: 'warn' },
    {
      name: 'high ratio on an almost empty Redis',
      ratio: 7.6,
      used: 1 * MiB,
      rss: 7.6 * MiB,
      expected: 'ok',
    },
    { name: 'ratio unknown', ratio: undefined, used: 1 * MiB, rss: 2 * MiB, expected: 'ok' },
    { name: 'high ratio, sizes unknown', ratio: 3, used: undefined, rss: undefined, expected: 'warn' },
  ])('$name → $expected', ({ ratio, used, rss, expected }) => {
    expect(fragmentationLevel({ ratio, usedMemory: used, usedMemoryRss: rss, warnRatio: 1.5 })).toBe(
      expected,
    );
  });
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [1536, '1.5 KiB'],
    [10 * 1024 * 1024, '10 MiB'],
    [84_639_547_392, '79 GiB'],
  ] as const)('%d → %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('shortStatement', () => {
  it.each([
    ['SELECT  SLEEP(30)\n  FROM dual', 'SELECT SLEEP(30) FROM dual'],
    ["CREATE USER 'a'@'%' IDENTIFIED BY 's3cret'", "CREATE USER 'a'@'%' IDENTIFIED BY '***'"],
    [
      "ALTER USER x IDENTIFIED WITH mysql_native_password BY 'pw'",
      "ALTER USER x IDENTIFIED WITH mysql_native_password BY '***'",
    ],
    ["SET PASSWORD FOR x = PASSWORD('pw')", "SET PASSWORD FOR x = PASSWORD('***')"],
    ["SET PASSWORD = 'pw'", "SET PASSWORD = '***'"],
  ])('%j → %j', (sql, expected) => {
    expect(shortStatement(sql)).toBe(expected);
  });

  it('keeps the first 100 characters', () => {
    const text = shortStatement(`SELECT '${'x'.repeat(300)}'`);
    expect(text).toHaveLength(101);
    expect(text.endsWith('…')).toBe(true);
  });
});
