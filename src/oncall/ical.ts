import ical from 'ical-generator';
import { type ScheduleSpec, type Shift, shiftAt } from './rotation.ts';

/**
 * A schedule's shifts as an iCalendar feed: one VEVENT per shift (overrides included) naming the person and
 * the layer. Times are UTC (`…Z`, as is DTSTAMP), which every calendar app converts to its viewer's zone
 * without needing VTIMEZONE blocks; the schedule's zone is named in each description.
 *
 * UIDs are stable across fetches, so a subscribed calendar updates events instead of duplicating them:
 * they are built from the uncut shift (schedule, layer, the rotation shift's own start), not from the piece
 * the requested range cut; an override's UID is its id; a piece of a shift resuming after an override adds
 * where it resumes.
 */
export function shiftsCalendar(
  schedule: ScheduleSpec,
  shifts: readonly Shift[],
  names: (person: string) => string,
  now: Date,
  from?: Date,
): string {
  const calendar = ical({
    name: `On call: ${schedule.name}`,
    prodId: { company: 'gameops', product: 'oncall', language: 'EN' },
  });
  const cutAt = from?.toISOString();
  for (const shift of shifts) {
    const who = names(shift.person);
    calendar.createEvent({
      id: uidOf(schedule, shift, cutAt),
      start: new Date(shift.start),
      end: new Date(shift.end),
      stamp: now,
      summary: `On call: ${who} (${schedule.name} ${shift.layer})`,
      description: [
        `Schedule: ${schedule.name} (${schedule.timezone})`,
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

function uidOf(schedule: ScheduleSpec, shift: Shift, cutAt: string | undefined): string {
  const prefix = `${schedule.name}.${shift.layer}`;
  if (shift.override) return `${prefix}.override.${shift.override.id}@gameops`;
  const layer = schedule.layers.find((l) => l.name === shift.layer);
  const base = layer ? shiftAt(schedule, layer, [], new Date(shift.start))?.start : undefined;
  if (base === undefined) return `${prefix}.${shift.start}@gameops`;
  // A piece starting at the shift's own start or at the range's cut is the shift itself.
  const whole = shift.start === base || shift.start === cutAt;
  return `${prefix}.${base}${whole ? '' : `.${shift.start}`}@gameops`;
}
