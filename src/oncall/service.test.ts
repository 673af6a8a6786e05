import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { parseConfigText } from '../config/index.ts';
import { type GameopsError } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import {
  DEFAULT_ONCALL,
  type Harness,
  oncallConfig,
  oncallConfigText,
  openHarness,
  recordingChannels,
} from './oncall.fixture.ts';
import { ManualClock } from '../core/index.ts';

const cleanups: Cleanups = [];
const harnesses: Harness[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const alice: Actor = { id: 'token:a1', name: 'alice', role: 'responder', kind: 'token' };
const MIN = 60_000;

async function open(init: Parameters<typeof openHarness>[1] = {}): Promise<Harness> {
  const h = await openHarness(sqlitePlace(cleanups).options, init);
  harnesses.push(h);
  return h;
}

async function fails(work: Promise<unknown>): Promise<GameopsError> {
  return (await work.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e,
  )) as GameopsError;
}

/** Ticks every second for `ms`. */
async function run(h: Harness, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 1000) {
    h.clock.advance(1000);
    await h.service.tick(h.clock.now());
  }
}

const incidentPage = {
  dedupKey: 'incident:INC-1',
  incidentId: 'INC-1',
  subject: 'Login failures above 20%',
  body: 'Players cannot log in.',
  severity: 'P1' as const,
};

