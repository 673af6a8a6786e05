import { z } from 'zod';
import type { PrometheusConfig } from '../config/index.ts';
import { InputError, maskSecrets, UnavailableError } from '../core/index.ts';
import { alertmanagerTarget } from './alertmanager.ts';
import { httpAuth } from './http-auth.ts';
import { requestCapped } from './http-body.ts';

/** The most a response may hold: a range query over a large fleet stays far below; a hostile server does not. */
const MAX_BODY_BYTES = 32 * 1024 * 1024;
/** Prometheus refuses range queries of more than 11,000 points per series; refused here before asking. */
export const MAX_RANGE_POINTS = 11_000;

export interface PrometheusRequestOptions {
  signal?: AbortSignal;
  /** @default 10000 */
  timeoutMs?: number;
}

/** One series of an instant query: its labels and the value at the evaluation time. */
export interface InstantSample {
  metric: Record<string, string>;
  /** Unix seconds. */
  time: number;
  /** NaN and ±Inf come back as null. */
  value: number | null;
}

/** One series of a range query. */
export interface RangeSeries {
  metric: Record<string, string>;
  /** [unix seconds, value] pairs; NaN and ±Inf as null. */
  values: Array<[number, number | null]>;
}

export interface InstantResult {
  resultType: 'vector' | 'scalar' | 'string' | 'matrix';
  series: InstantSample[];
  warnings: string[];
}

export interface RangeResult {
  series: RangeSeries[];
  warnings: string[];
}

export interface PrometheusClient {
  /** The base URL, for messages. */
  readonly target: string;
  /** `GET /api/v1/query`. @throws InputError for a query Prometheus cannot parse or run (bad_data). */
  query(expr: string, options?: PrometheusRequestOptions & { time?: Date }): Promise<InstantResult>;
  /** `GET /api/v1/query_range`. @throws InputError for a bad query or a range of more than 11,000 points. */
  range(
    expr: string,
    range: { start: Date; end: Date; stepSeconds: number },
    options?: PrometheusRequestOptions,
  ): Promise<RangeResult>;
}

const sampleValue = z.tuple([z.number(), z.string()]);
const responseSchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('success'),
    data: z.object({ resultType: z.enum(['vector', 'scalar', 'string', 'matrix']), result: z.unknown() }),
    warnings: z.array(z.string()).optional(),
  }),
  z.object({
    status: z.literal('error'),
    errorType: z.string().optional(),
    error: z.string().optional(),
  }),
]);
const vectorSchema = z.array(z.object({ metric: z.record(z.string(), z.string()), value: sampleValue }));
const matrixSchema = z.array(
  z.object({ metric: z.record(z.string(), z.string()), values: z.array(sampleValue) }),
);

