/**
 * Does an image tag exist? Asked of the image's registry with the OCI distribution API
 * (`HEAD /v2/<repository>/manifests/<tag>`), anonymously, following the registry's bearer-token
 * challenge (Docker Hub, GHCR, Quay, Harbor and most others answer public repositories this way).
 *
 * The answer is three-valued: `exists`, `missing` (the registry said 404: a typo or an unpushed tag,
 * which would leave pods in ImagePullBackOff), or `unknown` (private registry, unreachable, odd answer).
 * Only `missing` refuses a version; `unknown` lets the rollout go ahead with a warning, since the
 * cluster may well reach registries gameops cannot. No credentials are ever sent.
 */
import { parseImage } from './image.ts';

export type ImageCheckResult =
  { status: 'exists' } | { status: 'missing' } | { status: 'unknown'; why: string };

/** Checks that `image` (with its tag) can be pulled. Throws only the signal's reason when it aborts. */
export type ImageCheck = (image: string, signal?: AbortSignal) => Promise<ImageCheckResult>;

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const MAX_TOKEN_BYTES = 64 * 1024;

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** `Bearer realm="…",service="…",scope="…"` → its parameters. */
export function parseChallenge(
  header: string,
): { scheme: string; params: Record<string, string> } | undefined {
  const m = /^\s*(\w+)\s+(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

async function readCapped(response: Response, max: number): Promise<string | undefined> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const result: { done: boolean; value?: unknown } = await reader.read();
    if (result.done) break;
    const value = result.value;
    if (!(value instanceof Uint8Array)) {
      await reader.cancel();
      return undefined;
    }
    size += value.length;
    if (size > max) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function createRegistryCheck(options: { timeoutMs: number }): ImageCheck {
  return async (image, signal) => {
    const ref = parseImage(image);
    if (!ref?.tag) return { status: 'unknown', why: 'the image has no tag to check' };
    const host = ref.registry === 'docker.io' ? 'registry-1.docker.io' : ref.registry;
    const scheme = isLoopback(host) ? 'http' : 'https';
    const url = `${scheme}://${host}/v2/${ref.repository}/manifests/${encodeURIComponent(ref.tag)}`;
    const timeout = AbortSignal.timeout(options.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      let response = await fetch(url, {
        method: 'HEAD',
        headers: { accept: ACCEPT },
        redirect: 'manual',
        signal: combined,
      });
      if (response.status === 401) {
        const challenge = parseChallenge(response.headers.get('www-authenticate') ?? '');
        const realm = challenge?.scheme === 'bearer' ? challenge.params['realm'] : undefined;
        if (realm === undefined) return { status: 'unknown', why: `${host} asks for credentials` };
        let tokenUrl: URL;
        try {
          tokenUrl = new URL(realm);
        } catch {
          return { status: 'unknown', why: `${host} answered an invalid token realm` };
        }
        if (tokenUrl.protocol !== 'https:' && !(tokenUrl.protocol === 'http:' && isLoopback(tokenUrl.host))) {
          return { status: 'unknown', why: `${host} points to a token service that is not https` };
        }
        if (challenge?.params['service'] !== undefined)
          tokenUrl.searchParams.set('service', challenge.params['service']);
        tokenUrl.searchParams.set('scope', challenge?.params['scope'] ?? `repository:${ref.repository}:pull`);
        const tokenResponse = await fetch(tokenUrl, { redirect: 'manual', signal: combined });
        if (!tokenResponse.ok) {
          await tokenResponse.body?.cancel();
          return {
            status: 'unknown',
            why: `${host} gave no anonymous pull token (HTTP ${tokenResponse.status})`,
          };
        }
        const text = await readCapped(tokenResponse, MAX_TOKEN_BYTES);
        let token: unknown;
        try {
          const parsed = JSON.parse(text ?? '') as { token?: unknown; access_token?: unknown };
          token = parsed.token ?? parsed.access_token;
        } catch {
          token = undefined;
        }
        if (typeof token !== 'string' || token.length === 0 || /[\r\n]/.test(token)) {
          return { status: 'unknown', why: `${host} answered an unreadable token` };
        }
        response = await fetch(url, {
          method: 'HEAD',
          headers: { accept: ACCEPT, authorization: `Bearer ${token}` },
          redirect: 'manual',
          signal: combined,
        });
      }
      if (response.status === 200) return { status: 'exists' };
      if (response.status === 404) return { status: 'missing' };
      if (response.status === 401 || response.status === 403) {
        return { status: 'unknown', why: `${host} requires credentials for ${ref.repository}` };
      }
      return { status: 'unknown', why: `${host} answered HTTP ${response.status}` };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const why = timeout.aborted
        ? `no answer within ${options.timeoutMs} ms`
        : err instanceof Error
          ? err.message
          : String(err);
      return { status: 'unknown', why: `${host}: ${why}` };
    }
  };
}
