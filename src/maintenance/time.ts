/**
 * Times of maintenance windows: read from people (an ISO instant with its offset, or a wall-clock time
 * in the game's time zone) and shown to them (UTC and the game's zone side by side).
 */
import { randomBytes } from 'node:crypto';
import { InputError, wallClock, zoneOffsetAt } from '../core/index.ts';
import { instantOf } from '../oncall/rotation.ts';
import { WINDOW_ID_PATTERN } from './types.ts';

const WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})$/i;
const WALL = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?$/;

/**
 * An instant from `text`: ISO 8601 with `Z` or an offset (`2026-12-03T04:00:00+09:00`), or a wall-clock
 * time without one (`2026-12-03 04:00`, `2026-12-03T04:00`) read in `timeZone`.
 * @throws InputError naming `field` and the value: not a time, a date that does not exist (`02-30`), or a
 *   wall-clock time skipped by a daylight-saving change in that zone.
 */
export function parseWindowTime(text: string, timeZone: string, field: string): Date {
  const value = text.trim();
  const shown = value.slice(0, 60);
  if (WITH_ZONE.test(value)) {
    const ms = Date.parse(value.toUpperCase());
    if (!Number.isNaN(ms) && sameDate(value, ms)) return new Date(ms);
  }
  const m = WALL.exec(value);
  if (m) {
    const [y, mo, d, h, mi, s] = m.slice(1).map((x) => Number(x ?? 0)) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const wall = Date.UTC(y, mo - 1, d, h, mi, s);
    const back = new Date(wall);
    if (
      back.getUTCFullYear() === y &&
      back.getUTCMonth() === mo - 1 &&
      back.getUTCDate() === d &&
      h < 24 &&
      mi < 60 &&
      s < 60
    ) {
      const ms = instantOf(wall, timeZone);
      if (ms + zoneOffsetAt(ms, timeZone) !== wall)
        throw new InputError(
          `${field}: ${shown} does not exist in ${timeZone} (a daylight-saving change skips it); give another time or an offset`,
          { details: { field, value: shown } },
        );
      return new Date(ms);
    }
  }
  throw new InputError(
    `${field}: "${shown}" is not a time: give 2026-12-03T04:00:00+09:00 (with its offset), or 2026-12-03 04:00 (read in ${timeZone})`,
    { details: { field, value: shown } },
  );
}

/** The date part of an ISO text is the date it parsed to (Date.parse rolls 02-30 into March). */
function sameDate(text: string, ms: number): boolean {
  const [y, mo, d] = text.slice(0, 10).split('-').map(Number) as [number, number, number];
  const offsetText = /([+-])(\d{2}):(\d{2})$/.exec(text);
  const offset = offsetText
    ? (offsetText[1] === '-' ? -1 : 1) * (Number(offsetText[2]) * 60 + Number(offsetText[3])) * 60_000
    : 0;
  const local = new Date(ms + offset);
  return local.getUTCFullYear() === y && local.getUTCMonth() === mo - 1 && local.getUTCDate() === d;
}

/** `2026-12-03 04:00 GMT+9` in `timeZone` (a zero offset, UTC or London in winter, shows as `UTC`). */
export function zonedTime(at: Date | string, timeZone: string): string {
  const w = wallClock(at, timeZone);
  const name = w.offsetName;
  // Node names a zero offset `GMT+0` (for UTC itself too): people read `UTC`.
  const zone = name === 'GMT+0' || name === 'GMT' || name === 'GMT-0' ? 'UTC' : name;
  return `${w.year}-${w.month}-${w.day} ${w.hour}:${w.minute} ${zone}`;
}

/** `2026-12-03 04:00 UTC (13:00 GMT+9)`: UTC first, then the game's zone when it is not UTC. */
export function bothZones(at: Date | string, timeZone: string): string {
  const utc = zonedTime(at, 'UTC');
  const local = zonedTime(at, timeZone);
  if (local === utc) return utc;
  return `${utc} (${local.slice(0, 10) === utc.slice(0, 10) ? local.slice(11) : local})`;
}

/** `20261203T0400Z`: the UTC start to the minute, as window ids carry it. */
export function idStamp(at: Date): string {
  return at.toISOString().slice(0, 16).replace(/[-:]/g, '') + 'Z';
}

/** A one-off window's id: `mw-<UTC start>-<6 hex>`. */
export function adhocWindowId(startsAt: Date): string {
  return `mw-${idStamp(startsAt)}-${randomBytes(3).toString('hex')}`;
}

/** A recurring window's occurrence: `mw-<UTC start>-<name>` (the same id every time it is materialised). */
export function recurringWindowId(startsAt: Date, name: string): string {
  return `mw-${idStamp(startsAt)}-${name}`;
}

/**
 * A window id from a command line or a request, checked before anything else.
 * @throws InputError naming the value when it is not a window id.
 */
export function checkWindowId(id: string): string {
  if (!WINDOW_ID_PATTERN.test(id))
    throw new InputError(
      `"${id.slice(0, 80)}" is not a maintenance window id: ids look like mw-20261203T0400Z-3f9a2c (gameops maintenance list shows them)`,
      { details: { field: 'id' } },
    );
  return id;
}
