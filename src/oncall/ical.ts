import ical, { type ICalLuxonDateTimeStub } from 'ical-generator';
import { type ScheduleSpec, type Shift, wallParts } from './rotation.ts';

/**
 * A schedule's shifts as an iCalendar feed: one VEVENT per shift (overrides included) naming the person and
 * the layer, with start and end as local times of the schedule's zone (`DTSTART;TZID=…`), so calendar
 * apps show handoffs at their wall-clock time across daylight-saving changes.
 */
export function shiftsCalendar(
  schedule: ScheduleSpec,
  shifts: readonly Shift[],
  names: (person: string) => string,
  now: Date,
): string {
  const calendar = ical({
    name: `On call: ${schedule.name}`,
    prodId: { company: 'gameops', product: 'oncall', language: 'EN' },
    timezone: schedule.timezone,
  });
  for (const shift of shifts) {
    const who = names(shift.person);
    calendar.createEvent({
      id: `${schedule.name}.${shift.layer}.${shift.start}.${shift.person}@gameops`,
      start: zoned(Date.parse(shift.start), schedule.timezone),
      end: zoned(Date.parse(shift.end), schedule.timezone),
      timezone: schedule.timezone,
      stamp: now,
      summary: `On call: ${who} (${schedule.name} ${shift.layer})`,
      description: [
        `Schedule: ${schedule.name}`,
        `Layer: ${shift.layer}`,
        `Person: ${who} (${shift.person})`,
        ...(shift.override
          ? [
              `Override ${shift.override.id}${shift.override.replaces ? ` covering ${names(shift.override.replaces)}` : ''}` +
                (shift.override.reason ? `: ${shift.override.reason}` : ''),
            ]
          : []),
      ].join('\n'),
    });
  }
  return calendar.toString();
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/**
 * The instant `ms` as ical-generator's Luxon-like date stub, formatting as local time in `zone` (the
 * generator formats plain Dates in the process's own zone, which is not the schedule's).
 */
function zoned(ms: number, zone: string): ICalLuxonDateTimeStub {
  return {
    isValid: true,
    zone: { type: 'iana' },
    setZone: (to?: string) => zoned(ms, to ?? zone),
    toFormat(fmt: string): string {
      const p = wallParts(ms, zone);
      if (fmt === 'yyyyLLdd') return `${pad(p.year, 4)}${pad(p.month)}${pad(p.day)}`;
      if (fmt === 'HHmmss') return `${pad(p.hour)}${pad(p.minute)}${pad(p.second)}`;
      throw new Error(`unexpected date format ${fmt}`);
    },
    toJSDate: () => new Date(ms),
    toJSON: () => new Date(ms).toISOString(),
  };
}
