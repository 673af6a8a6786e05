import { zoneOffsetAt } from '../core/index.ts';

/*
 * Business hours (config incidents.businessHours): the response target of a severity without
 * `respondWithin` (P4 by default, "within business hours", §2.1).
 */

const WEEKDAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const DAY_MS = 86_400_000;

export interface BusinessHours {
  timezone: string;
  days: string[];
  /** HH:MM */
  start: string;
  end: string;
}

/** The instant a wall-clock time (as UTC milliseconds) has in the zone; a time skipped by DST moves on. */
function instantOf(wall: number, timeZone: string): number {
  const first = wall - zoneOffsetAt(wall, timeZone);
  const second = wall - zoneOffsetAt(first, timeZone);
  return zoneOffsetAt(second, timeZone) === zoneOffsetAt(first, timeZone) ? second : Math.max(first, second);
}

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

/**
 * When a response "within business hours" is due for something declared at `at`: the end of the
 * business hours it was declared in, or, declared outside them, the end of the next business day's hours.
 */
export function businessHoursDue(at: Date, hours: BusinessHours): Date | undefined {
  const ms = at.getTime();
  const startMin = minutes(hours.start);
  const endMin = minutes(hours.end);
  if (endMin <= startMin || hours.days.length === 0) return undefined;
  const localDay = Math.floor((ms + zoneOffsetAt(ms, hours.timezone)) / DAY_MS) * DAY_MS;
  for (let d = 0; d < 8; d += 1) {
    const day = localDay + d * DAY_MS;
    if (!hours.days.includes(WEEKDAYS[new Date(day).getUTCDay()]!)) continue;
    const end = instantOf(day + endMin * 60_000, hours.timezone);
    if (end > ms) return new Date(end);
  }
  return undefined;
}
