/**
 * The client gameops uses to talk to one game server over the game-server contract
 * (docs/game-server-contract.md): status, maintenance, notices, drain, diagnostics and metrics.
 *
 * Every answer is size-capped and validated. Failures are errors of the gameops taxonomy naming the
 * server's URL (never the token) and what happened:
 * - UnavailableError: no answer in time, connection refused or reset, HTTP 401 (token rejected or
 *   missing), 404, 5xx, a body that is not what the contract says, a stream that stalls, exceeds its cap
 *   or misses its overall deadline;
 * - InputError: the server refused the request as invalid (HTTP 400), or the call's own arguments are bad;
 * - ConflictError: the server is busy with another diagnostic (HTTP 409).
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { z } from 'zod';
import { describeError } from '../connectors/failures.ts';
import { BodyTooLargeError, readCapped } from '../connectors/http-body.ts';
import {
  ConflictError,
  GameopsError,
  InputError,
  maskSecrets,
  UnavailableError,
  withTimeout,
  type Secret,
  unsafeCharacter,
} from '../core/index.ts';

export type DiagnosticKind = 'cpu-profile' | 'heap-snapshot' | 'stack-dump';
export const DIAGNOSTIC_KINDS: readonly DiagnosticKind[] = ['cpu-profile', 'heap-snapshot', 'stack-dump'];

const DIAGNOSTIC_EXTENSIONS: Readonly<Record<DiagnosticKind, string>> = {
  'cpu-profile': 'cpuprofile',
  'heap-snapshot': 'heapsnapshot',
  'stack-dump': 'report.json',
};

const GIB = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;

/** Default caps on a diagnostic file's size. */
export const DIAGNOSTIC_MAX_BYTES: Readonly<Record<DiagnosticKind, number>> = {
  'cpu-profile': 512 * MIB,
  'heap-snapshot': 2 * GIB,
  'stack-dump': 64 * MIB,
};
/** Largest JSON answer accepted from `/ops/*`. */
const MAX_JSON_BYTES = 1 * MIB;
/** Largest `/metrics` page accepted. */
const MAX_METRICS_BYTES = 16 * MIB;
/** Extra time a heap snapshot may take before its first byte (V8 walks the whole heap first). */
const HEAP_SNAPSHOT_EXTRA_MS = 60_000;
/** Extra time a heap snapshot's transfer may take (it can be gigabytes). */
const HEAP_SNAPSHOT_TRANSFER_MS = 10 * 60_000;

const percentilesSchema = z.object({ p50: z.number(), p99: z.number(), max: z.number() });

/** `GET /ops/status`. Fields beyond the contract are dropped; optional ones are those a server may omit. */
const statusSchema = z.object({
  instance: z.string().max(253),
  version: z.string().max(128),
  startedAt: z.string().optional(),
  uptimeSeconds: z.number().nonnegative(),
  playersOnline: z.number().int().nonnegative(),
  /**
   * Writes (sessions, saved positions) not yet in the server's databases. Optional: a server that does not
   * report it is taken as unknown, and a drain says so (`pendingWritesUnknown`).
   */
  pendingWrites: z.number().int().nonnegative().optional(),
  sessions: z.number().int().nonnegative(),
  sessionsTotal: z.number().int().nonnegative().optional(),
  acceptingLogins: z.boolean(),
  maintenance: z.object({
    enabled: z.boolean(),
    message: z
      .string()
      .nullish()
      .transform((v) => v ?? null),
    startsAt: z
      .string()
      .nullish()
      .transform((v) => v ?? null),
  }),
  draining: z.boolean(),
  drain: z
    .object({ startedAt: z.string(), deadline: z.string(), message: z.string() })
    .nullish()
    .transform((v) => v ?? null),
  shuttingDown: z.boolean().optional(),
  tickRate: z.number().positive(),
  ticksPerSecond: z.number().nonnegative().optional(),
  tickLagMs: percentilesSchema,
  tickDurationMs: percentilesSchema.optional(),
  tickCpuMs: percentilesSchema.optional(),
  windowSeconds: z.number().positive().optional(),
});
export type GameStatus = z.infer<typeof statusSchema>;

const drainResponseSchema = statusSchema.extend({ playersRemaining: z.number().int().nonnegative() });
export type DrainResponse = z.infer<typeof drainResponseSchema>;

