import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, readEnv, type GameopsConfig } from '../../config/index.ts';
import { createCatalog, createNotifier } from './index.ts';
import { stepDeliveryId } from './notify.ts';
import { createRunbookServices, resourcesFor, stepContext } from './test-support.ts';

const TOKEN = 'webhook-token-5f1e2d3c';
const SLACK_PATH = '/services/T000/B000/slacksecretpath';

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A local webhook receiver: `/hook` answers 200, `/fail` 500 echoing the request headers, and more. */
function startReceiver(): Promise<{ server: Server; port: number; received: Received[] }> {
  const received: Received[] = [];
  const server = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body });
      switch (req.url ?? '') {
        case '/fail':
          res.writeHead(500).end(`boom; you sent ${req.headers.authorization ?? 'nothing'}`);
          return;
        case '/redirect':
          res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
          return;
        case '/huge':
          res.writeHead(200).end('x'.repeat(200 * 1024));
          return;
        case '/hang':
          return; // never answers
        default:
          res.writeHead(200).end('ok');
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as AddressInfo).port, received }),
    ),
  );
}

/** The smallest SMTP server nodemailer will talk to: accepts one message per connection and keeps it. */
function startSmtp(): Promise<{ server: TcpServer; port: number; messages: string[] }> {
  const messages: string[] = [];
  const server = createTcpServer((socket) => {
    let buffer = '';
    let data: string[] | undefined;
    socket.write('220 test ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let at: number;
      while ((at = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        if (data) {
          if (line === '.') {
            messages.push(data.join('\n'));
            data = undefined;
            socket.write('250 2.0.0 queued as TEST1\r\n');
          } else data.push(line);
          continue;
        }
        const verb = line.split(' ')[0]!.toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') socket.write('250-test\r\n250 8BITMIME\r\n');
        else if (verb === 'DATA') {
          data = [];
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('250 ok\r\n');
      }
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as AddressInfo).port, messages }),
    ),
  );
}

function config(yaml: string, env: Record<string, string> = {}): GameopsConfig {
  return parseConfigText(
    `service: { name: test-game, environment: test }\n${yaml}`,
    'test.yaml',
    readEnv(env),
  ).config;
}

