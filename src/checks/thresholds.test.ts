import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CheckStatus } from './statuses.ts';
import {
  counterDelta,
  formatBytes,
  fragmentationLevel,
  latencyLevel,
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

  // With the time between the readings: up 2 h at the last check, a day has passed, so about 26 h (93,600 s)
  // are expected. Anything clearly less means the server started again in between, even if its uptime (and
  // its counter) are higher than at the last check.
  it.each([
    {
      name: 'up 2.5 h now, a day after a reading at 2 h up: restarted',
      input: { current: 50, uptime: 9_000, previous: 40, previousUptime: 7_200, elapsedSeconds: 86_400 },
      expected: { delta: 50, restarted: true, baseline: false },
    },
    {
      name: 'uptime grew by exactly the elapsed time: not restarted',
      input: { current: 50, uptime: 93_600, previous: 40, previousUptime: 7_200, elapsedSeconds: 86_400 },
      expected: { delta: 10, restarted: false, baseline: false },
    },
    {
      name: 'a few seconds short of the elapsed time (whole-second uptime, clock skew): not restarted',
      input: { current: 50, uptime: 14_396, previous: 40, previousUptime: 7_200, elapsedSeconds: 7_200 },
      expected: { delta: 10, restarted: false, baseline: false },
    },
    {
      name: 'five minutes short of two hours elapsed (tolerance 1 % = 72 s): restarted',
      input: { current: 50, uptime: 14_100, previous: 40, previousUptime: 7_200, elapsedSeconds: 7_200 },
      expected: { delta: 50, restarted: true, baseline: false },
    },
    {
      name: 'uptime grew more than the elapsed time (the checking host’s clock is slow): not restarted',
      input: { current: 50, uptime: 82_800, previous: 40, previousUptime: 7_200, elapsedSeconds: 7_200 },
      expected: { delta: 10, restarted: false, baseline: false },
    },
    {
      name: 'clock went backwards: elapsed treated as 0, only a decrease counts',
      input: { current: 50, uptime: 7_300, previous: 40, previousUptime: 7_200, elapsedSeconds: -600 },
      expected: { delta: 10, restarted: false, baseline: false },
    },
    {
      name: 'elapsed unknown: only a decrease counts',
      input: { current: 50, uptime: 9_000, previous: 40, previousUptime: 7_200, elapsedSeconds: undefined },
      expected: { delta: 10, restarted: false, baseline: false },
    },
  ])('with the elapsed time: $name', ({ input, expected }) => {
    expect(counterDelta(input)).toEqual(expected);
  });

  it('never reports a negative delta', () => {
    fc.assert(
      fc.property(
        fc.nat(),
        fc.option(fc.nat(), { nil: undefined }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.option(fc.integer({ min: -86_400, max: 10_000_000 }), { nil: undefined }),
        (current, uptime, previous, previousUptime, elapsedSeconds) => {
          const { delta } = counterDelta({ current, uptime, previous, previousUptime, elapsedSeconds });
          if (delta !== undefined) expect(delta).toBeGreaterThanOrEqual(0);
        },
      ),
    );
  });
});

