/**
 * Does an image tag exist? Asked of the image's registry with the OCI distribution API
 * (`HEAD /v2/<repository>/manifests/<tag>`), anonymously, following the registry's bearer-token
 * challenge (Docker Hub, GHCR, Quay, Harbor and most others answer public repositories this way).
 *
 * The answer is three-valued: `exists`, `missing` (the registry said 404 with the distribution API's
 * own error, MANIFEST_UNKNOWN or NAME_UNKNOWN: a typo or an unpushed tag, which would leave pods in
 * ImagePullBackOff), or `unknown` (private registry, unreachable, odd answer, a bare 404 from something
 * in front of it). Only `missing` refuses a version; `unknown` lets the rollout go ahead with a warning,
 * since the cluster may well reach registries gameops cannot. No credentials are ever sent.
 *
 * The token service is wherever the registry's challenge says (`realm`), so a hostile or compromised
 * registry could point gameops at anything it can reach. The realm must be https (http only when the
 * registry itself is on loopback), may only resolve into a loopback, private or link-local range when
 * the registry itself is in that range, is connected to at exactly the addresses checked (no second DNS
 * answer), and is never followed through a redirect.
 */
import type { LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import {
  addressesOf,
  addressRange,
  isLoopbackHost as isLoopback,
  pinnedLookup,
  systemResolve,
  type Resolve,
} from '../../connectors/outbound.ts';
import { parseImage } from './image.ts';

export { addressRange } from '../../connectors/outbound.ts';
export type { AddressRange, Resolve } from '../../connectors/outbound.ts';

export type ImageCheckResult =
  { status: 'exists' } | { status: 'missing' } | { status: 'unknown'; why: string };

/** Checks that `image` (with its tag) can be pulled. Throws only the signal's reason when it aborts. */
export type ImageCheck = (image: string, signal?: AbortSignal) => Promise<ImageCheckResult>;

export interface RegistryCheckOptions {
  timeoutMs: number;
  /** How host names are resolved for the token service. @default the system resolver */
  resolve?: Resolve;
}

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const MAX_TOKEN_BYTES = 64 * 1024;
const MAX_ERROR_BYTES = 64 * 1024;
/** The distribution API's error codes for "no such manifest" and "no such repository". */
const NOT_THERE = new Set(['MANIFEST_UNKNOWN', 'NAME_UNKNOWN']);

/**
 * Whether the token service `realm` announced by `registryHost` (`host[:port]`) may be asked, and at
 * which addresses. A refusal says why.
 */
export async function checkRealm(
  registryHost: string,
  realm: URL,
  resolve: Resolve = systemResolve,
): Promise<{ ok: true; addresses: LookupAddress[] } | { ok: false; why: string }> {
  if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && isLoopback(registryHost))) {
    return {
      ok: false,
      why: `${registryHost} points to a token service that is not https (${realm.origin})`,
    };
  }
  if (realm.username !== '' || realm.password !== '') {
    return { ok: false, why: `${registryHost} points to a token service URL with credentials in it` };
  }
  let realmAddresses: LookupAddress[];
  let registryAddresses: LookupAddress[];
  try {
    [realmAddresses, registryAddresses] = await Promise.all([
      addressesOf(realm.hostname, resolve),
      addressesOf(registryHost, resolve),
    ]);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return {
      ok: false,
      why: `cannot resolve the token service ${realm.host} of ${registryHost} (${typeof code === 'string' ? code : String(err)})`,
    };
  }
  if (realmAddresses.length === 0)
    return { ok: false, why: `the token service ${realm.host} of ${registryHost} has no address` };
  const registryRanges = new Set(registryAddresses.map((a) => addressRange(a.address)));
  for (const a of realmAddresses) {
    const range = addressRange(a.address);
    if (range === 'public' || (range !== 'reserved' && registryRanges.has(range))) continue;
    return {
      ok: false,
      why: `${registryHost} points to a token service at ${realm.host}, which resolves to ${a.address} (${range}); the registry itself is not in that range, so gameops does not go there`,
    };
  }
  return { ok: true, addresses: realmAddresses };
}

