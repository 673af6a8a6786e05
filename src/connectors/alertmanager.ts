import { z } from 'zod';
import type { AlertmanagerConfig } from '../config/index.ts';
import { InputError, maskSecrets, NotFoundError, UnavailableError } from '../core/index.ts';
import { httpAuth } from './http-auth.ts';
import { requestCapped } from './http-body.ts';

/**
 * Labels and annotations: any names, string values. Written as an object with a catch-all rather than
 * `z.record(z.string(), z.string())`: it accepts and returns the same (JSON keys are strings anyway) in
 * about half the time, which is most of validating 1,000 alerts (issue #2).
 */
const stringMap = z.object({}).catchall(z.string());

/** The fields of an Alertmanager API v2 alert that gameops uses; unknown fields are dropped. */
const alertSchema = z.object({
  labels: stringMap,
  annotations: stringMap.default({}),
  startsAt: z.string(),
  endsAt: z.string().optional(),
  fingerprint: z.string(),
  generatorURL: z.string().optional(),
  status: z.object({ state: z.string() }),
});
const alertsSchema = z.array(alertSchema);
const alertGroupsSchema = z.array(
  z.object({
    labels: stringMap,
    receiver: z.object({ name: z.string() }),
    alerts: alertsSchema,
  }),
);
/** `GET /api/v2/alerts/groups` entries: a group's labels, its receiver and its alerts. */
export type AlertmanagerAlertGroup = z.infer<typeof alertGroupsSchema>[number];

const statusSchema = z.object({
  versionInfo: z.object({ version: z.string() }).partial().optional(),
  uptime: z.string().optional(),
  cluster: z.object({ status: z.string() }).partial().optional(),
});

export type AlertmanagerAlert = z.infer<typeof alertSchema>;

/** A silence matcher as API v2 has it; `isEqual: false` negates it (absent means true, before 0.22). */
const silenceMatcherSchema = z.object({
  name: z.string(),
  value: z.string(),
  isRegex: z.boolean(),
  isEqual: z.boolean().default(true),
});
export type SilenceMatcher = z.infer<typeof silenceMatcherSchema>;

const silenceSchema = z.object({
  id: z.string(),
  status: z.object({ state: z.string() }),
  matchers: z.array(silenceMatcherSchema),
  startsAt: z.string(),
  endsAt: z.string(),
  updatedAt: z.string().optional(),
  createdBy: z.string(),
  comment: z.string(),
});
/** `GET /api/v2/silences` entries; `status.state` is `active`, `pending` or `expired`. */
export type AlertmanagerSilence = z.infer<typeof silenceSchema>;
const silencesSchema = z.array(silenceSchema);
const createdSilenceSchema = z.object({ silenceID: z.string() });

/** What `POST /api/v2/silences` takes (a postableSilence without id: always a new silence). */
export interface SilenceInput {
  matchers: SilenceMatcher[];
  startsAt: string;
  endsAt: string;
  createdBy: string;
  comment: string;
}

export interface AlertmanagerStatus {
  version: string | undefined;
  uptime: string | undefined;
  clusterStatus: string | undefined;
}

export interface AlertQuery {
  /** @default true */
  active?: boolean;
  /** @default false */
  silenced?: boolean;
  /** @default false */
  inhibited?: boolean;
  /** @default false */
  unprocessed?: boolean;
  /** Matchers (`name="value"`) every alert must match (the API's `filter`). */
  filter?: string[];
  /** A regex on the receiver name. */
  receiver?: string;
}

export interface AlertmanagerRequestOptions {
  signal?: AbortSignal;
  /** @default 5000 */
  timeoutMs?: number;
}