/** `POST /ops/notice`: how many players were told. */
const noticeResponseSchema = z.object({ delivered: z.number().int().nonnegative() });
export type NoticeResponse = z.infer<typeof noticeResponseSchema>;

const errorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

export interface MaintenanceInput {
  enabled: boolean;
  /** 1 to 500 characters. */
  message?: string;
  /** ISO 8601. */
  startsAt?: string;
}

/** An announcement to players (`POST /ops/notice`): logins stay open. */
export interface NoticeInput {
  /** 1 to 500 characters. */
  message: string;
  /** ISO 8601: when what is announced starts (e.g. the maintenance window). */
  startsAt?: string;
  /** ISO 8601: when it ends; not before `startsAt`. */
  endsAt?: string;
}

export interface DrainInput {
  message?: string;
  /** 1 to 3600. @default 30 (the server's default) */
  deadlineSeconds?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface DiagnosticOptions extends RequestOptions {
  /** CPU profile length, 1 to 60 seconds. @default 10 */
  seconds?: number;
  /** Time allowed until the response starts. @default the client timeout, plus `seconds` for a CPU profile, plus 60 s for a heap snapshot */
  timeoutMs?: number;
  /**
   * Time allowed for the whole download, from the request to the last byte: a server that trickles data
   * (never stalling long enough to trip the stall timer) is cut off here.
   * @default the time allowed until the response starts, plus the client timeout, plus 10 minutes for a heap snapshot
   */
  deadlineMs?: number;
  /** The stream fails past this many bytes. @default {@link DIAGNOSTIC_MAX_BYTES} of the kind */
  maxBytes?: number;
}

export interface DiagnosticFile {
  /** The file's bytes, streamed from the server. Fails with an UnavailableError on a cap, a stall, the
   * deadline or a cut. */
  stream: Readable;
  /** From `Content-Disposition`, reduced to `[A-Za-z0-9._-]` (safe as a file name), or a default. */
  filename: string;
  contentType: string;
  /** `Content-Length`, when the server sent one. */
  bytes: number | undefined;
}

export interface GameMetricsSummary {
  playersConnected: number;
  /** Sum of `game_errors_total` over its labels. */
  errorsTotal: number;
  /** p99 of `game_tick_duration_seconds` since the server started, in ms (linear within a bucket); null before any tick. */
  tickP99Ms: number | null;
  /** `game_tick_duration_seconds_count`. */
  ticks: number;
}

export interface GameServerClient {
  status(opsUrl: string, options?: RequestOptions): Promise<GameStatus>;
  setMaintenance(opsUrl: string, input: MaintenanceInput, options?: RequestOptions): Promise<GameStatus>;
  /** Tells every connected player `input.message` without closing logins. */
  notice(opsUrl: string, input: NoticeInput, options?: RequestOptions): Promise<NoticeResponse>;
  drain(opsUrl: string, input?: DrainInput, options?: RequestOptions): Promise<DrainResponse>;
  diagnostics(opsUrl: string, kind: DiagnosticKind, options?: DiagnosticOptions): Promise<DiagnosticFile>;
  metrics(opsUrl: string, options?: RequestOptions): Promise<GameMetricsSummary>;
}

export interface GameServerClientOptions {
  /** Bearer token for `/ops/*` (`game.opsToken`). */
  token?: Secret;
  /** Per request (for diagnostics: until the response starts, plus the work's own time). */
  timeoutMs: number;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** Text from a server, made safe for a one-line message: control characters escaped, length capped. */
function excerpt(text: string, max = 200): string {
  let clean = '';
  for (const c of text.slice(0, max + 1)) {
    const code = c.charCodeAt(0);
    clean += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : c;
  }
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

const sizeText = (bytes: number): string =>
  bytes >= GIB ? `${bytes / GIB} GiB` : bytes >= MIB ? `${bytes / MIB} MiB` : `${bytes} bytes`;

/** A game server's base URL: http(s), no credentials, no query; shown in messages without a trailing slash. */
function parseOpsUrl(opsUrl: string): { base: URL; target: string } {
  let url: URL;
  try {
    url = new URL(opsUrl);
  } catch {
    throw new InputError(`game server URL "${excerpt(opsUrl, 100)}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InputError(`game server URL ${url.protocol}//${url.host}: only http and https are supported`);
  if (url.username || url.password)
    throw new InputError(`game server URL ${url.protocol}//${url.host}: must not carry credentials`);
  url.search = '';
  url.hash = '';
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return { base: url, target: url.href.replace(/\/$/, '') };
}

// ---------------------------------------------------------------------------------------------------------
// Prometheus text format

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

function parseValue(text: string): number {
  const lower = text.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  const value = Number(text);
  if (text === '' || Number.isNaN(value)) throw new Error(`"${excerpt(text, 40)}" is not a number`);
  return value;
}

/** A histogram bucket's `le` label as a number (NaN when missing or not a number). */
function bound(le: string | undefined): number {
  if (le === undefined) return NaN;
  try {
    return parseValue(le);
  } catch {
    return NaN;
  }
}

/** Parses the Prometheus text exposition format (version 0.0.4). @throws Error naming the bad line */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE_LINE.exec(line);
    if (!match) throw new Error(`line ${i + 1} is not a sample: ${excerpt(line, 80)}`);
    const labels: Record<string, string> = {};
    const labelText = match[2] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < labelText.length) {
      const start = LABEL.lastIndex;
      const label = LABEL.exec(labelText);
      if (!label || LABEL.lastIndex === start) {
        if (labelText.slice(start).trim() === '') break;
        throw new Error(`line ${i + 1} has malformed labels: ${excerpt(line, 80)}`);
      }
      labels[label[1]!] = label[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    try {
      samples.push({ name: match[1]!, labels, value: parseValue(match[3]!) });
    } catch (err) {
      throw new Error(`line ${i + 1}: ${(err as Error).message}`, { cause: err });
    }
  }
  return samples;
}

/**
 * The q-quantile of a cumulative histogram (`le` buckets), interpolating linearly within the bucket as
 * Prometheus' `histogram_quantile` does; in the `+Inf` bucket, the largest finite bound. Null when empty.
 */
export function histogramQuantile(q: number, buckets: Array<{ le: number; count: number }>): number | null {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let previousLe = 0;
  let previousCount = 0;
  for (const bucket of sorted) {
    if (bucket.count >= rank) {
      if (bucket.le === Infinity) return previousLe;
      const inBucket = bucket.count - previousCount;
      if (inBucket <= 0) return bucket.le;
      return previousLe + ((bucket.le - previousLe) * (rank - previousCount)) / inBucket;
    }
    previousLe = bucket.le;
    previousCount = bucket.count;
  }
  return previousLe;
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Counts bytes, fails past a cap, fails when no data has come for `stallMs`, and fails when the whole has
 * not arrived `deadlineMs` after the request began (`remainingMs` from now).
 */
class GuardedStream extends Transform {
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #deadline: NodeJS.Timeout;
  readonly #max: number;
  readonly #stallMs: number;
  readonly #fail: (message: string) => UnavailableError;

  constructor(
    limits: { max: number; stallMs: number; deadlineMs: number; remainingMs: number },
    fail: (message: string) => UnavailableError,
  ) {
    super();
    this.#max = limits.max;
    this.#stallMs = limits.stallMs;
    this.#fail = fail;
    this.#deadline = setTimeout(
      () =>
        this.destroy(
          this.#fail(`the file did not arrive within ${limits.deadlineMs} ms; stopped reading it`),
        ),
      Math.max(0, limits.remainingMs),
    );
    this.#arm();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => this.destroy(this.#fail(`the file stalled: no data for ${this.#stallMs} ms`)),
      this.#stallMs,
    );
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#max) {
      callback(this.#fail(`the file is larger than ${sizeText(this.#max)}; stopped reading it`));
      return;
    }
    callback(null, chunk);
    // A consumer that is not reading (its buffer is full) is not a stalled server: wait for _read.
    if (this.readableLength >= this.readableHighWaterMark) clearTimeout(this.#timer);
    else this.#arm();
  }

  override _read(size: number): void {
    this.#arm();
    super._read(size);
  }

  override _flush(callback: TransformCallback): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#deadline);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#deadline);
    callback(error);
  }
}

/** A file name from `Content-Disposition`, reduced to safe characters; undefined when there is none. */
function dispositionFilename(header: string | null): string | undefined {
  if (!header) return undefined;
  const match = /filename\*?=(?:UTF-8''|")?([^";]+)"?/i.exec(header);
  if (!match?.[1]) return undefined;
  let name = match[1];
  try {
    name = decodeURIComponent(name);
  } catch {
    // Keep it as sent.
  }
  const base = name.split(/[\\/]/).pop() ?? '';
  const safe = base
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '')
    .slice(0, 200);
  return safe === '' ? undefined : safe;
}

/**
 * A message shown to players (notice, maintenance, drain): 1 to 500 characters on one line, nothing
 * {@link unsafeCharacter} refuses. @throws InputError naming `field`
 */
export function checkPlayerText(field: string, text: unknown): string {
  if (typeof text !== 'string' || text.length < 1 || text.length > 500)
    throw new InputError(`${field}: 1 to 500 characters`);
  const bad = unsafeCharacter(text);
  if (bad !== undefined)
    throw new InputError(
      `${field}: control and text-direction characters are not allowed (found ${bad}); one line of text`,
    );
  return text;
}

const isoTime = z.iso.datetime({ offset: true });

/**
 * An ISO 8601 date-time with its offset (`2026-11-27T04:00:00Z`, `…+02:00`), as the server accepts it,
 * in UTC. @throws InputError naming `field`
 */
export function checkIsoTime(field: string, value: string): string {
  if (!isoTime.safeParse(value).success)
    throw new InputError(
      `${field}: "${excerpt(value, 40)}" is not an ISO 8601 date-time with offset (e.g. 2026-11-27T04:00:00Z)`,
    );
  return new Date(value).toISOString();
}

/**
 * A notice as the contract wants it (times in UTC), or an InputError naming the field. Shared by the
 * client and the fleet, so a fleet-wide notice is refused before any instance is told.
 */
export function checkNotice(input: NoticeInput): NoticeInput {
  checkPlayerText('notice message', input.message);
  const startsAt = input.startsAt === undefined ? undefined : checkIsoTime('notice startsAt', input.startsAt);
  const endsAt = input.endsAt === undefined ? undefined : checkIsoTime('notice endsAt', input.endsAt);
  if (startsAt !== undefined && endsAt !== undefined && endsAt < startsAt)
    throw new InputError(`notice endsAt: ${endsAt} is before startsAt ${startsAt}`);
  return {
    message: input.message,
    ...(startsAt !== undefined ? { startsAt } : {}),
    ...(endsAt !== undefined ? { endsAt } : {}),
  };
}

export function createGameServerClient(options: GameServerClientOptions): GameServerClient {
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const secrets = [options.token];

  interface Call {
    target: string;
    method: 'GET' | 'POST';
    path: string;
  }

  const failure = (call: Call, message: string, details: Record<string, unknown> = {}): UnavailableError =>
    new UnavailableError(
      maskSecrets(`game server ${call.target}: ${call.method} /${call.path}: ${message}`, secrets),
      {
        details: { target: call.target, ...details },
      },
    );

  function headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = { accept: json ? 'application/json' : '*/*' };
    if (options.token) h['authorization'] = `Bearer ${options.token.reveal()}`;
    if (json) h['content-type'] = 'application/json';
    return h;
  }

