import { describe, expect, it } from 'vitest';
import { shiftsCalendar } from './ical.ts';
import { type LayerSpec, type ScheduleSpec, baseShifts, layerShifts, shiftAt } from './rotation.ts';

const HOUR = 3_600_000;

function schedule(timezone: string, layer: Partial<LayerSpec> = {}): ScheduleSpec {
  return {
    name: 'game',
    timezone,
    layers: [
      {
        name: 'primary',
        rotation: 'weekly',
        handoff: { weekday: 'monday', time: '10:00' },
        start: '2026-03-01',
        participants: ['alice', 'bob', 'carol'],
        ...layer,
      },
    ],
  };
}

const hours = (s: { start: string; end: string }) => (Date.parse(s.end) - Date.parse(s.start)) / HOUR;

describe('weekly rotation', () => {
  it('starts at the first handoff on or after start, in order, in the zone (Europe/Berlin, spring forward)', () => {
    const s = schedule('Europe/Berlin');
    const shifts = baseShifts(
      s,
      s.layers[0]!,
      Date.parse('2026-03-01T00:00:00Z'),
      Date.parse('2026-04-07T00:00:00Z'),
    );
    expect(shifts.map((x) => [x.person, x.start])).toEqual([
      // 2026-03-01 is a Sunday: the first Monday 10:00 CET is 09:00Z; alice covers from the start date's
      // 00:00 local (23:00Z the day before) until the second handoff.
      ['alice', '2026-02-28T23:00:00.000Z'],
      ['bob', '2026-03-09T09:00:00.000Z'],
      ['carol', '2026-03-16T09:00:00.000Z'],
      ['alice', '2026-03-23T09:00:00.000Z'],
      // Clocks went forward on 2026-03-29: 10:00 CEST is 08:00Z, and that week is an hour shorter.
      ['bob', '2026-03-30T08:00:00.000Z'],
      ['carol', '2026-04-06T08:00:00.000Z'],
    ]);
    expect(shifts.map(hours)).toEqual([202, 168, 168, 167, 168, 168]);
  });

  it('keeps 10:00 local when clocks fall back (Europe/Berlin, 169 h week)', () => {
    const s = schedule('Europe/Berlin');
    const shifts = baseShifts(
      s,
      s.layers[0]!,
      Date.parse('2026-10-19T12:00:00Z'),
      Date.parse('2026-10-27T00:00:00Z'),
    );
    expect(shifts.map((x) => [x.start, x.end, hours(x)])).toEqual([
      ['2026-10-19T08:00:00.000Z', '2026-10-26T09:00:00.000Z', 169],
      ['2026-10-26T09:00:00.000Z', '2026-11-02T09:00:00.000Z', 168],
    ]);
  });

  it('America/New_York: 167 h across the March change, 169 h across November', () => {
    const s = schedule('America/New_York', { start: '2026-03-02' });
    const layer = s.layers[0]!;
    const march = baseShifts(
      s,
      layer,
      Date.parse('2026-03-03T00:00:00Z'),
      Date.parse('2026-03-10T00:00:00Z'),
    );
    // DST began on Sunday 2026-03-08: Monday 10:00 EST = 15:00Z, then 10:00 EDT = 14:00Z.
    expect(march.map((x) => [x.start, x.end, hours(x)])).toEqual([
      // The first shift runs from the start date's 00:00 EST.
      ['2026-03-02T05:00:00.000Z', '2026-03-09T14:00:00.000Z', 177],
      ['2026-03-09T14:00:00.000Z', '2026-03-16T14:00:00.000Z', 168],
    ]);
    const november = baseShifts(
      s,
      layer,
      Date.parse('2026-10-27T00:00:00Z'),
      Date.parse('2026-11-03T00:00:00Z'),
    );
    expect(november.map((x) => [x.start, hours(x)])).toEqual([
      ['2026-10-26T14:00:00.000Z', 169],
      ['2026-11-02T15:00:00.000Z', 168],
    ]);
  });

  it('Asia/Seoul (no DST): always 01:00Z, 168 h', () => {
    const s = schedule('Asia/Seoul', { handoff: { weekday: 'friday', time: '10:00' } });
    const shifts = baseShifts(
      s,
      s.layers[0]!,
      Date.parse('2026-03-01T00:00:00Z'),
      Date.parse('2026-11-30T00:00:00Z'),
    );
    expect(shifts.length).toBeGreaterThan(35);
    for (const x of shifts.slice(1)) {
      expect(x.start.slice(11)).toBe('01:00:00.000Z');
      expect(new Date(x.start).getUTCDay()).toBe(5);
      expect(hours(x)).toBe(168);
    }
    // From the start date (Sunday 00:00 KST) through the first Friday handoff to the second.
    expect(shifts[0]).toMatchObject({
      person: 'alice',
      start: '2026-02-28T15:00:00.000Z',
      end: '2026-03-13T01:00:00.000Z',
    });
    expect(shifts[1]).toMatchObject({ person: 'bob', start: '2026-03-13T01:00:00.000Z' });
  });

  it('daily rotation moves each day at the handoff time, 23 h on the spring-forward day', () => {
    const s = schedule('Europe/Berlin', {
      rotation: 'daily',
      handoff: { weekday: 'monday', time: '09:30' },
      start: '2026-03-27',
    });
    const shifts = baseShifts(
      s,
      s.layers[0]!,
      Date.parse('2026-03-27T00:00:00Z'),
      Date.parse('2026-03-31T00:00:00Z'),
    );
    expect(shifts.map((x) => [x.person, x.start, hours(x)])).toEqual([
      ['alice', '2026-03-26T23:00:00.000Z', 33.5],
      ['bob', '2026-03-28T08:30:00.000Z', 23],
      ['carol', '2026-03-29T07:30:00.000Z', 24],
      ['alice', '2026-03-30T07:30:00.000Z', 24],
    ]);
  });
});

