/**
 * The two intake formats, validated at the boundary: Alertmanager's webhook (payload version "4"; extra
 * fields Alertmanager may add are ignored) and gameops's generic JSON alerts (strict: a misspelt field is
 * refused). Each becomes a batch of normalised alerts (instants as ISO-8601 UTC with milliseconds).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { InputError } from '../core/index.ts';
import type { AlertUpsert } from '../store/alerts.ts';

/** Most alerts one payload may carry (Alertmanager's own limit is `max_alerts`, unlimited by default). */
export const MAX_ALERTS_PER_PAYLOAD = 50_000;

/** Intake caps: larger label sets are truncated (never refused: a 4xx makes Alertmanager drop the notification). */
export const MAX_LABELS = 100;
export const MAX_LABEL_NAME = 128;
export const MAX_LABEL_VALUE = 1024;
export const MAX_ANNOTATION_VALUE = 8192;
/** The annotation that records what intake truncated (`labels`, `annotations` or both). */
export const TRUNCATED_ANNOTATION = 'gameops_truncated';

/**
 * At most MAX_LABELS entries (in name order, `alertname` always kept), names cut to MAX_LABEL_NAME and
 * values to `maxValue` characters. Returns the record and whether anything was cut.
 */
export function capRecord(
  record: Record<string, string>,
  maxValue: number,
): { record: Record<string, string>; cut: boolean } {
  const keys = Object.keys(record);
  let cut = keys.length > MAX_LABELS;
  if (!cut && keys.every((k) => k.length <= MAX_LABEL_NAME && (record[k] as string).length <= maxValue))
    return { record, cut: false };
  const kept = cut
    ? [
        ...(keys.includes('alertname') ? ['alertname'] : []),
        ...keys.filter((k) => k !== 'alertname').sort(),
      ].slice(0, MAX_LABELS)
    : keys;
  const out: Record<string, string> = {};
  for (const key of kept) {
    const value = record[key] as string;
    const name = key.length > MAX_LABEL_NAME ? key.slice(0, MAX_LABEL_NAME) : key;
    if (name !== key || value.length > maxValue) cut = true;
    if (!(name in out)) out[name] = value.length > maxValue ? value.slice(0, maxValue) : value;
  }
  return { record: out, cut };
}

