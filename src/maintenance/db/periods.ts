/**
 * Time partitions of a RANGE-partitioned table (runbook §4.2): unit periods (UTC days or months), the
 * partition names gameops gives them (`p_2026_12`, `p_2026_12_01`) and the bounds MySQL stores for
 * `RANGE (TO_DAYS(col))`, `RANGE (UNIX_TIMESTAMP(col))` and `RANGE COLUMNS (col)` on a date column.
 * Every bound is compared as the UTC instant it stands for. Pure.
 */
import { InputError, wallClock } from '../../core/index.ts';

export type PartitionUnit = 'day' | 'month';

/** How a table's partition bounds are written: the function of its RANGE expression. */
export type BoundKind = 'to_days' | 'unix_timestamp' | 'columns';

/** `TO_DAYS('1970-01-01')`: TO_DAYS counts days from year 0. */
export const TO_DAYS_EPOCH = 719_528;
const DAY_MS = 86_400_000;

/** The start (UTC) of the unit period holding `ms`. */
export function periodStart(ms: number, unit: PartitionUnit): number {
  const d = new Date(ms);
  return unit === 'month'
    ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
    : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

/** `ms` moved by `n` units (months keep the day of month, which is 1 for period starts). */
export function addUnits(ms: number, unit: PartitionUnit, n: number): number {
  if (unit === 'day') return ms + n * DAY_MS;
  const d = new Date(ms);
  return Date.UTC(
    d.getUTCFullYear(),
    d.getUTCMonth() + n,
    d.getUTCDate(),
    d.getUTCHours(),
    d.getUTCMinutes(),
  );
}

/** The first period start strictly after `ms`. */
export function nextBoundary(ms: number, unit: PartitionUnit): number {
  return addUnits(periodStart(ms, unit), unit, 1);
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** `YYYY-MM-DD` of a UTC instant. */
export function utcDate(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** `YYYY-MM-DD HH:MM:SS` of a UTC instant, as MySQL prints a DATETIME. */
export function utcDateTime(ms: number): string {
  const d = new Date(ms);
  return `${utcDate(ms)} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** How period partitions are named: `p_2026_12` / `p_2026_12_01` (default) or `p202612` / `p20261201`. */
export type PartitionNaming = 'underscore' | 'compact';

/**
 * The name gameops gives the partition of the period starting at `start`: `p_2026_12` or `p_2026_12_01`,
 * or with `compact` naming `p202612` or `p20261201`.
 */
export function partitionName(
  start: number,
  unit: PartitionUnit,
  naming: PartitionNaming = 'underscore',
): string {
  const d = new Date(start);
  const [y, m, day] = [String(d.getUTCFullYear()), pad(d.getUTCMonth() + 1), pad(d.getUTCDate())];
  if (naming === 'compact') return unit === 'month' ? `p${y}${m}` : `p${y}${m}${day}`;
  return unit === 'month' ? `p_${y}_${m}` : `p_${y}_${m}_${day}`;
}

/**
 * The naming a table's existing period partitions (those with a finite bound) follow: `compact` when every
 * one is `pYYYYMM` or `pYYYYMMDD`, else the default (also for a mix, or names of another kind).
 */
export function partitionNaming(names: readonly string[]): PartitionNaming {
  return names.length > 0 && names.every((n) => /^p\d{6}(\d{2})?$/i.test(n)) ? 'compact' : 'underscore';
}

/**
 * What MySQL stores in `PARTITION_DESCRIPTION` for a bound at the UTC instant `ms` (a number for
 * TO_DAYS/UNIX_TIMESTAMP, a quoted date for RANGE COLUMNS), and the SQL written in `VALUES LESS THAN (…)`.
 */
export function boundSql(ms: number, kind: BoundKind): string {
  switch (kind) {
    case 'to_days':
      return `TO_DAYS('${utcDate(ms)}')`;
    case 'unix_timestamp':
      return String(Math.floor(ms / 1000));
    case 'columns':
      return `'${utcDate(ms)}'`;
  }
}

/**
 * The UTC instant a `PARTITION_DESCRIPTION` stands for; `null` for MAXVALUE.
 * @throws InputError naming the partition when the bound cannot be read.
 */
export function boundInstant(description: string, kind: BoundKind, where: string): number | null {
  const text = description.trim();
  if (/^maxvalue$/i.test(text)) return null;
  if (kind === 'columns') {
    const m = /^'?(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}:\d{2}))?(?:\.\d+)?'?$/.exec(text);
    if (m) return Date.parse(`${m[1]}T${m[2] ?? '00:00:00'}Z`);
  } else if (/^-?\d+$/.test(text)) {
    const n = Number(text);
    return kind === 'to_days' ? (n - TO_DAYS_EPOCH) * DAY_MS : n * 1000;
  }
  throw new InputError(`${where}: bound ${JSON.stringify(text)} is not a ${kind} value gameops can read`);
}

/**
 * The bound kind and column of a RANGE partitioning (`information_schema.PARTITIONS`' method and
 * expression), or a reason why gameops cannot rotate it.
 */
export function boundKindOf(
  method: string | null,
  expression: string | null,
  columnType: (column: string) => string | undefined,
): { kind: BoundKind; column: string } | { problem: string } {
  if (!method) return { problem: 'is not partitioned' };
  const expr = (expression ?? '').trim();
  if (/^range columns$/i.test(method)) {
    const column = expr.replace(/`/g, '').trim();
    const type = columnType(column);
    if (!/^[A-Za-z0-9_$]+$/.test(column) || (type !== 'date' && type !== 'datetime'))
      return { problem: `is partitioned by RANGE COLUMNS(${expr}), not one DATE or DATETIME column` };
    return { kind: 'columns', column };
  }
  if (!/^range$/i.test(method)) return { problem: `is partitioned by ${method}, not by RANGE` };
  const m = /^(to_days|unix_timestamp)\s*\(\s*`?([A-Za-z0-9_$]+)`?\s*\)$/i.exec(expr);
  if (!m)
    return {
      problem: `is partitioned by RANGE(${expr}), not RANGE(TO_DAYS(col)) or RANGE(UNIX_TIMESTAMP(col))`,
    };
  return { kind: m[1]!.toLowerCase() as BoundKind, column: m[2]! };
}

/**
 * `YYYY-MM-DD HH:MM:SS` of an instant on the wall clock of `zone` (an IANA name or `+HH:MM`): how a
 * DATETIME written with NOW() by a server in that zone reads. `UTC` is {@link utcDateTime}.
 */
export function zonedDateTime(ms: number, zone: string): string {
  if (zone === 'UTC') return utcDateTime(ms);
  const w = wallClock(ms, zone);
  return `${w.year}-${w.month}-${w.day} ${w.hour}:${w.minute}:${w.second}`;
}
