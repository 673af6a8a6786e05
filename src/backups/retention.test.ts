/**
 * Retention is a pure function: examples for the readable reasons and the seed's pitfall, and
 * property tests over 10,000 random histories (gaps, failed and unverified sets, duplicate timestamps,
 * clock skew, random policies including zero buckets).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../core/index.ts';
import { isoWeekKey, planRetention, type RetentionPolicy, type RetentionSet } from './retention.ts';

const DAY = 86_400_000;
const NOW = new Date('2026-11-26T17:00:00Z');
const DEFAULTS: RetentionPolicy = { keepDays: 30, daily: 7, weekly: 4, monthly: 12, minVerified: 3 };

function at(daysAgo: number, hour = 3): string {
  const day = new Date(NOW.getTime() - daysAgo * DAY);
  day.setUTCHours(hour, 0, 0, 0);
  return day.toISOString();
}

/** One complete set a day at 03:00 for days `from`..`to` ago (inclusive), verified when `verified(i)`. */
function daily(
  from: number,
  to: number,
  verified: (daysAgo: number) => boolean = () => true,
): RetentionSet[] {
  const sets: RetentionSet[] = [];
  for (let d = from; d <= to; d++) {
    sets.push({
      id: `set-${String(d).padStart(4, '0')}`,
      createdAt: at(d),
      state: 'complete',
      verified: verified(d),
    });
  }
  return sets;
}

function kept(sets: readonly RetentionSet[], policy: RetentionPolicy, now = NOW): Set<string> {
  return new Set(
    planRetention(sets, policy, now)
      .filter((d) => d.keep)
      .map((d) => d.id),
  );
}

describe('planRetention examples', () => {
  it("the seed's rule alone (keepDays 30, no GFS, no verified sets) keeps exactly the sets younger than 30 days", () => {
    const sets = daily(0, 59, () => false);
    const policy = { keepDays: 30, daily: 0, weekly: 0, monthly: 0, minVerified: 0 };
    const decisions = planRetention(sets, policy, NOW);
    expect(decisions).toHaveLength(60);
    for (const d of decisions) {
      const daysAgo = Number(d.id.slice(4));
      expect(d.keep).toBe(daysAgo < 30);
      expect(d.reasons).toEqual([
        daysAgo < 30 ? 'younger than 30 days' : 'older than 30 days and not kept by any rule',
      ]);
    }
  });

  it("backups stopped 90 days ago: the seed's `find -mtime +30 -exec rm -rf` would delete every set; prune keeps the newest verified sets and the GFS ones", () => {
    const sets = daily(90, 500, (d) => d % 2 === 0); // every other set verified
    const seedKeeps = sets.filter((s) => NOW.getTime() - Date.parse(s.createdAt) < 30 * DAY);
    expect(seedKeeps).toHaveLength(0); // the seed's rule: nothing left

    const decisions = planRetention(sets, DEFAULTS, NOW);
    const byId = new Map(decisions.map((d) => [d.id, d]));
    expect(byId.get('set-0090')?.reasons).toEqual(
      expect.arrayContaining(['the newest verified set', `daily ${at(90).slice(0, 10)}`]),
    );
    expect(byId.get('set-0092')?.reasons).toContain('one of the 3 newest verified sets');
    expect(byId.get('set-0094')?.reasons).toContain('one of the 3 newest verified sets');
    // daily 7: the 7 most recent days that HAVE a set (90..96 days ago), not the last 7 calendar days.
    for (let d = 90; d <= 96; d++) expect(byId.get(`set-${String(d).padStart(4, '0')}`)?.keep).toBe(true);
    const keptIds = [...kept(sets, DEFAULTS)];
    // 7 daily + at most 4 weekly + 12 monthly (overlapping) and the 3 verified, nothing else.
    expect(keptIds.length).toBeGreaterThanOrEqual(12);
    expect(keptIds.length).toBeLessThanOrEqual(7 + 4 + 12 + 3);
    expect(decisions.filter((d) => !d.keep).length).toBeGreaterThan(350);
  });

  it('names the GFS buckets: daily day, ISO week, month', () => {
    const now = new Date('2026-12-25T12:00:00Z');
    const sets: RetentionSet[] = [
      { id: 'a', createdAt: '2026-11-20T23:00:00Z', state: 'complete', verified: false },
      { id: 'b', createdAt: '2026-11-20T01:00:00Z', state: 'complete', verified: false },
      { id: 'c', createdAt: '2026-10-05T01:00:00Z', state: 'complete', verified: false },
    ];
    const policy = { keepDays: 0, daily: 1, weekly: 1, monthly: 2, minVerified: 0 };
    const decisions = planRetention(sets, policy, now);
    expect(decisions).toEqual([
      { id: 'a', keep: true, reasons: ['daily 2026-11-20', 'weekly 2026-W47', 'monthly 2026-11'] },
      { id: 'b', keep: false, reasons: ['not kept by any rule'] },
      { id: 'c', keep: true, reasons: ['monthly 2026-10'] },
    ]);
  });

  it('ISO weeks across year ends', () => {
    expect(isoWeekKey(Date.parse('2021-01-03T12:00:00Z'))).toBe('2020-W53');
    expect(isoWeekKey(Date.parse('2024-12-30T00:00:00Z'))).toBe('2025-W01');
    expect(isoWeekKey(Date.parse('2026-11-23T00:00:00Z'))).toBe('2026-W48');
    expect(isoWeekKey(Date.parse('2026-11-22T23:59:59Z'))).toBe('2026-W47');
  });

  it('keeps running and future-dated sets; failed sets only while young; ignores pruned ones', () => {
    const sets: RetentionSet[] = [
      { id: 'future', createdAt: at(-2), state: 'complete', verified: false },
      { id: 'running-old', createdAt: at(100), state: 'running', verified: false },
      { id: 'failed-young', createdAt: at(5), state: 'failed', verified: false },
      { id: 'failed-old', createdAt: at(40), state: 'failed', verified: false },
      { id: 'pruned', createdAt: at(50), state: 'pruned', verified: true },
      { id: 'verified-old', createdAt: at(60), state: 'complete', verified: true },
    ];
    const policy = { keepDays: 30, daily: 0, weekly: 0, monthly: 0, minVerified: 1 };
    expect(planRetention(sets, policy, NOW)).toEqual([
      { id: 'future', keep: true, reasons: ['from the future (clock skew): kept'] },
      { id: 'failed-young', keep: true, reasons: ['younger than 30 days'] },
      { id: 'failed-old', keep: false, reasons: ['failed and older than 30 days'] },
      { id: 'verified-old', keep: true, reasons: ['the newest verified set'] },
      { id: 'running-old', keep: true, reasons: ['running'] },
    ]);
  });

  it('refuses an invalid date naming the set, a duplicate id, and a bad policy naming the field', () => {
    const bad: RetentionSet = { id: 'bk-bad', createdAt: 'yesterday', state: 'complete', verified: true };
    expect(() => planRetention([bad], DEFAULTS, NOW)).toThrow(InputError);
    expect(() => planRetention([bad], DEFAULTS, NOW)).toThrow(/bk-bad/);
    const one = daily(1, 1);
    expect(() => planRetention([...one, ...one], DEFAULTS, NOW)).toThrow(/set-0001 appears twice/);
    expect(() => planRetention(one, { ...DEFAULTS, weekly: -1 }, NOW)).toThrow(/retention\.weekly/);
    expect(() => planRetention(one, DEFAULTS, new Date(Number.NaN))).toThrow(InputError);
  });
});