describe('restartedSince (Redis)', () => {
  // An older gameops recorded no run_id: only then does uptime arithmetic decide.
  const base = { runId: 'a', previousRunId: undefined };
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

  it.each([
    {
      name: 'same run_id, uptime a little short of the elapsed time (slow INFO, skew)',
      input: {
        uptimeSeconds: 100,
        runId: 'same',
        previousUptimeSeconds: 98,
        previousRunId: 'same',
        elapsedSeconds: 10,
      },
      restarted: false,
    },
    {
      name: 'same run_id, uptime went down (impossible arithmetic, run_id is authoritative)',
      input: {
        uptimeSeconds: 5,
        runId: 'same',
        previousUptimeSeconds: 100,
        previousRunId: 'same',
        elapsedSeconds: 3_600,
      },
      restarted: false,
    },
    {
      name: 'different run_id, uptime as expected',
      input: {
        uptimeSeconds: 3_700,
        runId: 'b',
        previousUptimeSeconds: 100,
        previousRunId: 'a',
        elapsedSeconds: 3_600,
      },
      restarted: true,
    },
    {
      name: 'run_id missing now, uptime far short',
      input: {
        uptimeSeconds: 60,
        runId: undefined,
        previousUptimeSeconds: 100,
        previousRunId: 'a',
        elapsedSeconds: 3_600,
      },
      restarted: true,
    },
  ])('when both run_ids are known they decide: $name', ({ input, restarted }) => {
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

describe('latencyLevel (judged on the median of the PING sample)', () => {
  const sample = (fast: number, fastMs: number, slow: number, slowMs: number): number[] => [
    ...Array.from({ length: fast }, () => fastMs),
    ...Array.from({ length: slow }, () => slowMs),
  ];
  it.each([
    // One PING delayed by our own event loop (3,000 alerts being parsed): p99 and max are 7 ms, p50 is not.
    { name: 'one PING delayed by the checker', samples: sample(19, 0.2, 1, 7), expected: 'ok' },
    { name: 'a few PINGs delayed', samples: sample(15, 0.2, 5, 60), expected: 'ok' },
    { name: 'most PINGs slow', samples: sample(5, 0.2, 15, 6), expected: 'warn' },
    { name: 'Redis itself slow', samples: sample(0, 0, 20, 60), expected: 'fail' },
    { name: 'exactly at the warning threshold', samples: sample(0, 0, 20, 5), expected: 'warn' },
  ])('$name → $expected', ({ samples, expected }) => {
    const summary = latencySummary(samples)!;
    expect(latencyLevel(summary, 5, 50)).toBe(expected);
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
    [
      "ALTER USER x IDENTIFIED WITH mysql_native_password BY 'pw'",
      "ALTER USER x IDENTIFIED WITH mysql_native_password BY '***'",
    ],
    ["SET PASSWORD FOR x = PASSWORD('pw')", "SET PASSWORD FOR x = PASSWORD('***')"],
    ["SET PASSWORD = 'pw'", "SET PASSWORD = '***'"],
    ['SELECT \'plain\', "text" FROM `t`', 'SELECT \'plain\', "text" FROM `t`'],
  ])('%j → %j', (sql, expected) => {
    expect(shortStatement(sql)).toBe(expected);
  });

  // Once a statement mentions PASSWORD or IDENTIFIED, every quoted literal goes, whatever its quoting.
  it.each([
    ["CREATE USER 'a'@'%' IDENTIFIED BY 's3cret'", "CREATE USER '***'@'***' IDENTIFIED BY '***'"],
    ["CREATE USER 'a'@'%' IDENTIFIED BY 'it''s-S3cret'", "CREATE USER '***'@'***' IDENTIFIED BY '***'"],
    ["ALTER USER a IDENTIFIED BY 'ab\\'cS3cret' ACCOUNT LOCK", "ALTER USER a IDENTIFIED BY '***'"],
    [
      "ALTER USER a IDENTIFIED BY 'a\\\\b\\nS3cret' ACCOUNT LOCK",
      "ALTER USER a IDENTIFIED BY '***' ACCOUNT LOCK",
    ],
    ["ALTER USER a IDENTIFIED BY 'S3cret\\\\' ACCOUNT LOCK", "ALTER USER a IDENTIFIED BY '***' ACCOUNT LOCK"],
    [
      "GRANT ALL ON *.* TO a IDENTIFIED BY PASSWORD '*S3cretHASH'",
      "GRANT ALL ON *.* TO a IDENTIFIED BY PASSWORD '***'",
    ],
    [
      "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'u', PASSWORD 'S3cret')",
      "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER '***', PASSWORD '***')",
    ],
    ['ALTER USER a IDENTIFIED BY "S3cret"', "ALTER USER a IDENTIFIED BY '***'"],
    ['ALTER USER a IDENTIFIED BY "say \\"S3cret\\""', "ALTER USER a IDENTIFIED BY '***'"],
    ['ALTER USER a IDENTIFIED BY `S3cret`', "ALTER USER a IDENTIFIED BY '***'"],
    ['alter user a identified by `S3``cret`', "alter user a identified by '***'"],
    [
      "CHANGE MASTER TO MASTER_PASSWORD='S3cret', MASTER_HOST='h'",
      "CHANGE MASTER TO MASTER_PASSWORD='***', MASTER_HOST='***'",
    ],
    // A user name ending in a backslash: under NO_BACKSLASH_ESCAPES the literal ends there, by default it
    // does not. Either reading could leave the password outside quotes, so the rest is redacted.
    ["CREATE USER 'a\\' IDENTIFIED BY 'S3cret' ACCOUNT LOCK", "CREATE USER '***'"],
    // INFO cut by the server mid-literal: the rest is redacted.
    ["ALTER USER a IDENTIFIED BY 'S3cret and the rest", "ALTER USER a IDENTIFIED BY '***'"],
    ['SET PASSWORD = "S3cret', "SET PASSWORD = '***'"],
  ])('redacts %j', (sql, expected) => {
    const text = shortStatement(sql);
    expect(text).toBe(expected);
    expect(text).not.toContain('S3cret');
  });

  it('never shows a password, however it and the user name before it are quoted or escaped', () => {
    // How a client may write a literal: backslash escapes (the default), or doubling only (the one way under
    // NO_BACKSLASH_ESCAPES, and for backtick identifiers).
    const quote = (text: string, q: string, style: 'backslash' | 'doubling'): string =>
      q === '`' || style === 'doubling'
        ? `${q}${text.replaceAll(q, q + q)}${q}`
        : `${q}${text.replaceAll('\\', '\\\\').replaceAll(q, `\\${q}`)}${q}`;
    const quoting = fc.tuple(
      fc.constantFrom("'", '"', '`'),
      fc.constantFrom<'backslash' | 'doubling'>('backslash', 'doubling'),
    );
    fc.assert(
      fc.property(
        fc.string({ maxLength: 12 }).filter((u) => !/Zq9|9qZ/.test(u)),
        quoting,
        fc.string({ minLength: 1, maxLength: 30 }),
        quoting,
        fc.constantFrom('IDENTIFIED BY ', 'identified by password ', 'OPTIONS (PASSWORD ', 'PASSWORD = '),
        (user, [uq, us], core, [q, style], before) => {
          const secret = `Zq9${core}9qZ`;
          const sql = `ALTER USER ${quote(user, uq, us)}@'%' ${before}${quote(secret, q, style)} ACCOUNT LOCK;`;
          const text = shortStatement(sql, 10_000);
          expect(text).not.toContain('Zq9');
          expect(text).not.toContain('9qZ');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('keeps the first 100 characters', () => {
    const text = shortStatement(`SELECT '${'x'.repeat(300)}'`);
    expect(text).toHaveLength(101);
    expect(text.endsWith('…')).toBe(true);
  });
});