describe('start date off the handoff weekday', () => {
  it('participants[0] covers from the start date 00:00 local until the handoffs take over', () => {
    // Start Wednesday 2026-03-11, handoff Monday 10:00 Berlin: no empty stretch before Monday.
    const s = schedule('Europe/Berlin', { start: '2026-03-11' });
    const layer = s.layers[0]!;
    expect(shiftAt(s, layer, [], new Date('2026-03-10T22:59:59Z'))).toBeUndefined();
    expect(shiftAt(s, layer, [], new Date('2026-03-10T23:00:00Z'))).toMatchObject({
      person: 'alice',
      start: '2026-03-10T23:00:00.000Z',
    });
    expect(shiftAt(s, layer, [], new Date('2026-03-15T12:00:00Z'))?.person).toBe('alice');
    const shifts = baseShifts(
      s,
      layer,
      Date.parse('2026-03-11T00:00:00Z'),
      Date.parse('2026-03-24T00:00:00Z'),
    );
    expect(shifts.map((x) => [x.person, x.start, x.end])).toEqual([
      ['alice', '2026-03-10T23:00:00.000Z', '2026-03-23T09:00:00.000Z'],
      ['bob', '2026-03-23T09:00:00.000Z', '2026-03-30T08:00:00.000Z'],
    ]);
  });
});

describe('repeated and skipped wall-clock times', () => {
  const daily = (zone: string, time: string, start: string) =>
    schedule(zone, { rotation: 'daily', handoff: { weekday: 'monday', time }, start });
  const startOf = (s: ScheduleSpec, day: string) =>
    baseShifts(s, s.layers[0]!, Date.parse(`${day}T00:00:00Z`), Date.parse(`${day}T23:59:59Z`)).map(
      (x) => x.start,
    );

  it('a repeated time is its FIRST occurrence, east and west of UTC', () => {
    // Berlin falls back 03:00 CEST → 02:00 CET on 2026-10-25: 02:30 first happens at 00:30Z.
    expect(startOf(daily('Europe/Berlin', '02:30', '2026-10-20'), '2026-10-25')).toContain(
      '2026-10-25T00:30:00.000Z',
    );
    // London falls back 02:00 BST → 01:00 GMT on 2026-10-25: 01:30 first happens at 00:30Z.
    expect(startOf(daily('Europe/London', '01:30', '2026-10-20'), '2026-10-25')).toContain(
      '2026-10-25T00:30:00.000Z',
    );
    // Sydney falls back 03:00 AEDT → 02:00 AEST on 2026-04-05: 02:30 first happens at 15:30Z the day before.
    expect(startOf(daily('Australia/Sydney', '02:30', '2026-04-01'), '2026-04-04')).toContain(
      '2026-04-04T15:30:00.000Z',
    );
    // New York falls back 02:00 EDT → 01:00 EST on 2026-11-01: 01:30 first happens at 05:30Z.
    expect(startOf(daily('America/New_York', '01:30', '2026-10-28'), '2026-11-01')).toContain(
      '2026-11-01T05:30:00.000Z',
    );
  });

  it('a skipped time is read with the offset before the change (02:30 skipped → 03:30)', () => {
    // Berlin springs forward 02:00 CET → 03:00 CEST on 2026-03-29: 02:30 does not exist; 03:30 CEST = 01:30Z.
    expect(startOf(daily('Europe/Berlin', '02:30', '2026-03-20'), '2026-03-29')).toContain(
      '2026-03-29T01:30:00.000Z',
    );
    // New York springs forward on 2026-03-08: 02:30 → 03:30 EDT = 07:30Z.
    expect(startOf(daily('America/New_York', '02:30', '2026-03-01'), '2026-03-08')).toContain(
      '2026-03-08T07:30:00.000Z',
    );
  });
});

