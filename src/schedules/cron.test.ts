import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../core/index.ts';
import { runbooksSchema } from '../config/schema.ts';
import { canonicalTimeZone, parseCron } from './cron.ts';
import { resolveSchedules } from './resolve.ts';
import { lateness } from './scheduler.ts';

const iso = (dates: Date[]): string[] => dates.map((d) => d.toISOString());

function thrown(fn: () => unknown): InputError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return err as InputError;
  }
  throw new Error('expected an InputError');
}

describe('parseCron', () => {
  it('09:00 Asia/Seoul is 00:00 UTC', () => {
    const cron = parseCron('0 9 * * *', 'Asia/Seoul', 'f');
    expect(cron.next(new Date('2026-01-01T12:00:00Z'))?.toISOString()).toBe('2026-01-02T00:00:00.000Z');
    // Strictly after: the occurrence itself is not its own next.
    expect(cron.next(new Date('2026-01-02T00:00:00Z'))?.toISOString()).toBe('2026-01-03T00:00:00.000Z');
  });

  it('Europe/Berlin spring forward: 02:30 (in the gap) fires once, at 03:00 CEST (croner fixed-time rule)', () => {
    const cron = parseCron('30 2 * * *', 'Europe/Berlin', 'f');
    // 2026-03-29 02:00 CET → 03:00 CEST.
    const runs = cron.recent(
      new Date('2026-03-27T12:00:00Z'),
      new Date('2026-03-30T12:00:00Z'),
      10,
    ).occurrences;
    expect(iso(runs)).toEqual([
      '2026-03-28T01:30:00.000Z', // 02:30 CET
      '2026-03-29T01:00:00.000Z', // 03:00 CEST: the first valid time after the gap
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
    ]);
  });

  it('Europe/Berlin fall back: 02:30 (twice that night) fires once, at the first (CEST)', () => {
    const cron = parseCron('30 2 * * *', 'Europe/Berlin', 'f');
    // 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happens at 00:30Z and 01:30Z.
    const runs = cron.recent(
      new Date('2026-10-24T12:00:00Z'),
      new Date('2026-10-26T12:00:00Z'),
      10,
    ).occurrences;
    expect(iso(runs)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
  });

  it('Europe/Berlin: an interval expression skips times in the gap and runs a repeated hour twice', () => {
    const cron = parseCron('*/30 2 * * *', 'Europe/Berlin', 'f');
    const spring = cron.recent(
      new Date('2026-03-28T23:00:00Z'),
      new Date('2026-03-29T04:00:00Z'),
      10,
    ).occurrences;
    expect(spring).toEqual([]);
    const fall = cron.recent(
      new Date('2026-10-24T23:00:00Z'),
      new Date('2026-10-25T04:00:00Z'),
      10,
    ).occurrences;
    expect(iso(fall)).toEqual([
      '2026-10-25T00:00:00.000Z',
      '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:00:00.000Z',
      '2026-10-25T01:30:00.000Z',
    ]);
  });

  it('Monday 09:00 in Asia/Seoul is Monday 00:00 UTC; names and nicknames are accepted', () => {
    const monday = parseCron('0 9 * * MON', 'Asia/Seoul', 'f');
    expect(monday.next(new Date('2026-01-01T00:00:00Z'))?.toISOString()).toBe('2026-01-05T00:00:00.000Z');
    expect(parseCron('@daily', 'UTC', 'f').next(new Date('2026-01-01T10:00:00Z'))?.toISOString()).toBe(
      '2026-01-02T00:00:00.000Z',
    );
  });

  it('canonicalises the time zone', () => {
    expect(parseCron('0 9 * * *', 'asia/seoul', 'f').timezone).toBe('Asia/Seoul');
    expect(canonicalTimeZone('Mars/Olympus')).toBeUndefined();
    expect(canonicalTimeZone(' UTC')).toBeUndefined();
  });

  it.each([
    ['61 9 * * *', 'Invalid value for minute: 61'],
    ['0 9 * *', 'has 4 fields; expected five'],
    ['0 0 9 * * *', 'has 6 fields; schedules take five'],
    ['0 9 31 2 *', 'never occurs'],
    ['every day', 'has 2 fields'],
    ['0 9 * * FUNDAY', ''],
  ])('rejects %s naming the field and the value', (expression, problem) => {
    const err = thrown(() => parseCron(expression, 'UTC', 'runbooks.schedules[2]'));
    expect(err.message).toContain(
      `runbooks.schedules[2].cron: "${expression}" is not a valid cron expression`,
    );
    expect(err.message).toContain(problem);
    expect(err.details).toEqual({ field: 'runbooks.schedules[2].cron', value: expression });
  });

  it('rejects an unknown time zone naming the field and the value', () => {
    const err = thrown(() => parseCron('0 9 * * *', 'Asia/Sеoul', 'runbooks.schedules[0]'));
    expect(err.message).toBe(
      'runbooks.schedules[0].timezone: "Asia/Sеoul" is not a known IANA time zone (e.g. UTC, Asia/Seoul, Europe/Berlin)',
    );
  });

  it('recent() keeps the latest occurrences and says when older ones were left out', () => {
    const cron = parseCron('*/10 * * * *', 'UTC', 'f');
    const after = new Date('2026-01-01T00:00:00Z');
    const { occurrences, truncated } = cron.recent(after, new Date('2026-01-01T01:00:00Z'), 3);
    expect(iso(occurrences)).toEqual([
      '2026-01-01T00:40:00.000Z',
      '2026-01-01T00:50:00.000Z',
      '2026-01-01T01:00:00.000Z',
    ]);
    expect(truncated).toBe(true);
    expect(cron.recent(after, new Date('2026-01-01T00:30:00Z'), 3)).toEqual({
      occurrences: [
        new Date('2026-01-01T00:10:00Z'),
        new Date('2026-01-01T00:20:00Z'),
        new Date('2026-01-01T00:30:00Z'),
      ],
      truncated: false,
    });
  });

  it('recent() (walking back) agrees with next() (walking forward), DST days included', () => {
    const zones = ['UTC', 'Asia/Seoul', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe'];
    const expressions = [
      '0 9 * * *',
      '30 2 * * *',
      '*/15 * * * *',
      '0 */3 * * 1-5',
      '45 1,2,3 * * *',
      '0 0 1 * *',
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...zones),
        fc.constantFrom(...expressions),
        // Any instant in 2026 (both DST changes of every zone above fall in it).
        fc.integer({ min: Date.UTC(2026, 0, 1), max: Date.UTC(2026, 11, 25) }),
        fc.integer({ min: 1, max: 3 * 86_400_000 }),
        (zone, expression, start, span) => {
          const cron = parseCron(expression, zone, 'f');
          const after = new Date(start);
          const until = new Date(start + span);
          const forward: Date[] = [];
          for (let at = cron.next(after); at && at <= until; at = cron.next(at)) forward.push(at);
          const { occurrences, truncated } = cron.recent(after, until, 1000);
          expect(truncated).toBe(false);
          expect(iso(occurrences)).toEqual(iso(forward));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('resolveSchedules', () => {
  const runbooks = (input: Record<string, unknown>) => runbooksSchema.parse(input);

  it('adds daily-check at 09:00 in runbooks.timezone when a service is configured', () => {
    const [daily] = resolveSchedules(runbooks({ timezone: 'Asia/Seoul' }), { configured: true });
    expect(daily).toMatchObject({
      name: 'daily-check',
      runbook: 'daily-check',
      origin: 'default',
      enabled: true,
    });
    expect(daily?.cron.expression).toBe('0 9 * * *');
    expect(daily?.cron.timezone).toBe('Asia/Seoul');
    expect(daily?.graceMs).toBe(3_600_000);
    expect(resolveSchedules(runbooks({}), { configured: false })).toEqual([]);
    expect(resolveSchedules(runbooks({ defaultSchedules: false }), { configured: true })).toEqual([]);
  });

  it('a schedule named daily-check replaces the default one', () => {
    const out = resolveSchedules(
      runbooks({ schedules: [{ name: 'daily-check', runbook: 'daily-check', cron: '30 8 * * 1-5' }] }),
      { configured: true },
    );
    expect(out.map((s) => [s.name, s.cron.expression, s.origin])).toEqual([
      ['daily-check', '30 8 * * 1-5', 'config'],
    ]);
  });

  it('fills the time zone and grace from runbooks', () => {
    const [weekly] = resolveSchedules(
      runbooks({
        timezone: 'Europe/Berlin',
        grace: '2h',
        defaultSchedules: false,
        schedules: [
          { name: 'weekly', runbook: 'x', cron: '0 6 * * MON', grace: '10m', timezone: 'UTC' },
          { name: 'other', runbook: 'x', cron: '0 6 * * *' },
        ],
      }),
      { configured: true },
    );
    expect(weekly?.cron.timezone).toBe('UTC');
    expect(weekly?.graceMs).toBe(600_000);
  });

  it('lists every bad schedule, naming each field and value', () => {
    const err = thrown(() =>
      resolveSchedules(
        runbooks({
          schedules: [
            { name: 'a', runbook: 'x', cron: '0 9 * * *', timezone: 'Nowhere/City' },
            { name: 'b', runbook: 'x', cron: '0 0 9 * * *' },
            { name: 'a', runbook: 'x', cron: '0 9 * * *' },
          ],
        }),
        { configured: true },
      ),
    );
    expect(err.message).toContain('3 invalid schedules');
    expect(err.message).toContain(
      'runbooks.schedules[0].timezone: "Nowhere/City" is not a known IANA time zone',
    );
    expect(err.message).toContain('runbooks.schedules[1].cron: "0 0 9 * * *" is not a valid cron expression');
    expect(err.message).toContain(
      'runbooks.schedules[2].name: "a" is already the name of runbooks.schedules[0]',
    );
  });

  it('a bad runbooks.timezone is named as such, also for the default daily-check', () => {
    const err = thrown(() => resolveSchedules(runbooks({ timezone: 'KST' }), { configured: true }));
    expect(err.message).toBe(
      'invalid schedule: runbooks.timezone: "KST" is not a known IANA time zone (e.g. UTC, Asia/Seoul, Europe/Berlin)',
    );
  });
});

describe('lateness', () => {
  it.each([
    [999, '1s'],
    [45_000, '45s'],
    [12 * 60_000, '12m'],
    [12 * 60_000 + 30_000, '12m'],
    [90_000, '1m30s'],
    [65 * 60_000, '1h05m'],
    [3 * 3_600_000, '3h'],
    [51 * 3_600_000, '2d3h'],
  ])('%d ms is %s', (ms, text) => {
    expect(lateness(ms)).toBe(text);
  });
});