function toNumber(text: string): number | null {
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

/**
 * Prometheus's HTTP API (v1) over global fetch, with the configured bearer token or Basic auth; credentials
 * never show in an error. Queries go as GET parameters, so nothing in them is ever evaluated by gameops.
 */
export function createPrometheusClient(config: PrometheusConfig): PrometheusClient {
  const base = new URL(config.url.endsWith('/') ? config.url : `${config.url}/`);
  base.username = '';
  base.password = '';
  const headers: Record<string, string> = { accept: 'application/json' };
  const auth = httpAuth(config);
  if (auth.header) headers['authorization'] = auth.header;
  const target = alertmanagerTarget(config);
  const secrets = auth.secrets;
  const what = `Prometheus at ${target}`;

  async function call(path: string, params: URLSearchParams, options: PrometheusRequestOptions) {
    const url = new URL(`${path}?${params.toString()}`, base);
    const timeoutMs = options.timeoutMs ?? 10_000;
    const fail = (message: string, details: Record<string, unknown> = {}): UnavailableError =>
      new UnavailableError(maskSecrets(`${what}: ${message}`, secrets), { details: { target, ...details } });
    const response = await requestCapped(url, {
      headers,
      maxBytes: MAX_BODY_BYTES,
      timeoutMs,
      signal: options.signal,
      request: `GET /${path}`,
      fail,
    });
    const { body } = response;
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      throw fail(`GET /${path} answered ${response.status} with invalid JSON: ${body.slice(0, 200)}`, {
        httpStatus: response.status,
      });
    }
    const parsed = responseSchema.safeParse(json);
    if (!parsed.success)
      throw fail(`GET /${path} answered ${response.status} with an unexpected shape`, {
        httpStatus: response.status,
      });
    if (parsed.data.status === 'error') {
      const message = `${parsed.data.errorType ?? 'error'}: ${parsed.data.error ?? 'no message'}`;
      // bad_data: the query (or its range) is wrong; asking again cannot help.
      if (parsed.data.errorType === 'bad_data')
        throw new InputError(maskSecrets(`${what} refused the query: ${message}`, secrets), {
          details: { target },
        });
      throw fail(`GET /${path} failed (HTTP ${response.status}): ${message}`, {
        httpStatus: response.status,
      });
    }
    if (!response.ok) throw fail(`GET /${path} answered ${response.status}`, { httpStatus: response.status });
    return { data: parsed.data.data, warnings: parsed.data.warnings ?? [], path };
  }

  function shape<T>(schema: z.ZodType<T>, value: unknown, path: string): T {
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    throw new UnavailableError(`${what}: GET /${path} answered an unexpected result shape`, {
      details: { target },
    });
  }

  function checkExpr(expr: string): void {
    if (expr.trim() === '') throw new InputError('query: an empty PromQL expression');
    if (expr.length > 10_000) throw new InputError('query: longer than 10000 characters');
  }

  return {
    target,

    async query(expr, options = {}) {
      checkExpr(expr);
      const params = new URLSearchParams({ query: expr });
      if (options.time) params.set('time', String(options.time.getTime() / 1000));
      const { data, warnings, path } = await call('api/v1/query', params, options);
      switch (data.resultType) {
        case 'vector':
          return {
            resultType: 'vector',
            warnings,
            series: shape(vectorSchema, data.result, path).map((s) => ({
              metric: s.metric,
              time: s.value[0],
              value: toNumber(s.value[1]),
            })),
          };
        case 'scalar':
        case 'string': {
          const [time, value] = shape(sampleValue, data.result, path);
          return {
            resultType: data.resultType,
            warnings,
            series: [{ metric: {}, time, value: toNumber(value) }],
          };
        }
        case 'matrix':
          // A range selector evaluated instantly (`x[5m]`): the last sample of each series.
          return {
            resultType: 'matrix',
            warnings,
            series: shape(matrixSchema, data.result, path).flatMap((s) => {
              const last = s.values.at(-1);
              return last ? [{ metric: s.metric, time: last[0], value: toNumber(last[1]) }] : [];
            }),
          };
      }
    },

    async range(expr, range, options = {}) {
      checkExpr(expr);
      const { start, end, stepSeconds } = range;
      if (!(stepSeconds > 0) || !Number.isFinite(stepSeconds))
        throw new InputError(`step: a positive number of seconds (got ${stepSeconds})`);
      const spanSeconds = (end.getTime() - start.getTime()) / 1000;
      if (!(spanSeconds >= 0)) throw new InputError('range: the end is before the start');
      const points = Math.floor(spanSeconds / stepSeconds) + 1;
      if (points > MAX_RANGE_POINTS)
        throw new InputError(
          `range: ${points} points per series (${spanSeconds} s every ${stepSeconds} s); Prometheus allows ${MAX_RANGE_POINTS}: use a larger step`,
        );
      const params = new URLSearchParams({
        query: expr,
        start: String(start.getTime() / 1000),
        end: String(end.getTime() / 1000),
        step: String(stepSeconds),
      });
      const { data, warnings, path } = await call('api/v1/query_range', params, options);
      if (data.resultType !== 'matrix')
        throw new UnavailableError(`${what}: GET /${path} answered a ${data.resultType}, not a matrix`, {
          details: { target },
        });
      return {
        warnings,
        series: shape(matrixSchema, data.result, path).map((s) => ({
          metric: s.metric,
          values: s.values.map(([t, v]): [number, number | null] => [t, toNumber(v)]),
        })),
      };
    },
  };
}
