import type { Command } from 'commander';
import { UnavailableError } from '../core/index.ts';
import type { ApiTransport } from './api-client.ts';
import { withOpsSession, type OpsSession } from './ops-session.ts';

/*
 * What the incident, on-call and alert commands share: choosing their client for the session, the few
 * remote requests the JSON transport does not cover, and writing results (JSON or text, times in a zone).
 */

/**
 * Runs `work` with the client of this command's session: `remote` over the server's API when a server
 * holds the store (or GAMEOPS_URL is set), else `local` on the services in this process.
 */
export async function withClient<C, T>(
  command: Command,
  clients: { remote: (session: OpsSession) => C; local: (session: OpsSession) => Promise<C> },
  work: (client: C, session: OpsSession) => Promise<T>,
): Promise<T> {
  return withOpsSession(command, async (session) =>
    work(session.remote ? clients.remote(session) : await clients.local(session), session),
  );
}

/** `?a=1&b=2` of the pairs whose value is set (a name may repeat), or `''` when none is. */
export function queryString(
  params: Record<string, string | undefined> | Array<[string, string | undefined]>,
): string {
  const q = new URLSearchParams();
  for (const [k, v] of Array.isArray(params) ? params : Object.entries(params))
    if (v !== undefined) q.append(k, v);
  return q.size > 0 ? `?${q.toString()}` : '';
}

/**
 * GETs a text (not JSON) answer from the server, e.g. a timeline export or an iCalendar feed.
 * @throws UnavailableError when the server does not answer; the server's own error (as the transport
 *   maps it) when it refuses.
 */
export async function getText(api: ApiTransport, path: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(`${api.base}${path}`, {
      headers: api.headers(),
      signal: AbortSignal.timeout(60_000),
    });
  } catch (err) {
    throw new UnavailableError(`the gameops server at ${api.base} did not answer: ${String(err)}`);
  }
  const text = await response.text();
  if (!response.ok) {
    // The error answer is JSON like any other: let the transport turn it into our error.
    await api.send('GET', path);
    throw new UnavailableError(`the server answered ${response.status}`);
  }
  return text;
}

/** Writes `text` to stdout, ending it with a newline when it has none. */
export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Writes `value` to stdout as indented JSON. */
export function json(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** `value` as JSON with `--json`, else the human text `human()` builds. */
export function print(asJson: boolean | undefined, value: unknown, human: () => string): void {
  if (asJson) json(value);
  else out(human());
}

/**
 * `2026-03-01 19:05` in `zone`; with `offset` followed by the zone's offset, `short` as `GMT+1` and
 * `long` as `GMT+01:00` (UTC: `GMT+00:00`); `-` when there is no time.
 */
export function when(iso: string | undefined, zone: string, offset?: 'short' | 'long'): string {
  if (iso === undefined) return '-';
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
    ...(offset ? { timeZoneName: offset === 'short' ? 'shortOffset' : 'longOffset' } : {}),
  }).formatToParts(new Date(iso));
  const p = (t: Intl.DateTimeFormatPartTypes): string => parts.find((x) => x.type === t)?.value ?? '';
  const text = `${p('year')}-${p('month')}-${p('day')} ${p('hour')}:${p('minute')}`;
  if (!offset) return text;
  const name = p('timeZoneName');
  return `${text} ${offset === 'long' && name === 'GMT' ? 'GMT+00:00' : name}`;
}
