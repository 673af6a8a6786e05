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
      // 2026-03-01 is a Sunday: the first Monday 10:00 CET is 09:00Z.
      ['alice', '2026-03-02T09:00:00.000Z'],
      ['bob', '2026-03-09T09:00:00.000Z'],
      ['carol', '2026-03-16T09:00:00.000Z'],
      ['alice', '2026-03-23T09:00:00.000Z'],
      // Clocks went forward on 2026-03-29: 10:00 CEST is 08:00Z, and that week is an hour shorter.
      ['bob', '2026-03-30T08:00:00.000Z'],
      ['carol', '2026-04-06T08:00:00.000Z'],
    ]);
    expect(shifts.map(hours)).toEqual([168, 168, 168, 167, 168, 168]);
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
      ['2026-03-02T15:00:00.000Z', '2026-03-09T14:00:00.000Z', 167],
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
    for (const x of shifts) {
      expect(x.start.slice(11)).toBe('01:00:00.000Z');
      expect(new Date(x.start).getUTCDay()).toBe(5);
      expect(hours(x)).toBe(168);
    }
    expect(shifts[0]).toMatchObject({ person: 'alice', start: '2026-03-06T01:00:00.000Z' });
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
      ['alice', '2026-03-27T08:30:00.000Z', 24],
      ['bob', '2026-03-28T08:30:00.000Z', 23],
      ['carol', '2026-03-29T07:30:00.000Z', 24],
      ['alice', '2026-03-30T07:30:00.000Z', 24],
    ]);
  });
});

describe('who is on call', () => {
  const s = schedule('Europe/Berlin');
  const layer = s.layers[0]!;

  it('answers per instant, with the handoff at exactly 10:00 local', () => {
    expect(shiftAt(s, layer, [], new Date('2026-03-30T07:59:59Z'))?.person).toBe('alice');
    expect(shiftAt(s, layer, [], new Date('2026-03-30T08:00:00Z'))?.person).toBe('bob');
    expect(shiftAt(s, layer, [], new Date('2026-03-02T08:59:59Z'))).toBeUndefined();
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
  it('has one VEVENT per shift with the person and layer, in local time with TZID', () => {
    const s = schedule('Europe/Berlin');
    const shifts = baseShifts(
      s,
      s.layers[0]!,
      Date.parse('2026-03-24T00:00:00Z'),
      Date.parse('2026-04-01T00:00:00Z'),
    );
    const text = shiftsCalendar(s, shifts, (p) => p.toUpperCase(), new Date('2026-03-20T00:00:00Z'));
    expect(text.match(/BEGIN:VEVENT/g)).toHaveLength(2);
    expect(text).toContain('DTSTART;TZID=Europe/Berlin:20260323T100000');
    expect(text).toContain('DTEND;TZID=Europe/Berlin:20260330T100000');
    expect(text).toContain('DTSTART;TZID=Europe/Berlin:20260330T100000');
    expect(text).toContain('SUMMARY:On call: ALICE (game primary)');
    expect(text).toContain('SUMMARY:On call: BOB (game primary)');
  });
});
