/**
 * Which backup sets `gameops backup prune` deletes: a pure function of the sets, the policy and "now".
 *
 * The seed pruned with `find -mtime +30 -exec rm -rf`, which deletes every backup once backups stop for
 * 30 days. Here age alone never deletes anything that another rule keeps:
 * - running sets and sets dated after `now` (clock skew) are kept;
 * - every set younger than `keepDays` is kept;
 * - grandfather-father-son over complete sets: the newest complete set of each of the `daily` most
 *   recent UTC days that have one, likewise for ISO weeks and months. Buckets are counted over the sets
 *   that exist, so a gap in the history never makes it delete more;
 * - the newest `minVerified` verified complete sets are kept, and the newest verified set always is;
 * - failed sets (they have no manifest) are kept while younger than `keepDays`, then deleted.
 * Everything else is deleted. Pruned sets are ignored.
 */
import { InputError } from '../core/index.ts';

export interface RetentionSet {
  id: string;
  /** ISO 8601. */
  createdAt: string;
  state: 'running' | 'complete' | 'failed' | 'pruned';
  verified: boolean;
}

export interface RetentionPolicy {
  /** Keep every set younger than this many days. */
  keepDays: number;
  /** Newest complete set of each of this many most recent days that have one. */
  daily: number;
  /** Likewise for ISO weeks. */
  weekly: number;
  /** Likewise for calendar months (UTC). */
  monthly: number;
  /** Never fewer verified complete sets than this (the newest verified set is kept regardless). */
  minVerified: number;
}

export interface RetentionDecision {
  id: string;
  keep: boolean;
  /** Why, readable: `younger than 30 days`, `weekly 2026-W47`, `the newest verified set`... */
  reasons: string[];
}

const DAY_MS = 86_400_000;

interface Dated {
  set: RetentionSet;
  ms: number;
}

function checkPolicy(policy: RetentionPolicy): void {
  for (const field of ['keepDays', 'daily', 'weekly', 'monthly', 'minVerified'] as const) {
    const value = policy[field];
    if (!Number.isInteger(value) || value < 0) {
      throw new InputError(`retention.${field} must be a whole number ≥ 0, not ${String(value)}`);
    }
  }
}

function dayKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function monthKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

/** ISO 8601 week of a UTC instant, `2026-W47` (the week-year can differ from the calendar year). */
export function isoWeekKey(ms: number): string {
  const date = new Date(ms);
  const day = date.getUTCDay() || 7; // Monday 1 … Sunday 7
  // The Thursday of this week decides the week-year.
  const thursday = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 4 - day);
  const year = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY_MS)) + 1;
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** Newest first; equal times by id, so the result never depends on the input order. */
function newestFirst(a: Dated, b: Dated): number {
  return b.ms - a.ms || (a.set.id < b.set.id ? -1 : a.set.id > b.set.id ? 1 : 0);
}

/**
 * Keeps the newest set of each of the `count` most recent buckets that have a set. `sorted` is newest
 * first, so the first set seen in a bucket is its newest.
 */
function keepBuckets(
  sorted: readonly Dated[],
  count: number,
  key: (ms: number) => string,
  label: string,
  keep: (id: string, reason: string) => void,
): void {
  if (count === 0) return;
  const seen = new Set<string>();
  for (const { set, ms } of sorted) {
    const bucket = key(ms);
    if (seen.has(bucket)) continue;
    seen.add(bucket);
    keep(set.id, `${label} ${bucket}`);
    if (seen.size === count) return;
  }
}

/**
 * Decides, for every set that is not already pruned, whether prune keeps it and why. Pure and
 * deterministic: the same sets in any order give the same decisions, newest set first.
 *
 * @throws InputError naming the set when its `createdAt` is not a date or its id appears twice, and
 *   naming the field when the policy has a negative or fractional number, or `now` is not a date.
 */
