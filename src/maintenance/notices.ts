/**
 * Which notice of a maintenance window is due: a pure function of the window's start, the configured
 * offsets (`maintenance.notices.before`), the keys already claimed and the instant asked about.
 *
 * Rules: a notice is never sent at or after the start (the run's own notices take over then); at most
 * one notice is due at a time, the latest whose time has come; a key is never due twice; and once a
 * later notice was claimed, an earlier one never is (a window planned 30 minutes ahead sends T-10m when
 * its time comes, never T-24h and T-60m as a burst).
 */
import type { DueNotice } from './types.ts';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

/** `T-24h`, `T-60m`, `T-10m`, `T-1m`, `T-90s`: hours from two hours up, minutes below, seconds if not whole. */
export function noticeKey(beforeMs: number): string {
  if (beforeMs >= 2 * HOUR_MS && beforeMs % HOUR_MS === 0) return `T-${beforeMs / HOUR_MS}h`;
  if (beforeMs % MINUTE_MS === 0) return `T-${beforeMs / MINUTE_MS}m`;
  return `T-${Math.round(beforeMs / 1000)}s`;
}

/** Every before-notice of a window starting at `startsAt`: its key and time, earliest first (duplicates once). */
export function noticeSchedule(startsAt: Date, beforeMs: readonly number[]): DueNotice[] {
  const unique = [...new Set(beforeMs.filter((ms) => ms > 0))].sort((a, b) => b - a);
  return unique.map((ms) => ({
    key: noticeKey(ms),
    at: new Date(startsAt.getTime() - ms).toISOString(),
  }));
}

/**
 * The notice to send at `now`, if any: the latest scheduled notice whose time has come (`at <= now`),
 * provided `now` is before the start, it was not claimed, and no later one was.
 * @param claimed the keys already claimed for this window (sent or being sent, by anyone)
 */
export function dueNotice(
  startsAt: Date,
  beforeMs: readonly number[],
  claimed: ReadonlySet<string>,
  now: Date,
): DueNotice | undefined {
  if (now.getTime() >= startsAt.getTime()) return undefined;
  const schedule = noticeSchedule(startsAt, beforeMs);
  let latest: DueNotice | undefined;
  let latestIndex = -1;
  schedule.forEach((notice, i) => {
    if (Date.parse(notice.at) <= now.getTime()) {
      latest = notice;
      latestIndex = i;
    }
  });
  if (!latest) return undefined;
  // A later one (or this one) claimed already: nothing is due until the next one's time comes.
  if (schedule.slice(latestIndex).some((n) => claimed.has(n.key))) return undefined;
  return latest;
}

/**
 * The notices a window will send from `now` on, assuming nothing was claimed: what a plan shows. The
 * offsets still to come at their times, and first (when an offset's time has passed already) the latest
 * such one sent at once: its `at` is `now` and `atOnce` true.
 */
export function upcomingNotices(
  startsAt: Date,
  beforeMs: readonly number[],
  now: Date,
): Array<DueNotice & { atOnce?: boolean }> {
  const schedule = noticeSchedule(startsAt, beforeMs);
  const first = dueNotice(startsAt, beforeMs, new Set(), now);
  return [
    ...(first ? [{ key: first.key, at: now.toISOString(), atOnce: true }] : []),
    ...schedule.filter((n) => Date.parse(n.at) > now.getTime()),
  ];
}

/**
 * What players read before a window: `Maintenance in 5 hours: ` from the time left (`start − now`), not
 * the offset's name, so a notice sent late (a window planned 5 h ahead sends its `T-24h` at once) says
 * the truth. Hours from two hours up, minutes below (rounded), `less than a minute` at the end.
 */
export function leadText(startsAt: Date, now: Date): string {
  const left = startsAt.getTime() - now.getTime();
  if (left <= 0) return '';
  if (left >= 2 * HOUR_MS - MINUTE_MS / 2 && Math.round(left / HOUR_MS) >= 2) {
    const hours = Math.round(left / HOUR_MS);
    return `Maintenance in ${hours} hours: `;
  }
  const minutes = Math.round(left / MINUTE_MS);
  if (minutes < 1) return 'Maintenance in less than a minute: ';
  return `Maintenance in ${minutes} minute${minutes === 1 ? '' : 's'}: `;
}
