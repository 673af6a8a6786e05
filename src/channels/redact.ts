/**
 * What an outcome may not show of a channel's URL. A Slack or Discord webhook URL is its own credential,
 * and a generic webhook's path or query may carry a token; a peer answering an error often echoes what it
 * was sent (`Cannot POST /api/webhooks/123/<token>`), whole or in part, JSON-escaped (`\/`) or
 * percent-decoded. So every such form of the URL and of each of its token-like parts is masked, and the
 * peer's text is masked before it is cut (a cut first would leave a prefix of a secret unmasked).
 */
import { secret, type Secret } from '../core/index.ts';

/** Parts shorter than this are not masked on their own (`api`, `v1`, `123`): they say nothing secret. */
export const MIN_SECRET_PART_CHARS = 8;

/**
 * Whether a path segment of a generic webhook looks like a credential rather than a route word: anything
 * but lower-case letters and dashes (`T0ABC`, `a1b2c3`, `SEGSECRET`), or long enough to be random.
 */
function tokenLike(part: string): boolean {
  return /[^a-z_-]/.test(part) || part.length >= 16;
}

function decoded(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

/**
 * The texts to mask for a channel URL, longest first: the whole URL, its path and query together and
 * apart, each path segment and each query value of at least {@link MIN_SECRET_PART_CHARS} characters, each
 * as sent, percent-decoded, and with `/` escaped as `\/` (JSON). With `wholeUrlSecret` (Slack, Discord)
 * every such segment counts; otherwise only token-like ones do (route words such as `incoming` stay
 * readable), and every query value.
 */
export function urlSecretForms(url: URL, wholeUrlSecret: boolean): string[] {
  const path = url.pathname;
  const query = url.search.startsWith('?') ? url.search.slice(1) : url.search;
  const forms = new Set<string>();
  const add = (text: string, always = false): void => {
    for (const f of [text, decoded(text)]) {
      for (const g of [f, f.replace(/\//g, '\\/')])
        if (g.length >= MIN_SECRET_PART_CHARS || (always && g.length >= 3)) forms.add(g);
    }
  };
  add(url.href, true);
  add(`${url.host}${path}${url.search}`);
  add(`${path}${url.search}`, true);
  add(path);
  add(query);
  for (const segment of path.split('/'))
    if (segment.length >= MIN_SECRET_PART_CHARS && (wholeUrlSecret || tokenLike(decoded(segment))))
      add(segment);
  for (const pair of query.split('&')) {
    const at = pair.indexOf('=');
    const value = at < 0 ? pair : pair.slice(at + 1);
    if (value.length >= MIN_SECRET_PART_CHARS) add(value);
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

/** {@link urlSecretForms} as secrets for `maskSecrets`. */
export function urlSecrets(url: URL, field: string, wholeUrlSecret: boolean): Secret[] {
  return urlSecretForms(url, wholeUrlSecret).map((form) => secret(form, field));
}