  /** Turns a thrown fetch/timeout error into the taxonomy. */
  function translate(call: Call, err: unknown, parent: AbortSignal | undefined): Error {
    if (parent?.aborted) return parent.reason instanceof Error ? parent.reason : failure(call, 'aborted');
    if (err instanceof GameopsError) {
      // withTimeout's message names the call; add the URL and keep the token out.
      return err instanceof UnavailableError && err.message.includes('did not answer within')
        ? failure(call, `no answer within ${String(err.details?.timeoutMs)} ms`, err.details ?? {})
        : err;
    }
    if (err instanceof BodyTooLargeError)
      return failure(call, 'the answer is too large; refusing to read it');
    return failure(call, describeError(err));
  }

  /** Maps a non-2xx answer to an error (reads at most 64 KiB of it). */
  async function refused(call: Call, response: Response): Promise<GameopsError> {
    let serverMessage = '';
    try {
      const text = await readCapped(response, 64 * 1024);
      const parsed = errorBodySchema.safeParse(JSON.parse(text));
      serverMessage = parsed.success ? parsed.data.error.message : excerpt(text);
    } catch {
      // No readable body: the status says enough.
    }
    const said = serverMessage ? `: ${excerpt(serverMessage)}` : '';
    const where = `game server ${call.target}: ${call.method} /${call.path}`;
    const details = { target: call.target, httpStatus: response.status };
    switch (response.status) {
      case 401:
        return failure(
          call,
          options.token
            ? 'token rejected (HTTP 401); check game.opsToken against the server’s GAME_OPS_TOKEN'
            : 'the server needs a token (HTTP 401); set game.opsToken',
          details,
        );
      case 400:
        return new InputError(maskSecrets(`${where}: refused the request (HTTP 400)${said}`, secrets), {
          details,
        });
      case 409:
        return new ConflictError(maskSecrets(`${where}: busy (HTTP 409)${said}`, secrets), { details });
      case 404:
        return failure(
          call,
          `not found (HTTP 404); does the server implement the gameops contract?${said}`,
          details,
        );
      default:
        return failure(call, `HTTP ${response.status}${said}`, details);
    }
  }

