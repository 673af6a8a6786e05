import { describe, expect, it } from 'vitest';
import { InputError } from '../core/index.ts';
import { activeConfigWindow, compileWindows, nextSpan, spanAt } from './windows.ts';

const weekly = (timezone: string, cron = '30 2 * * 0', duration = 2 * 3_600_000) =>
  compileWindows([{ name: 'weekly-maintenance', cron, duration, timezone, matchers: ['service="game"'] }]);

describe('suppression windows from the config', () => {
  it('a weekly window covers [start, start + duration) in its time zone', () => {
    const [w] = weekly('Asia/Seoul');
    // Sunday 02:30 KST = Saturday 17:30 UTC.
    expect(spanAt(w!, new Date('2026-03-07T17:29:59Z'))).toBeUndefined();
    expect(spanAt(w!, new Date('2026-03-07T17:30:00Z'))).toEqual({
      startsAt: new Date('2026-03-07T17:30:00Z'),
      endsAt: new Date('2026-03-07T19:30:00Z'),
    });
    expect(spanAt(w!, new Date('2026-03-07T19:30:00Z'))).toBeUndefined();
    expect(nextSpan(w!, new Date('2026-03-07T19:30:00Z'))?.startsAt).toEqual(
      new Date('2026-03-14T17:30:00Z'),
    );
  });

  it('across spring forward (Europe/Berlin 2026-03-29): 02:30 does not exist, the window starts at 03:00 CEST and lasts 2h', () => {
    const [w] = weekly('Europe/Berlin');
    const span = spanAt(w!, new Date('2026-03-29T01:30:00Z'));
    expect(span).toEqual({
      startsAt: new Date('2026-03-29T01:00:00Z'),
      endsAt: new Date('2026-03-29T03:00:00Z'),
    });
    // The week before (CET) and after (CEST): local 02:30 each time.
    expect(spanAt(w!, new Date('2026-03-22T01:30:00Z'))?.startsAt).toEqual(new Date('2026-03-22T01:30:00Z'));
    expect(spanAt(w!, new Date('2026-04-05T00:30:00Z'))?.startsAt).toEqual(new Date('2026-04-05T00:30:00Z'));
  });

  it('across fall back (America/New_York 2026-11-01): 01:30 happens twice, the window starts once and lasts 2h', () => {
    const [w] = weekly('America/New_York', '30 1 * * 0');
    // First 01:30 is EDT (05:30 UTC); the repeated 01:30 EST (06:30 UTC) is not a second start.
    const span = spanAt(w!, new Date('2026-11-01T06:45:00Z'));
    expect(span).toEqual({
      startsAt: new Date('2026-11-01T05:30:00Z'),
      endsAt: new Date('2026-11-01T07:30:00Z'),
    });
    expect(spanAt(w!, new Date('2026-11-01T07:30:00Z'))).toBeUndefined();
  });

  it('one-off windows, matchers, and the window ending last wins', () => {
    const windows = compileWindows([
      { name: 'short', start: '2026-03-01T10:00:00Z', duration: 3_600_000, timezone: 'UTC', matchers: [] },
      {
        name: 'long',
        start: '2026-03-01T09:00:00Z',
        duration: 4 * 3_600_000,
        timezone: 'UTC',
        matchers: ['team="db"'],
      },
    ]);
    const at = new Date('2026-03-01T10:30:00Z');
    expect(activeConfigWindow(windows, { team: 'db' }, at)).toEqual({
      name: 'long',
      endsAt: new Date('2026-03-01T13:00:00Z'),
    });
    expect(activeConfigWindow(windows, { team: 'game' }, at)).toEqual({
      name: 'short',
      endsAt: new Date('2026-03-01T11:00:00Z'),
    });
    expect(activeConfigWindow(windows, { team: 'game' }, new Date('2026-03-01T11:00:00Z'))).toBeUndefined();
  });

  it('refuses a bad matcher, cron or time zone, naming the field', () => {
    expect(() =>
      compileWindows([
        { name: 'x', cron: '0 2 * * 0', duration: 60_000, timezone: 'UTC', matchers: ['bad'] },
      ]),
    ).toThrow(/alerts\.suppressions\[0\]\.matchers\[0\]/);
    expect(() => weekly('Mars/Olympus')).toThrow(InputError);
    expect(() => weekly('UTC', '61 2 * * 0')).toThrow(/alerts\.suppressions\[0\]\.cron/);
  });
});
