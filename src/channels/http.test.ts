import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import type { OutboundMessage } from '../ops/contracts.ts';
import { createChannels, verifySignature, type Channels } from './index.ts';
import { startReceiver, startSilentServer, testConfig, type Receiver } from './test-support.ts';

const TOKEN = 'hook-token-5f1e2d3c';
const KEY = 'whsec-signing-key-77a1';
const SLACK_PATH = '/services/T000/B000/slacksecretpath';
const DISCORD_PATH = '/api/webhooks/123/discordsecretpath';

function message(deliveryId: string, extra: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    deliveryId,
    kind: 'page',
    subject: 'INC-7: login errors',
    text: 'Login error rate 12% on eu-1',
    severity: 'P1',
    incidentId: 'INC-7',
    pageId: 'pg_1',
    recipient: { id: 'alice', name: 'Alice', email: 'alice@example.com' },
    links: [{ title: 'Acknowledge', url: 'https://ops.example.com/api/ack/t1' }],
    ...extra,
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('channels over HTTP (local receivers)', () => {
  const clock = new ManualClock('2026-03-01T12:00:00Z');
  let receiver: Receiver;
  let silent: Awaited<ReturnType<typeof startSilentServer>>;
  let channels: Channels;

  beforeAll(async () => {
    receiver = await startReceiver({
      '/ok': (_req, res) => res.writeHead(200).end('ok'),
      // The receiver checks the signature the way a real one would: against its own clock.
      '/signed': (req, res, body) => {
        const valid = verifySignature(
          KEY,
          req.headers['x-gameops-signature'] as string,
          body,
          clock.now().getTime(),
        );
        res.writeHead(valid ? 204 : 401).end();
      },
      '/busy-seconds': (_req, res) => res.writeHead(429, { 'retry-after': '30' }).end('slow down'),
      '/busy-date': (_req, res) =>
        res.writeHead(429, { 'retry-after': new Date(clock.now().getTime() + 120_000).toUTCString() }).end(),
      '/down': (req, res) =>
        res.writeHead(503).end(`maintenance; you sent ${req.headers.authorization ?? ''}`),
      '/slow-request': (_req, res) => res.writeHead(408).end(),
      '/moved': (_req, res) =>
        res.writeHead(301, { location: 'http://169.254.169.254/latest/meta-data' }).end(),
      '/bad': (_req, res) => res.writeHead(400).end('{"error":"bad payload"}'),
      '/gone': (_req, res) => res.writeHead(404).end('no such hook'),
      '/reset': (req) => req.socket.destroy(),
      '/huge': (_req, res) => res.writeHead(200).end('x'.repeat(300 * 1024)),
      '/huge-error': (_req, res) => res.writeHead(500).end('e'.repeat(300 * 1024)),
      [`${SLACK_PATH}-fail`]: (req, res) => res.writeHead(500).end(`no hook at ${req.url ?? ''}`),
      '/discord-limit': (_req, res) =>
        res
          .writeHead(429, { 'content-type': 'application/json' })
          .end('{"message":"You are being rate limited.","retry_after":0.64,"global":false}'),
    });
    silent = await startSilentServer();
    const base = receiver.base;
    const hook = (name: string, path: string, extra = ''): string =>
      `    - { name: ${name}, kind: webhook, url: "${base}${path}"${extra} }`;
    const config = testConfig(
      [
        'notifications:',
        '  allowPrivate: ["127.0.0.1"]',
        '  channels:',
        hook('ops', '/ok', ', token: "env:HOOK_TOKEN", signingSecret: "env:HOOK_KEY"'),
        hook('signed', '/signed', ', signingSecret: "env:HOOK_KEY"'),
        hook('busy-seconds', '/busy-seconds'),
        hook('busy-date', '/busy-date'),
        hook('down', '/down', ', token: "env:HOOK_TOKEN"'),
        hook('slow-request', '/slow-request'),
        hook('moved', '/moved'),
        hook('bad', '/bad'),
        hook('gone', '/gone'),
        hook('reset', '/reset'),
        hook('huge', '/huge'),
        hook('huge-error', '/huge-error'),
        `    - { name: hang, kind: webhook, url: "http://127.0.0.1:${silent.port}/hook" }`,
        `    - { name: refused, kind: webhook, url: "http://127.0.0.1:${await closedPort()}/hook" }`,
        '    - { name: chat, kind: slack, webhookUrl: "env:SLACK_URL" }',
        '    - { name: chat-fail, kind: slack, webhookUrl: "env:SLACK_FAIL_URL" }',
        '    - { name: chat-not-url, kind: slack, webhookUrl: "env:NOT_URL" }',
        '    - { name: chat-ftp, kind: slack, webhookUrl: "env:FTP_URL" }',
        '    - { name: disc, kind: discord, webhookUrl: "env:DISCORD_URL" }',
        '    - { name: disc-limited, kind: discord, webhookUrl: "env:DISCORD_LIMITED_URL" }',
      ],
      {
        HOOK_TOKEN: TOKEN,
        HOOK_KEY: KEY,
        SLACK_URL: `${base}${SLACK_PATH}`,
        SLACK_FAIL_URL: `${base}${SLACK_PATH}-fail?token=slackquerysecret`,
        NOT_URL: 'hooks slack com slacksecretpath',
        FTP_URL: `ftp://127.0.0.1${SLACK_PATH}`,
        DISCORD_URL: `${base}${DISCORD_PATH}`,
        DISCORD_LIMITED_URL: `${base}/discord-limit`,
      },
    );
    channels = createChannels(config, { clock, timeoutMs: 2000 });
  });

  afterAll(async () => {
    await receiver?.close();
    await silent?.close();
  });

  it('lists the configured channels and their kinds', () => {
    expect(channels.names()).toContain('ops');
    expect(channels.kind('ops')).toBe('webhook');
    expect(channels.kind('chat')).toBe('slack');
    expect(channels.kind('disc')).toBe('discord');
    expect(channels.kind('nope')).toBeUndefined();
  });

  it('webhook: posts the JSON message with delivery id, bearer token and signature', async () => {
    const outcome = await channels.attempt('ops', message('pg_1.0.0.alice.ops'));
    expect(outcome).toMatchObject({
      ok: true,
      destination: `127.0.0.1:${receiver.port}`,
      response: 'HTTP 200',
    });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
    const got = receiver.at('/ok').at(-1)!;
    expect(got.method).toBe('POST');
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['authorization']).toBe(`Bearer ${TOKEN}`);
    expect(got.headers['x-gameops-delivery']).toBe('pg_1.0.0.alice.ops');
    expect(got.headers['user-agent']).toMatch(/^gameops\//);
    expect(
      verifySignature(KEY, got.headers['x-gameops-signature'] as string, got.body, clock.now().getTime()),
    ).toBe(true);
    expect(JSON.parse(got.body)).toEqual({
      deliveryId: 'pg_1.0.0.alice.ops',
      kind: 'page',
      subject: 'INC-7: login errors',
      text: 'Login error rate 12% on eu-1',
      severity: 'P1',
      incidentId: 'INC-7',
      pageId: 'pg_1',
      recipient: { id: 'alice', name: 'Alice', email: 'alice@example.com' },
      links: [{ title: 'Acknowledge', url: 'https://ops.example.com/api/ack/t1' }],
      service: 'test-game',
      environment: 'test',
      channel: 'ops',
      sentAt: '2026-03-01T12:00:00.000Z',
    });
  });

  it('the receiver verifies the signature; tampering and old timestamps are detected', async () => {
    const outcome = await channels.attempt('signed', message('pg_2.0.0.alice.signed'));
    expect(outcome).toMatchObject({ ok: true, response: 'HTTP 204' });
    const got = receiver.at('/signed').at(-1)!;
    const header = got.headers['x-gameops-signature'] as string;
    expect(header).toMatch(/^t=1772366400,v1=[0-9a-f]{64}$/);
    const now = clock.now().getTime();
    expect(verifySignature(KEY, header, got.body.replace('12%', '1%'), now)).toBe(false);
    expect(verifySignature(KEY, header, got.body, now + 10 * 60_000)).toBe(false);
    expect(verifySignature('not-the-key', header, got.body, now)).toBe(false);
  });

  it('the delivery id is the same on every attempt of one message; the signature moves with the time', async () => {
    const m = message('pg_3.1.0.alice.signed');
    await channels.attempt('signed', m);
    clock.advance(90_000);
    await channels.attempt('signed', m);
    const [first, second] = receiver.at('/signed').slice(-2);
    expect(first!.headers['x-gameops-delivery']).toBe('pg_3.1.0.alice.signed');
    expect(second!.headers['x-gameops-delivery']).toBe('pg_3.1.0.alice.signed');
    expect((JSON.parse(second!.body) as { deliveryId: string }).deliveryId).toBe('pg_3.1.0.alice.signed');
    expect(first!.headers['x-gameops-signature']).not.toBe(second!.headers['x-gameops-signature']);
    clock.set('2026-03-01T12:00:00Z');
  });

  it('429 with Retry-After in seconds or as an HTTP date: retryable after that long', async () => {
    await expect(channels.attempt('busy-seconds', message('d1'))).resolves.toMatchObject({
      ok: false,
      code: 'unavailable',
      retryable: true,
      retryAfterMs: 30_000,
      error: 'notification channel "busy-seconds": answered HTTP 429 (retry after 30 s): slow down',
      destination: `127.0.0.1:${receiver.port}`,
    });
    await expect(channels.attempt('busy-date', message('d2'))).resolves.toMatchObject({
      ok: false,
      retryable: true,
      retryAfterMs: 120_000,
    });
  });

  it('503 and 408 are retryable; the token echoed back by the peer is masked', async () => {
    const down = await channels.attempt('down', message('d3'));
    expect(down).toMatchObject({ ok: false, retryable: true });
    expect(!down.ok && down.retryAfterMs).toBeUndefined();
    expect(!down.ok && down.error).toContain('answered HTTP 503: maintenance; you sent Bearer ***');
    expect(JSON.stringify(down)).not.toContain(TOKEN);
    await expect(channels.attempt('slow-request', message('d4'))).resolves.toMatchObject({
      ok: false,
      retryable: true,
    });
  });

  it('a redirect is not followed and not retried; other 4xx are not retried', async () => {
    const before = receiver.received.length;
    await expect(channels.attempt('moved', message('d5'))).resolves.toMatchObject({
      ok: false,
      retryable: false,
      error: 'notification channel "moved": answered a redirect (HTTP 301); redirects are not followed',
    });
    expect(receiver.received.length).toBe(before + 1);
    await expect(channels.attempt('bad', message('d6'))).resolves.toMatchObject({
      ok: false,
      retryable: false,
      error: 'notification channel "bad": answered HTTP 400: {"error":"bad payload"}',
    });
    await expect(channels.attempt('gone', message('d7'))).resolves.toMatchObject({
      ok: false,
      retryable: false,
    });
  });

  it('a connection reset or refused is retryable', async () => {
    const reset = await channels.attempt('reset', message('d8'));
    expect(reset).toMatchObject({ ok: false, retryable: true, code: 'unavailable' });
    expect(!reset.ok && reset.error).toMatch(/socket hang up|ECONNRESET/);
    const refused = await channels.attempt('refused', message('d9'));
    expect(refused).toMatchObject({ ok: false, retryable: true });
    expect(!refused.ok && refused.error).toMatch(/ECONNREFUSED/);
  });

  it('a peer that accepts the connection and never answers fails at the deadline, retryable', async () => {
    const quick = createChannels(
      testConfig([
        'notifications:',
        '  allowPrivate: ["127.0.0.1"]',
        `  channels: [{ name: hang, kind: webhook, url: "http://127.0.0.1:${silent.port}/hook" }]`,
      ]),
      { clock, timeoutMs: 300 },
    );
    const before = silent.connections();
    await expect(quick.attempt('hang', message('d10'))).resolves.toMatchObject({
      ok: false,
      retryable: true,
      error: 'notification channel "hang": no answer within 300 ms',
    });
    expect(silent.connections()).toBe(before + 1);
  });

  it('reads at most 64 KiB of an answer: a 2xx is still a delivery, an error keeps a short excerpt', async () => {
    await expect(channels.attempt('huge', message('d11'))).resolves.toMatchObject({
      ok: true,
      response: 'HTTP 200 (answer not read to its end)',
    });
    const failed = await channels.attempt('huge-error', message('d12'));
    expect(failed).toMatchObject({ ok: false, retryable: true });
    expect(!failed.ok && failed.error.length).toBeLessThan(600);
  });

  it('Slack: posts {text, blocks} to the secret URL, and never names its path or query in an error', async () => {
    await expect(channels.attempt('chat', message('s1'))).resolves.toMatchObject({
      ok: true,
      destination: `127.0.0.1:${receiver.port}`,
    });
    const got = JSON.parse(receiver.at(SLACK_PATH).at(-1)!.body) as { text: string; blocks: unknown[] };
    expect(got.text).toBe(
      '*INC-7: login errors*\nLogin error rate 12% on eu-1\n<https://ops.example.com/api/ack/t1|Acknowledge>',
    );
    expect(got.blocks).toHaveLength(3);
    const failed = await channels.attempt('chat-fail', message('s2'));
    expect(failed).toMatchObject({ ok: false, retryable: true, destination: `127.0.0.1:${receiver.port}` });
    expect(!failed.ok && failed.error).toMatch(
      /^notification channel "chat-fail": answered HTTP 500: no hook at \*\*\*/,
    );
    expect(JSON.stringify(failed)).not.toMatch(/slacksecret|slackquerysecret/);
  });

  it('a webhook URL that is not an http(s) URL is a configuration error, not retried, not quoted', async () => {
    for (const name of ['chat-not-url', 'chat-ftp']) {
      const outcome = await channels.attempt(name, message('s3'));
      expect(outcome).toMatchObject({ ok: false, retryable: false, code: 'input' });
      expect(JSON.stringify(outcome)).not.toContain('slacksecretpath');
    }
  });

  it('Discord: content, embed and no mentions; its JSON retry_after is honoured', async () => {
    await expect(
      channels.attempt('disc', message('x1', { text: '@everyone login is down' })),
    ).resolves.toMatchObject({
      ok: true,
    });
    const got = JSON.parse(receiver.at(DISCORD_PATH).at(-1)!.body) as Record<string, unknown>;
    expect(got).toMatchObject({
      content: '**INC-7: login errors**\n@\u200beveryone login is down',
      allowed_mentions: { parse: [] },
      embeds: [
        { title: 'INC-7: login errors', description: '[Acknowledge](https://ops.example.com/api/ack/t1)' },
      ],
    });
    await expect(channels.attempt('disc-limited', message('x2'))).resolves.toMatchObject({
      ok: false,
      retryable: true,
      retryAfterMs: 640,
    });
    expect(JSON.stringify(await channels.attempt('disc-limited', message('x3')))).not.toContain(
      'discordsecret',
    );
  });

  it('a message is normalised rather than refused for its form: one-line subject, long text cut, extra fields dropped', async () => {
    const person = { id: 'bob', name: 'Bob', email: 'bob@example.com', timezone: 'UTC', contacts: ['ops'] };
    const outcome = await channels.attempt(
      'ops',
      message('v1', { subject: 'two\r\nlines', text: 'z'.repeat(30_000), recipient: person }),
    );
    expect(outcome).toMatchObject({ ok: true });
    const body = JSON.parse(receiver.at('/ok').at(-1)!.body) as Record<string, unknown> & { text: string };
    expect(body.subject).toBe('two lines');
    expect(body.text).toHaveLength(20_000);
    expect(body.recipient).toEqual({ id: 'bob', name: 'Bob', email: 'bob@example.com' });
  });

  it('an unknown channel or a malformed message fails without sending, naming what is wrong', async () => {
    const before = receiver.received.length;
    await expect(channels.attempt('pager', message('u1'))).resolves.toMatchObject({
      ok: false,
      code: 'not_found',
      retryable: false,
      error: expect.stringMatching(
        /^no notification channel named "pager" \(configured: ops, signed, /,
      ) as unknown,
    });
    await expect(channels.attempt('ops', message('u2', { subject: ' \n ' }))).resolves.toMatchObject({
      ok: false,
      code: 'input',
      retryable: false,
      error: 'notification channel "ops": message subject: must not be empty',
    });
    await expect(channels.attempt('ops', message('has space'))).resolves.toMatchObject({
      ok: false,
      code: 'input',
      error: expect.stringContaining('message deliveryId') as unknown,
    });
    await expect(
      channels.attempt('ops', message('u3', { links: [{ title: 'x', url: 'javascript:alert(1)' }] })),
    ).resolves.toMatchObject({
      ok: false,
      code: 'input',
      error: expect.stringContaining('message links.0.url') as unknown,
    });
    expect(receiver.received.length).toBe(before);
  });

  it("the caller's abort ends the attempt with its reason (not recorded as a delivery failure)", async () => {
    const controller = new AbortController();
    const pending = channels.attempt('hang', message('a1'), controller.signal);
    const reason = new Error('shutting down');
    setTimeout(() => controller.abort(reason), 50);
    await expect(pending).rejects.toBe(reason);
    const aborted = AbortSignal.abort(reason);
    await expect(channels.attempt('ops', message('a2'), aborted)).rejects.toBe(reason);
  });
});