/** Labels and annotations within the intake caps; a truncation is recorded in an annotation. */
function capped(
  labels: Record<string, string>,
  annotations: Record<string, string>,
): { labels: Record<string, string>; annotations: Record<string, string> } {
  const l = capRecord(labels, MAX_LABEL_VALUE);
  const a = capRecord(annotations, MAX_ANNOTATION_VALUE);
  if (!l.cut && !a.cut) return { labels, annotations };
  const what = [...(l.cut ? ['labels'] : []), ...(a.cut ? ['annotations'] : [])].join(',');
  return { labels: l.record, annotations: { ...a.record, [TRUNCATED_ANNOTATION]: what } };
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * An RFC 3339 instant (Go's nanosecond fractions included) as ISO-8601 UTC with milliseconds; undefined
 * when it is not one. Go's zero time (`0001-01-01T00:00:00Z`, "no end") is returned as is.
 */
export function normaliseInstant(text: string): string | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const fraction = (m[7] ?? '.000').slice(0, 4).padEnd(4, '0');
  const zone = m[8] === 'z' ? 'Z' : m[8];
  const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${fraction}${zone}`);
  if (Number.isNaN(ms)) return undefined;
  return new Date(ms).toISOString();
}

// A pattern, not a parse: cheap for 1,000 alerts. The calendar check happens in normaliseInstant.
const instant = z.string().max(64).regex(RFC3339, 'must be an RFC 3339 date-time, e.g. 2026-11-26T10:00:00Z');
const labelSet = z.record(z.string().min(1, 'label names must not be empty'), z.string());

const amAlertSchema = z.object({
  status: z.enum(['firing', 'resolved']),
  labels: labelSet,
  annotations: labelSet.default({}),
  startsAt: instant,
  endsAt: instant.optional(),
  generatorURL: z.string().max(8192).optional(),
  fingerprint: z.string().min(1).max(256),
});

/** Alertmanager's webhook payload, version 4 (field-notes: "Alertmanager webhook contract"). */
export const alertmanagerPayloadSchema = z.object({
  version: z.literal('4', { error: 'must be "4" (the Alertmanager webhook payload version)' }),
  groupKey: z
    .string()
    .min(1)
    .max(16 * 1024),
  truncatedAlerts: z.number().int().min(0).default(0),
  status: z.enum(['firing', 'resolved']),
  receiver: z.string().max(1024),
  groupLabels: labelSet.default({}),
  commonLabels: labelSet.default({}),
  commonAnnotations: labelSet.default({}),
  externalURL: z.string().max(8192).default(''),
  alerts: z.array(amAlertSchema).max(MAX_ALERTS_PER_PAYLOAD),
});
export type AlertmanagerPayload = z.infer<typeof alertmanagerPayloadSchema>;

const genericAlertSchema = z.strictObject({
  name: z.string().min(1).max(256),
  status: z.enum(['firing', 'resolved']).default('firing'),
  labels: labelSet.default({}),
  annotations: labelSet.default({}),
  startsAt: instant.optional(),
  endsAt: instant.optional(),
  fingerprint: z.string().min(1).max(256).optional(),
  summary: z.string().max(4096).optional(),
  generatorUrl: z.string().max(8192).optional(),
});

/** `POST /api/alerts`: alerts from anything that is not Alertmanager (scripts, game servers, cron jobs). */
export const genericPayloadSchema = z.strictObject({
  alerts: z.array(genericAlertSchema).min(1).max(MAX_ALERTS_PER_PAYLOAD),
});
export type GenericPayload = z.infer<typeof genericPayloadSchema>;
export type GenericAlert = GenericPayload['alerts'][number];

/**
 * Validates `payload`.
 * @throws InputError naming the first wrong field (`alerts[3].startsAt: must be …`), with every issue
 *   (at most 20) in details.
 */
export function parsePayload<T>(schema: z.ZodType<T>, payload: unknown, what: string): T {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 20).map((issue) => ({
    field: fieldPath(issue.path),
    message: issue.message,
  }));
  const first = issues[0];
  throw new InputError(
    `${what}: ${first ? `${first.field}: ${first.message}` : 'invalid'}${parsed.error.issues.length > 1 ? ` (and ${parsed.error.issues.length - 1} more)` : ''}`,
    { details: { field: first?.field, issues } },
  );
}

function fieldPath(path: PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : `${out ? '.' : ''}${String(part)}`;
  return out || '(body)';
}

/** A start instant that matched the pattern but is no date (month 13) is refused like a malformed one. */
function startOf(text: string, field: string, cache?: Map<string, string | undefined>): string {
  const iso = cached(text, cache);
  if (iso === undefined)
    throw new InputError(`${field}: "${text}" is not a valid date-time`, { details: { field } });
  return iso;
}

/** Alerts of one group mostly share their instants: each distinct text is parsed once per payload. */
function cached(text: string, cache: Map<string, string | undefined> | undefined): string | undefined {
  if (!cache) return normaliseInstant(text);
  if (cache.has(text)) return cache.get(text);
  const iso = normaliseInstant(text);
  cache.set(text, iso);
  return iso;
}

/** Go's zero time and anything before 1970 mean "no end". */
function endOf(text: string | undefined, cache?: Map<string, string | undefined>): string | undefined {
  if (text === undefined) return undefined;
  const iso = cached(text, cache);
  return iso === undefined || iso < '1970-01-02' ? undefined : iso;
}

/** The alerts of an Alertmanager payload as the store takes them. */
export function alertmanagerAlerts(payload: AlertmanagerPayload): AlertUpsert[] {
  const cache = new Map<string, string | undefined>();
  return payload.alerts.map((a, i) => {
    const { labels, annotations } = capped(a.labels, a.annotations);
    return {
      fingerprint: a.fingerprint,
      startsAt: startOf(a.startsAt, `alerts[${i}].startsAt`, cache),
      status: a.status,
      endsAt: endOf(a.endsAt, cache),
      name: labels['alertname'] ?? '(no alertname)',
      labels,
      annotations,
      generatorUrl: a.generatorURL || undefined,
    };
  });
}

/**
 * A generic alert's fingerprint when it brings none: stable over its name and labels (sorted), like
 * Alertmanager's, so the same alert posted again is the same alert.
 */
export function genericFingerprint(name: string, labels: Record<string, string>): string {
  const hash = createHash('sha256').update(name);
  for (const key of Object.keys(labels).sort()) hash.update(`\0${key}\0${labels[key] ?? ''}`);
  return hash.digest('hex').slice(0, 16);
}

/**
 * A generic alert as the store takes it. Its labels get `alertname` (its name); a `summary` becomes the
 * summary annotation. Without startsAt it continues the instance of that fingerprint that fires
 * (`firingSince`), else it starts now.
 */
export function genericAlert(
  alert: GenericAlert,
  now: Date,
  firingSince: (fingerprint: string) => string | undefined,
): AlertUpsert {
  const given = { ...alert.labels, alertname: alert.name };
  // The fingerprint is over what was sent, so truncation never merges two alerts.
  const fingerprint = alert.fingerprint ?? genericFingerprint(alert.name, given);
  const startsAt =
    alert.startsAt !== undefined
      ? startOf(alert.startsAt, 'startsAt')
      : (firingSince(fingerprint) ?? now.toISOString());
  const { labels, annotations } = capped(given, {
    ...alert.annotations,
    ...(alert.summary !== undefined ? { summary: alert.summary } : {}),
  });
  const endsAt = endOf(alert.endsAt) ?? (alert.status === 'resolved' ? now.toISOString() : undefined);
  return {
    fingerprint,
    startsAt,
    status: alert.status,
    endsAt,
    name: alert.name,
    labels,
    annotations,
    generatorUrl: alert.generatorUrl,
  };
}