export interface AlertmanagerClient {
  /** The base URL without credentials, for messages. */
  readonly target: string;
  /** `GET /api/v2/alerts`: by default the alerts that are firing and neither silenced nor inhibited. */
  alerts(query?: AlertQuery, options?: AlertmanagerRequestOptions): Promise<AlertmanagerAlert[]>;
  /** `GET /api/v2/alerts/groups`: alerts by notification group (same query as `alerts`). */
  alertGroups(query?: AlertQuery, options?: AlertmanagerRequestOptions): Promise<AlertmanagerAlertGroup[]>;
  /** `GET /api/v2/status`; `uptime` is the instant Alertmanager started (RFC 3339). */
  status(options?: AlertmanagerRequestOptions): Promise<AlertmanagerStatus>;
  /**
   * `POST /api/v2/silences`: creates a silence and returns its id.
   * @throws InputError when Alertmanager refuses it (400), with its reason.
   */
  createSilence(input: SilenceInput, options?: AlertmanagerRequestOptions): Promise<string>;
  /** `GET /api/v2/silences`, optionally only those with these matchers (`filter`). */
  silences(filter?: string[], options?: AlertmanagerRequestOptions): Promise<AlertmanagerSilence[]>;
  /**
   * `DELETE /api/v2/silence/{id}`: expires a silence (an expired one stays listed as `expired`).
   * @throws NotFoundError when Alertmanager has no silence with that id.
   */
  expireSilence(id: string, options?: AlertmanagerRequestOptions): Promise<void>;
}

/** The base URL as shown in messages: credentials removed, no trailing slash. */
export function alertmanagerTarget(config: Pick<AlertmanagerConfig, 'url'>): string {
  try {
    const url = new URL(config.url);
    url.username = '';
    url.password = '';
    return url.href.replace(/\/$/, '');
  } catch {
    return '(invalid URL)';
  }
}

/**
 * The most a response may hold. 1,000 alerts are about 350 KB; 64 MiB is far beyond any real
 * Alertmanager and keeps a broken or hostile one from exhausting memory.
 */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

/**
 * Alertmanager API v2 over global fetch (API v1 was removed in Alertmanager 0.27). Authenticates with the
 * configured bearer token, or Basic auth from `username`/`password`; the credentials never show in an error.
 */