describe('escalation', () => {
  it('pages whoever is on call at fire time, escalates by the policy, and exhausts without an ack', async () => {
    const h = await open();
    const page = await h.service.page(incidentPage);
    expect(page).toMatchObject({ status: 'triggered', level: 0, round: 0, policy: 'default' });
    expect(await h.service.page(incidentPage)).toEqual(page);
    await h.service.tick(h.clock.now());
    // Week of 2026-03-09: bob is primary, alice backup.
    expect(h.channels.sent.map((s) => [s.channel, s.message.deliveryId])).toEqual([
      ['hook', `${page.id}.0.0.bob.hook`],
    ]);
    const first = h.channels.sent[0]!.message;
    expect(first).toMatchObject({ kind: 'page', pageId: page.id, incidentId: 'INC-1', severity: 'P1' });
    expect(first.links?.[0]?.title).toBe('Acknowledge');
    expect(first.links?.[0]?.url).toMatch(/^https:\/\/gameops\.example\.com\/api\/ack\/[\w-]+\.[\w-]+$/);
    expect(h.events.entries.map((e) => e.kind)).toEqual(['page-sent']);

    await run(h, 15 * MIN - 1000);
    expect(h.channels.sent).toHaveLength(1);
    await run(h, 1000);
    expect(h.channels.sent.map((s) => s.message.deliveryId).at(-1)).toBe(`${page.id}.1.0.alice.hook`);
    await run(h, 15 * MIN);
    // Team lead carol has no contacts: oncall.defaultContacts (mail).
    expect(h.channels.sent.map((s) => s.message.deliveryId).at(-1)).toBe(`${page.id}.2.0.carol.mail`);
    const gap = 15 * MIN; // the first level's answer time
    await run(h, gap - 1000);
    expect((await h.service.pageDetail(page.id)).status).toBe('triggered');
    await run(h, 1000);
    const exhausted = await h.service.pageDetail(page.id);
    expect(exhausted).toMatchObject({ status: 'exhausted', level: 2 });
    expect(exhausted.deliveries.map((d) => [d.person, d.channel, d.status, d.attempts.length])).toEqual([
      ['bob', 'hook', 'delivered', 1],
      ['alice', 'hook', 'delivered', 1],
      ['carol', 'mail', 'delivered', 1],
    ]);
    expect(h.events.entries.map((e) => e.kind)).toEqual([
      'page-sent',
      'page-escalated',
      'page-sent',
      'page-escalated',
      'page-sent',
      'page-exhausted',
    ]);
    expect((await h.service.pages()).map((p) => p.id)).toEqual([page.id]);
    // An exhausted page can still be acknowledged.
    expect((await h.service.acknowledge(page.id, alice)).changed).toBe(true);
  });

  it('stops escalating on acknowledge (audited, on the timeline) and ends on resolve', async () => {
    const h = await open();
    const page = await h.service.page(incidentPage);
    await run(h, 5 * MIN);
    const ack = await h.service.acknowledge(page.id, alice);
    expect(ack).toMatchObject({
      changed: true,
      page: { status: 'acknowledged', acknowledgedBy: 'alice' },
    });
    expect((await h.service.acknowledge(page.id, alice)).changed).toBe(false);
    await run(h, 40 * MIN);
    expect(h.channels.sent).toHaveLength(1);
    expect(await h.service.resolveIncident('INC-1', alice)).toBe(1);
    expect((await h.service.pageDetail(page.id)).status).toBe('resolved');
    expect(h.events.entries.map((e) => e.kind)).toEqual(['page-sent', 'page-acknowledged', 'page-resolved']);
    const audit = await h.store.audit.list();
    expect(audit.map((r) => [r.action, r.target, r.actor.id])).toEqual([
      ['oncall.page.acknowledge', `page:${page.id}`, 'token:a1'],
      ['oncall.page.resolve', `page:${page.id}`, 'token:a1'],
    ]);
  });

  it('acknowledges every open page of an incident', async () => {
    const h = await open();
    await h.service.page(incidentPage);
    await h.service.page({ ...incidentPage, dedupKey: 'incident:INC-1:call-in', targets: [{ team: 'ops' }] });
    await h.service.page({ ...incidentPage, dedupKey: 'incident:INC-2', incidentId: 'INC-2' });
    expect(await h.service.acknowledgeIncident('INC-1', alice)).toBe(2);
    expect((await h.service.pagesOf('INC-1')).map((p) => p.status)).toEqual(['acknowledged', 'acknowledged']);
    expect((await h.service.pagesOf('INC-2')).map((p) => p.status)).toEqual(['triggered']);
  });

  it('repeats the policy: round r starts at r × (last delay + first answer time)', async () => {
    const config = oncallConfig(`
oncall:
  defaultContacts: [mail]
  schedules: [{ name: game, layers: [{ name: primary, start: "2026-03-01", participants: [alice] }] }]
  policies:
    - { name: twice, repeat: 1, levels: [{ after: 0s, targets: [{ schedule: game }] }, { after: 5m, targets: [{ person: dave }] }] }
`);
    const h = await open({ config });
    const page = await h.service.page({ ...incidentPage, incidentId: undefined });
    await h.service.tick(h.clock.now());
    await run(h, 30 * MIN);
    const start = Date.parse('2026-03-10T12:00:00Z');
    expect(h.channels.sent.map((s) => [s.message.deliveryId, (Date.parse(s.at) - start) / MIN])).toEqual([
      [`${page.id}.0.0.alice.hook`, 0],
      [`${page.id}.1.0.dave.hook`, 5],
      [`${page.id}.0.1.alice.hook`, 10],
      [`${page.id}.1.1.dave.hook`, 15],
    ]);
    expect((await h.service.pageDetail(page.id)).status).toBe('exhausted');
  });

  it('stores a suppressed page without sending it', async () => {
    const h = await open();
    const page = await h.service.page({ ...incidentPage, labels: { suppress: 'yes', service: 'login' } });
    expect(page).toMatchObject({ status: 'suppressed', suppressedBy: 'maintenance' });
    expect(h.suppressions.asked[0]).toEqual({ suppress: 'yes', service: 'login' });
    await run(h, 60 * MIN);
    expect(h.channels.sent).toEqual([]);
    expect(h.events.entries.map((e) => e.kind)).toEqual(['page-suppressed']);
  });

  it('a suppressed page starts escalating when its window ends (tick, or the alert paging again)', async () => {
    let until: string | undefined = '2026-03-10T13:00:00.000Z';
    const asked: Array<Record<string, string>> = [];
    const suppressions = {
      asked,
      active: (labels: Record<string, string>, at: Date) => {
        asked.push(labels);
        return Promise.resolve(
          until !== undefined && at.toISOString() < until
            ? { name: 'maintenance', endsAt: until }
            : undefined,
        );
      },
    };
    const h = await open({ suppressions });
    const page = await h.service.page(incidentPage);
    expect(page).toMatchObject({ status: 'suppressed', suppressedBy: 'maintenance' });
    await run(h, 30 * MIN);
    expect(h.channels.sent).toEqual([]);
    // The window is extended: still suppressed after its first end.
    until = '2026-03-10T14:00:00.000Z';
    await run(h, 40 * MIN);
    expect((await h.service.pageDetail(page.id)).status).toBe('suppressed');
    expect(h.channels.sent).toEqual([]);
    await run(h, 51 * MIN); // 14:01
    const detail = await h.service.pageDetail(page.id);
    expect(detail.status).toBe('triggered');
    expect(h.channels.sent.map((s) => s.message.deliveryId)).toEqual([`${page.id}.0.0.bob.hook`]);
    const ended = h.events.entries.find((e) => e.message.includes('suppression ended, paging'));
    expect(ended).toMatchObject({ kind: 'page-escalated', incidentId: 'INC-1' });
    // Escalation runs from when the suppression ended: level 2 at 14:00 + 15m, not 12:15.
    expect(Date.parse(detail.nextEscalationAt!)).toBeGreaterThan(Date.parse('2026-03-10T14:14:00Z'));
    const audit = (await h.store.audit.list()).filter((a) => a.action === 'oncall.page.unsuppress');
    expect(audit.map((a) => a.target)).toEqual([`page:${page.id}`]);
  });

  it('a repeat page() after the window sends the suppressed page; resolving closes a suppressed page', async () => {
    let active = true;
    const suppressions = {
      asked: [] as Array<Record<string, string>>,
      active: () =>
        Promise.resolve(active ? { name: 'maintenance', endsAt: '2026-03-10T18:00:00.000Z' } : undefined),
    };
    const h = await open({ suppressions });
    const first = await h.service.page(incidentPage);
    expect(first.status).toBe('suppressed');
    active = false;
    expect((await h.service.page(incidentPage)).status).toBe('triggered');
    await h.service.tick(h.clock.now());
    expect(h.channels.sent).toHaveLength(1);

    active = true;
    const other = await h.service.page({ ...incidentPage, dedupKey: 'incident:INC-2', incidentId: 'INC-2' });
    expect(other.status).toBe('suppressed');
    expect(await h.service.resolveIncident('INC-2')).toBe(1);
    active = false;
    h.clock.advance(7 * 3_600_000);
    await run(h, 5 * MIN);
    expect((await h.service.pageDetail(other.id)).status).toBe('resolved');
    expect(h.channels.sent.filter((s) => s.message.pageId === other.id)).toEqual([]);
  });

  it('a notice follows the incident’s newest page: after a reopen, the reopen page decides', async () => {
    let active = false;
    const suppressions = {
      asked: [] as Array<Record<string, string>>,
      active: () =>
        Promise.resolve(active ? { name: 'maintenance', endsAt: '2026-03-10T18:00:00.000Z' } : undefined),
    };
    const h = await open({ suppressions });
    const notice = (n: number) =>
      h.service.notify({
        dedupKey: `incident:INC-1:notice-${n}`,
        incidentId: 'INC-1',
        kind: 'notice',
        subject: `notice ${n}`,
        body: '',
        to: [{ channel: 'hook' }],
      });
    // The first page went out and was resolved; the reopened incident's page is held back by a window.
    await h.service.page(incidentPage);
    expect(await h.service.resolveIncident('INC-1')).toBe(1);
    h.clock.advance(MIN);
    active = true;
    const reopened = await h.service.page({ ...incidentPage, dedupKey: 'incident:INC-1:reopen-1' });
    expect(reopened.status).toBe('suppressed');
    await notice(1);
    expect(h.events.entries.some((e) => e.message.includes('Notice "notice 1" not sent'))).toBe(true);
    // The second reopen pages (the window is over): its notices go out again.
    await h.service.resolveIncident('INC-1');
    h.clock.advance(MIN);
    active = false;
    expect((await h.service.page({ ...incidentPage, dedupKey: 'incident:INC-1:reopen-2' })).status).toBe(
      'triggered',
    );
    await notice(2);
    await h.service.tick(h.clock.now());
    expect(h.channels.sent.filter((s) => s.message.kind === 'notice').map((s) => s.message.subject)).toEqual([
      'notice 2',
    ]);
  });

  it('a page asked for by hand is not suppressed unless asked; reserved dedup keys are refused', async () => {
    const h = await open();
    const labels = { suppress: 'yes' };
    const manual = await h.service.manualPage({ ...incidentPage, dedupKey: 'manual:1', labels }, alice);
    expect(manual.status).toBe('triggered');
    const held = await h.service.manualPage({ ...incidentPage, dedupKey: 'manual:2', labels }, alice, {
      suppressible: true,
    });
    expect(held.status).toBe('suppressed');
    // A notice about an incident whose page is suppressed is held back too (the timeline says so).
    await h.service.page({ ...incidentPage, labels });
    await h.service.notify({
      dedupKey: 'incident:INC-1:notice',
      incidentId: 'INC-1',
      kind: 'notice',
      subject: 'P1 opened',
      body: '',
      to: [{ person: 'dave' }],
    });
    await h.service.tick(h.clock.now());
    expect(h.channels.sent.filter((s) => s.message.kind === 'notice')).toEqual([]);
    expect(h.events.entries.some((e) => e.message.includes('Notice "P1 opened" not sent'))).toBe(true);
    for (const key of ['incident:INC-9', 'gameops:escalation-stalled:x', 'Heartbeat:db']) {
      const err = await fails(h.service.manualPage({ ...incidentPage, dedupKey: key }, alice));
      expect(err.name).toBe('InputError');
      expect(err.message).toContain(key);
    }
  });

  it('pages targets directly (a team: every member) and validates them', async () => {
    const h = await open();
    const page = await h.service.page({ ...incidentPage, dedupKey: 'x', targets: [{ team: 'ops' }] });
    await h.service.tick(h.clock.now());
    expect(h.channels.sent.map((s) => s.message.deliveryId).sort()).toEqual([
      `${page.id}.0.0.alice.hook`,
      `${page.id}.0.0.bob.hook`,
    ]);
    const unknown = await fails(
      h.service.page({ ...incidentPage, dedupKey: 'y', targets: [{ person: 'zed' }] }),
    );
    expect(unknown.code).toBe('input');
    expect(unknown.message).toContain('targets[0]: unknown person "zed"');
    const policy = await fails(h.service.page({ ...incidentPage, dedupKey: 'z', policy: 'nope' }));
    expect(policy.message).toContain('policy: unknown escalation policy "nope"');
    const empty = await fails(h.service.page({ ...incidentPage, dedupKey: '', subject: '' }));
    expect(empty.code).toBe('input');
    expect(empty.message).toMatch(/^page dedupKey/);
  });

  it('one-shot notify goes to people and channels with no escalation, once per dedup key', async () => {
    const h = await open();
    const input = {
      dedupKey: 'incident:INC-1:update-due:1',
      incidentId: 'INC-1',
      kind: 'reminder' as const,
      subject: 'Status update due',
      body: 'Post an update.',
      to: [{ person: 'alice' }, { channel: 'ops-room' }],
    };
    await h.service.notify(input);
    await h.service.notify(input);
    await run(h, 60 * MIN);
    const sent = h.channels.sent.map((s) => [s.channel, s.message.kind, s.message.recipient?.id ?? '-']);
    expect(sent.sort()).toEqual([
      ['hook', 'reminder', 'alice'],
      ['ops-room', 'reminder', '-'],
    ]);
    expect(await h.service.pages()).toEqual([]);
  });
});