  async function requestJson<T>(
    opsUrl: string,
    method: 'GET' | 'POST',
    path: string,
    schema: z.ZodType<T>,
    body: unknown,
    requestOptions: RequestOptions,
  ): Promise<T> {
    const { base, target } = parseOpsUrl(opsUrl);
    const call: Call = { target, method, path };
    const parent = requestOptions.signal;
    let text: string;
    try {
      text = await withTimeout(
        `game server ${target}: ${method} /${path}`,
        options.timeoutMs,
        async (signal) => {
          const response = await fetchImpl(new URL(path, base), {
            method,
            headers: headers(body !== undefined),
            ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
            signal,
            redirect: 'error',
          });
          if (!response.ok) throw await refused(call, response);
          return readCapped(response, MAX_JSON_BYTES);
        },
        parent,
      );
    } catch (err) {
      throw translate(call, err, parent);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw failure(call, `answered a body that is not JSON: ${excerpt(text, 100)}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw failure(
        call,
        `answered an unexpected body (${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'})`,
      );
    }
    return parsed.data;
  }

  return {
    status(opsUrl, requestOptions = {}) {
      return requestJson(opsUrl, 'GET', 'ops/status', statusSchema, undefined, requestOptions);
    },

    async setMaintenance(opsUrl, input, requestOptions = {}) {
      if (input.message !== undefined) checkPlayerText('maintenance message', input.message);
      const body = {
        enabled: input.enabled,
        ...(input.message !== undefined ? { message: input.message } : {}),
        ...(input.startsAt !== undefined
          ? { startsAt: checkIsoTime('maintenance startsAt', input.startsAt) }
          : {}),
      };
      return requestJson(opsUrl, 'POST', 'ops/maintenance', statusSchema, body, requestOptions);
    },

    async notice(opsUrl, input, requestOptions = {}) {
      const body = checkNotice(input);
      return requestJson(opsUrl, 'POST', 'ops/notice', noticeResponseSchema, body, requestOptions);
    },

    async drain(opsUrl, input = {}, requestOptions = {}) {
      if (input.message !== undefined) checkPlayerText('drain message', input.message);
      const seconds = input.deadlineSeconds;
      if (seconds !== undefined && (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600))
        throw new InputError(`drain deadlineSeconds: an integer from 1 to 3600 (got ${seconds})`);
      const body = {
        ...(input.message !== undefined ? { message: input.message } : {}),
        ...(seconds !== undefined ? { deadlineSeconds: seconds } : {}),
      };
      return requestJson(opsUrl, 'POST', 'ops/drain', drainResponseSchema, body, requestOptions);
    },

    async diagnostics(opsUrl, kind, diagnosticOptions = {}) {
      if (!DIAGNOSTIC_KINDS.includes(kind))
        throw new InputError(`diagnostic kind: one of ${DIAGNOSTIC_KINDS.join(', ')} (got ${String(kind)})`);
      const seconds = diagnosticOptions.seconds ?? 10;
      if (kind === 'cpu-profile' && (!Number.isInteger(seconds) || seconds < 1 || seconds > 60))
        throw new InputError(`cpu-profile seconds: an integer from 1 to 60 (got ${seconds})`);
      const maxBytes = diagnosticOptions.maxBytes ?? DIAGNOSTIC_MAX_BYTES[kind];
      const { base, target } = parseOpsUrl(opsUrl);
      const path = `ops/diagnostics/${kind}${kind === 'cpu-profile' ? `?seconds=${seconds}` : ''}`;
      const call: Call = { target, method: 'POST', path };
      const startMs =
        diagnosticOptions.timeoutMs ??
        options.timeoutMs +
          (kind === 'cpu-profile' ? seconds * 1000 : 0) +
          (kind === 'heap-snapshot' ? HEAP_SNAPSHOT_EXTRA_MS : 0);
      const deadlineMs =
        diagnosticOptions.deadlineMs ??
        startMs + options.timeoutMs + (kind === 'heap-snapshot' ? HEAP_SNAPSHOT_TRANSFER_MS : 0);
      const began = performance.now();
      const parent = diagnosticOptions.signal;
      // Lives as long as the body: the caller's signal, or the consumer destroying the stream, cancels it.
      const bodyController = new AbortController();
      const onParentAbort = (): void => bodyController.abort(parent?.reason);
      parent?.addEventListener('abort', onParentAbort, { once: true });
      const release = (): void => parent?.removeEventListener('abort', onParentAbort);
      let response: Response;
      try {
        response = await withTimeout(
          `game server ${target}: POST /${path}`,
          startMs,
          async (signal) => {
            const answer = await fetchImpl(new URL(path, base), {
              method: 'POST',
              headers: headers(false),
              signal: AbortSignal.any([signal, bodyController.signal]),
              redirect: 'error',
            });
            if (!answer.ok) throw await refused(call, answer);
            return answer;
          },
          parent,
        );
      } catch (err) {
        release();
        throw translate(call, err, parent);
      }
      const declared = response.headers.get('content-length');
      const bytes = declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined;
      if (bytes !== undefined && bytes > maxBytes) {
        bodyController.abort();
        release();
        throw failure(
          call,
          `the file is ${sizeText(bytes)}, over the ${sizeText(maxBytes)} cap; not downloading it`,
        );
      }
      if (!response.body) {
        release();
        throw failure(call, 'answered without a body');
      }
      const source = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
      const guarded = new GuardedStream(
        {
          max: maxBytes,
          stallMs: options.timeoutMs,
          deadlineMs,
          remainingMs: deadlineMs - (performance.now() - began),
        },
        (message) => failure(call, message),
      );
      source.on('error', (err) => {
        guarded.destroy(
          parent?.aborted && parent.reason instanceof Error
            ? parent.reason
            : failure(call, `the file was cut off: ${describeError(err)}`),
        );
      });
      guarded.on('close', () => {
        release();
        // The consumer stopped early (or the guard failed): stop the download too.
        if (!source.readableEnded) {
          bodyController.abort();
          source.destroy();
        }
      });
      source.pipe(guarded);
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      return {
        stream: guarded,
        filename:
          dispositionFilename(response.headers.get('content-disposition')) ??
          `${kind}-${stamp}.${DIAGNOSTIC_EXTENSIONS[kind]}`,
        contentType: response.headers.get('content-type') ?? 'application/octet-stream',
        bytes,
      };
    },

    async metrics(opsUrl, requestOptions = {}) {
      const { base, target } = parseOpsUrl(opsUrl);
      const call: Call = { target, method: 'GET', path: 'metrics' };
      const parent = requestOptions.signal;
      let text: string;
      try {
        text = await withTimeout(
          `game server ${target}: GET /metrics`,
          options.timeoutMs,
          async (signal) => {
            const response = await fetchImpl(new URL('metrics', base), {
              headers: { ...headers(false), accept: 'text/plain' },
              signal,
              redirect: 'error',
            });
            if (!response.ok) throw await refused(call, response);
            return readCapped(response, MAX_METRICS_BYTES);
          },
          parent,
        );
      } catch (err) {
        throw translate(call, err, parent);
      }
      let samples: Sample[];
      try {
        samples = parsePrometheusText(text);
      } catch (err) {
        throw failure(call, `answered a body that is not Prometheus text (${(err as Error).message})`);
      }
      const named = (name: string): Sample[] => samples.filter((s) => s.name === name);
      const sum = (name: string): number => {
        const found = named(name);
        if (found.length === 0) throw failure(call, `does not export ${name}`);
        return found.reduce((total, s) => total + s.value, 0);
      };
      const playersConnected = sum('game_players_connected');
      const errorsTotal = sum('game_errors_total');
      const buckets = named('game_tick_duration_seconds_bucket').map((s) => ({
        le: bound(s.labels['le']),
        count: s.value,
      }));
      if (buckets.length === 0 || buckets.some((b) => Number.isNaN(b.le)))
        throw failure(call, 'does not export the game_tick_duration_seconds histogram');
      const p99 = histogramQuantile(0.99, buckets);
      return {
        playersConnected,
        errorsTotal,
        tickP99Ms: p99 === null ? null : Math.round(p99 * 1e6) / 1e3,
        ticks: sum('game_tick_duration_seconds_count'),
      };
    },
  };
}
