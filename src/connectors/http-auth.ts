import { secret, type Secret } from '../core/index.ts';

/**
 * The credentials of an HTTP API as the config holds them (`AlertmanagerConfig`, `PrometheusConfig`): a
 * bearer token, or a user name and password for Basic auth.
 */
export interface HttpCredentials {
  username?: string | undefined;
  password?: Secret | undefined;
  bearerToken?: Secret | undefined;
}

export interface HttpAuth {
  /** The `Authorization` header value, or undefined when nothing is configured. */
  header: string | undefined;
  /**
   * Everything that must never show in a message: the raw password and token, and the exact header value
   * with its base64 `user:password` (a proxy or server may echo the request's Authorization header back in
   * an error body). Longest first, so that a longer form is masked whole before a shorter one inside it.
   */
  secrets: Secret[];
}

/**
 * The Authorization header for `credentials`: `Bearer <token>` when a token is configured (it wins over
 * Basic; the config refuses both at once), otherwise `Basic base64(username:password)` when a user name or a
 * password is, otherwise none. Pure.
 */
export function httpAuth(credentials: HttpCredentials | undefined): HttpAuth {
  if (!credentials) return { header: undefined, secrets: [] };
  const { username, password, bearerToken } = credentials;
  const secrets = [bearerToken, password].filter((s): s is Secret => s !== undefined);
  let header: string | undefined;
  if (username !== undefined || password !== undefined) {
    const basic = Buffer.from(`${username ?? ''}:${password?.reveal() ?? ''}`, 'utf8').toString('base64');
    header = `Basic ${basic}`;
    // Masked even when the bearer token wins: the password is a secret of the config either way.
    secrets.push(secret(header, 'derived'), secret(basic, 'derived'));
  }
  if (bearerToken) {
    header = `Bearer ${bearerToken.reveal()}`;
    secrets.push(secret(header, 'derived'));
  }
  return { header, secrets: secrets.sort((a, b) => b.reveal().length - a.reveal().length) };
}
