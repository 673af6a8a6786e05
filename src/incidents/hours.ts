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

/** The zone's offset from UTC at `ms` (milliseconds; +09:00 is 32 400 000). */
function offsetAt(ms: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(ms));
  const n = (t: Intl.DateTimeFormatPartTypes): number => Number(parts.find((p) => p.type === t)?.value ?? 0);
  const wall = Date.UTC(n('year'), n('month') - 1, n('day'), n('hour'), n('minute'), n('second'));
  return wall - Math.floor(ms / 1000) * 1000;
}

/** The instant a wall-clock time (as UTC milliseconds) has in the zone; a time skipped by DST moves on. */
function instantOf(wall: number, timeZone: string): number {
  const first = wall - offsetAt(wall, timeZone);
  const second = wall - offsetAt(first, timeZone);
  return offsetAt(second, timeZone) === offsetAt(first, timeZone) ? second : Math.max(first, second);
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
  const localDay = Math.floor((ms + offsetAt(ms, hours.timezone)) / DAY_MS) * DAY_MS;
  for (let d = 0; d < 8; d += 1) {
    const day = localDay + d * DAY_MS;
    if (!hours.days.includes(WEEKDAYS[new Date(day).getUTCDay()]!)) continue;
    const end = instantOf(day + endMin * 60_000, hours.timezone);
    if (end > ms) return new Date(end);
  }
  return undefined;
}
