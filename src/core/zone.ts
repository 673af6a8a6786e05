/*
 * IANA time-zone arithmetic without a library: the one question Intl answers (a zone's offset at an
 * instant), for the domains that turn local wall-clock times into instants (rotations, business hours).
 */

/** One formatter per time zone: building an Intl.DateTimeFormat costs far more than using one. */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      timeZoneName: 'shortOffset',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The wall clock of a zone at an instant: zero-padded fields, and the offset as Intl names it (`GMT+9`, `GMT`). */
export interface WallClock {
  year: string;
  month: string;
  day: string;
  hour: string;
  minute: string;
  second: string;
  offsetName: string;
}

/**
 * What the wall clock of `timeZone` (an IANA name or `+HH:MM`) reads at `at`: for the places that show
 * times in a zone (notices, timelines, DATETIME values), each picking the fields it shows.
 * @throws RangeError for a zone the runtime does not know (see {@link isTimeZone}).
 */
export function wallClock(at: Date | string | number, timeZone: string): WallClock {
  const parts = formatter(timeZone).formatToParts(at instanceof Date ? at : new Date(at));
  const p = (t: Intl.DateTimeFormatPartTypes): string => parts.find((x) => x.type === t)?.value ?? '';
  return {
    year: p('year'),
    month: p('month'),
    day: p('day'),
    hour: p('hour'),
    minute: p('minute'),
    second: p('second'),
    offsetName: p('timeZoneName'),
  };
}

/** True when the runtime knows this IANA zone. */
export function isTimeZone(timeZone: string): boolean {
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

/**
 * The zone's offset from UTC at `ms`, in milliseconds (Berlin in summer: +7 200 000; +09:00 is
 * 32 400 000).
 * @throws RangeError for a zone the runtime does not know (see {@link isTimeZone}).
 */
export function zoneOffsetAt(ms: number, timeZone: string): number {
  const w = wallClock(ms, timeZone);
  const asUtc = Date.UTC(
    Number(w.year),
    Number(w.month) - 1,
    Number(w.day),
    Number(w.hour),
    Number(w.minute),
    Number(w.second),
  );
  return asUtc - Math.floor(ms / 1000) * 1000;
}
