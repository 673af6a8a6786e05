/** The image check against an OCI registry **stand-in** (test/k8s-standin/registry.ts). */
import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryStandIn } from '../../../test/k8s-standin/registry.ts';
import { createRegistryCheck, parseChallenge } from './registry.ts';

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
