import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '../core/index.ts';
import { requestCapped, type CappedRequestOptions } from './http-body.ts';

function listen(server: Server | TcpServer): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(`http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`);
    }),
  );
}

const options = (extra: Partial<CappedRequestOptions> = {}): CappedRequestOptions => ({
  headers: { accept: 'application/json' },
  maxBytes: 1024,
  timeoutMs: 2000,
  request: 'GET /x',
  fail: (message) => new UnavailableError(`svc: ${message}`),
  ...extra,
});

describe('requestCapped (node:http)', () => {
  let base = '';
  let silentBase = '';
  const server = createServer((req, res) => {
    if (req.url === '/big') return void res.end('x'.repeat(4096));
    if (req.url === '/redirect') {
      res.writeHead(302, { location: 'http://169.254.169.254/' });
      return void res.end();
    }
    if (req.url === '/echo') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () =>
        res.end(JSON.stringify({ method: req.method, body, type: req.headers['content-type'] })),
      );
      return;
    }
    res.writeHead(503, 'Busy');
    res.end('try later');
  });
  // Accepts connections and never answers.
  const sockets: Socket[] = [];
  const silent = createTcpServer((socket) => void sockets.push(socket));

  beforeAll(async () => {
    base = await listen(server);
    silentBase = await listen(silent);
  });
  afterAll(() => {
    for (const socket of sockets) socket.destroy();
    server.closeAllConnections();
    server.close();
    silent.close();
  });

  it('returns any status with its text, and sends a body', async () => {
    const answer = await requestCapped(new URL('/status', base), options());
    expect(answer).toEqual({ status: 503, statusText: 'Busy', ok: false, body: 'try later' });
    const echo = await requestCapped(
      new URL('/echo', base),
      options({ method: 'POST', body: '{"a":"ü"}', headers: { 'content-type': 'application/json' } }),
    );
    expect(echo.ok).toBe(true);
    expect(JSON.parse(echo.body)).toEqual({ method: 'POST', body: '{"a":"ü"}', type: 'application/json' });
  });

  it('never follows a redirect: the 302 is the answer', async () => {
    const answer = await requestCapped(new URL('/redirect', base), options());
    expect(answer.status).toBe(302);
    expect(answer.ok).toBe(false);
  });

  it('refuses an answer larger than maxBytes, naming the request', async () => {
    await expect(requestCapped(new URL('/big', base), options())).rejects.toThrow(
      'svc: GET /x answered more than 0.0009765625 MiB; refusing to read it',
    );
  });

  it('gives up on a server that accepts the connection and never answers, within the deadline', async () => {
    const started = Date.now();
    await expect(requestCapped(new URL('/', silentBase), options({ timeoutMs: 200 }))).rejects.toThrow(
      'svc: GET /x did not answer within 200 ms',
    );
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("throws the caller's own abort as it is", async () => {
    const controller = new AbortController();
    const reason = new Error('shutting down');
    setTimeout(() => controller.abort(reason), 50);
    await expect(
      requestCapped(new URL('/', silentBase), options({ signal: controller.signal })),
    ).rejects.toBe(reason);
  });

  it('names a refused connection in words', async () => {
    const closed = createServer();
    const url = await listen(closed);
    closed.close();
    await expect(requestCapped(new URL('/', url), options())).rejects.toThrow(
      /svc: GET \/x failed: connection refused \(ECONNREFUSED\)/,
    );
  });
});
