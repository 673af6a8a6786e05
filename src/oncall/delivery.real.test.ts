import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { createChannels } from '../channels/index.ts';
import { startReceiver, startSilentServer, startSmtp } from '../channels/test-support.ts';
import { parseConfigText } from '../config/index.ts';
import { ManualClock } from '../core/index.ts';
import { type Harness, oncallConfigText, openHarness } from './oncall.fixture.ts';

const cleanups: Cleanups = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A service with the real channels: `hook` and `backup-hook` at local receivers, `mail` at an SMTP server. */
async function openReal(hookUrl: string, backupUrl: string, smtpPort: number): Promise<Harness> {
  const text = oncallConfigText(`
oncall:
  delivery: { attempts: 2, firstRetry: 1s, maxRetry: 5s, timeout: 500ms }
  policies:
    - { name: default, levels: [{ after: 0s, targets: [{ person: alice }] }, { after: 15m, targets: [{ person: dave }] }] }
`)
    .replace('https://hooks.example.com/page', hookUrl)
    .replace('https://hooks.example.com/room', backupUrl)
    .replace('smtp://mail.example.com:25', `smtp://127.0.0.1:${smtpPort}`)
    .replace('notifications:\n', 'notifications:\n  allowPrivate: [127.0.0.1]\n');
  const config = parseConfigText(text, 'real.yaml', { all: {} }).config;
  const clock = new ManualClock('2026-03-10T12:00:00Z');
  const realChannels = createChannels(config, { clock, timeoutMs: config.oncall.delivery.timeout });
  const h = await openHarness(sqlitePlace(cleanups).options, { clock, config, realChannels });
  closers.push(() => h.store.close());
  return h;
}

async function ticks(h: Harness, seconds: number): Promise<void> {
  for (let i = 0; i < seconds; i += 1) {
    await h.service.tick(h.clock.now());
    h.clock.advance(1000);
  }
}

describe('deliveries through the real channels', () => {
  it('429 with Retry-After, then 5xx: retried with the same delivery id, then the next contact channel (email)', async () => {
    let calls = 0;
    const receiver = await startReceiver({
      '/page': (_req, res) => {
        calls += 1;
        if (calls === 1) res.writeHead(429, { 'retry-after': '3' }).end('slow down');
        else res.writeHead(503).end('down for maintenance');
      },
    });
    closers.push(() => receiver.close());
    const smtp = await startSmtp();
    closers.push(() => smtp.close());
    const h = await openReal(`${receiver.base}/page`, `${receiver.base}/room`, smtp.port);
    const page = await h.service.page({
      dedupKey: 'incident:INC-3',
      incidentId: 'INC-3',
      subject: 'Matchmaking down',
      body: 'Queue times over 5 minutes.',
      severity: 'P1',
    });
    await ticks(h, 10);
    const hook = receiver.at('/page');
    expect(hook).toHaveLength(2);
    const ids = hook.map((r) => r.headers['x-gameops-delivery']);
    expect(ids).toEqual([`${page.id}.0.0.alice.hook`, `${page.id}.0.0.alice.hook`]);
    expect(smtp.mails).toHaveLength(1);
    expect(smtp.mails[0]!.to).toEqual(['alice@example.com']);
    expect(smtp.mails[0]!.raw).toContain('Matchmaking down');
    const decoded = smtp.mails[0]!.raw.replace(/=\r?\n/g, '');
    expect(decoded).toContain('https://gameops.example.com/api/ack/');
    expect(decoded).toContain(`gameops oncall ack ${page.id}`);
    const detail = await h.service.pageDetail(page.id);
    expect(detail.deliveries.map((d) => [d.channel, d.status, d.attempts.map((a) => a.outcome)])).toEqual([
      ['hook', 'failed', ['failed', 'failed']],
      ['mail', 'delivered', ['ok']],
    ]);
    const [first, second] = detail.deliveries[0]!.attempts;
    expect(first).toMatchObject({ retryAfterMs: 3000 });
    expect(first!.error).toContain('429');
    expect(second!.error).toContain('503');
    // Retry-After honoured, plus jitter (0.5 × min(5 s, 3 s / 4) = 375 ms): due 3.375 s after the first
    // attempt, sent at the next 1 s tick (fake time).
    expect(Date.parse(second!.at) - Date.parse(first!.at)).toBe(4000);
    expect(detail.status).toBe('triggered');
    expect(h.events.entries.map((e) => e.kind)).toEqual(['page-sent']);
  });

  it('a peer that resets the connection: retried, then the next contact channel', async () => {
    const receiver = await startReceiver({ '/page': (req) => req.socket.destroy() });
    closers.push(() => receiver.close());
    const smtp = await startSmtp();
    closers.push(() => smtp.close());
    const h = await openReal(`${receiver.base}/page`, `${receiver.base}/room`, smtp.port);
    const page = await h.service.page({ dedupKey: 'reset', subject: 'Chat down', body: '', severity: 'P2' });
    await ticks(h, 5);
    const detail = await h.service.pageDetail(page.id);
    expect(detail.deliveries.map((d) => [d.channel, d.status, d.attempts.length])).toEqual([
      ['hook', 'failed', 2],
      ['mail', 'delivered', 1],
    ]);
    expect(detail.deliveries[0]!.attempts[0]!.error).toBeTruthy();
    expect(smtp.mails).toHaveLength(1);
  });

  it('a peer that never answers: each attempt times out, every channel fails, the page escalates at once', async () => {
    const silent = await startSilentServer();
    closers.push(() => silent.close());
    const receiver = await startReceiver({ '/page': (_req, res) => res.writeHead(500).end() });
    closers.push(() => receiver.close());
    const h = await openReal(
      `http://127.0.0.1:${silent.port}/page`,
      `${receiver.base}/room`,
      // Nothing listens here: the connection is refused.
      silent.port + 1 === receiver.port ? silent.port + 2 : silent.port + 1,
    );
    const page = await h.service.page({ dedupKey: 'p', subject: 'Lag spikes', body: '', severity: 'P2' });
    await ticks(h, 10);
    expect(silent.connections()).toBeGreaterThanOrEqual(2);
    const detail = await h.service.pageDetail(page.id);
    const alice = detail.deliveries.filter((d) => d.person === 'alice');
    expect(alice.map((d) => [d.channel, d.status])).toEqual([
      ['hook', 'failed'],
      ['mail', 'failed'],
    ]);
    expect(alice[0]!.attempts[0]!.error).toMatch(/no answer|time/i);
    // Level 2 (dave, hook) was paged at once instead of after 15 minutes.
    expect(detail.deliveries.some((d) => d.person === 'dave')).toBe(true);
    expect(detail.level).toBe(1);
  });
});
