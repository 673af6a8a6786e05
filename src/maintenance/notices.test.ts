import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dueNotice, leadText, noticeKey, noticeSchedule, upcomingNotices } from './notices.ts';
import { zonedTime } from './time.ts';

const MIN = 60_000;
const DEFAULT = [24 * 60 * MIN, 60 * MIN, 10 * MIN, MIN];
const start = new Date('2026-12-03T04:00:00Z');

describe('maintenance notices', () => {
  it('names offsets T-24h, T-60m, T-10m, T-1m (hours from two hours up)', () => {
    expect(DEFAULT.map(noticeKey)).toEqual(['T-24h', 'T-60m', 'T-10m', 'T-1m']);
    expect(noticeKey(90_000)).toBe('T-90s');
    expect(noticeKey(3 * 60 * MIN)).toBe('T-3h');
    expect(noticeSchedule(start, [MIN, 24 * 60 * MIN, MIN])).toEqual([
      { key: 'T-24h', at: '2026-12-02T04:00:00.000Z' },
      { key: 'T-1m', at: '2026-12-03T03:59:00.000Z' },
    ]);
  });

  it('a window planned 30 minutes ahead shows T-60m now, then T-10m and T-1m', () => {
    const now = new Date(start.getTime() - 30 * MIN);
    expect(upcomingNotices(start, DEFAULT, now)).toEqual([
      { key: 'T-60m', at: now.toISOString(), atOnce: true },
      { key: 'T-10m', at: '2026-12-03T03:50:00.000Z' },
      { key: 'T-1m', at: '2026-12-03T03:59:00.000Z' },
    ]);
    expect(dueNotice(start, DEFAULT, new Set(), now)?.key).toBe('T-60m');
    expect(dueNotice(start, DEFAULT, new Set(['T-60m']), now)).toBeUndefined();
    expect(dueNotice(start, DEFAULT, new Set(), start)).toBeUndefined();
  });

  // Ticks at arbitrary instants (a busy or stopped process, a late plan) against one window: the claims
  // made are those a service sending whatever dueNotice answers would make.
  it('property: never two sends of one key, never at or after the start, only the latest due one, in order', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 7 * 24 * 60 }), { minLength: 1, maxLength: 10 }),
        fc.array(fc.integer({ min: -8 * 24 * 60 * 60, max: 60 * 60 }), { minLength: 1, maxLength: 40 }),
        (minutes, offsetsSeconds) => {
          const before = minutes.map((m) => m * MIN);
          const schedule = noticeSchedule(start, before);
          const ticks = offsetsSeconds.map((s) => start.getTime() + s * 1000).sort((a, b) => a - b);
          const claimed = new Set<string>();
          const sent: Array<{ key: string; at: number }> = [];
          for (const t of ticks) {
            const due = dueNotice(start, before, claimed, new Date(t));
            if (!due) continue;
            expect(claimed.has(due.key)).toBe(false);
            expect(t).toBeLessThan(start.getTime());
            expect(Date.parse(due.at)).toBeLessThanOrEqual(t);
            // The latest whose time has come: none later in the schedule is due yet.
            const later = schedule.filter((n) => Date.parse(n.at) > Date.parse(due.at));
            for (const n of later) expect(Date.parse(n.at)).toBeGreaterThan(t);
            claimed.add(due.key);
            sent.push({ key: due.key, at: Date.parse(due.at) });
          }
          // Each send's time is after the previous one's: no earlier notice after a later one.
          for (let i = 1; i < sent.length; i++) expect(sent[i]!.at).toBeGreaterThan(sent[i - 1]!.at);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('says the time left, not the offset: hours from two hours, minutes below; a zero offset is UTC', () => {
    const before = (ms: number) => leadText(start, new Date(start.getTime() - ms));
    expect(before(24 * 60 * MIN)).toBe('Maintenance in 24 hours: ');
    expect(before(5 * 60 * MIN + 7 * MIN)).toBe('Maintenance in 5 hours: ');
    expect(before(119 * MIN + 50_000)).toBe('Maintenance in 2 hours: ');
    expect(before(100 * MIN)).toBe('Maintenance in 100 minutes: ');
    expect(before(12 * MIN + 10_000)).toBe('Maintenance in 12 minutes: ');
    expect(before(MIN)).toBe('Maintenance in 1 minute: ');
    expect(before(20_000)).toBe('Maintenance in less than a minute: ');
    expect(before(0)).toBe('');
    expect(zonedTime(start, 'UTC')).toBe('2026-12-03 04:00 UTC');
    expect(zonedTime(start, 'Europe/London')).toBe('2026-12-03 04:00 UTC');
    expect(zonedTime(start, 'Asia/Seoul')).toBe('2026-12-03 13:00 GMT+9');
  });
});