describe('who is on call', () => {
  const s = schedule('Europe/Berlin');
  const layer = s.layers[0]!;

  it('answers per instant, with the handoff at exactly 10:00 local', () => {
    expect(shiftAt(s, layer, [], new Date('2026-03-30T07:59:59Z'))?.person).toBe('alice');
    expect(shiftAt(s, layer, [], new Date('2026-03-30T08:00:00Z'))?.person).toBe('bob');
    expect(shiftAt(s, layer, [], new Date('2026-03-02T08:59:59Z'))?.person).toBe('alice');
    expect(shiftAt(s, layer, [], new Date('2026-02-28T22:59:59Z'))).toBeUndefined();
    expect(shiftAt(s, layer, [], new Date('2027-03-02T12:00:00Z'))?.person).toBeDefined();
  });

  it('applies an override and says so, naming whom it replaces', () => {
    const override = {
      id: 'ovr-1',
      schedule: 'game',
      layer: 'primary',
      person: 'dave',
      startsAt: '2026-03-10T18:00:00.000Z',
      endsAt: '2026-03-11T06:00:00.000Z',
      reason: 'bob at a wedding',
    };
    expect(shiftAt(s, layer, [override], new Date('2026-03-10T20:00:00Z'))).toEqual({
      schedule: 'game',
      layer: 'primary',
      person: 'dave',
      start: override.startsAt,
      end: override.endsAt,
      override: { id: 'ovr-1', replaces: 'bob', reason: 'bob at a wedding' },
    });
    expect(shiftAt(s, layer, [override], new Date('2026-03-11T06:00:00Z'))?.person).toBe('bob');
    const shifts = layerShifts(
      s,
      layer,
      [override],
      new Date('2026-03-09T00:00:00Z'),
      new Date('2026-03-16T12:00:00Z'),
    );
    expect(shifts.map((x) => [x.person, x.start, x.end, x.override?.id])).toEqual([
      ['alice', '2026-03-09T00:00:00.000Z', '2026-03-09T09:00:00.000Z', undefined],
      ['bob', '2026-03-09T09:00:00.000Z', '2026-03-10T18:00:00.000Z', undefined],
      ['dave', '2026-03-10T18:00:00.000Z', '2026-03-11T06:00:00.000Z', 'ovr-1'],
      ['bob', '2026-03-11T06:00:00.000Z', '2026-03-16T09:00:00.000Z', undefined],
      ['carol', '2026-03-16T09:00:00.000Z', '2026-03-16T12:00:00.000Z', undefined],
    ]);
  });
});

describe('iCal export', () => {
  it('has one VEVENT per shift with the person and layer, in UTC', () => {
    const s = schedule('Europe/Berlin');
    const shifts = baseShifts(
      s,
      s.layers[0]!,
      Date.parse('2026-03-24T00:00:00Z'),
      Date.parse('2026-04-01T00:00:00Z'),
    );
    const text = shiftsCalendar(s, shifts, (p) => p.toUpperCase(), new Date('2026-03-20T00:00:00Z'));
    expect(text.match(/BEGIN:VEVENT/g)).toHaveLength(2);
    expect(text).toContain('DTSTART:20260323T090000Z');
    expect(text).toContain('DTEND:20260330T080000Z');
    expect(text).toContain('DTSTART:20260330T080000Z');
    expect(text).toContain('DTSTAMP:20260320T000000Z');
    expect(text).not.toContain('TZID=');
    expect(text).toContain('SUMMARY:On call: ALICE (game primary)');
    expect(text).toContain('SUMMARY:On call: BOB (game primary)');
  });

  it('keeps UIDs stable when the range cuts a shift differently on each fetch', () => {
    const s = schedule('Europe/Berlin');
    const layer = s.layers[0]!;
    const uids = (from: string) => {
      const shifts = layerShifts(s, layer, [], new Date(from), new Date('2026-04-20T00:00:00Z'));
      const text = shiftsCalendar(s, shifts, (p) => p, new Date(from), new Date(from));
      return text.split(/\r?\n/).filter((l) => l.startsWith('UID:'));
    };
    const a = uids('2026-03-25T10:00:00Z');
    const b = uids('2026-03-25T10:00:01Z');
    expect(a).toEqual(b);
    expect(a[0]).toBe('UID:game.primary.2026-03-23T09:00:00.000Z@gameops');
  });
});
