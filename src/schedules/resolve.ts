/**
 * From the `runbooks:` block of the config to validated schedules. Cron expressions and time zones are
 * checked here rather than in the config schema, so that loading the config (every CLI command) pays
 * neither for croner nor for the ~15 ms the runtime takes to load its time-zone data: the scheduler
 * (`gameops serve`), `gameops schedules list` and `gameops config check` call this.
 */
import { InputError } from '../core/index.ts';
import type { GameopsConfig } from '../config/index.ts';
import { parseCron, type CronSchedule } from './cron.ts';

/** The built-in daily check's schedule (runbook §1.1: daily at 09:00). */
export const DEFAULT_DAILY_CHECK = {
  name: 'daily-check',
  runbook: 'daily-check',
  cron: '0 9 * * *',
} as const;

/** A schedule ready to run: its cron parsed in its time zone, its defaults filled in. */
export interface ResolvedSchedule {
  name: string;
  runbook: string;
  cron: CronSchedule;
  params: Record<string, unknown>;
  /** How late (ms) an occurrence may still start after gameops was down. */
  graceMs: number;
  enabled: boolean;
  /** `config`: from `runbooks.schedules`; `default`: the built-in daily check (`runbooks.defaultSchedules`). */
  origin: 'config' | 'default';
  /** Where it is configured, for errors: `runbooks.schedules[2]` or `runbooks.defaultSchedules`. */
  field: string;
}

/**
 * The schedules of a config: every `runbooks.schedules` entry, plus the daily check at 09:00 in
 * `runbooks.timezone` when `defaultSchedules` is on, a config file was found (`configured`), and no
 * schedule is named daily-check.
 * @throws InputError listing every problem, each naming its field and value: a malformed cron
 *   expression, a seconds field, an unknown time zone, a duplicate name.
 */
export function resolveSchedules(
  runbooks: GameopsConfig['runbooks'],
  options: { configured: boolean },
): ResolvedSchedule[] {
  const problems: string[] = [];
  const out: ResolvedSchedule[] = [];
  const seen = new Map<string, number>();
  runbooks.schedules.forEach((entry, i) => {
    const field = `runbooks.schedules[${i}]`;
    const earlier = seen.get(entry.name);
    if (earlier !== undefined)
      problems.push(`${field}.name: "${entry.name}" is already the name of runbooks.schedules[${earlier}]`);
    else seen.set(entry.name, i);
    try {
      out.push({
        name: entry.name,
        runbook: entry.runbook,
        cron: parseCron(
          entry.cron,
          entry.timezone ?? runbooks.timezone,
          field,
          entry.timezone === undefined ? 'runbooks.timezone' : `${field}.timezone`,
        ),
        params: entry.params,
        graceMs: entry.grace ?? runbooks.grace,
        enabled: entry.enabled,
        origin: 'config',
        field,
      });
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push(err.message);
    }
  });
  if (runbooks.defaultSchedules && options.configured && !seen.has(DEFAULT_DAILY_CHECK.name)) {
    try {
      out.push({
        ...DEFAULT_DAILY_CHECK,
        cron: parseCron(
          DEFAULT_DAILY_CHECK.cron,
          runbooks.timezone,
          'runbooks.defaultSchedules',
          'runbooks.timezone',
        ),
        params: {},
        graceMs: runbooks.grace,
        enabled: true,
        origin: 'default',
        field: 'runbooks.defaultSchedules',
      });
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      // A bad runbooks.timezone is already reported by the schedules that use it.
      if (!problems.includes(err.message)) problems.push(err.message);
    }
  }
  if (problems.length > 0) throw schedulesError(problems);
  return out;
}

/** One InputError listing every problem (each names its field). */
export function schedulesError(problems: string[]): InputError {
  return new InputError(
    problems.length === 1
      ? `invalid schedule: ${problems[0]}`
      : `${problems.length} invalid schedules:\n  - ${problems.join('\n  - ')}`,
    { details: { problems } },
  );
}
