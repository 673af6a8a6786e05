import type { InvalidRunbook } from '../app/index.ts';
import {
  ConflictError,
  ErrorCode,
  GameopsError,
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
  errorMessage,
} from '../core/index.ts';
import type {
  Plan,
  RunbookInfo,
  RunEvent,
  RunFilter,
  RunService,
  RunSummary,
  RunView,
  StartRunInput,
} from '../runbooks/model.ts';

/** Where the API is and who we are to it. */
export interface ApiClientOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8787`. */
  url: string;
  /** An API token (`gops_…`), sent as `Authorization: Bearer`. */
  token?: string;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Per request, except event streams. @default 60 s */
  timeoutMs?: number;
}

/** A RunService that is a gameops server, plus its event stream. */
export interface ApiRunService extends RunService {
  readonly url: string;
  /**
   * The run's events after `afterSeq` as the server sends them (server-sent events), until the server
   * ends the stream (the run is terminal and everything was sent), the server goes away, or `signal`
   * aborts (then it simply ends).
   */
  stream(runId: string, afterSeq: number, signal: AbortSignal): AsyncGenerator<RunEvent>;
  /** The runbook files of the server's runbooks.dir it set aside as invalid (GET /api/runbooks `invalid`). */
  invalidRunbooks(): Promise<InvalidRunbook[]>;
  /** GET /api/schedules: the server's schedules with their last and next occurrences. */
  schedules(): Promise<unknown>;
}

const ERRORS: Record<
  string,
  new (message: string, options?: { details?: Record<string, unknown> }) => GameopsError
> = {
  [ErrorCode.input]: InputError,
  [ErrorCode.notFound]: NotFoundError,
  [ErrorCode.conflict]: ConflictError,
  [ErrorCode.notAllowed]: NotAllowedError,
  [ErrorCode.unavailable]: UnavailableError,
};

/** Longest single event (`data:` line) accepted from a server: a guard, not a limit anyone should meet. */
const MAX_EVENT_BYTES = 4 * 1024 * 1024;

/**
 * The run service of a gameops server over HTTP (`/api/runbooks`, `/api/runs`). The `actor` arguments of
 * RunService are ignored: the server decides who the caller is from the token. Errors come back as the
 * classes of core/errors by the `code` the server sent, with the server's message.
 */
/** JSON over HTTP to a gameops server: what each domain's API client builds on. */
export interface ApiTransport {
  /** The base URL, without a trailing slash. */
  readonly base: string;
  /**
   * Sends one request and returns the parsed JSON answer. Errors come back as the classes of core/errors
   * by the `code` the server sent; a server that cannot be reached is an UnavailableError naming it.
   */
  send: (
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
    extra?: { signal?: AbortSignal; timeoutMs?: number },
  ) => Promise<unknown>;
  /** Headers with the bearer token (for streams). */
  headers: (extra?: Record<string, string>) => Record<string, string>;
}

export function createApiTransport(options: ApiClientOptions): ApiTransport {
  const base = options.url.replace(/\/+$/, '');
  const doFetch = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const headers = (extra: Record<string, string> = {}): Record<string, string> => ({
    ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
    ...extra,
  });

  async function send(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
    extra?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<unknown> {
    const signal = AbortSignal.any([
      AbortSignal.timeout(extra?.timeoutMs ?? timeoutMs),
      ...(extra?.signal ? [extra.signal] : []),
    ]);
    let response: Response;
    try {
      response = await doFetch(`${base}${path}`, {
        method,
        headers: headers({
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        }),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal,
      });
    } catch (err) {
      if (extra?.signal?.aborted) throw extra.signal.reason;
      throw new UnavailableError(
        `the gameops server at ${base} did not answer ${method} ${path}: ${causeOf(err)}`,
      );
    }
    const text = await response.text().catch((err: unknown) => {
      throw new UnavailableError(`the gameops server at ${base} broke off its answer: ${causeOf(err)}`);
    });
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new UnavailableError(
        `the gameops server at ${base} answered ${method} ${path} with ${response.status} and no JSON ` +
          '(is that a gameops server?)',
      );
    }
    if (!response.ok) throw errorFrom(response.status, parsed, `${method} ${path}`);
    return parsed;
  }

  return { base, send, headers };
}

export function createApiClient(options: ApiClientOptions): ApiRunService {
  const { base, send, headers } = createApiTransport(options);
  const doFetch = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? 60_000;

  const enc = encodeURIComponent;

  return {
    url: base,

    async runbooks() {
      return ((await send('GET', '/api/runbooks')) as { runbooks: RunbookInfo[] }).runbooks;
    },

    async invalidRunbooks() {
      return ((await send('GET', '/api/runbooks')) as { invalid?: InvalidRunbook[] }).invalid ?? [];
    },

    async schedules() {
      return send('GET', '/api/schedules');
    },

    async runbook(name) {
      return (await send('GET', `/api/runbooks/${enc(name)}`)) as RunbookInfo;
    },

    async plan(input) {
      return (await send('POST', `/api/runbooks/${enc(input.runbook)}/plan`, {
        params: input.params,
      })) as Plan;
    },

    async start(input: StartRunInput) {
      return (await send('POST', '/api/runs', {
        runbook: input.runbook,
        params: input.params,
        trigger: input.trigger === 'cli' ? 'cli' : 'api',
        ...(input.idempotencyKey !== undefined ? { idempotencyKey: input.idempotencyKey } : {}),
      })) as RunView;
    },

    async get(runId) {
      return (await send('GET', `/api/runs/${enc(runId)}`)) as RunView;
    },

    async list(filter: RunFilter) {
      const q = new URLSearchParams();
      if (filter.runbook !== undefined) q.set('runbook', filter.runbook);
      if (filter.status && filter.status.length > 0) q.set('status', filter.status.join(','));
      if (filter.limit !== undefined) q.set('limit', String(filter.limit));
      if (filter.before !== undefined) q.set('before', filter.before);
      const query = q.size > 0 ? `?${q.toString()}` : '';
      return ((await send('GET', `/api/runs${query}`)) as { runs: RunSummary[] }).runs;
    },

    async events(runId, afterSeq, _actor, eventOptions) {
      const waitMs = eventOptions?.waitMs ?? 0;
      const q = new URLSearchParams({ after: String(afterSeq), waitMs: String(waitMs) });
      const body = (await send('GET', `/api/runs/${enc(runId)}/events?${q.toString()}`, undefined, {
        ...(eventOptions?.signal ? { signal: eventOptions.signal } : {}),
        timeoutMs: timeoutMs + waitMs,
      })) as { events: RunEvent[] };
      return body.events;
    },

    async decide(input) {
      return (await send('POST', `/api/runs/${enc(input.runId)}/approvals/${enc(input.stepId)}`, {
        decision: input.decision,
        planHash: input.planHash,
        ...(input.comment !== undefined ? { comment: input.comment } : {}),
      })) as RunView;
    },

    async complete(input) {
      return (await send('POST', `/api/runs/${enc(input.runId)}/steps/${enc(input.stepId)}/complete`, {
        ...(input.note !== undefined ? { note: input.note } : {}),
        ...(input.evidence !== undefined ? { evidence: input.evidence } : {}),
      })) as RunView;
    },

    async verify(input) {
      return (await send('POST', `/api/runs/${enc(input.runId)}/steps/${enc(input.stepId)}/verify`, {
        outcome: input.outcome,
        ...(input.note !== undefined ? { note: input.note } : {}),
      })) as RunView;
    },

    async cancel(runId, _actor, reason) {
      return (await send(
        'POST',
        `/api/runs/${enc(runId)}/cancel`,
        reason !== undefined ? { reason } : {},
      )) as RunView;
    },

    async pause(runId) {
      return (await send('POST', `/api/runs/${enc(runId)}/pause`, {})) as RunView;
    },

    async resume(runId) {
      return (await send('POST', `/api/runs/${enc(runId)}/resume`, {})) as RunView;
    },

    async retry(input) {
      return (await send('POST', `/api/runs/${enc(input.runId)}/retry`, {
        from: input.from,
        ...(input.params !== undefined ? { params: input.params } : {}),
      })) as RunView;
    },

    async *stream(runId, afterSeq, signal) {
      let response: Response;
      try {
        response = await doFetch(`${base}/api/runs/${enc(runId)}/events?after=${afterSeq}`, {
          headers: headers({ accept: 'text/event-stream' }),
          signal,
        });
      } catch (err) {
        if (signal.aborted) return;
        throw new UnavailableError(
          `the gameops server at ${base} did not answer the event stream: ${causeOf(err)}`,
        );
      }
      if (!response.ok || !response.body) {
        const text = await response.text().catch(() => '');
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        throw errorFrom(response.status, parsed, `GET /api/runs/${runId}/events`);
      }
      try {
        for await (const event of parseEventStream(response.body)) {
          if (event.data === undefined) continue;
          yield JSON.parse(event.data) as RunEvent;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof GameopsError) throw err;
        throw new UnavailableError(`the event stream from ${base} broke off: ${causeOf(err)}`);
      }
    },
  };
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return code;
  if (err instanceof Error && err.name === 'TimeoutError') return 'timed out';
  return errorMessage(cause ?? err);
}

/** The error a server's error answer stands for (by its `code`), or a generic one when it sent none. */
function errorFrom(status: number, body: unknown, what: string): GameopsError {
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)
    ?.error;
  const message = typeof error?.message === 'string' ? error.message : `${what} answered HTTP ${status}`;
  const details =
    typeof error?.details === 'object' && error.details !== null
      ? (error.details as Record<string, unknown>)
      : undefined;
  const Class = typeof error?.code === 'string' ? ERRORS[error.code] : undefined;
  if (Class) return new Class(message, details ? { details } : undefined);
  if (status === 401) return new NotAllowedError(message);
  if (status >= 500 || status === 429) return new UnavailableError(message);
  return new GameopsError(ErrorCode.internal, message);
}

/** One server-sent event. */
export interface ServerSentEvent {
  id?: string;
  event?: string;
  data?: string;
}

/**
 * Parses a `text/event-stream` body (WHATWG rules: `field: value` lines, blank line ends an event,
 * `:` lines are comments such as heartbeats, multi-line `data` joined with `\n`).
 */
export async function* parseEventStream(
  body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event: ServerSentEvent = {};
  let size = 0;
  const chunks = body as AsyncIterable<Uint8Array>;
  for await (const chunk of chunks) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A CR at the end of a chunk may be the first half of a CRLF: wait for the next chunk.
      if (nl === buffer.length - 1 && buffer.endsWith('\r')) break;
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (event.data !== undefined || event.event !== undefined) yield event;
        event = {};
        size = 0;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      size += value.length;
      if (size > MAX_EVENT_BYTES) throw new UnavailableError('an event from the server is too large');
      if (field === 'data') event.data = event.data === undefined ? value : `${event.data}\n${value}`;
      else if (field === 'event') event.event = value;
      else if (field === 'id') event.id = value;
    }
    if (buffer.length > MAX_EVENT_BYTES) throw new UnavailableError('an event from the server is too large');
  }
}
