import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutboundMessage } from '../ops/contracts.ts';
import { createChannels, type Channels } from './index.ts';
import { PASS, startReceiver, startSmtp, testConfig, type Receiver } from './test-support.ts';

const TOKEN = 'hook-token-31c7e0';
const message: OutboundMessage = { deliveryId: 'cfg-1', kind: 'notice', subject: 's', text: 't' };

/**
 * A configuration that can never work fails the same way on every attempt: such failures are `input`,
 * not retried, and say what to check without quoting the secret involved.
 */
describe('deterministic configuration errors are not retried', () => {
  let receiver: Receiver;
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let channels: Channels;

  beforeAll(async () => {
    receiver = await startReceiver();
    smtp = await startSmtp();
    channels = createChannels(
      testConfig(
        [
          'notifications:',
          '  allowPrivate: ["127.0.0.1"]',
          '  channels:',
          `    - { name: tls-to-plain, kind: webhook, url: "https://127.0.0.1:${receiver.port}/x" }`,
          `    - { name: newline-token, kind: webhook, url: "http://127.0.0.1:${receiver.port}/x", token: "env:TOKEN" }`,
          '    - { name: smtps-to-plain, kind: email, smtpUrl: "env:SMTPS", from: "g@example.com", to: ["a@example.com"] }',
        ],
        { TOKEN: `${TOKEN}\n`, SMTPS: `smtps://pager:${PASS}@127.0.0.1:${smtp.port}` },
      ),
      { timeoutMs: 3000 },
    );
  });

  afterAll(async () => {
    await receiver?.close();
    await smtp?.close();
  });

  it('https:// to a plain-text HTTP port (wrong version number)', async () => {
    const outcome = await channels.attempt('tls-to-plain', message);
    expect(outcome).toMatchObject({ ok: false, code: 'input', retryable: false });
    expect(!outcome.ok && outcome.error).toBe(
      'notification channel "tls-to-plain": TLS handshake failed (wrong version number): the server does not speak TLS on this port; check https:// against http:// (smtps:// against smtp://) and the port',
    );
  });

  it('smtps:// to a plain-text SMTP port', async () => {
    const outcome = await channels.attempt('smtps-to-plain', message);
    expect(outcome).toMatchObject({ ok: false, code: 'input', retryable: false });
    expect(!outcome.ok && outcome.error).toContain('wrong version number');
    expect(!outcome.ok && outcome.error).not.toContain(PASS);
    expect(smtp.mails).toEqual([]);
  });

  it('a token read with its trailing newline: nothing sent, the header named, the token never shown', async () => {
    const before = receiver.received.length;
    const outcome = await channels.attempt('newline-token', message);
    expect(outcome).toMatchObject({ ok: false, code: 'input', retryable: false });
    expect(!outcome.ok && outcome.error).toBe(
      'notification channel "newline-token": the "authorization" header has a line break or control character: check the token or secret it comes from (a trailing newline in its file or variable?)',
    );
    expect(JSON.stringify(outcome)).not.toContain('token-31c7e0');
    expect(receiver.received.length).toBe(before);
  });
});