async function readCappedStream(res: IncomingMessage, max: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      res.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** GET the token URL at the checked addresses; no redirect is followed. */
async function fetchToken(
  url: URL,
  addresses: LookupAddress[],
  signal: AbortSignal,
): Promise<{ status: number; text: string | undefined }> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      lookup: pinnedLookup(addresses),
      agent: false,
      signal,
    });
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
  const status = res.statusCode ?? 0;
  if (status !== 200) {
    res.resume();
    return { status, text: undefined };
  }
  return { status, text: await readCappedStream(res, MAX_TOKEN_BYTES) };
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

/** The distribution API's error codes in a 404 body (`{"errors":[{"code":"MANIFEST_UNKNOWN",…}]}`). */
function errorCodes(text: string | undefined): string[] {
  try {
    const body = JSON.parse(text ?? '') as { errors?: unknown };
    if (!Array.isArray(body.errors)) return [];
    return body.errors
      .map((e) => (typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined))
      .filter((c): c is string => typeof c === 'string');
  } catch {
    return [];
  }
}

export function createRegistryCheck(options: RegistryCheckOptions): ImageCheck {
  const resolve = options.resolve ?? systemResolve;
  return async (image, signal) => {
    const ref = parseImage(image);
    if (!ref?.tag) return { status: 'unknown', why: 'the image has no tag to check' };
    const host = ref.registry === 'docker.io' ? 'registry-1.docker.io' : ref.registry;
    const scheme = isLoopback(host) ? 'http' : 'https';
    const url = `${scheme}://${host}/v2/${ref.repository}/manifests/${encodeURIComponent(ref.tag)}`;
    const timeout = AbortSignal.timeout(options.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const headers: Record<string, string> = { accept: ACCEPT };
      let response = await fetch(url, { method: 'HEAD', headers, redirect: 'manual', signal: combined });
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
        const allowed = await checkRealm(host, tokenUrl, resolve);
        if (!allowed.ok) return { status: 'unknown', why: allowed.why };
        if (challenge?.params['service'] !== undefined)
          tokenUrl.searchParams.set('service', challenge.params['service']);
        tokenUrl.searchParams.set('scope', challenge?.params['scope'] ?? `repository:${ref.repository}:pull`);
        const tokenResponse = await fetchToken(tokenUrl, allowed.addresses, combined);
        if (tokenResponse.status !== 200) {
          return {
            status: 'unknown',
            why: `${host} gave no anonymous pull token (HTTP ${tokenResponse.status})`,
          };
        }
        let token: unknown;
        try {
          const parsed = JSON.parse(tokenResponse.text ?? '') as { token?: unknown; access_token?: unknown };
          token = parsed.token ?? parsed.access_token;
        } catch {
          token = undefined;
        }
        if (typeof token !== 'string' || token.length === 0 || /[\r\n]/.test(token)) {
          return { status: 'unknown', why: `${host} answered an unreadable token` };
        }
        headers['authorization'] = `Bearer ${token}`;
        response = await fetch(url, { method: 'HEAD', headers, redirect: 'manual', signal: combined });
      }
      if (response.status === 200) return { status: 'exists' };
      if (response.status === 404) {
        // A HEAD answer has no body: ask again with GET to read the registry's own error. Only the
        // distribution API's "unknown manifest/repository" says the tag is missing; a bare 404 may come
        // from a proxy or a path the registry does not serve.
        const again = await fetch(url, { method: 'GET', headers, redirect: 'manual', signal: combined });
        if (again.status === 200) {
          await again.body?.cancel();
          return { status: 'exists' };
        }
        const codes = errorCodes(await readCapped(again, MAX_ERROR_BYTES));
        if (again.status === 404 && codes.some((c) => NOT_THERE.has(c))) return { status: 'missing' };
        return {
          status: 'unknown',
          why: `${host} answered 404 without the registry's MANIFEST_UNKNOWN or NAME_UNKNOWN error${codes.length > 0 ? ` (it said ${codes.join(', ')})` : ''}: cannot tell whether ${ref.repository}:${ref.tag} exists`,
        };
      }
      await response.body?.cancel();
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
