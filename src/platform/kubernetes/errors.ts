/**
 * The ONE place where what the Kubernetes API (or the way to it) answered becomes a gameops error.
 * Messages name the object and the operation; they never carry credentials: the API's own Status
 * message is used (it names objects and identities, not tokens), and every message goes through
 * {@link Redactor} as a second net.
 */
import { ApiException } from '@kubernetes/client-node';
import {
  ConflictError,
  GameopsError,
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
} from '../../core/index.ts';

/** What was being done, for messages: `reading deployment game/game-server`. */
export interface Target {
  /** `reading`, `patching`, `listing`, `streaming the log of`… */
  action: string;
  /** `deployment`, `pod`, `configmap`, `horizontalpodautoscaler`, `replicasets`, `pod metrics`… */
  kind: string;
  namespace?: string;
  name?: string;
}

export interface ApiContext {
  /** The API server URL (no credentials). */
  server: string;
  context: string;
  user: string;
  requestTimeoutMs: number;
  redact: (text: string) => string;
}

/** Replaces every known secret of the kubeconfig user in `text`. */
export function makeRedactor(secrets: Array<string | undefined>): (text: string) => string {
  const list = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 4);
  return (text) => list.reduce((t, s) => t.split(s).join('********'), text);
}

function describe(t: Target): string {
  const where =
    t.name === undefined
      ? t.namespace
        ? ` in namespace ${t.namespace}`
        : ''
      : ` ${t.namespace ? `${t.namespace}/` : ''}${t.name}`;
  return `${t.action} ${t.kind}${where}`;
}

/** The `message` of a Kubernetes `Status` body (object or JSON text), if it is one. */
export function statusMessage(body: unknown): string | undefined {
  let value: unknown = body;
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body) as unknown;
    } catch {
      return body.length > 0 && body.length <= 1000 ? body : undefined;
    }
  }
  if (typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'Status') {
    const message = (value as { message?: unknown }).message;
    if (typeof message === 'string') return message.slice(0, 1000);
  }
  return undefined;
}

/** An HTTP answer that is not a success, from the generated client or a raw request. */
export interface HttpFailure {
  statusCode: number;
  body: unknown;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'UND_ERR_SOCKET',
]);

function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Maps anything thrown while talking to the API to a gameops error. `signal` is the caller's: when it
 * aborted, its reason is rethrown as is (the caller cancelled); a timeout of ours is an UnavailableError.
 */
export function toPlatformError(
  err: unknown,
  target: Target,
  api: ApiContext,
  signal?: AbortSignal,
): unknown {
  if (err instanceof GameopsError) return err;
  if (signal?.aborted) return signal.reason;
  const what = describe(target);
  const failure: HttpFailure | undefined =
    err instanceof ApiException
      ? { statusCode: (err as ApiException<unknown>).code, body: (err as ApiException<unknown>).body }
      : isHttpFailure(err)
        ? err
        : undefined;
  if (failure) return fromStatus(failure, target, what, api);
  const name = err instanceof Error ? err.name : '';
  if (name === 'AbortError' || name === 'TimeoutError') {
    return new UnavailableError(
      `the Kubernetes API at ${api.server} did not answer ${what} within ${api.requestTimeoutMs} ms`,
      {
        details: { server: api.server, timeoutMs: api.requestTimeoutMs },
      },
    );
  }
  const message = api.redact(err instanceof Error ? err.message : String(err));
  if (/HTTP protocol is not allowed/.test(message)) {
    return new InputError(
      `the kubeconfig context "${api.context}" points to a plain-http server (${api.server}) without insecure-skip-tls-verify; use https`,
    );
  }
  const code = errorCode(err);
  if (code !== undefined && (NETWORK_CODES.has(code) || code.startsWith('ERR_SOCKET'))) {
    return new UnavailableError(`cannot reach the Kubernetes API at ${api.server} (${code}) while ${what}`, {
      details: { server: api.server, code },
    });
  }
  return new UnavailableError(`the Kubernetes API at ${api.server} failed ${what}: ${message}`, {
    details: { server: api.server },
  });
}

function isHttpFailure(err: unknown): err is HttpFailure {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as HttpFailure).statusCode === 'number' &&
    'body' in err
  );
}

function fromStatus(failure: HttpFailure, target: Target, what: string, api: ApiContext): GameopsError {
  const code = failure.statusCode;
  const apiMessage = statusMessage(failure.body);
  const said = apiMessage === undefined ? '' : `: ${api.redact(apiMessage)}`;
  const details = { server: api.server, status: code };
  switch (code) {
    case 401:
      return new NotAllowedError(
        `the Kubernetes API at ${api.server} refused the credentials of kubeconfig user "${api.user}" (context "${api.context}") while ${what}: 401 Unauthorized; renew the token or certificate`,
        { details },
      );
    case 403:
      return new NotAllowedError(
        `not allowed: ${what}${said} (403 Forbidden; deploy/rbac.yaml lists what gameops needs)`,
        {
          details,
        },
      );
    case 404:
      return new NotFoundError(
        target.name === undefined
          ? `${what}: not found${said}`
          : `${target.kind} ${target.namespace ? `${target.namespace}/` : ''}${target.name} not found`,
        { details },
      );
    case 409:
      return new ConflictError(
        `${what}: the object was changed by someone else at the same time (409 Conflict)${said}`,
        {
          details,
        },
      );
    case 400:
    case 422:
      return new InputError(`the Kubernetes API refused ${what}${said}`, { details });
    default:
      return new UnavailableError(
        `the Kubernetes API at ${api.server} failed ${what} with HTTP ${code}${said}`,
        { details },
      );
  }
}