// ---------------------------------------------------------------------------------------------------
// Properties over random histories

const STATES = ['running', 'complete', 'complete', 'complete', 'failed', 'pruned'] as const;

const policyArb: fc.Arbitrary<RetentionPolicy> = fc.record({
  keepDays: fc.integer({ min: 0, max: 60 }),
  daily: fc.integer({ min: 0, max: 10 }),
  weekly: fc.integer({ min: 0, max: 8 }),
  monthly: fc.integer({ min: 0, max: 15 }),
  minVerified: fc.integer({ min: 0, max: 6 }),
});

const setArb = fc.record({
  // Mostly spread over 500 days (so with gaps), sometimes on shared instants (duplicate timestamps),
  // sometimes after now (clock skew).
  offsetMs: fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 500 * DAY }) },
    { weight: 2, arbitrary: fc.constantFrom(0, DAY, 7 * DAY, 31 * DAY, 90 * DAY, 366 * DAY) },
    { weight: 1, arbitrary: fc.integer({ min: -5 * DAY, max: -1 }) },
  ),
  state: fc.constantFrom(...STATES),
  verified: fc.boolean(),
});

interface History {
  now: Date;
  policy: RetentionPolicy;
  sets: RetentionSet[];
}

const historyArb: fc.Arbitrary<History> = fc
  .record({
    nowMs: fc.integer({ min: Date.parse('2020-01-01T00:00:00Z'), max: Date.parse('2035-01-01T00:00:00Z') }),
    // Backups that stopped some days ago: every set is shifted back by this much.
    stoppedDays: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 200 })),
    policy: policyArb,
    sets: fc.array(setArb, { maxLength: 60 }),
  })
  .map(({ nowMs, stoppedDays, policy, sets }) => ({
    now: new Date(nowMs),
    policy,
    sets: sets.map((s, i) => ({
      id: `bk-${String(i).padStart(3, '0')}`,
      createdAt: new Date(nowMs - s.offsetMs - (s.offsetMs >= 0 ? stoppedDays * DAY : 0)).toISOString(),
      state: s.state,
      verified: s.verified,
    })),
  }));

