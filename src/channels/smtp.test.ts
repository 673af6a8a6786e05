import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import type { OutboundMessage } from '../ops/contracts.ts';
import { createChannels, type Channels } from './index.ts';
import { PASS, startSilentServer, startSmtp, testConfig } from './test-support.ts';

/** A quoted-printable body as text (soft line breaks joined, =XX bytes decoded). */
function quotedPrintable(text: string): string {
  const joined = text.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < joined.length; i += 1) {
    const hex = joined.slice(i + 1, i + 3);
    if (joined[i] === '=' && /^[0-9A-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(joined.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

function page(deliveryId: string, extra: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    deliveryId,
    kind: 'page',
    subject: 'INC-7: login errors',
    text: 'Login error rate 12% on eu-1',
    severity: 'P1',
    incidentId: 'INC-7',
    recipient: { id: 'alice', name: 'Alice', email: 'alice@example.com' },
    links: [{ title: 'Acknowledge', url: 'https://ops.example.com/api/ack/t1' }],
    ...extra,
  };
}

describe('email channel (an SMTP server in the test process)', () => {
  const clock = new ManualClock('2026-03-01T12:00:00Z');
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let silent: Awaited<ReturnType<typeof startSilentServer>>;
  let channels: Channels;

  beforeAll(async () => {
    smtp = await startSmtp();
    silent = await startSilentServer();
    const mail = (name: string, env: string, to = ''): string =>
      `    - { name: ${name}, kind: email, smtpUrl: "env:${env}", from: "gameops@example.com"${to} }`;
    channels = createChannels(
      testConfig(
        [
          'notifications:',
          '  allowPrivate: ["127.0.0.1"]',
          '  channels:',
          mail('mail', 'SMTP_URL', ', to: ["oncall@example.com"]'),
          mail('mail-no-to', 'SMTP_URL'),
          mail('mail-wrong-pass', 'SMTP_WRONG_PASS'),
          mail('mail-silent', 'SMTP_SILENT'),
          mail('mail-not-smtp', 'NOT_SMTP'),
        ],
        {
          SMTP_URL: `smtp://pager:${PASS}@127.0.0.1:${smtp.port}`,
          SMTP_WRONG_PASS: `smtp://pager:wrong-${PASS}@127.0.0.1:${smtp.port}`,
          SMTP_SILENT: `smtp://pager:${PASS}@127.0.0.1:${silent.port}`,
          NOT_SMTP: `http://pager:${PASS}@127.0.0.1:${smtp.port}`,
        },
      ),
      { clock, timeoutMs: 2000 },
    );
  });

  afterAll(async () => {
    await smtp?.close();
    await silent?.close();
  });

  it('pages a person at their own email, with a Message-ID derived from the delivery id', async () => {
    const outcome = await channels.attempt('mail', page('pg_1.0.0.alice.mail'));
    expect(outcome).toMatchObject({ ok: true, destination: `127.0.0.1:${smtp.port}` });
    expect(outcome.ok && outcome.response).toMatch(/^250 .*queued as T\d+/);
    const got = smtp.mails.at(-1)!;
    expect(got.from).toBe('gameops@example.com');
    expect(got.to).toEqual(['alice@example.com']);
    expect(got.raw).toContain('Message-ID: <pg_1.0.0.alice.mail@example.com>');
    expect(got.raw).toContain('Subject: [gameops] P1 test-game (test): INC-7: login errors');
    expect(got.raw).toContain('X-Gameops-Delivery: pg_1.0.0.alice.mail');
    expect(got.raw).toContain('Auto-Submitted: auto-generated');
    expect(got.raw).toContain('Date: Sun, 01 Mar 2026 12:00:00 +0000');
    expect(got.raw).toContain('Importance: high');
    const text = quotedPrintable(got.raw.split('\r\n\r\n').slice(1).join('\r\n\r\n'));
    expect(text).toContain('INC-7: login errors\r\nLogin error rate 12% on eu-1\r\n');
    expect(text).toContain('Acknowledge: https://ops.example.com/api/ack/t1');
    expect(text).toContain('P1 · test-game (test) · INC-7\r\nDelivery pg_1.0.0.alice.mail');
  });

  it('a retried delivery carries the same Message-ID, so mail clients show it once', async () => {
    await channels.attempt('mail', page('pg_2.0.0.alice.mail'));
    await channels.attempt('mail', page('pg_2.0.0.alice.mail'));
    const ids = smtp.mails.slice(-2).map((m) => /^Message-ID: (.*)$/m.exec(m.raw)?.[1]);
    expect(ids).toEqual(['<pg_2.0.0.alice.mail@example.com>', '<pg_2.0.0.alice.mail@example.com>']);
  });

  it("without a recipient email the channel's `to` is used; with neither, nothing is sent", async () => {
    const noEmail = { id: 'bob', name: 'Bob' };
    await expect(channels.attempt('mail', page('n1', { recipient: noEmail }))).resolves.toMatchObject({
      ok: true,
    });
    expect(smtp.mails.at(-1)!.to).toEqual(['oncall@example.com']);
    const count = smtp.mails.length;
    await expect(channels.attempt('mail-no-to', page('n2', { recipient: noEmail }))).resolves.toMatchObject({
      ok: false,
      code: 'input',
      retryable: false,
      error:
        'notification channel "mail-no-to": nowhere to send: Bob (bob) has no email address and the channel has no "to"',
    });
    const { recipient: _none, ...anonymous } = page('n3');
    await expect(channels.attempt('mail-no-to', anonymous)).resolves.toMatchObject({
      ok: false,
      retryable: false,
      error: expect.stringContaining('the message has no recipient') as unknown,
    });
    expect(smtp.mails.length).toBe(count);
  });

  it('a 4xx reply is retryable, a 5xx reply is not; neither shows the password', async () => {
    const busy = await channels.attempt(
      'mail',
      page('r1', { recipient: { id: 'c', name: 'C', email: 'busy@example.com' } }),
    );
    expect(busy).toMatchObject({
      ok: false,
      retryable: true,
      code: 'unavailable',
      destination: `127.0.0.1:${smtp.port}`,
    });
    expect(!busy.ok && busy.error).toMatch(/451/);
    const nobody = await channels.attempt(
      'mail',
      page('r2', { recipient: { id: 'd', name: 'D', email: 'nobody@example.com' } }),
    );
    expect(nobody).toMatchObject({ ok: false, retryable: false });
    expect(!nobody.ok && nobody.error).toMatch(/550/);
    const login = await channels.attempt('mail-wrong-pass', page('r3'));
    expect(login).toMatchObject({ ok: false, retryable: false });
    expect(!login.ok && login.error).toMatch(/535/);
    for (const outcome of [busy, nobody, login]) {
      expect(JSON.stringify(outcome)).not.toContain(PASS);
      expect(!outcome.ok && outcome.error).not.toMatch(/[\r\n]/);
    }
  });

  it('a server that accepts the connection and never greets fails at the deadline, retryable', async () => {
    const quick = createChannels(
      testConfig(
        [
          'notifications:',
          '  allowPrivate: ["127.0.0.1"]',
          '  channels: [{ name: mail, kind: email, smtpUrl: "env:SMTP_SILENT", from: "gameops@example.com" }]',
        ],
        { SMTP_SILENT: `smtp://pager:${PASS}@127.0.0.1:${silent.port}` },
      ),
      { clock, timeoutMs: 300 },
    );
    const outcome = await quick.attempt('mail', page('g1'));
    expect(outcome).toMatchObject({ ok: false, retryable: true, destination: `127.0.0.1:${silent.port}` });
    expect(!outcome.ok && outcome.error).toMatch(/no answer within 300 ms|Greeting never received/);
    expect(JSON.stringify(outcome)).not.toContain(PASS);
  });

  it('an smtpUrl that is not smtp:// or smtps:// is a configuration error, never quoted', async () => {
    const outcome = await channels.attempt('mail-not-smtp', page('b1'));
    expect(outcome).toMatchObject({
      ok: false,
      code: 'input',
      retryable: false,
      error: 'notification channel "mail-not-smtp": smtpUrl must be smtp:// or smtps://',
    });
  });
});

describe('email channel: TLS required over the network, and every checked address tried', () => {
  const clock = new ManualClock('2026-03-01T12:00:00Z');
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let silent: Awaited<ReturnType<typeof startSilentServer>>;

  beforeAll(async () => {
    smtp = await startSmtp();
    // A server on 127.0.0.3, at the SMTP server's port number, that accepts connections and never greets.
    silent = await startSilentServer('127.0.0.3', smtp.port);
  });

  afterAll(async () => {
    await smtp?.close();
    await silent?.close();
  });

  /** `mail.test` resolves to `addresses`; the server there (plain text, no STARTTLS) is allow-listed. */
  function viaName(smtpUrl: string, addresses: string[], timeoutMs = 3000): Channels {
    return createChannels(
      testConfig(
        [
          'notifications:',
          '  allowPrivate: ["mail.test"]',
          '  channels: [{ name: mail, kind: email, smtpUrl: "env:SMTP_URL", from: "gameops@example.com" }]',
        ],
        { SMTP_URL: smtpUrl },
      ),
      {
        clock,
        timeoutMs,
        resolve: () => Promise.resolve(addresses.map((address) => ({ address, family: 4 }))),
      },
    );
  }

  it('smtp:// to a host that is not loopback requires STARTTLS: no login, no message in plain text', async () => {
    const channels = viaName(`smtp://pager:${PASS}@mail.test:${smtp.port}`, ['127.0.0.1']);
    const outcome = await channels.attempt('mail', page('tls-1'));
    expect(outcome).toMatchObject({ ok: false, code: 'input', retryable: false });
    expect(!outcome.ok && outcome.error).toMatch(
      /^notification channel "mail": mail\.test does not offer STARTTLS \(it answered 5\d\d\): neither the login nor the message is sent in plain text; add \?tls=optional to the smtpUrl to allow that$/,
    );
    expect(JSON.stringify(outcome)).not.toContain(PASS);
    expect(smtp.logins).toEqual([]);
    expect(smtp.mails).toEqual([]);
  });

  it('?tls=optional allows plain text; a loopback host needs no opt-out', async () => {
    const optional = viaName(`smtp://pager:${PASS}@mail.test:${smtp.port}?tls=optional`, ['127.0.0.1']);
    await expect(optional.attempt('mail', page('tls-2'))).resolves.toMatchObject({ ok: true });
    expect(smtp.logins).toEqual(['pager']);
    const local = createChannels(
      testConfig(
        [
          'notifications:',
          '  allowPrivate: ["localhost"]',
          '  channels: [{ name: mail, kind: email, smtpUrl: "env:SMTP_URL", from: "gameops@example.com" }]',
        ],
        { SMTP_URL: `smtp://pager:${PASS}@localhost:${smtp.port}` },
      ),
      { clock, resolve: () => Promise.resolve([{ address: '127.0.0.1', family: 4 }]) },
    );
    await expect(local.attempt('mail', page('tls-3'))).resolves.toMatchObject({ ok: true });
    expect(smtp.mails.map((m) => m.to)).toEqual([['alice@example.com'], ['alice@example.com']]);
  });

  it.each([
    ['?tls=maybe', 'smtpUrl parameter tls must be "required" or "optional"'],
    ['?relay=1', 'smtpUrl has an unknown parameter "relay" (only tls=optional)'],
  ])('an smtpUrl with %s is a configuration error', async (query, why) => {
    const outcome = await viaName(`smtp://pager:${PASS}@mail.test:${smtp.port}${query}`, [
      '127.0.0.1',
    ]).attempt('mail', page('tls-4'));
    expect(outcome).toMatchObject({
      ok: false,
      code: 'input',
      retryable: false,
      error: `notification channel "mail": ${why}`,
    });
  });

  it('falls back to the next checked address when one refuses the connection', async () => {
    const before = smtp.mails.length;
    const channels = viaName(`smtp://pager:${PASS}@mail.test:${smtp.port}?tls=optional`, [
      '127.0.0.2', // nothing listens there
      '127.0.0.1',
    ]);
    const outcome = await channels.attempt('mail', page('two-1'));
    expect(outcome).toMatchObject({ ok: true, destination: `mail.test:${smtp.port}` });
    expect(smtp.mails.length).toBe(before + 1);
  });

  it('falls back when an address accepts and never greets, within the same deadline', async () => {
    const before = smtp.mails.length;
    const channels = viaName(
      `smtp://pager:${PASS}@mail.test:${smtp.port}?tls=optional`,
      ['127.0.0.3', '127.0.0.1'],
      2000,
    );
    const outcome = await channels.attempt('mail', page('two-2'));
    expect(outcome).toMatchObject({ ok: true });
    expect(silent.connections()).toBe(1);
    expect(smtp.mails.length).toBe(before + 1);
  });

  it('does not move on once a server has answered: its refusal is the outcome', async () => {
    const channels = viaName(`smtp://pager:wrong-${PASS}@mail.test:${smtp.port}?tls=optional`, [
      '127.0.0.1',
      '127.0.0.2',
    ]);
    const outcome = await channels.attempt('mail', page('two-3'));
    expect(outcome).toMatchObject({ ok: false, retryable: false });
    expect(!outcome.ok && outcome.error).toMatch(/535/);
  });
});
