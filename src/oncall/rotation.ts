/**
 * On-call rotations as pure functions of the configuration, the overrides and an instant: who is on call,
 * which shifts fall in a range. Handoffs are wall-clock times in the schedule's IANA time zone, so a 10:00
 * handoff stays 10:00 local across daylight-saving changes (a weekly shift spanning one lasts 167 or 169
 * hours). Calendar arithmetic is done on civil dates (UTC-based day numbers), and only the final
 * "local date and time → instant" step consults the zone (Intl), so no library is needed.
 */

import { zoneOffsetAt } from '../core/index.ts';

export { isTimeZone } from '../core/index.ts';

export const WEEKDAYS = [
  'monday',
  'tuesday',
  'wednesday',
  'thursday',
  'friday',
  'saturday',
  'sunday',
] as const;
export type Weekday = (typeof WEEKDAYS)[number];

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;

/** One layer of a schedule as configured (oncallScheduleSchema). */
export interface LayerSpec {
  name: string;
  rotation: 'daily' | 'weekly';
  handoff: { weekday: Weekday; time: string };
  /** YYYY-MM-DD, local to the schedule's zone. */
  start: string;
  participants: string[];
}

export interface ScheduleSpec {
  name: string;
  timezone: string;
  layers: LayerSpec[];
}

/** A stored override: `person` covers `layer` of `schedule` in [startsAt, endsAt). */
export interface OverrideSpec {
  id: string;
  schedule: string;
  layer: string;
  person: string;
  startsAt: string;
  endsAt: string;
  reason?: string | undefined;
}

/** A stretch of time one person is on call in one layer. */
export interface Shift {
  schedule: string;
  layer: string;
  person: string;
  /** ISO-8601 UTC. */
  start: string;
  end: string;
  /** Set when an override put this person here (instead of `replaces`). */
  override?: { id: string; replaces?: string | undefined; reason?: string | undefined } | undefined;
}

/**
 * The instant of a local wall-clock time (`wall` = that date and time written as if UTC). A repeated time
 * (fall back) is its FIRST occurrence, in zones east and west of UTC alike. A time skipped by a
 * spring-forward change is read with the offset before the change, so it lands as far after the jump as
 * it was after the skipped hour's start: a skipped 02:30 becomes 03:30 local.
 */
export function instantOf(wall: number, timeZone: string): number {
  // The offsets in force a day either side cover any change near `wall` (zones change at most once a day).
  const before = zoneOffsetAt(wall - DAY_MS, timeZone);
  const after = zoneOffsetAt(wall + DAY_MS, timeZone);
  const candidates = [...new Set([wall - before, wall - after, wall - zoneOffsetAt(wall, timeZone)])].sort(
    (a, b) => a - b,
  );
  for (const c of candidates) if (c + zoneOffsetAt(c, timeZone) === wall) return c;
  // Inside a gap: nothing reads back as `wall`.
  return wall - before;
}

/** The civil day number (days since 1970-01-01) of the local date at `ms` in the zone. */
function localDay(ms: number, timeZone: string): number {
  return Math.floor((ms + zoneOffsetAt(ms, timeZone)) / DAY_MS);
}

function dayOfDate(date: string): number {
  const [y, m, d] = date.split('-').map(Number);
  return Math.floor(Date.UTC(y!, m! - 1, d) / DAY_MS);
}

function minutesOf(time: string): number {
  const [h, m] = time.split(':').map(Number);
  return h! * 60 + m!;
}

/** Monday = 0 … Sunday = 6 of a civil day number (1970-01-01 was a Thursday). */
function weekdayOf(day: number): number {
  return (((day + 3) % 7) + 7) % 7;
}

/** How a layer's handoffs fall: the first handoff's civil day, the step in days and the handoff minute. */
function layerClock(layer: LayerSpec): { firstDay: number; step: number; minute: number } {
  const startDay = dayOfDate(layer.start);
  if (layer.rotation === 'daily')
    return { firstDay: startDay, step: 1, minute: minutesOf(layer.handoff.time) };
  const want = WEEKDAYS.indexOf(layer.handoff.weekday);
  const firstDay = startDay + ((want - weekdayOf(startDay) + 7) % 7);
  return { firstDay, step: 7, minute: minutesOf(layer.handoff.time) };
}

/** The instant shift `index` of the layer begins (index 0: the first handoff on or after `start`). */
function handoffAt(layer: LayerSpec, timeZone: string, index: number): number {
  const { firstDay, step, minute } = layerClock(layer);
  return instantOf((firstDay + index * step) * DAY_MS + minute * MINUTE_MS, timeZone);
}

/**
 * The instant shift `index` begins: shift 0 (participants[0]) from the start date's 00:00 local, so a
 * start that is not on the handoff weekday (or before the handoff time) leaves no gap; later shifts at
 * their handoff.
 */
function shiftStart(layer: LayerSpec, timeZone: string, index: number): number {
  return index === 0
    ? instantOf(dayOfDate(layer.start) * DAY_MS, timeZone)
    : handoffAt(layer, timeZone, index);
}

/** The index of the shift running at `ms` (negative before the rotation's start date). */
function shiftIndexAt(layer: LayerSpec, timeZone: string, ms: number): number {
  const { firstDay, step } = layerClock(layer);
  let index = Math.floor((localDay(ms, timeZone) - firstDay) / step);
  // The local day can sit on either side of the handoff time; settle with at most a couple of steps.
  while (handoffAt(layer, timeZone, index) > ms) index -= 1;
  while (handoffAt(layer, timeZone, index + 1) <= ms) index += 1;
  if (index < 0 && ms >= shiftStart(layer, timeZone, 0)) return 0;
  return index;
}