const RUNS = 10_000;

function verifiedComplete(sets: readonly RetentionSet[]): RetentionSet[] {
  return sets.filter((s) => s.state === 'complete' && s.verified);
}

describe('planRetention properties (10,000 random histories each)', () => {
  it('never deletes the newest verified set', () => {
    fc.assert(
      fc.property(historyArb, ({ now, policy, sets }) => {
        const verified = verifiedComplete(sets);
        if (verified.length === 0) return;
        // Sets on the same instant are ordered by id, so "the newest" is always one definite set.
        const newest = [...verified].sort(
          (a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? -1 : 1),
        )[0] as RetentionSet;
        expect(kept(sets, policy, now).has(newest.id)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('always keeps at least min(minVerified, verified complete sets) verified sets', () => {
    fc.assert(
      fc.property(historyArb, ({ now, policy, sets }) => {
        const verified = verifiedComplete(sets);
        const keep = kept(sets, policy, now);
        const keptVerified = verified.filter((s) => keep.has(s.id)).length;
        expect(keptVerified).toBeGreaterThanOrEqual(Math.min(policy.minVerified, verified.length));
        if (verified.length > 0) expect(keptVerified).toBeGreaterThanOrEqual(1);
      }),
      { numRuns: RUNS },
    );
  });

  it('never deletes running sets, sets younger than keepDays or future-dated sets; decides every non-pruned set once', () => {
    fc.assert(
      fc.property(historyArb, ({ now, policy, sets }) => {
        const decisions = planRetention(sets, policy, now);
        const live = sets.filter((s) => s.state !== 'pruned');
        expect(decisions.map((d) => d.id).sort()).toEqual(live.map((s) => s.id).sort());
        const keep = new Set(decisions.filter((d) => d.keep).map((d) => d.id));
        for (const s of live) {
          const age = now.getTime() - Date.parse(s.createdAt);
          if (s.state === 'running' || age < 0 || age < policy.keepDays * DAY)
            expect(keep.has(s.id)).toBe(true);
        }
        for (const d of decisions) expect(d.reasons.length).toBeGreaterThan(0);
      }),
      { numRuns: RUNS },
    );
  });

  it('is idempotent: after applying the plan, planning again deletes nothing more', () => {
    fc.assert(
      fc.property(historyArb, ({ now, policy, sets }) => {
        const first = planRetention(sets, policy, now);
        const deleted = new Set(first.filter((d) => !d.keep).map((d) => d.id));
        const after = sets.map((s) => (deleted.has(s.id) ? { ...s, state: 'pruned' as const } : s));
        const second = planRetention(after, policy, now);
        expect(second.filter((d) => !d.keep)).toEqual([]);
      }),
      { numRuns: RUNS },
    );
  });

  it('does not depend on the order of the input', () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), ({ now, policy, sets }, seed) => {
        const shuffled = [...sets];
        let x = seed | 1;
        for (let i = shuffled.length - 1; i > 0; i--) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          const j = x % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j] as RetentionSet, shuffled[i] as RetentionSet];
        }
        expect(planRetention(shuffled, policy, now)).toEqual(planRetention(sets, policy, now));
      }),
      { numRuns: 2_000 },
    );
  });

  it('deletes only complete or failed sets, and keeps the newest complete set of the `daily` most recent days that have one', () => {
    fc.assert(
      fc.property(historyArb, ({ now, policy, sets }) => {
        const byId = new Map(sets.map((s) => [s.id, s]));
        const decisions = planRetention(sets, policy, now);
        for (const d of decisions) {
          if (!d.keep) expect(['complete', 'failed']).toContain(byId.get(d.id)?.state);
        }
        const complete = sets
          .filter((s) => s.state === 'complete' && Date.parse(s.createdAt) <= now.getTime())
          .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? -1 : 1));
        const days = [...new Set(complete.map((s) => s.createdAt.slice(0, 10)))].slice(0, policy.daily);
        const keep = new Set(decisions.filter((d) => d.keep).map((d) => d.id));
        for (const day of days) {
          const newest = complete.find((s) => s.createdAt.slice(0, 10) === day);
          expect(newest !== undefined && keep.has(newest.id)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });
});
