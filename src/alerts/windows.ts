/**
 * Paging suppression windows from the config (`alerts.suppressions`): recurring ones (a cron expression in
 * a time zone, e.g. the weekly maintenance slot, lasting `duration`) and one-off ones (`start` +
 * `duration`). A recurring window started at its latest occurrence and lasts `duration` of elapsed time,
 * so a window across a daylight-saving change is as long as any other; occurrences follow croner's DST
 * rules (src/schedules/cron.ts). Pure: every function takes the instant.
 */
import type { GameopsConfig } from '../config/index.ts';
import { InputError } from '../core/index.ts';
import { parseCron, type CronSchedule } from '../schedules/cron.ts';
import { matchesAll, parseMatchers, type Matcher } from './matchers.ts';

export interface ConfigWindow {
  name: string;
  matchers: Matcher[];
  /** As written, for listing. */
  matcherTexts: string[];
  durationMs: number;
  recurring?: CronSchedule | undefined;
  /** One-off start (ms). */
  startMs?: number | undefined;
}

/** An occurrence of a window: [startsAt, endsAt). */
export interface WindowSpan {
  startsAt: Date;
  endsAt: Date;
}

/**
 * Compiles the configured windows.
 * @throws InputError naming every bad `alerts.suppressions[i]…` (matcher, cron, time zone), not just the first.
 */
export function compileWindows(windows: GameopsConfig['alerts']['suppressions']): ConfigWindow[] {
  const problems: string[] = [];
  const compiled = windows.flatMap((w, i): ConfigWindow[] => {
    const field = `alerts.suppressions[${i}]`;
    try {
      const base = {
        name: w.name,
        matchers: parseMatchers(w.matchers, `${field}.matchers`),
        matcherTexts: w.matchers,
        durationMs: w.duration,
      };
      if (w.cron !== undefined) return [{ ...base, recurring: parseCron(w.cron, w.timezone, field) }];
      if (w.start !== undefined) return [{ ...base, startMs: Date.parse(w.start) }];
      throw new InputError(`${field}: needs exactly one of cron (recurring) or start (one-off)`, {
        details: { field },
      });
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push(err.message);
      return [];
    }
  });
  if (problems.length === 1) throw new InputError(problems[0] ?? '', { details: { problems } });
  if (problems.length > 1)
    throw new InputError(`alerts.suppressions: ${problems.join('; ')}`, { details: { problems } });
  return compiled;
}

/** The occurrence of the window that covers `at`, if one does. */
export function spanAt(window: ConfigWindow, at: Date): WindowSpan | undefined {
  const t = at.getTime();
  if (window.recurring) {
    const { occurrences } = window.recurring.recent(new Date(t - window.durationMs), at, 1);
    const start = occurrences[0];
    return start ? { startsAt: start, endsAt: new Date(start.getTime() + window.durationMs) } : undefined;
  }
  const start = window.startMs ?? Number.NaN;
  return start <= t && t < start + window.durationMs
    ? { startsAt: new Date(start), endsAt: new Date(start + window.durationMs) }
    : undefined;
}

/** The next occurrence starting after `at` (none for a one-off window that has started). */
export function nextSpan(window: ConfigWindow, at: Date): WindowSpan | undefined {
  if (window.recurring) {
    const start = window.recurring.next(at);
    return start ? { startsAt: start, endsAt: new Date(start.getTime() + window.durationMs) } : undefined;
  }
  const start = window.startMs ?? Number.NaN;
  return start > at.getTime()
    ? { startsAt: new Date(start), endsAt: new Date(start + window.durationMs) }
    : undefined;
}

/** The configured window covering `at` that suppresses these labels (the one ending last), if any. */
export function activeConfigWindow(
  windows: readonly ConfigWindow[],
  labels: Record<string, string>,
  at: Date,
): { name: string; endsAt: Date } | undefined {
  let best: { name: string; endsAt: Date } | undefined;
  for (const window of windows) {
    if (!matchesAll(window.matchers, labels)) continue;
    const span = spanAt(window, at);
    if (span && (!best || span.endsAt > best.endsAt)) best = { name: window.name, endsAt: span.endsAt };
  }
  return best;
}