export function createAlertmanagerClient(config: AlertmanagerConfig): AlertmanagerClient {
  const base = new URL(config.url.endsWith('/') ? config.url : `${config.url}/`);
  // The config refuses URLs with credentials. Should one get here anyway, it is neither sent (fetch would
  // refuse it, quoting the URL) nor shown.
  base.username = '';
  base.password = '';
  const headers: Record<string, string> = { accept: 'application/json' };
  const auth = httpAuth(config);
  if (auth.header) headers['authorization'] = auth.header;
  const target = alertmanagerTarget(config);
  const secrets = auth.secrets;

  async function getJson(path: string, options: AlertmanagerRequestOptions): Promise<unknown> {
    const url = new URL(path, base);
    const timeoutMs = options.timeoutMs ?? 5000;
    const fail = (message: string, details: Record<string, unknown> = {}): UnavailableError =>
      new UnavailableError(maskSecrets(`Alertmanager at ${target}: ${message}`, secrets), {
        details: { target, ...details },
      });
    const response = await requestCapped(url, {
      headers,
      maxBytes: MAX_BODY_BYTES,
      timeoutMs,
      signal: options.signal,
      request: `GET ${url.pathname}`,
      fail,
    });
    const { body } = response;
    if (!response.ok)
      throw fail(
        `GET ${url.pathname} answered ${response.status} ${response.statusText}: ${body.slice(0, 200)}`,
        {
          httpStatus: response.status,
        },
      );
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw fail(`GET ${url.pathname} answered with invalid JSON: ${body.slice(0, 200)}`);
    }
  }

  /** A write (POST/DELETE) with a JSON body; returns the status and the (capped) answer. */
  async function send(
    method: 'POST' | 'DELETE',
    path: string,
    body: unknown,
    options: AlertmanagerRequestOptions,
  ): Promise<{ status: number; text: string }> {
    const url = new URL(path, base);
    const timeoutMs = options.timeoutMs ?? 5000;
    const request = `${method} ${url.pathname}`;
    const fail = (message: string): UnavailableError =>
      new UnavailableError(maskSecrets(`Alertmanager at ${target}: ${message}`, secrets), {
        details: { target },
      });
    const answer = await requestCapped(url, {
      method,
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      maxBytes: 1024 * 1024,
      timeoutMs,
      signal: options.signal,
      request,
      fail,
    });
    return { status: answer.status, text: answer.body };
  }

  function validate<T>(schema: z.ZodType<T>, value: unknown, path: string): T {
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    throw new UnavailableError(
      `Alertmanager at ${target}: GET ${path} answered an unexpected shape (${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'})`,
      { details: { target } },
    );
  }

  return {
    target,
    async alerts(query = {}, options = {}) {
      const path = `api/v2/alerts?${alertParams(query)}`;
      return validate(alertsSchema, await getJson(path, options), '/api/v2/alerts');
    },
    async alertGroups(query = {}, options = {}) {
      const path = `api/v2/alerts/groups?${alertParams(query)}`;
      return validate(alertGroupsSchema, await getJson(path, options), '/api/v2/alerts/groups');
    },
    async status(options = {}) {
      const body = validate(statusSchema, await getJson('api/v2/status', options), '/api/v2/status');
      return {
        version: body.versionInfo?.version,
        uptime: body.uptime,
        clusterStatus: body.cluster?.status,
      };
    },
    async createSilence(input, options = {}) {
      const { status, text } = await send('POST', 'api/v2/silences', input, options);
      if (status === 400)
        throw new InputError(`Alertmanager at ${target} refused the silence: ${text.trim().slice(0, 300)}`, {
          details: { target },
        });
      if (status !== 200)
        throw new UnavailableError(
          `Alertmanager at ${target}: POST /api/v2/silences answered ${status}: ${text.slice(0, 200)}`,
          { details: { target, httpStatus: status } },
        );
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new UnavailableError(`Alertmanager at ${target}: POST /api/v2/silences answered invalid JSON`, {
          details: { target },
        });
      }
      return validate(createdSilenceSchema, parsed, '/api/v2/silences').silenceID;
    },
    async silences(filter = [], options = {}) {
      const params = new URLSearchParams();
      for (const matcher of filter) params.append('filter', matcher);
      const query = params.size > 0 ? `?${params.toString()}` : '';
      return validate(silencesSchema, await getJson(`api/v2/silences${query}`, options), '/api/v2/silences');
    },
    async expireSilence(id, options = {}) {
      const { status, text } = await send(
        'DELETE',
        `api/v2/silence/${encodeURIComponent(id)}`,
        undefined,
        options,
      );
      if (status === 200) return;
      // Alertmanager answers 404 for an unknown id (older versions: 500 "silence ... not found").
      if (status === 404 || /not found/i.test(text))
        throw new NotFoundError(`Alertmanager at ${target} has no silence with id ${id}`, {
          details: { id },
        });
      if (status === 400)
        throw new InputError(
          `Alertmanager at ${target} refused to expire silence ${id}: ${text.trim().slice(0, 300)}`,
          {
            details: { id },
          },
        );
      throw new UnavailableError(
        `Alertmanager at ${target}: DELETE /api/v2/silence/${id} answered ${status}: ${text.slice(0, 200)}`,
        { details: { target, httpStatus: status } },
      );
    },
  };
}

function alertParams(query: AlertQuery): string {
  const params = new URLSearchParams({
    active: String(query.active ?? true),
    silenced: String(query.silenced ?? false),
    inhibited: String(query.inhibited ?? false),
    unprocessed: String(query.unprocessed ?? false),
  });
  for (const matcher of query.filter ?? []) params.append('filter', matcher);
  if (query.receiver !== undefined) params.set('receiver', query.receiver);
  return params.toString();
}
