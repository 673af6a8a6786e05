import { z } from 'zod';
import type { AlertmanagerConfig } from '../config/index.ts';
import { maskSecrets, UnavailableError } from '../core/index.ts';
import { httpAuth } from './http-auth.ts';
import { fetchCapped } from './http-body.ts';

/** The fields of an Alertmanager API v2 alert that gameops uses; unknown fields are dropped. */
const alertSchema = z.object({
  labels: z.record(z.string(), z.string()),
  annotations: z.record(z.string(), z.string()).default({}),
  startsAt: z.string(),
  endsAt: z.string().optional(),
  fingerprint: z.string(),
  generatorURL: z.string().optional(),
  status: z.object({ state: z.string() }),
});
const alertsSchema = z.array(alertSchema);

const statusSchema = z.object({
  versionInfo: z.object({ version: z.string() }).partial().optional(),
  uptime: z.string().optional(),
  cluster: z.object({ status: z.string() }).partial().optional(),
});

export type AlertmanagerAlert = z.infer<typeof alertSchema>;

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
  /** `GET /api/v2/status`. */
  status(options?: AlertmanagerRequestOptions): Promise<AlertmanagerStatus>;
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
    const { response, body } = await fetchCapped(url, {
      headers,
      maxBytes: MAX_BODY_BYTES,
      timeoutMs,
      signal: options.signal,
      request: `GET ${url.pathname}`,
      fail,
    });
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
      const params = new URLSearchParams({
        active: String(query.active ?? true),
        silenced: String(query.silenced ?? false),
        inhibited: String(query.inhibited ?? false),
        unprocessed: String(query.unprocessed ?? false),
      });
      const path = `api/v2/alerts?${params.toString()}`;
      return validate(alertsSchema, await getJson(path, options), '/api/v2/alerts');
    },
    async status(options = {}) {
      const body = validate(statusSchema, await getJson('api/v2/status', options), '/api/v2/status');
      return {
        version: body.versionInfo?.version,
        uptime: body.uptime,
        clusterStatus: body.cluster?.status,
      };
    },
  };
}
