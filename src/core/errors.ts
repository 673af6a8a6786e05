/**
 * The one error taxonomy of gameops. Every error that reaches a person or crosses a process boundary is
 * one of these, identified by its `code` (never by `instanceof` across boundaries). HTTP status and CLI
 * exit codes are derived from `code` in exactly one place each (server/errors.ts, cli/exit.ts).
 */

export const ErrorCode = {
  input: 'input',
  notFound: 'not_found',
  conflict: 'conflict',
  notAllowed: 'not_allowed',
  unavailable: 'unavailable',
  internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class: a message meant for people, a stable code, optional structured details. */
export class GameopsError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

/** Bad input from a person or a file: retrying the same input cannot help. */
export class InputError extends GameopsError {
  override readonly name = 'InputError';
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(ErrorCode.input, message, options);
  }
}

export class NotFoundError extends GameopsError {
  override readonly name = 'NotFoundError';
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(ErrorCode.notFound, message, options);
  }
}

export class ConflictError extends GameopsError {
  override readonly name = 'ConflictError';
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(ErrorCode.conflict, message, options);
  }
}

export class NotAllowedError extends GameopsError {
  override readonly name = 'NotAllowedError';
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(ErrorCode.notAllowed, message, options);
  }
}

/** A dependency is down, refused, or did not answer in time: a later retry may help. */
export class UnavailableError extends GameopsError {
  override readonly name = 'UnavailableError';
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(ErrorCode.unavailable, message, options);
  }
}

/** Narrow an unknown thrown value to a GameopsError, wrapping anything else as `internal`. */
export function toGameopsError(err: unknown): GameopsError {
  if (err instanceof GameopsError) return err;
  if (err instanceof Error) return new GameopsError(ErrorCode.internal, err.message, { cause: err });
  return new GameopsError(ErrorCode.internal, String(err));
}

/** The message of any thrown value, for one-line summaries. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Closes exhaustive switches: the compiler proves this is unreachable. */
export function assertNever(value: never, what = 'value'): never {
  throw new GameopsError(ErrorCode.internal, `unexpected ${what}: ${JSON.stringify(value)}`);
}