describe('no escalation policy configured', () => {
  it('with schedules: each first layer at once, each second layer after 15 minutes', async () => {
    const config = oncallConfig(DEFAULT_ONCALL.slice(0, DEFAULT_ONCALL.indexOf('  policies:')));
    expect(config.oncall.policies).toEqual([]);
    const h = await open({ config });
    const page = await h.service.page(incidentPage);
    expect(page.status).toBe('triggered');
    await h.service.tick(h.clock.now());
    expect(h.channels.sent.map((s) => s.message.deliveryId)).toEqual([`${page.id}.0.0.bob.hook`]);
    await run(h, 15 * MIN);
    expect(h.channels.sent.map((s) => s.message.deliveryId)).toEqual([
      `${page.id}.0.0.bob.hook`,
      `${page.id}.1.0.alice.hook`,
    ]);
    // A policy named explicitly that does not exist is still the caller's mistake.
    const err = await fails(
      h.service.manualPage({ ...incidentPage, dedupKey: 'manual:x', policy: 'nope' }, alice),
    );
    expect(err.name).toBe('InputError');
    expect(err.message).toContain('"nope"');
  });

  it('with nothing configured: the page is stored exhausted, the timeline says why, nothing throws', async () => {
    const h = await open({ config: oncallConfig('') });
    const page = await h.service.page(incidentPage);
    expect(page.status).toBe('exhausted');
    expect(await h.service.page(incidentPage)).toMatchObject({ id: page.id, status: 'exhausted' });
    await run(h, 2 * MIN);
    expect(h.channels.sent).toEqual([]);
    expect(h.events.entries).toEqual([
      expect.objectContaining({
        kind: 'page-failed',
        incidentId: 'INC-1',
        message: expect.stringContaining('configure oncall.policies') as string,
      }),
    ]);
    // Still closable.
    expect(await h.service.resolveIncident('INC-1')).toBe(1);
  });
});