describe('notifier (local HTTP and SMTP servers)', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let allowed: GameopsConfig;

  beforeAll(async () => {
    receiver = await startReceiver();
    smtp = await startSmtp();
    const base = `http://127.0.0.1:${receiver.port}`;
    allowed = config(
      [
        'notifications:',
        '  allowPrivate: ["127.0.0.1"]',
        '  channels:',
        `    - { name: ops, kind: webhook, url: "${base}/hook", token: "env:HOOK_TOKEN" }`,
        `    - { name: chat, kind: slack, webhookUrl: "env:SLACK_URL" }`,
        `    - { name: failing, kind: webhook, url: "${base}/fail", token: "env:HOOK_TOKEN" }`,
        `    - { name: redirecting, kind: webhook, url: "${base}/redirect" }`,
        `    - { name: huge, kind: webhook, url: "${base}/huge" }`,
        `    - { name: hanging, kind: webhook, url: "${base}/hang" }`,
        `    - { name: named, kind: webhook, url: "http://localhost:${receiver.port}/hook" }`,
        `    - { name: mail, kind: email, smtpUrl: "env:SMTP_URL", from: "gameops@example.com", to: ["oncall@example.com"] }`,
        '',
      ].join('\n'),
      {
        HOOK_TOKEN: TOKEN,
        SLACK_URL: `${base}${SLACK_PATH}`,
        SMTP_URL: `smtp://user:smtp-pass-9d8c@127.0.0.1:${smtp.port}`,
      },
    );
  });

  afterAll(async () => {
    await new Promise((r) => receiver?.server.close(r));
    receiver?.server.closeAllConnections();
    await new Promise((r) => smtp?.server.close(r));
  });

  it('posts JSON with the bearer token to a webhook whose host is allowlisted', async () => {
    const delivery = await createNotifier(allowed).send('ops', 'CPU came down on game-1');
    expect(delivery).toEqual({
      channel: 'ops',
      kind: 'webhook',
      destination: `127.0.0.1:${receiver.port}`,
      response: 'HTTP 200',
    });
    const got = receiver.received.find((r) => r.path === '/hook')!;
    expect(got.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(got.headers['content-type']).toBe('application/json');
    expect(JSON.parse(got.body)).toMatchObject({
      text: 'CPU came down on game-1',
      channel: 'ops',
      service: 'test-game',
      environment: 'test',
    });
  });

  it('posts {text} to a Slack incoming webhook, never naming its secret URL', async () => {
    const delivery = await createNotifier(allowed).send('chat', 'run r1 waits for approval');
    expect(delivery.destination).toBe(`127.0.0.1:${receiver.port}`);
    expect(JSON.stringify(delivery)).not.toContain('slacksecretpath');
    const got = receiver.received.find((r) => r.path === SLACK_PATH)!;
    expect(JSON.parse(got.body)).toEqual({ text: 'run r1 waits for approval' });
  });

  it('refuses a private destination whose host is not allowlisted, before sending anything', async () => {
    const count = receiver.received.length;
    await expect(createNotifier(allowed).send('named', 'hello')).rejects.toMatchObject({
      code: 'not_allowed',
      message:
        'notification channel "named": localhost resolves to 127.0.0.1 (loopback); list "localhost" in notifications.allowPrivate to send there',
    });
    const strict = config(
      `notifications: { channels: [{ name: ops, kind: webhook, url: "http://127.0.0.1:${receiver.port}/hook" }] }\n`,
    );
    await expect(createNotifier(strict).send('ops', 'hello')).rejects.toMatchObject({ code: 'not_allowed' });
    // Reserved ranges are refused even when listed; a name is checked at every address it resolves to.
    const reserved = config(
      'notifications: { allowPrivate: [hooks.test], channels: [{ name: ops, kind: webhook, url: "http://hooks.test/x" }] }\n',
    );
    const resolve = () =>
      Promise.resolve([
        { address: '10.0.0.5', family: 4 },
        { address: '224.0.0.1', family: 4 },
      ]);
    await expect(createNotifier(reserved, { resolve }).send('ops', 'x')).rejects.toThrow(
      /224\.0\.0\.1, a reserved address/,
    );
    expect(receiver.received.length).toBe(count);
  });

  it('a failing receiver is unavailable, with the token masked even when echoed back', async () => {
    const failure = createNotifier(allowed).send('failing', 'hello');
    await expect(failure).rejects.toMatchObject({ code: 'unavailable' });
    const message = await failure.catch((err: Error) => err.message);
    expect(message).toContain('answered HTTP 500');
    expect(message).not.toContain(TOKEN);
  });

  it('does not follow redirects, caps the answer, and times out', async () => {
    const notifier = createNotifier(allowed, { timeoutMs: 500 });
    await expect(notifier.send('redirecting', 'x')).rejects.toThrow(/redirects are not followed/);
    // A 200 is a delivery however long its body: only 64 KiB is read, and sending again would duplicate it.
    await expect(notifier.send('huge', 'x')).resolves.toMatchObject({
      response: 'HTTP 200 (answer not read to its end)',
    });
    await expect(notifier.send('hanging', 'x')).rejects.toMatchObject({
      code: 'unavailable',
      message: 'notification channel "hanging": no answer within 500 ms',
      details: { retryable: true },
    });
  });

  it('an unknown channel is not found and lists the configured ones; no channel means the run log only', async () => {
    const notifier = createNotifier(allowed);
    await expect(notifier.send('pager', 'x')).rejects.toMatchObject({
      code: 'not_found',
      message: expect.stringContaining('configured: ops, chat, failing') as unknown,
    });
    const count = receiver.received.length;
    await notifier.notify(undefined, 'only in the log', AbortSignal.timeout(1000));
    expect(receiver.received.length).toBe(count);
  });

  it('sends email through SMTP (nodemailer) to an allowlisted host', async () => {
    const delivery = await createNotifier(allowed).send('mail', 'Daily check: 1 warning\nredis latency 7 ms');
    expect(delivery).toMatchObject({ kind: 'email', destination: `127.0.0.1:${smtp.port}` });
    expect(delivery.response).toContain('queued as TEST1');
    const message = smtp.messages.at(-1)!;
    expect(message).toContain('Subject: [gameops] test-game (test): Daily check: 1 warning');
    expect(message).toContain('redis latency 7 ms');
    expect(message).toContain('To: oncall@example.com');
  });

  it('the notify.send action delivers through the services notifier', async () => {
    const send = createCatalog().action('notify.send')!;
    const services = createRunbookServices(resourcesFor(allowed));
    const ctx = stepContext(services);
    const out = await send.run(send.args.parse({ channel: 'ops', message: 'from a runbook' }), ctx);
    expect(out).toMatchObject({ channel: 'ops', response: 'HTTP 200' });
    expect(ctx.lines).toEqual([`delivered to 127.0.0.1:${receiver.port}: HTTP 200`]);
    expect(send).toMatchObject({ effect: 'mutating', idempotent: false });
  });

  it('a runbook step delivers with a delivery id of its run and step, the same on every attempt', async () => {
    const send = createCatalog().action('notify.send')!;
    const services = createRunbookServices(resourcesFor(allowed));
    const args = send.args.parse({ channel: 'ops', message: 'restart done' });
    const ids = (): string[] =>
      receiver.received
        .filter((r) => r.path === '/hook')
        .map((r) => r.headers['x-gameops-delivery'] as string);
    const before = ids().length;
    for (let attempt = 0; attempt < 2; attempt += 1)
      await send.run(args, stepContext(services, { runId: 'r0abc123', stepId: 'tell-ops' }));
    await createNotifier(allowed).notify('ops', 'restart done', AbortSignal.timeout(3000), {
      runId: 'r0abc123',
      stepId: 'tell-ops',
    });
    expect(ids().slice(before)).toEqual([
      'runbook.r0abc123.tell-ops',
      'runbook.r0abc123.tell-ops',
      'runbook.r0abc123.tell-ops',
    ]);
    const body = JSON.parse(receiver.received.at(-1)!.body) as { deliveryId: string };
    expect(body.deliveryId).toBe('runbook.r0abc123.tell-ops');
    // Outside a runbook each message is its own delivery.
    await createNotifier(allowed).send('ops', 'ad hoc');
    await createNotifier(allowed).send('ops', 'ad hoc');
    const [a, b] = ids().slice(-2);
    expect(a).toMatch(/^notify-/);
    expect(a).not.toBe(b);
  });

  it('a run and step that would not make a usable delivery id are hashed, still stable', () => {
    const long = { runId: 'r1', stepId: 'x'.repeat(300) };
    expect(stepDeliveryId(long)).toMatch(/^runbook\.[0-9a-f]{40}$/);
    expect(stepDeliveryId(long)).toBe(stepDeliveryId({ ...long }));
    expect(stepDeliveryId({ runId: 'r1', stepId: 'tell ops' })).not.toBe(
      stepDeliveryId({ runId: 'r1', stepId: 'tell\tops' }),
    );
  });
});
