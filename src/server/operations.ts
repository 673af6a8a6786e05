import { randomUUID } from 'node:crypto';
import { type Clock, ConflictError, ErrorCode, toGameopsError } from '../core/index.ts';

/**
 * Long fleet operations run by the API (scale, restarts, rollouts, drain, diagnostics): started by a POST
 * that answers 202 at once, then read back by id. The registry lives in memory (an operation is about this
 * process's work; the platform itself holds the fleet's state), keeps the last `keep` finished operations
 * and never drops a running one.
 */

export type OperationStatus = 'running' | 'succeeded' | 'failed';

export interface OperationError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export interface Operation {
  id: string;
  kind: string;
  /** For people: `scale to 3`, `drain (deadline 30 s)`. */
  description: string;
  /** The validated input the operation was started with. */
  request: Record<string, unknown>;
  status: OperationStatus;
  startedAt: string;
  finishedAt?: string;
  /** The latest progress the operation reported. */
  progress?: unknown;
  result?: unknown;
  error?: OperationError;
}

export interface OperationControl {
  /** Aborts when the server's shutdown grace period is over. */
  signal: AbortSignal;
  /** Records the latest progress (read by `GET /api/fleet/operations/:id`). */
  progress(progress: unknown): void;
}

export interface StartOptions {
  kind: string;
  description: string;
  request: Record<string, unknown>;
  /**
   * Operations of one group run one at a time: starting a second one while one runs is a ConflictError
   * naming the running one (e.g. `rollout` for scale/restart/set-version/rollback).
   */
  exclusive?: string;
}

export interface OperationRegistry {
  /**
   * Starts `work` in the background (tracked, so a graceful shutdown waits for it) and returns its first
   * snapshot and a promise of its last.
   * @throws ConflictError when an operation of the same exclusive group runs, or too many run at once.
   */
  start(
    options: StartOptions,
    work: (control: OperationControl) => Promise<unknown>,
  ): { operation: Operation; finished: Promise<Operation> };
  get(id: string): Operation | undefined;
  /** Newest first. */
  list(): Operation[];
}

export interface RegistryOptions {
  clock: Clock;
  /** The server's `ctx.track`: graceful shutdown waits for what it tracks. */
  track<T>(work: Promise<T>): Promise<T>;
  /** The server's `ctx.shutdownSignal`. */
  signal: AbortSignal;
  /** Finished operations kept. @default 100 */
  keep?: number;
  /** Operations running at once, all groups together. @default 16 */
  maxRunning?: number;
  /** Told about internal errors (a bug): their detail is logged, not shown. */
  onInternalError?(operation: Operation, err: unknown): void;
}

interface Entry {
  operation: Operation;
  exclusive: string | undefined;
}

export function createOperationRegistry(options: RegistryOptions): OperationRegistry {
  const keep = options.keep ?? 100;
  const maxRunning = options.maxRunning ?? 16;
  // Insertion order is start order, so the first finished entries are the oldest.
  const entries = new Map<string, Entry>();

  // A copy as JSON would carry it: the caller may serialise it while the operation keeps changing.
  const snapshot = (op: Operation): Operation => JSON.parse(JSON.stringify(op)) as Operation;

  function prune(): void {
    let finished = 0;
    for (const e of entries.values()) if (e.operation.status !== 'running') finished += 1;
    for (const [id, e] of entries) {
      if (finished <= keep) break;
      if (e.operation.status === 'running') continue;
      entries.delete(id);
      finished -= 1;
    }
  }

  return {
    start(start, work) {
      const running = [...entries.values()].filter((e) => e.operation.status === 'running');
      const busy = start.exclusive && running.find((e) => e.exclusive === start.exclusive);
      if (busy)
        throw new ConflictError(
          `another ${start.exclusive} is running: ${busy.operation.description} ` +
            `(operation ${busy.operation.id}, started ${busy.operation.startedAt}); ` +
            `wait for it: GET /api/fleet/operations/${busy.operation.id}`,
          { details: { operation: busy.operation.id } },
        );
      if (running.length >= maxRunning)
        throw new ConflictError(
          `${running.length} fleet operations are running already; retry when one ends`,
        );

      const operation: Operation = {
        id: randomUUID(),
        kind: start.kind,
        description: clip(start.description, MAX_DESCRIPTION),
        request: boundedRequest(start.request),
        status: 'running',
        startedAt: options.clock.now().toISOString(),
      };
      entries.set(operation.id, { operation, exclusive: start.exclusive });
      const control: OperationControl = {
        signal: options.signal,
        progress(progress) {
          if (operation.status === 'running') operation.progress = progress;
        },
      };
      const finished = options.track(
        (async (): Promise<Operation> => {
          try {
            operation.result = await work(control);
            operation.status = 'succeeded';
          } catch (err) {
            const g = toGameopsError(err);
            operation.status = 'failed';
            if (g.code === ErrorCode.internal) {
              options.onInternalError?.(operation, err);
              operation.error = { code: g.code, message: 'internal error' };
            } else
              operation.error = {
                code: g.code,
                message: g.message,
                ...(g.details ? { details: g.details } : {}),
              };
          }
          operation.finishedAt = options.clock.now().toISOString();
          prune();
          return snapshot(operation);
        })(),
      );
      return { operation: snapshot(operation), finished };
    },
    get(id) {
      const e = entries.get(id);
      return e && snapshot(e.operation);
    },
    list() {
      return [...entries.values()].map((e) => snapshot(e.operation)).reverse();
    },
  };
}

/** What an operation keeps of its description and request: the registry lives in memory, unauthenticated. */
const MAX_DESCRIPTION = 300;
const MAX_REQUEST_BYTES = 2048;

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The request as sent, or a note of its size when it is too large to keep for every operation. */
function boundedRequest(request: Record<string, unknown>): Record<string, unknown> {
  const bytes = Buffer.byteLength(JSON.stringify(request));
  return bytes <= MAX_REQUEST_BYTES ? request : { truncated: true, bytes };
}