describe('failing dependencies', () => {
  it('pages anyway when suppression windows cannot be read (fails open)', async () => {
    const h = await open({
      suppressions: Object.assign(
        { asked: [] as Array<Record<string, string>> },
        { active: () => Promise.reject(new Error('alerts store down')) },
      ),
    });
    const page = await h.service.page(incidentPage);
    expect(page.status).toBe('triggered');
    await h.service.tick(h.clock.now());
    expect(h.channels.sent).toHaveLength(1);
  });

  it('a schedule with an unknown time zone: the config refuses it; if the runtime lacks the zone, pages to it fail over', async () => {
    const text = (zone: string) => `
oncall:
  schedules: [{ name: game, timezone: ${zone}, layers: [{ name: primary, start: "2026-03-01", participants: [alice] }] }]
  policies: [{ name: default, levels: [{ after: 0s, targets: [{ schedule: game }] }, { after: 15m, targets: [{ person: dave }] }] }]
`;
    expect(() => oncallConfig(text('Mars/Olympus'))).toThrow(
      /oncall\.schedules\[0\]\.timezone.*not an IANA time zone/s,
    );
    // A zone the config accepted but this runtime's time-zone data does not know (an older ICU).
    const config = oncallConfig(text('UTC'));
    config.oncall.schedules[0]!.timezone = 'Mars/Olympus';
    const h = await open({ config });
    const err = await fails(h.service.whoIsOnCall());
    expect(err.message).toContain('timezone "Mars/Olympus" is not a known IANA time zone');
    const page = await h.service.page(incidentPage);
    await h.service.tick(h.clock.now());
    expect(h.channels.sent.map((s) => s.message.deliveryId)).toEqual([`${page.id}.1.0.dave.hook`]);
    expect(h.events.entries.map((e) => e.kind)).toEqual(['page-failed', 'page-escalated', 'page-sent']);
  });
});

