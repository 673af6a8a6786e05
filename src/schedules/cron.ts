/**
 * Cron expressions with IANA time zones, over `croner`. Pure: every function takes the instant it
 * reasons from; nothing here reads the clock or starts a timer.
 *
 * Daylight saving follows croner's rules, which match Vixie cron and croner-rust: a *fixed-time*
 * expression (minute and hour each a single value, e.g. `30 2 * * *`) whose local time falls in a
 * spring-forward gap fires once at the first valid time after the gap (03:00), and fires once (at the
 * first of the two) when a fall-back repeats it. Every other expression (wildcards, steps, lists) is an
 * interval: its times in a gap do not exist and are skipped, and a repeated hour fires twice.
 */
import { Cron } from 'croner';
import { InputError } from '../core/index.ts';

/** A validated cron expression in one time zone. */
export interface CronSchedule {
  /** The expression as written. */
  readonly expression: string;
  /** The canonical IANA name of the time zone (`asia/seoul` → `Asia/Seoul`). */
  readonly timezone: string;
  /** The first occurrence strictly after `after`, or undefined when there is none. */
  next(after: Date): Date | undefined;
  /**
   * The most recent `limit` occurrences in `(after, until]`, oldest first; `truncated` when older ones in
   * that range were left out.
   */
  recent(after: Date, until: Date, limit: number): { occurrences: Date[]; truncated: boolean };
}

/**
 * The canonical name of an IANA time zone, or undefined when the runtime does not know it. `UTC` and
 * fixed zones such as `Etc/GMT-9` are IANA names too.
 */
export function canonicalTimeZone(name: string): string | undefined {
  if (name.trim() === '' || name !== name.trim()) return undefined;
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

/**
 * Parses a five-field cron expression (minute hour day-of-month month day-of-week; names like `MON`
 * and the nicknames `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` are accepted; a seconds field
 * is not). Day-of-month and day-of-week combine with OR when both are restricted, as in Vixie cron.
 * @param field What to name in errors, e.g. `runbooks.schedules[0]`; the messages say `<field>.cron`
 *   and `<field>.timezone` (or `timezoneField` when the zone came from elsewhere).
 * @throws InputError naming the field and the value: a malformed expression, a seconds field, an
 *   unknown time zone, or an expression that never occurs (`0 9 31 2 *`).
 */
export function parseCron(
  expression: string,
  timezone: string,
  field: string,
  timezoneField = `${field}.timezone`,
): CronSchedule {
  const zone = canonicalTimeZone(timezone);
  if (zone === undefined)
    throw new InputError(
      `${timezoneField}: "${timezone}" is not a known IANA time zone (e.g. UTC, Asia/Seoul, Europe/Berlin)`,
      { details: { field: timezoneField, value: timezone } },
    );
  const trimmed = expression.trim().replace(/\s+/g, ' ');
  const parts = trimmed.split(' ').length;
  if (!trimmed.startsWith('@') && parts !== 5)
    throw cronError(
      field,
      expression,
      parts === 6 || parts === 7
        ? `has ${parts} fields; schedules take five (minute hour day-of-month month day-of-week), no seconds or years`
        : `has ${parts} field${parts === 1 ? '' : 's'}; expected five (minute hour day-of-month month day-of-week)`,
    );
  let cron: Cron;
  try {
    cron = new Cron(trimmed, { timezone: zone, mode: '5-part', domAndDow: false });
  } catch (err) {
    throw cronError(field, expression, (err as Error).message.replace(/^CronPattern: /, ''));
  }
  // An expression such as "0 9 31 2 *" parses but never occurs; a schedule that never fires is a mistake.
  // Eight years cover every leap-day and day-of-week combination.
  const probe = new Date(Date.UTC(2000, 0, 1));
  const first = cron.nextRun(probe);
  if (first === null || first.getTime() - probe.getTime() > 8 * 366 * 86_400_000)
    throw cronError(field, expression, 'never occurs');
  const next = (after: Date): Date | undefined => cron.nextRun(after) ?? undefined;
  return {
    expression,
    timezone: zone,
    next,
    recent(after, until, limit) {
      const occurrences: Date[] = [];
      // Walks back from `until` (inclusive), one occurrence at a time: the usual case (nothing or one
      // occurrence since the last wake-up) costs one step, a long gap of a frequent schedule `limit`.
      let before = new Date(until.getTime() + 1);
      while (occurrences.length <= limit) {
        const [at] = cron.previousRuns(1, before);
        if (at === undefined || at <= after) break;
        occurrences.push(at);
        before = at;
      }
      const truncated = occurrences.length > limit;
      return { occurrences: occurrences.slice(0, limit).reverse(), truncated };
    },
  };
}

function cronError(field: string, expression: string, problem: string): InputError {
  return new InputError(`${field}.cron: "${expression}" is not a valid cron expression: ${problem}`, {
    details: { field: `${field}.cron`, value: expression },
  });
}
