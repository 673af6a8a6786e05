import type { LookupAddress } from 'node:dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import type { OutboundMessage } from '../ops/contracts.ts';
import { createChannels, type Resolve } from './index.ts';
import { PASS, startReceiver, startSmtp, testConfig, type Receiver } from './test-support.ts';

const clock = new ManualClock('2026-03-01T12:00:00Z');

function message(deliveryId: string): OutboundMessage {
  return {
    deliveryId,
    kind: 'page',
    subject: 'INC-9: matchmaking down',
    text: 'Queue wait above 5 min',
    recipient: { id: 'alice', name: 'Alice', email: 'alice@example.com' },
  };
}

/** A resolver that answers `answers[i]` on its i-th call (the last one from then on), counting the calls. */
function scripted(...answers: string[][]): Resolve & { calls: string[] } {
  const calls: string[] = [];
  const resolve = (host: string): Promise<LookupAddress[]> => {
    calls.push(host);
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)]!;
    return Promise.resolve(answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
  };
  return Object.assign(resolve, { calls });
}

/** Two receivers on one port: A on 127.0.0.1, B on 127.0.0.2 (so a URL's port reaches either). */
async function twoReceivers(): Promise<[Receiver, Receiver]> {
  for (let tries = 0; ; tries += 1) {
    const a = await startReceiver();
    try {
      return [a, await startReceiver({}, { host: '127.0.0.2', port: a.port })];
    } catch (err) {
      await a.close();
      if (tries >= 5) throw err;
    }
  }
}