describe('deliveries', () => {
  it('retries a failing channel with backoff honouring Retry-After, then the next channel; a person unreachable escalates at once', async () => {
    const clock = new ManualClock('2026-03-10T12:00:00Z');
    const channels = recordingChannels(clock, (channel) =>
      channel === 'hook'
        ? {
            ok: false,
            retryable: true,
            retryAfterMs: 20_000,
            error: 'HTTP 429 Too Many Requests',
            durationMs: 4,
          }
        : { ok: true, destination: 'mail.example.com:25', response: '250 OK', durationMs: 9 },
    );
    const h = await open({ clock, channels });
    const page = await h.service.page(incidentPage);
    await h.service.tick(clock.now());
    await run(h, 3 * MIN);
    const start = Date.parse('2026-03-10T12:00:00Z');
    // bob: hook only, 3 attempts 22.5 s apart (Retry-After above the 10 s first retry, plus jitter: here
    // 0.5 × min(5 s, 20 s / 4)) → page-failed, escalated to level 2 (alice) at once instead of after
    // 15 minutes; alice: hook 3×, then mail. Ticks run every second.
    expect(
      h.channels.sent.map((s) => [
        s.message.deliveryId.split('.').slice(1).join('.'),
        (Date.parse(s.at) - start) / 1000,
      ]),
    ).toEqual([
      ['0.0.bob.hook', 0],
      ['0.0.bob.hook', 23],
      ['0.0.bob.hook', 46],
      ['1.0.alice.hook', 46],
      ['1.0.alice.hook', 69],
      ['1.0.alice.hook', 92],
      ['1.0.alice.mail', 92],
    ]);
    const detail = await h.service.pageDetail(page.id);
    expect(detail.deliveries.map((d) => [d.deliveryId, d.status, d.attempts.map((a) => a.outcome)])).toEqual([
      [`${page.id}.0.0.bob.hook`, 'failed', ['failed', 'failed', 'failed']],
      [`${page.id}.1.0.alice.hook`, 'failed', ['failed', 'failed', 'failed']],
      [`${page.id}.1.0.alice.mail`, 'delivered', ['ok']],
    ]);
    expect(detail.deliveries[0]!.attempts[0]).toMatchObject({
      n: 1,
      error: 'HTTP 429 Too Many Requests',
      retryAfterMs: 20_000,
      durationMs: 4,
    });
    expect(detail.deliveries[2]!.attempts[0]).toMatchObject({
      response: '250 OK',
      destination: 'mail.example.com:25',
    });
    expect(h.events.entries.map((e) => e.kind)).toEqual(['page-failed', 'page-escalated', 'page-sent']);
    expect(h.events.entries[0]!.message).toContain('could not reach Bob on any channel (hook)');
  });

  it('a channel parked longer than a minute (or past the next step) moves on to the next contact channel now', async () => {
    const clock = new ManualClock('2026-03-10T12:00:00Z');
    const channels = recordingChannels(clock, (channel) =>
      channel === 'hook'
        ? { ok: false, retryable: true, retryAfterMs: 120_000, error: 'HTTP 429', durationMs: 4 }
        : { ok: true, destination: 'mail.example.com:25', response: '250 OK', durationMs: 9 },
    );
    const h = await open({ clock, channels });
    const page = await h.service.page({ ...incidentPage, targets: [{ person: 'alice' }] });
    await h.service.tick(clock.now());
    await run(h, 5_000);
    expect(h.channels.sent.map((s) => [s.message.deliveryId, s.at])).toEqual([
      [`${page.id}.0.0.alice.hook`, '2026-03-10T12:00:00.000Z'],
      [`${page.id}.0.0.alice.mail`, '2026-03-10T12:00:00.000Z'],
    ]);
    // bob has no other channel: his hook is retried after Retry-After (+ jitter) as asked.
    const other = await h.service.page({ ...incidentPage, dedupKey: 'k2', targets: [{ person: 'bob' }] });
    await run(h, 125_000);
    expect(h.channels.sent.filter((s) => s.message.pageId === other.id).map((s) => s.at)).toEqual([
      '2026-03-10T12:00:06.000Z',
      '2026-03-10T12:02:09.000Z',
    ]);
  });

  it('does not retry a non-retryable failure; the last level failing exhausts the page, still listed', async () => {
    const clock = new ManualClock('2026-03-10T12:00:00Z');
    const channels = recordingChannels(clock, () => ({
      ok: false,
      retryable: false,
      error: 'HTTP 404 Not Found',
      durationMs: 2,
    }));
    const h = await open({ clock, channels });
    const page = await h.service.page({ ...incidentPage, targets: [{ person: 'bob' }] });
    await h.service.tick(clock.now());
    expect(h.channels.sent).toHaveLength(1);
    expect((await h.service.pageDetail(page.id)).status).toBe('exhausted');
    expect(h.events.entries.map((e) => e.kind)).toEqual(['page-failed', 'page-exhausted']);
    expect((await h.service.pages({ status: ['exhausted'] })).map((p) => p.id)).toEqual([page.id]);
  });

  it('a channel that throws counts as a retryable failure', async () => {
    const clock = new ManualClock('2026-03-10T12:00:00Z');
    const channels = recordingChannels(clock, () => Promise.reject(new Error('socket hang up')));
    const h = await open({ clock, channels });
    const page = await h.service.page({ ...incidentPage, targets: [{ person: 'dave' }] });
    await h.service.tick(clock.now());
    const detail = await h.service.pageDetail(page.id);
    expect(detail.deliveries[0]).toMatchObject({ status: 'pending', lastError: 'socket hang up' });
  });
});