function participantOf(layer: LayerSpec, index: number): string {
  const n = layer.participants.length;
  return layer.participants[((index % n) + n) % n]!;
}

/** The rotation's own shifts (no overrides) overlapping [fromMs, toMs), in order. */
export function baseShifts(schedule: ScheduleSpec, layer: LayerSpec, fromMs: number, toMs: number): Shift[] {
  const shifts: Shift[] = [];
  if (toMs <= fromMs || layer.participants.length === 0) return shifts;
  let index = Math.max(0, shiftIndexAt(layer, schedule.timezone, fromMs));
  for (;;) {
    const start = shiftStart(layer, schedule.timezone, index);
    if (start >= toMs) break;
    const end = handoffAt(layer, schedule.timezone, index + 1);
    if (end > fromMs) {
      shifts.push({
        schedule: schedule.name,
        layer: layer.name,
        person: participantOf(layer, index),
        start: new Date(start).toISOString(),
        end: new Date(end).toISOString(),
      });
    }
    index += 1;
  }
  return shifts;
}

/**
 * The shifts of one layer overlapping [from, to) with overrides applied: an override cuts the shifts it
 * covers and stands as its own shift (saying whom it replaces). Adjacent pieces of one shift stay apart
 * only where an override interrupts them.
 */
export function layerShifts(
  schedule: ScheduleSpec,
  layer: LayerSpec,
  overrides: readonly OverrideSpec[],
  from: Date,
  to: Date,
): Shift[] {
  const fromMs = from.getTime();
  const toMs = to.getTime();
  const mine = overrides
    .filter((o) => o.schedule === schedule.name && o.layer === layer.name)
    .filter((o) => Date.parse(o.endsAt) > fromMs && Date.parse(o.startsAt) < toMs)
    .sort((a, b) => Date.parse(a.startsAt) - Date.parse(b.startsAt));
  // Base shifts are read over the overrides' whole span too, to name whom an override replaces.
  const spanFrom = Math.min(fromMs, ...mine.map((o) => Date.parse(o.startsAt)));
  const spanTo = Math.max(toMs, ...mine.map((o) => Date.parse(o.endsAt)));
  const base = baseShifts(schedule, layer, spanFrom, spanTo);
  const result: Shift[] = [];
  const clip = (shift: Shift, start: number, end: number): void => {
    const s = Math.max(start, fromMs);
    const e = Math.min(end, toMs);
    if (e > s) result.push({ ...shift, start: new Date(s).toISOString(), end: new Date(e).toISOString() });
  };
  for (const shift of base) {
    let cursor = Date.parse(shift.start);
    const end = Date.parse(shift.end);
    for (const o of mine) {
      const os = Date.parse(o.startsAt);
      const oe = Date.parse(o.endsAt);
      if (oe <= cursor || os >= end) continue;
      if (os > cursor) clip(shift, cursor, os);
      cursor = Math.max(cursor, oe);
    }
    if (cursor < end) clip(shift, cursor, end);
  }
  for (const o of mine) {
    const os = Date.parse(o.startsAt);
    const replaced = base.find((s) => Date.parse(s.start) <= os && Date.parse(s.end) > os)?.person;
    clip(
      {
        schedule: schedule.name,
        layer: layer.name,
        person: o.person,
        start: o.startsAt,
        end: o.endsAt,
        override: { id: o.id, replaces: replaced, reason: o.reason },
      },
      os,
      Date.parse(o.endsAt),
    );
  }
  return result.sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
}

/** The shift of a layer running at `at` (overrides applied), or undefined before the rotation starts. */
export function shiftAt(
  schedule: ScheduleSpec,
  layer: LayerSpec,
  overrides: readonly OverrideSpec[],
  at: Date,
): Shift | undefined {
  const ms = at.getTime();
  const override = overrides.find(
    (o) =>
      o.schedule === schedule.name &&
      o.layer === layer.name &&
      Date.parse(o.startsAt) <= ms &&
      Date.parse(o.endsAt) > ms,
  );
  const index = shiftIndexAt(layer, schedule.timezone, ms);
  const base: Shift | undefined =
    index < 0 || layer.participants.length === 0
      ? undefined
      : {
          schedule: schedule.name,
          layer: layer.name,
          person: participantOf(layer, index),
          start: new Date(shiftStart(layer, schedule.timezone, index)).toISOString(),
          end: new Date(handoffAt(layer, schedule.timezone, index + 1)).toISOString(),
        };
  if (!override) return base;
  return {
    schedule: schedule.name,
    layer: layer.name,
    person: override.person,
    start: override.startsAt,
    end: override.endsAt,
    override: { id: override.id, replaces: base?.person, reason: override.reason },
  };
}

/** The wall-clock date and time at `ms` in the zone (for display and iCal). */
export function wallParts(
  ms: number,
  timeZone: string,
): { year: number; month: number; day: number; hour: number; minute: number; second: number } {
  const wall = new Date(ms + zoneOffsetAt(ms, timeZone));
  return {
    year: wall.getUTCFullYear(),
    month: wall.getUTCMonth() + 1,
    day: wall.getUTCDate(),
    hour: wall.getUTCHours(),
    minute: wall.getUTCMinutes(),
    second: wall.getUTCSeconds(),
  };
}
