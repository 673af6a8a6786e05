/** The image check against an OCI registry **stand-in** (test/k8s-standin/registry.ts). */
import type { LookupAddress } from 'node:dns';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryStandIn } from '../../../test/k8s-standin/registry.ts';
import { addressRange, checkRealm, createRegistryCheck, parseChallenge, type Resolve } from './registry.ts';

/** A resolver with fixed answers, counting the questions. */
function fakeDns(answers: Record<string, string[]>): Resolve & { asked: string[] } {
  const asked: string[] = [];
  const resolve = async (host: string): Promise<LookupAddress[]> => {
    asked.push(host);
    const list = answers[host];
    if (!list) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolve, { asked });
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as { port: number }).port;
}

describe('registry check (registry stand-in)', () => {
  let open: RegistryStandIn;
  let tokenAuth: RegistryStandIn;
  const check = createRegistryCheck({ timeoutMs: 1000 });

  beforeAll(async () => {
    open = await startRegistry({ tags: { 'game/server': ['v1'] }, tokenAuth: false });
    tokenAuth = await startRegistry({ tags: { 'game/server': ['v1'] } });
  });
  afterAll(async () => {
    await open.close();
    await tokenAuth.close();
  });

  it('finds a tag that exists and misses one that does not', async () => {
    expect(await check(open.image('game/server', 'v1'))).toEqual({ status: 'exists' });
    expect(await check(open.image('game/server', 'v9'))).toEqual({ status: 'missing' });
    expect(await check(open.image('other/repo', 'v1'))).toEqual({ status: 'missing' });
  });

  it('follows the bearer-token challenge anonymously', async () => {
    expect(await check(tokenAuth.image('game/server', 'v1'))).toEqual({ status: 'exists' });
    expect(await check(tokenAuth.image('game/server', 'nope'))).toEqual({ status: 'missing' });
    expect(tokenAuth.requests).toContain('GET /token');
  });

  it('cannot tell when the registry is unreachable, refuses, or has no tag to check', async () => {
    const closed = await check('127.0.0.1:9/game/server:v1');
    expect(closed.status).toBe('unknown');
    expect(await check(open.host + '/game/server')).toMatchObject({ status: 'unknown' });
    const failing = createServer((_req, res) => {
      res.writeHead(500);
      res.end();
    });
    await new Promise<void>((r) => failing.listen(0, '127.0.0.1', () => r()));
    const port = (failing.address() as { port: number }).port;
    try {
      expect(await check(`127.0.0.1:${port}/game/server:v1`)).toEqual({
        status: 'unknown',
        why: `127.0.0.1:${port} answered HTTP 500`,
      });
    } finally {
      failing.close();
    }
  });

  it('gives up within its timeout on a registry that never answers', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as { port: number }).port;
    const began = performance.now();
    try {
      const result = await createRegistryCheck({ timeoutMs: 200 })(`127.0.0.1:${port}/game/server:v1`);
      expect(result).toMatchObject({ status: 'unknown' });
      expect(performance.now() - began).toBeLessThan(2000);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('classifies addresses, IPv4-mapped and NAT64 ones by the IPv4 address inside', () => {
    expect(addressRange('93.184.216.34')).toBe('public');
    expect(addressRange('127.0.0.1')).toBe('loopback');
    expect(addressRange('0.0.0.0')).toBe('loopback');
    expect(addressRange('::1')).toBe('loopback');
    expect(addressRange('::ffff:127.0.0.1')).toBe('loopback');
    expect(addressRange('10.1.2.3')).toBe('private');
    expect(addressRange('172.20.0.1')).toBe('private');
    expect(addressRange('192.168.1.1')).toBe('private');
    expect(addressRange('fd00::1')).toBe('private');
    expect(addressRange('169.254.169.254')).toBe('link-local');
    expect(addressRange('fe80::1')).toBe('link-local');
    expect(addressRange('64:ff9b::a9fe:a9fe')).toBe('link-local');
    expect(addressRange('64:ff9b::5db8:d822')).toBe('public');
    expect(addressRange('224.0.0.1')).toBe('reserved');
    expect(addressRange('2606:4700::1111')).toBe('public');
  });

  it('refuses a token realm that would lead gameops into a network the registry is not in', async () => {
    const dns = fakeDns({
      'registry.example.com': ['93.184.216.34'],
      'auth.example.com': ['93.184.216.35'],
      'auth.evil.example': ['10.0.0.5'],
      'metadata.evil.example': ['93.184.216.36', '169.254.169.254'],
      'internal-registry.corp': ['10.0.0.9'],
      'internal-auth.corp': ['10.0.0.10'],
      localhost: ['127.0.0.1', '::1'],
    });
    const realm = (url: string) => new URL(url);
    const why = async (registry: string, url: string) => {
      const answer = await checkRealm(registry, realm(url), dns);
      return answer.ok ? 'ok' : answer.why;
    };
    // The SSRF of the review: any registry could make gameops GET a local port.
    expect(await why('registry.example.com', 'http://127.0.0.1:2375/containers/json')).toContain('not https');
    expect(await why('registry.example.com', 'https://127.0.0.1:2375/containers/json')).toContain(
      '(loopback)',
    );
    expect(await why('registry.example.com', 'https://[::ffff:127.0.0.1]:8443/')).toContain('(loopback)');
    expect(await why('registry.example.com', 'https://2130706433/')).toContain('(loopback)');
    expect(await why('registry.example.com', 'https://auth.evil.example/token')).toContain(
      '10.0.0.5 (private)',
    );
    expect(await why('registry.example.com', 'https://metadata.evil.example/')).toContain('(link-local)');
    expect(await why('registry.example.com', 'https://user:pw@auth.example.com/')).toContain('credentials');
    expect(await why('registry.example.com', 'https://nowhere.example/')).toContain('ENOTFOUND');
    expect(await why('registry.example.com', 'https://auth.example.com/token')).toBe('ok');
    // A registry inside a private network may have its token service there too, but not on loopback.
    expect(await why('internal-registry.corp:5000', 'https://internal-auth.corp/token')).toBe('ok');
    expect(await why('internal-registry.corp:5000', 'https://127.0.0.1/token')).toContain('(loopback)');
    expect(await why('10.0.0.9:5000', 'http://10.0.0.10/token')).toContain('not https');
    // A registry on loopback (a local mirror, a test) may use plain http, judged on the registry.
    expect(await why('127.0.0.1:5000', 'http://127.0.0.1:5001/token')).toBe('ok');
    expect(await why('localhost:5000', 'http://metadata.evil.example/')).toContain('(link-local)');
    expect(await why('registry.example.com', 'http://localhost:5001/token')).toContain('not https');
  });

  it('asks nothing of a token service a hostile registry points into another network', async () => {
    const metadata = await startRegistry({
      tags: { 'game/server': ['v1'] },
      realm: 'https://169.254.169.254/latest/meta-data/iam/security-credentials/',
    });
    const dns = fakeDns({ 'internal.test': ['10.0.0.7'] });
    const privateRealm = await startRegistry({
      tags: { 'game/server': ['v1'] },
      realm: 'http://internal.test:{port}/token',
    });
    try {
      const began = performance.now();
      const result = await createRegistryCheck({ timeoutMs: 2000 })(metadata.image('game/server', 'v1'));
      expect(result).toMatchObject({ status: 'unknown' });
      expect(result.status === 'unknown' && result.why).toContain('169.254.169.254 (link-local)');
      expect(performance.now() - began).toBeLessThan(1500);
      const refused = await createRegistryCheck({ timeoutMs: 2000, resolve: dns })(
        privateRealm.image('game/server', 'v1'),
      );
      expect(refused.status === 'unknown' && refused.why).toContain('10.0.0.7 (private)');
      expect(privateRealm.requests.filter((r) => r.startsWith('GET /token'))).toEqual([]);
    } finally {
      await metadata.close();
      await privateRealm.close();
    }
  });

  it('connects to the token service at the address it checked, without asking DNS again', async () => {
    const registry = await startRegistry({
      tags: { 'game/server': ['v1'] },
      realm: 'http://auth.test:{port}/token',
    });
    const dns = fakeDns({ 'auth.test': ['127.0.0.1'] });
    try {
      const check = createRegistryCheck({ timeoutMs: 2000, resolve: dns });
      expect(await check(registry.image('game/server', 'v1'))).toEqual({ status: 'exists' });
      expect(dns.asked).toEqual(['auth.test']);
      expect(registry.requests).toContain('GET /token');
    } finally {
      await registry.close();
    }
  });

  it('does not follow a redirect from the token service', async () => {
    let hits = 0;
    const elsewhere = createServer((_req, res) => {
      hits++;
      res.end('{"token":"stolen"}');
    });
    const elsewherePort = await listen(elsewhere);
    const registry = createServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(302, { location: `http://127.0.0.1:${elsewherePort}/latest/meta-data` });
        res.end();
        return;
      }
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token"` });
      res.end();
    });
    const port = await listen(registry);
    try {
      const result = await createRegistryCheck({ timeoutMs: 2000 })(`127.0.0.1:${port}/game/server:v1`);
      expect(result).toEqual({
        status: 'unknown',
        why: `127.0.0.1:${port} gave no anonymous pull token (HTTP 302)`,
      });
      expect(hits).toBe(0);
    } finally {
      registry.close();
      elsewhere.close();
    }
  });

  it('calls a tag missing only when the registry says so (MANIFEST_UNKNOWN, NAME_UNKNOWN), not on a bare 404', async () => {
    expect(await check(open.image('game/server', 'v9'))).toEqual({ status: 'missing' });
    expect(await check(open.image('no/such-repo', 'v1'))).toEqual({ status: 'missing' });
    const proxy = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html><body>404 Not Found</body></html>');
    });
    const port = await listen(proxy);
    const other = createServer((req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(req.method === 'HEAD' ? undefined : '{"errors":[{"code":"UNSUPPORTED","message":"nope"}]}');
    });
    const otherPort = await listen(other);
    try {
      const bare = await check(`127.0.0.1:${port}/game/server:v1`);
      expect(bare).toMatchObject({ status: 'unknown' });
      expect(bare.status === 'unknown' && bare.why).toContain(
        "answered 404 without the registry's MANIFEST_UNKNOWN or NAME_UNKNOWN error: cannot tell whether game/server:v1 exists",
      );
      const unsupported = await check(`127.0.0.1:${otherPort}/game/server:v1`);
      expect(unsupported.status === 'unknown' && unsupported.why).toContain('(it said UNSUPPORTED)');
    } finally {
      proxy.close();
      other.close();
    }
  });

  it('parses WWW-Authenticate challenges', () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
      ),
    ).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/nginx:pull',
      },
    });
    expect(parseChallenge('')).toBeUndefined();
  });
});