describe('acknowledge links', () => {
  it('acknowledge as the person named; forged, changed and expired links are refused', async () => {
    const h = await open();
    const page = await h.service.page(incidentPage);
    const token = await h.service.ackToken(page.id, 'bob');
    expect(await h.service.ackLink(page.id, 'bob')).toMatch(/^https:\/\/gameops\.example\.com\/api\/ack\//);
    const view = await h.service.checkAckToken(token);
    expect(view).toMatchObject({ person: 'bob', name: 'Bob', page: { id: page.id } });
    const [payload, mac] = token.split('.');
    const forged = await fails(h.service.acknowledgeByLink(`${payload}.${mac!.slice(0, -2)}AA`));
    expect(forged.code).toBe('not_allowed');
    expect(forged.message).toContain('not valid');
    const done = await h.service.acknowledgeByLink(token);
    expect(done).toMatchObject({ changed: true, person: 'bob', page: { acknowledgedBy: 'Bob' } });
    expect((await h.service.acknowledgeByLink(token)).changed).toBe(false);
    h.clock.advance(24 * 60 * MIN + 1000);
    const expired = await fails(h.service.checkAckToken(token));
    expect(expired.message).toContain('expired');
    const audit = await h.store.audit.list({ action: 'oncall.page.acknowledge' });
    expect(audit.map((r) => r.actor)).toEqual([
      { id: 'ack-link:bob', name: 'Bob', role: 'responder', kind: 'token' },
    ]);
  });

  it('keeps the signing key in the store: a link outlives a restart', async () => {
    const place = sqlitePlace(cleanups);
    const first = await openHarness(place.options);
    const page = await first.service.page(incidentPage);
    const token = await first.service.ackToken(page.id, 'alice');
    await first.store.close();
    const second = await openHarness(place.options);
    harnesses.push(second);
    expect((await second.service.acknowledgeByLink(token)).changed).toBe(true);
  });
});

describe('schedules and overrides', () => {
  it('answers who is on call, with overrides applied and saying so', async () => {
    const h = await open();
    const now = await h.service.whoIsOnCall();
    expect(now).toEqual([
      {
        schedule: 'game',
        timezone: 'Europe/Berlin',
        at: '2026-03-10T12:00:00.000Z',
        layers: [
          {
            layer: 'primary',
            person: 'bob',
            name: 'Bob',
            start: '2026-03-09T09:00:00.000Z',
            end: '2026-03-16T09:00:00.000Z',
          },
          {
            layer: 'backup',
            person: 'alice',
            name: 'Alice',
            start: '2026-03-09T09:00:00.000Z',
            end: '2026-03-16T09:00:00.000Z',
          },
        ],
      },
    ]);
    const override = await h.service.addOverride(
      {
        schedule: 'game',
        person: 'dave',
        from: new Date('2026-03-10T11:00:00Z'),
        to: new Date('2026-03-10T20:00:00Z'),
        reason: 'swap',
      },
      alice,
    );
    expect(override).toMatchObject({ layer: 'primary', person: 'dave', createdBy: 'alice' });
    const covered = await h.service.whoIsOnCall({ schedule: 'game' });
    expect(covered[0]!.layers[0]).toMatchObject({
      person: 'dave',
      override: { id: override.id, replaces: 'bob', reason: 'swap' },
    });
    // Pages go to the override.
    const page = await h.service.page(incidentPage);
    await h.service.tick(h.clock.now());
    expect(h.channels.sent[0]!.message.deliveryId).toBe(`${page.id}.0.0.dave.hook`);
    const shifts = await h.service.shifts(
      'game',
      new Date('2026-03-10T00:00:00Z'),
      new Date('2026-03-11T00:00:00Z'),
      'primary',
    );
    expect(shifts.map((s) => [s.person, s.start, s.end])).toEqual([
      ['bob', '2026-03-10T00:00:00.000Z', '2026-03-10T11:00:00.000Z'],
      ['dave', '2026-03-10T11:00:00.000Z', '2026-03-10T20:00:00.000Z'],
      ['bob', '2026-03-10T20:00:00.000Z', '2026-03-11T00:00:00.000Z'],
    ]);
    expect(await h.service.ical('game')).toContain('BEGIN:VEVENT');
    expect((await h.service.overrides()).map((o) => o.id)).toEqual([override.id]);
    await h.service.removeOverride(override.id, alice);
    expect(await h.service.overrides()).toEqual([]);
    expect((await h.store.audit.list()).map((r) => r.action)).toEqual([
      'oncall.override.create',
      'oncall.override.remove',
    ]);
  });

  it('refuses overlapping overrides (naming the other) and bad input (naming the field)', async () => {
    const h = await open();
    const from = new Date('2026-03-11T00:00:00Z');
    const to = new Date('2026-03-12T00:00:00Z');
    const first = await h.service.addOverride(
      { schedule: 'game', layer: 'backup', person: 'dave', from, to },
      alice,
    );
    const overlap = await fails(
      h.service.addOverride(
        {
          schedule: 'game',
          layer: 'backup',
          person: 'carol',
          from: new Date('2026-03-11T23:00:00Z'),
          to: new Date('2026-03-13T00:00:00Z'),
        },
        alice,
      ),
    );
    expect(overlap.code).toBe('conflict');
    expect(overlap.message).toContain(`overlaps override ${first.id} (dave`);
    expect(overlap.message).toContain(`(gameops oncall overrides remove ${first.id})`);
    // Another layer, or touching end to start, is fine.
    await h.service.addOverride({ schedule: 'game', layer: 'primary', person: 'carol', from, to }, alice);
    await h.service.addOverride(
      { schedule: 'game', layer: 'backup', person: 'carol', from: to, to: new Date('2026-03-13T00:00:00Z') },
      alice,
    );
    const cases: Array<[Parameters<typeof h.service.addOverride>[0], string]> = [
      [{ schedule: 'game', person: 'dave', from: to, to: from }, 'must be after from'],
      [{ schedule: 'game', person: 'dave', from, to: from }, 'must be after from'],
      [{ schedule: 'nope', person: 'dave', from, to }, 'schedule: unknown on-call schedule "nope"'],
      [
        { schedule: 'game', layer: 'tertiary', person: 'dave', from, to },
        'layer: schedule "game" has no layer "tertiary"',
      ],
      [{ schedule: 'game', person: 'zed', from, to }, 'person: unknown person "zed"'],
      [
        {
          schedule: 'game',
          person: 'dave',
          from: new Date('2026-03-01T00:00:00Z'),
          to: new Date('2026-03-02T00:00:00Z'),
        },
        'is in the past',
      ],
    ];
    for (const [input, message] of cases) {
      const err = await fails(h.service.addOverride(input, alice));
      expect(err.code, message).toBe('input');
      expect(err.message).toContain(message);
    }
    expect((await fails(h.service.removeOverride('ovr-nope', alice))).code).toBe('not_found');
    expect((await fails(h.service.shifts('nope', from, to))).code).toBe('not_found');
    expect((await fails(h.service.shifts('game', to, from))).code).toBe('input');
  });

  it('an unknown page id is NotFound', async () => {
    const h = await open();
    for (const work of [
      h.service.pageDetail('pg-nope'),
      h.service.acknowledge('pg-nope', alice),
      h.service.resolve('pg-nope', alice),
    ]) {
      const err = await fails(work);
      expect(err.code).toBe('not_found');
      expect(err.message).toContain('no page with id pg-nope');
    }
  });

  it('config refuses a schedule layer with no participants', () => {
    const text = oncallConfigText(`
oncall:
  schedules: [{ name: game, layers: [{ name: primary, start: "2026-03-01", participants: [] }] }]
`);
    expect(() => parseConfigText(text, 'x.yaml', { all: {} })).toThrow(
      /participants.*needs at least one participant/s,
    );
  });
});

describe('stall auditor', () => {
  it('records late escalations, pages the self-alert targets, and still fires the late level', async () => {
    const h = await open();
    const page = await h.service.page(incidentPage);
    // gameops was down for 3 minutes: level 0 is overdue.
    h.clock.advance(3 * MIN);
    await h.service.tick(h.clock.now());
    const stalls = await h.store.oncall.forScope({ service: 'oncall-test', environment: 'test' }).stalls();
    expect(stalls.map((s) => s.ref)).toEqual([`page:${page.id}:step:0`]);
    const pages = await h.service.pages();
    const self = pages.find((p) => p.dedupKey.startsWith('gameops:escalation-stalled:'));
    expect(self?.dedupKey).toBe('gameops:escalation-stalled:2026-03-10T12:03');
    expect(h.channels.sent.map((s) => s.message.deliveryId).sort()).toEqual(
      [`${page.id}.0.0.bob.hook`, `${self!.id}.0.0.bob.hook`].sort(),
    );
    await run(h, 5000);
    expect(
      await h.store.oncall.forScope({ service: 'oncall-test', environment: 'test' }).stalls(),
    ).toHaveLength(1);
  });

  it('pages once per stall episode: later stalls while its page is open only log; after resolve it pages again', async () => {
    const h = await open();
    const stallPages = async () =>
      (await h.service.pages()).filter((p) => p.dedupKey.startsWith('gameops:escalation-stalled:'));
    for (let i = 0; i < 3; i += 1) {
      await h.service.page({
        ...incidentPage,
        dedupKey: `incident:INC-${i + 10}`,
        incidentId: `INC-${i + 10}`,
      });
      h.clock.advance(3 * MIN); // the loop stalls again
      await h.service.tick(h.clock.now());
    }
    const first = await stallPages();
    expect(first).toHaveLength(1);
    await h.service.resolve(first[0]!.id, alice);
    await h.service.page({ ...incidentPage, dedupKey: 'incident:INC-20', incidentId: 'INC-20' });
    h.clock.advance(3 * MIN);
    await h.service.tick(h.clock.now());
    expect(await stallPages()).toHaveLength(2);
  });

  it('lists stalls, and drops them with old resolved pages after the retention (at most once an hour)', async () => {
    const h = await open();
    const page = await h.service.page(incidentPage);
    h.clock.advance(3 * MIN);
    await h.service.tick(h.clock.now());
    expect((await h.service.stalls()).map((s) => [s.ref, s.pageId])).toEqual([
      [`page:${page.id}:step:0`, page.id],
    ]);
    await h.service.resolveIncident('INC-1');
    for (const p of await h.service.pages()) await h.service.resolve(p.id, alice);
    h.clock.advance(91 * 24 * 60 * MIN);
    await h.service.tick(h.clock.now());
    expect(await h.service.stalls()).toEqual([]);
    expect(await h.service.pages()).toEqual([]);
  });
});