describe('destinations (SSRF): only public addresses unless allow-listed, pinned between check and connection', () => {
  let a: Receiver;
  let b: Receiver;

  beforeAll(async () => {
    [a, b] = await twoReceivers();
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  const webhook = (url: string, allowPrivate: string[] = []): ReturnType<typeof testConfig> =>
    testConfig([
      'notifications:',
      `  allowPrivate: ${JSON.stringify(allowPrivate)}`,
      `  channels: [{ name: hook, kind: webhook, url: "${url}" }]`,
    ]);

  it.each([
    ['loopback', 'http://127.0.0.1:PORT/x', /127\.0\.0\.1 resolves to 127\.0\.0\.1 \(loopback\)/],
    ['IPv4-mapped IPv6 loopback', 'http://[::ffff:127.0.0.1]:PORT/x', /\(loopback\)/],
    ['NAT64 loopback', 'http://[64:ff9b::7f00:1]:PORT/x', /\(loopback\)/],
    ['IPv6 loopback', 'http://[::1]:PORT/x', /\(loopback\)/],
    ['0.0.0.0', 'http://0.0.0.0:PORT/x', /\(loopback\)/],
    ['link-local (metadata service)', 'http://169.254.169.254/latest/meta-data', /\(link-local\)/],
    ['IPv6 link-local', 'http://[fe80::1]:PORT/x', /\(link-local\)/],
    ['private', 'http://10.1.2.3:PORT/x', /\(private\)/],
  ])('%s addresses are refused, not retried, before anything is sent', async (_what, url, why) => {
    const before = a.received.length + b.received.length;
    const outcome = await createChannels(webhook(url.replace('PORT', String(a.port))), { clock }).attempt(
      'hook',
      message('s1'),
    );
    expect(outcome).toMatchObject({ ok: false, code: 'not_allowed', retryable: false });
    expect(!outcome.ok && outcome.error).toMatch(why);
    expect(!outcome.ok && outcome.error).toMatch(/list ".*" in notifications\.allowPrivate to send there$/);
    expect(a.received.length + b.received.length).toBe(before);
  });

  it.each([
    ['a private address', ['10.0.0.5'], /10\.0\.0\.5 \(private\)/],
    ['an IPv4-mapped private address', ['::ffff:192.168.1.10'], /\(private\)/],
    ['a public and a loopback address', ['93.184.215.14', '127.0.0.1'], /127\.0\.0\.1 \(loopback\)/],
  ])('a name resolving to %s is refused unless allow-listed', async (_what, answer, why) => {
    const url = `http://hooks.test:${a.port}/x`;
    const outcome = await createChannels(webhook(url), { clock, resolve: scripted(answer) }).attempt(
      'hook',
      message('s2'),
    );
    expect(outcome).toMatchObject({ ok: false, code: 'not_allowed', retryable: false });
    expect(!outcome.ok && outcome.error).toMatch(why);
  });

  it('an allow-listed name may resolve to loopback; reserved ranges are refused even then', async () => {
    const url = `http://hooks.test:${a.port}/allowed`;
    const ok = await createChannels(webhook(url, ['hooks.test']), {
      clock,
      resolve: scripted(['127.0.0.1']),
    }).attempt('hook', message('s3'));
    expect(ok).toMatchObject({ ok: true, destination: `hooks.test:${a.port}` });
    expect(a.at('/allowed')).toHaveLength(1);
    expect(a.at('/allowed')[0]!.headers.host).toBe(`hooks.test:${a.port}`);
    for (const answer of [['224.0.0.1'], ['127.0.0.1', '240.0.0.1'], ['2001:db8::1']]) {
      const refused = await createChannels(webhook(url, ['hooks.test']), {
        clock,
        resolve: scripted(answer),
      }).attempt('hook', message('s4'));
      expect(refused).toMatchObject({ ok: false, code: 'not_allowed', retryable: false });
      expect(!refused.ok && refused.error).toMatch(/a reserved address gameops never sends to/);
    }
    expect(a.at('/allowed')).toHaveLength(1);
  });

  it('DNS rebinding: the connection goes to the address checked (A), never to a second answer (B)', async () => {
    const resolve = scripted(['127.0.0.1'], ['127.0.0.2']);
    const channels = createChannels(webhook(`http://rebind.test:${a.port}/rebind`, ['rebind.test']), {
      clock,
      resolve,
    });
    await expect(channels.attempt('hook', message('r1'))).resolves.toMatchObject({ ok: true });
    expect(resolve.calls).toEqual(['rebind.test']);
    expect(a.at('/rebind')).toHaveLength(1);
    expect(b.at('/rebind')).toHaveLength(0);
    // Each attempt checks afresh, and goes where that check said.
    await expect(channels.attempt('hook', message('r2'))).resolves.toMatchObject({ ok: true });
    expect(resolve.calls).toHaveLength(2);
    expect(b.at('/rebind')).toHaveLength(1);
    expect(a.at('/rebind')).toHaveLength(1);
  });

  it('DNS rebinding, public then private: the first attempt stays on the public address, the next is refused', async () => {
    const resolve = scripted(['93.184.215.14'], ['127.0.0.1']);
    const channels = createChannels(webhook(`http://rebind.test:${a.port}/public`), {
      clock,
      resolve,
      timeoutMs: 500,
    });
    // Pinned to the public address (unreachable from here, or not a receiver): never the loopback listener.
    const first = await channels.attempt('hook', message('p1'));
    expect(first).toMatchObject({ ok: false, retryable: true, code: 'unavailable' });
    expect(resolve.calls).toHaveLength(1);
    const second = await channels.attempt('hook', message('p1'));
    expect(second).toMatchObject({ ok: false, code: 'not_allowed', retryable: false });
    expect(a.at('/public')).toHaveLength(0);
  });

  it('DNS rebinding over SMTP: mail goes to the checked address only', async () => {
    const smtpA = await startSmtp('127.0.0.1');
    let smtpB: Awaited<ReturnType<typeof startSmtp>> | undefined;
    try {
      smtpB = await startSmtp('127.0.0.2', smtpA.port);
      const resolve = scripted(['127.0.0.1'], ['127.0.0.2']);
      const config = testConfig(
        [
          'notifications:',
          '  allowPrivate: ["mail.test"]',
          '  channels: [{ name: mail, kind: email, smtpUrl: "env:SMTP_URL", from: "gameops@example.com" }]',
        ],
        // The test server offers no STARTTLS: plain text is allowed explicitly for this name.
        { SMTP_URL: `smtp://pager:${PASS}@mail.test:${smtpA.port}?tls=optional` },
      );
      const outcome = await createChannels(config, { clock, resolve }).attempt('mail', message('m1'));
      expect(outcome).toMatchObject({ ok: true, destination: `mail.test:${smtpA.port}` });
      expect(resolve.calls).toEqual(['mail.test']);
      expect(smtpA.mails).toHaveLength(1);
      expect(smtpB.mails).toHaveLength(0);
      const strict = testConfig(
        [
          'notifications:',
          '  channels: [{ name: mail, kind: email, smtpUrl: "env:SMTP_URL", from: "gameops@example.com" }]',
        ],
        { SMTP_URL: `smtp://pager:${PASS}@mail.test:${smtpA.port}` },
      );
      const refused = await createChannels(strict, { clock, resolve: scripted(['127.0.0.1']) }).attempt(
        'mail',
        message('m2'),
      );
      expect(refused).toMatchObject({ ok: false, code: 'not_allowed', retryable: false });
      expect(JSON.stringify(refused)).not.toContain(PASS);
      expect(smtpA.mails).toHaveLength(1);
    } finally {
      await smtpA.close();
      await smtpB?.close();
    }
  });

  it('a name that does not resolve, or a resolver that hangs, is retryable', async () => {
    const failing: Resolve = () =>
      Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }));
    const url = `http://nowhere.test:${a.port}/x`;
    await expect(
      createChannels(webhook(url), { clock, resolve: failing }).attempt('hook', message('n1')),
    ).resolves.toMatchObject({
      ok: false,
      code: 'unavailable',
      retryable: true,
      error: 'notification channel "hook": cannot resolve nowhere.test (ENOTFOUND)',
    });
    const hanging: Resolve = () => new Promise(() => undefined);
    await expect(
      createChannels(webhook(url), { clock, resolve: hanging, timeoutMs: 200 }).attempt(
        'hook',
        message('n2'),
      ),
    ).resolves.toMatchObject({
      ok: false,
      retryable: true,
      error: 'notification channel "hook": no answer within 200 ms',
    });
  });
});
