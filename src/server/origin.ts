import { isIPv4 } from 'node:net';
import type { FastifyRequest } from 'fastify';
import { NotAllowedError } from '../core/index.ts';

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/**
 * A name that can only mean this machine: `localhost` and `*.localhost` (browsers never ask DNS for them),
 * and loopback address literals. `127.0.0.1.evil.example` starts like one but is a DNS name an attacker
 * controls, so `127.` counts only on a real IPv4 literal.
 */
function isLoopbackHost(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || (isIPv4(host) && host.startsWith('127.')) || host.endsWith('.localhost');
}

/** `host:port` or `[v6]:port` → host, lower-cased. */
function hostOf(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  return h.split(':')[0] ?? h;
}

/**
 * Browser-borne attacks on an API without login:
 * - DNS rebinding: a page on attacker.example whose name later resolves to 127.0.0.1 reads the API. A
 *   server bound to loopback therefore only answers requests addressed to a loopback name.
 * - Cross-site requests: a page elsewhere POSTs to the API (a form or a no-cors fetch). Browsers mark
 *   them with `Origin` and `Sec-Fetch-Site`; state-changing requests from another origin are refused.
 * Tools (curl, Prometheus, scripts) send neither header and are unaffected.
 * @throws NotAllowedError naming what was refused.
 */
export function guardOrigin(request: FastifyRequest, boundHost: string): void {
  const host = hostOf(request.headers.host ?? '');
  if (isLoopbackHost(boundHost) && !isLoopbackHost(host))
    throw new NotAllowedError(`requests to this server must address it by a loopback name, not "${host}"`);
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') return;
  if (request.headers['sec-fetch-site'] === 'cross-site')
    throw new NotAllowedError('cross-site requests may not change anything');
  const origin = request.headers.origin;
  if (origin === undefined) return;
  let originHost: string;
  try {
    originHost = new URL(origin).host.toLowerCase();
  } catch {
    throw new NotAllowedError(`malformed Origin header`);
  }
  if (originHost !== (request.headers.host ?? '').trim().toLowerCase())
    throw new NotAllowedError(`requests from ${new URL(origin).origin} may not change anything here`);
}