export function planRetention(
  sets: readonly RetentionSet[],
  policy: RetentionPolicy,
  now: Date,
): RetentionDecision[] {
  checkPolicy(policy);
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) throw new InputError('retention: "now" is not a valid date');

  const dated: Dated[] = [];
  const ids = new Set<string>();
  for (const set of sets) {
    if (set.state === 'pruned') continue;
    const ms = Date.parse(set.createdAt);
    if (Number.isNaN(ms)) {
      throw new InputError(`backup set ${set.id}: createdAt "${set.createdAt}" is not a valid date`);
    }
    if (ids.has(set.id)) throw new InputError(`backup set ${set.id} appears twice in the history`);
    ids.add(set.id);
    dated.push({ set, ms });
  }
  dated.sort(newestFirst);

  const reasons = new Map<string, string[]>(dated.map(({ set }) => [set.id, []]));
  const keep = (id: string, reason: string): void => {
    reasons.get(id)?.push(reason);
  };
  const keepWindow = policy.keepDays * DAY_MS;
  const days = `${policy.keepDays} day${policy.keepDays === 1 ? '' : 's'}`;

  for (const { set, ms } of dated) {
    if (set.state === 'running') keep(set.id, 'running');
    if (ms > nowMs) keep(set.id, 'from the future (clock skew): kept');
    else if (nowMs - ms < keepWindow) keep(set.id, `younger than ${days}`);
  }

  // Future-dated sets are kept anyway; leaving them out of the buckets and the floor keeps more real
  // sets, never fewer.
  const complete = dated.filter(({ set, ms }) => set.state === 'complete' && ms <= nowMs);
  keepBuckets(complete, policy.daily, dayKey, 'daily', keep);
  keepBuckets(complete, policy.weekly, isoWeekKey, 'weekly', keep);
  keepBuckets(complete, policy.monthly, monthKey, 'monthly', keep);

  const verified = complete.filter(({ set }) => set.verified);
  verified.slice(0, Math.max(1, policy.minVerified)).forEach(({ set }, rank) => {
    keep(
      set.id,
      rank === 0 ? 'the newest verified set' : `one of the ${policy.minVerified} newest verified sets`,
    );
  });

  return dated.map(({ set }) => {
    const why = reasons.get(set.id) ?? [];
    if (why.length > 0) return { id: set.id, keep: true, reasons: why };
    const old = `older than ${days}`;
    let reason: string;
    if (set.state === 'failed') reason = policy.keepDays > 0 ? `failed and ${old}` : 'failed';
    else reason = policy.keepDays > 0 ? `${old} and not kept by any rule` : 'not kept by any rule';
    return { id: set.id, keep: false, reasons: [reason] };
  });
}

/** The verify and drill results recorded on a set (the catalog's columns). */
export interface SetChecks {
  verifiedAt: string | null;
  verifyOk: boolean | null;
  verifyError: string | null;
  drilledAt: string | null;
  drillOk: boolean | null;
}

export interface CheckResult {
  what: 'verify' | 'drill';
  at: string;
  ok: boolean;
  error: string | null;
}

/** A set's latest check, a verify or a drill (on the same instant a failure wins), or undefined. */
export function latestCheck(set: SetChecks): CheckResult | undefined {
  const checks: CheckResult[] = [];
  if (set.verifiedAt !== null && set.verifyOk !== null)
    checks.push({ what: 'verify', at: set.verifiedAt, ok: set.verifyOk, error: set.verifyError });
  if (set.drilledAt !== null && set.drillOk !== null)
    checks.push({ what: 'drill', at: set.drilledAt, ok: set.drillOk, error: null });
  return checks.sort((a, b) => (a.at === b.at ? Number(a.ok) - Number(b.ok) : a.at < b.at ? 1 : -1))[0];
}

/**
 * A set counts as verified for retention when its latest check, a verify or a drill, passed: a set whose
 * later drill failed, or whose later verify found a bad object, does not.
 */
export function lastCheckPassed(set: SetChecks): boolean {
  return latestCheck(set)?.ok === true;
}
