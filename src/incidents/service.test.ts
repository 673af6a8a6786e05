import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { postgresPlace, sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { createLogger } from '../app/log.ts';
import { parseConfigText, readEnv } from '../config/index.ts';
import {
  ConflictError,
  InputError,
  ManualClock,
  NotAllowedError,
  NotFoundError,
  type GameopsError,
} from '../core/index.ts';
import type { AlertRef } from '../ops/contracts.ts';
import type { Actor, RunEvent, RunService, RunView, StartRunInput } from '../runbooks/model.ts';
import { openStore, type Store, type StoreOptions } from '../store/index.ts';
import { createIncidentService, type IncidentService } from './index.ts';
import { FakePager } from './test-support.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const alice: Actor = { id: 'token:a1', name: 'alice', role: 'responder', kind: 'token' };
const bob: Actor = { id: 'token:b1', name: 'bob', role: 'responder', kind: 'token' };
const viewer: Actor = { id: 'token:v1', name: 'vic', role: 'viewer', kind: 'token' };

/** Just enough of RunService: start records, events and get answer from a script. */
function fakeRuns(): RunService & { started: StartRunInput[] } {
  const started: StartRunInput[] = [];
  const view = (id: string): RunView => ({
    id,
    runbook: 'restart-login',
    version: '1',
    status: 'succeeded',
    trigger: 'api',
    requestedBy: alice,
    createdAt: '2026-03-01T10:05:00.000Z',
    params: {},
    definitionHash: 'h',
    steps: [
      {
        id: 'approve',
        kind: 'approval',
        status: 'succeeded',
        attempt: 1,
        fence: 1,
        approval: {
          planHash: 'x',
          requestedAt: '2026-03-01T10:05:01.000Z',
          expiresAt: '2026-03-01T11:05:01.000Z',
          covers: [],
          decision: 'approved',
          decidedBy: bob,
          decidedAt: '2026-03-01T10:06:00.000Z',
        },
      },
    ],
  });
  const events: RunEvent[] = [
    { seq: 1, runId: 'run-1', at: '2026-03-01T10:05:00.000Z', type: 'run', status: 'running' },
    {
      seq: 2,
      runId: 'run-1',
      at: '2026-03-01T10:06:30.000Z',
      type: 'step',
      stepId: 'restart',
      status: 'running',
    },
    { seq: 3, runId: 'run-1', at: '2026-03-01T10:06:31.000Z', type: 'log', message: 'noise' },
    {
      seq: 4,
      runId: 'run-1',
      at: '2026-03-01T10:07:00.000Z',
      type: 'step',
      stepId: 'restart',
      status: 'failed',
      message: 'exit 1',
    },
  ];
  const unused = (): Promise<never> => Promise.reject(new Error('not used'));
  return {
    started,
    runbooks: unused,
    runbook: (name: string) =>
      name === 'slow-queries'
        ? Promise.resolve({} as never)
        : Promise.reject(new NotFoundError(`no runbook ${name}`)),
    plan: unused,
    start: (input: StartRunInput) => {
      started.push(input);
      return Promise.resolve(view('run-1'));
    },
    get: (id: string) => Promise.resolve(view(id)),
    list: unused,
    events: (_id: string, after: number) => Promise.resolve(events.filter((e) => e.seq > after)),
    decide: unused,
    complete: unused,
    verify: unused,
    cancel: unused,
    pause: unused,
    resume: unused,
    retry: unused,
  };
}

const CONFIG = {
  service: { name: 'test-game', environment: 'test' },
  runbooks: { timezone: 'Asia/Seoul' },
  notifications: {
    channels: [
      { name: 'status-page', kind: 'webhook', url: 'https://status.example.com/hook' },
      { name: 'exec-mail', kind: 'webhook', url: 'https://mail.example.com/hook' },
    ],
  },
  people: [
    { id: 'alice', name: 'Alice' },
    { id: 'bob', name: 'Bob' },
    { id: 'carol', name: 'Carol' },
    { id: 'cto', name: 'Cto' },
  ],
  teams: [{ id: 'dba', name: 'DBA Team', members: ['carol'], lead: 'carol' }],
  oncall: {
    schedules: [
      {
        name: 'primary',
        layers: [{ name: 'primary', start: '2026-01-05', participants: ['alice', 'bob'] }],
      },
    ],
    policies: [{ name: 'default', levels: [{ after: '0s', targets: [{ schedule: 'primary' }] }] }],
  },
  incidents: {
    severities: {
      P1: {
        description: 'Whole service down',
        respondWithin: '0s',
        warRoom: true,
        statusUpdateEvery: '15m',
        escalateTo: [{ person: 'cto' }],
      },
    },
    statusUpdateGrace: '5m',
    notices: { stakeholders: ['exec-mail'], customers: ['status-page'] },
  },
};

interface Setup {
  service: IncidentService;
  store: Store;
  clock: ManualClock;
  pager: FakePager;
  runs: ReturnType<typeof fakeRuns>;
}

async function setup(options?: StoreOptions, extra: Record<string, unknown> = {}): Promise<Setup> {
  const clock = new ManualClock('2026-03-01T10:00:00Z');
  const store = await openStore({ ...(options ?? sqlitePlace(cleanups).options), clock });
  stores.push(store);
  const pager = new FakePager();
  const runs = fakeRuns();
  const config = parseConfigText(JSON.stringify({ ...CONFIG, ...extra }), 'test.yaml', readEnv({})).config;
  const service = createIncidentService({
    config,
    store,
    clock,
    log: createLogger('silent'),
    pager,
    runs: () => Promise.resolve(runs),
  });
  return { service, store, clock, pager, runs };
}

function alert(fp: string, over: Partial<AlertRef> = {}): AlertRef {
  return {
    fingerprint: fp,
    startsAt: '2026-03-01T09:59:00.000Z',
    status: 'firing',
    name: 'HighErrorRate',
    summary: 'login errors above 5%',
    labels: { alertname: 'HighErrorRate', service: 'login', severity: 'critical' },
    generatorUrl: 'http://prometheus:9090/graph?g0.expr=errors',
    ...over,
  };
}

async function failure(promise: Promise<unknown>): Promise<GameopsError> {
  return (await promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: unknown) => err,
  )) as GameopsError;
}

describe('incidents: declare and lifecycle', () => {
  it('declares a P1 war room with readable ids, pages its policy and tells escalateTo', async () => {
    const { service, pager } = await setup();
    const one = await service.declare({ title: 'Login down', severity: 'P1', commander: 'alice' }, alice);
    const two = await service.declare({ title: 'Lag', severity: 'P3', page: false }, alice);
    expect([one.id, two.id]).toEqual(['INC-1', 'INC-2']);
    expect(one).toMatchObject({
      severity: 'P1',
      status: 'declared',
      warRoom: true,
      service: 'test-game',
      roles: { commander: { id: 'alice', name: 'Alice' } },
      responseTarget: { respondWithinMs: 0, dueAt: '2026-03-01T10:00:00.000Z' },
      nextUpdateDueAt: '2026-03-01T10:15:00.000Z',
      timestamps: { declared: '2026-03-01T10:00:00.000Z' },
    });
    expect(two.warRoom).toBe(false);
    expect(two.nextUpdateDueAt).toBe('2026-03-01T11:00:00.000Z');
    expect(one.checklist.map((i) => i.id)).toContain('first15Minutes-1');
    expect(one.checklist[0]?.text).toBe('Establish the blast radius');
    expect(pager.pageCalls).toHaveLength(1);
    expect(pager.pageCalls[0]).toMatchObject({
      dedupKey: 'incident:INC-1',
      incidentId: 'INC-1',
      severity: 'P1',
    });
    expect(pager.notes).toEqual([
      expect.objectContaining({ dedupKey: 'incident:INC-1:opened:P1', to: [{ person: 'cto' }] }),
    ]);
    for (const id of ['INC-2', 'inc-2', '2']) expect((await service.get(id)).title).toBe('Lag');
    const bot: Actor = { id: 'token:c1', name: 'ci-bot', role: 'responder', kind: 'token' };
    expect((await service.acknowledge('INC-2', bot)).owner).toEqual({ id: 'ci-bot', name: 'ci-bot' });
  });

  it('refuses bad input, unknown incidents and viewers, naming what is wrong', async () => {
    const { service } = await setup();
    expect((await failure(service.declare({ title: 'x', severity: 'P9' as 'P1' }, alice))).message).toBe(
      'severity "P9" is not one of P1, P2, P3, P4',
    );
    const unknownPerson = await failure(
      service.declare({ title: 'x', severity: 'P1', commander: 'zed' }, alice),
    );
    expect(unknownPerson).toBeInstanceOf(InputError);
    expect(unknownPerson.message).toContain('"zed" is not a person in config people');
    expect(await failure(service.declare({ title: 'x', severity: 'P1' }, viewer))).toBeInstanceOf(
      NotAllowedError,
    );
    const missing = await failure(service.get('INC-99'));
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing.message).toBe('no incident INC-99');
    expect((await failure(service.get('INC-x'))).message).toContain('"INC-x" is not an incident id');
  });

  it('acknowledge, mitigate, resolve, reopen: timestamps per transition, invalid moves refused', async () => {
    const { service, pager, clock } = await setup();
    await service.declare({ title: 'Login down', severity: 'P1' }, alice);
    clock.advance(60_000);
    let inc = await service.acknowledge('INC-1', bob);
    expect(pager.acks).toEqual(['INC-1']);
    expect(inc).toMatchObject({
      status: 'investigating',
      acknowledgedBy: 'bob',
      responseTarget: { met: false },
      timestamps: { investigating: '2026-03-01T10:01:00.000Z' },
    });
    const back = await failure(service.transition('INC-1', 'declared', alice));
    expect(back).toBeInstanceOf(ConflictError);
    expect(back.message).toBe(
      'INC-1 is investigating; it cannot go to declared (from investigating: mitigated, resolved, postmortem, closed)',
    );
    clock.advance(60_000);
    await service.transition('INC-1', 'mitigated', alice, 'rolled back');
    clock.advance(60_000);
    inc = await service.transition('INC-1', 'resolved', alice);
    expect(pager.resolves).toContain('INC-1');
    expect(inc.nextUpdateDueAt).toBeUndefined();
    expect(inc.timestamps).toMatchObject({
      mitigated: '2026-03-01T10:02:00.000Z',
      resolved: '2026-03-01T10:03:00.000Z',
    });
    // Resolving wrote the first post-mortem.
    expect((await service.postmortem('INC-1')).version).toBe(1);
    clock.advance(60_000);
    inc = await service.transition('INC-1', 'investigating', alice, 'came back');
    expect(inc.status).toBe('investigating');
    expect(inc.nextUpdateDueAt).toBe('2026-03-01T10:19:00.000Z');
    const timeline = await service.timeline('INC-1');
    expect(timeline.filter((e) => e.kind === 'status').map((e) => e.message)).toEqual([
      'declared → investigating: acknowledged by bob',
      'investigating → mitigated: rolled back',
      'mitigated → resolved',
      'resolved → investigating (reopened): came back',
    ]);
    await service.transition('INC-1', 'closed', alice);
    expect(pager.resolves).toEqual(['INC-1', 'INC-1']);
    expect((await failure(service.transition('INC-1', 'resolved', alice))).message).toContain(
      'from closed: nothing, it is closed',
    );
  });

  it("on-call's page-acknowledged entry moves a declared incident to investigating; P3 gets an owner", async () => {
    const { service } = await setup();
    await service.declare({ title: 'Slow shop', severity: 'P3' }, alice);
    await service.append('INC-1', {
      kind: 'page-acknowledged',
      message: 'page acknowledged by Bob',
      actor: bob,
      at: new Date('2026-03-01T10:03:00Z'),
    });
    const inc = await service.get('INC-1');
    expect(inc).toMatchObject({
      status: 'investigating',
      acknowledgedAt: '2026-03-01T10:03:00.000Z',
      owner: { id: 'bob', name: 'Bob' },
      timestamps: { investigating: '2026-03-01T10:03:00.000Z' },
    });
    await expect(service.append('INC-9', { kind: 'page-sent', message: 'x' })).rejects.toThrow(
      'no incident INC-9',
    );
  });

  it('roles: assign, hand over (history on the timeline), step down; checklist with who and when', async () => {
    const { service, pager, clock } = await setup();
    await service.declare({ title: 'Login down', severity: 'P1' }, alice);
    await service.assignRole('INC-1', 'commander', 'alice', alice);
    await service.assignRole('INC-1', 'commander', 'bob', alice);
    await service.assignRole('INC-1', 'scribe', 'carol', alice);
    let inc = await service.assignRole('INC-1', 'scribe', null, alice);
    expect(inc.roles).toEqual({ commander: { id: 'bob', name: 'Bob' } });
    expect((await failure(service.assignRole('INC-1', 'communications', 'zed', alice))).message).toContain(
      'person: "zed" is not a person',
    );
    const roleLines = (await service.timeline('INC-1'))
      .filter((e) => e.kind === 'role')
      .map((e) => e.message);
    expect(roleLines).toEqual([
      'Incident Commander: Alice',
      'Incident Commander: Alice handed over to Bob',
      'Scribe: Carol',
      'Scribe: Carol stepped down',
    ]);
    expect(pager.notes.filter((n) => n.subject.includes('you are')).map((n) => n.to)).toEqual([
      [{ person: 'alice' }],
      [{ person: 'bob' }],
      [{ person: 'carol' }],
    ]);
    clock.advance(30_000);
    inc = await service.checklist('INC-1', 'first15Minutes-2', true, bob);
    expect(inc.checklist.find((i) => i.id === 'first15Minutes-2')?.done).toEqual({
      by: 'bob',
      at: '2026-03-01T10:00:30.000Z',
    });
    inc = await service.checklist('INC-1', 'first15Minutes-2', false, bob);
    expect(inc.checklist.find((i) => i.id === 'first15Minutes-2')?.done).toBeUndefined();
    expect((await failure(service.checklist('INC-1', 'nope', true, bob))).message).toContain(
      'INC-1 has no checklist item nope',
    );
  });
});

describe('incidents: status updates', () => {
  it('reminds IC and Communications once per due time with a draft, escalates a missed update once', async () => {
    const { service, pager, clock } = await setup();
    await service.declare({ title: 'Login down', severity: 'P1', commander: 'alice' }, alice);
    await service.assignRole('INC-1', 'communications', 'bob', alice);
    await service.note('INC-1', 'DB connections maxed out', alice);
    pager.notes.length = 0;
    clock.set('2026-03-01T10:14:59Z');
    await service.tick(clock.now());
    expect(pager.notes).toHaveLength(0);
    clock.set('2026-03-01T10:15:00Z');
    await service.tick(clock.now());
    await service.tick(clock.now());
    clock.set('2026-03-01T10:17:00Z');
    await service.tick(clock.now());
    const reminders = pager.notes.filter((n) => n.kind === 'reminder');
    expect(reminders).toHaveLength(1);
    expect(reminders[0]).toMatchObject({
      dedupKey: 'incident:INC-1:update-due:2026-03-01T10:15:00.000Z',
      to: [{ person: 'alice' }, { person: 'bob' }],
    });
    expect(reminders[0]?.body).toContain('DB connections maxed out');
    expect(reminders[0]?.body).toContain('19:00'); // declared at 10:00 UTC = 19:00 in Asia/Seoul
    expect(pager.pageCalls.filter((p) => p.dedupKey.includes('update-missed'))).toHaveLength(0);
    clock.set('2026-03-01T10:20:00Z');
    await service.tick(clock.now());
    await service.tick(clock.now());
    const missed = pager.pageCalls.filter((p) => p.dedupKey.includes('update-missed'));
    expect(missed).toHaveLength(1);
    expect(missed[0]).toMatchObject({
      dedupKey: 'incident:INC-1:update-missed:2026-03-01T10:15:00.000Z',
      targets: [{ person: 'cto' }],
    });
    // The next one is due a cadence after the escalation (10:20), not after the missed due time.
    const inc = await service.get('INC-1');
    expect(inc.nextUpdateDueAt).toBe('2026-03-01T10:35:00.000Z');
    const kinds = (await service.timeline('INC-1')).map((e) => e.kind);
    expect(kinds.filter((k) => k === 'status-update-due')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'status-update-missed')).toHaveLength(1);
  });

  it('posting an update resets the due time, sends notices, and the draft covers what changed since', async () => {
    const { service, pager, clock } = await setup();
    await service.declare({ title: 'Login down', severity: 'P1' }, alice);
    clock.advance(5 * 60_000);
    await service.setSeverity('INC-1', 'P2', alice, 'partial recovery');
    let draft = await service.draft('INC-1');
    expect(draft.text).toContain('severity P1 → P2: partial recovery');
    const inc = await service.statusUpdate(
      'INC-1',
      { text: 'Rolled back; errors falling', notify: ['customers', 'stakeholders'] },
      alice,
    );
    expect(inc.lastUpdateAt).toBe('2026-03-01T10:05:00.000Z');
    expect(inc.nextUpdateDueAt).toBe('2026-03-01T10:20:00.000Z');
    expect(pager.notes.filter((n) => n.kind === 'notice').map((n) => n.to)).toEqual([
      [{ channel: 'status-page' }],
      [{ channel: 'exec-mail' }],
    ]);
    draft = await service.draft('INC-1');
    expect(draft.text).toContain('No change since then.');
    await service.note('INC-1', 'cache warmed', bob);
    expect((await service.draft('INC-1')).text).toContain('cache warmed');
    // Reminders stop once resolved.
    await service.transition('INC-1', 'resolved', alice);
    clock.set('2026-03-01T12:00:00Z');
    pager.notes.length = 0;
    await service.tick(clock.now());
    expect(pager.notes.filter((n) => n.kind === 'reminder')).toHaveLength(0);
  });

  it('with nobody to remind or escalate to, the timeline says so (and tick does not fail every second)', async () => {
    const { service, pager, clock } = await setup(undefined, { oncall: {} });
    await service.declare({ title: 'Slow shop', severity: 'P3', page: false }, alice);
    clock.set('2026-03-01T11:06:00Z');
    await service.tick(clock.now());
    expect(pager.notes).toHaveLength(0);
    expect(pager.pageCalls).toHaveLength(0);
    const lines = (await service.timeline('INC-1')).map((e) => e.message);
    expect(lines).toContain('status update due; reminded nobody (no on-call configured)');
    expect(lines).toContain(
      'status update missed (due 2026-03-01T11:00:00.000Z); nobody to escalate to (no escalateTo, no escalation policy)',
    );
  });

  it('calls in more people and refuses unknown targets or audiences without channels', async () => {
    const { service, pager } = await setup();
    await service.declare({ title: 'Login down', severity: 'P1', page: false }, alice);
    const page = await service.callIn('INC-1', { targets: [{ team: 'dba' }], message: 'DB pool' }, alice);
    expect(pager.pages.get(page.dedupKey)).toMatchObject({ targets: [{ team: 'dba' }], incidentId: 'INC-1' });
    expect((await service.timeline('INC-1')).find((e) => e.kind === 'call-in')?.message).toBe(
      'called in team dba: DB pool',
    );
    expect(
      (await failure(service.callIn('INC-1', { targets: [{ team: 'nope' }] }, alice))).message,
    ).toContain('targets[0]: "nope" is not a team');
    const { service: bare } = await setup(undefined, { incidents: {} });
    await bare.declare({ title: 'x', severity: 'P4' }, alice);
    expect((await failure(bare.notice('INC-1', { audience: 'customers', text: 'hi' }, alice))).message).toBe(
      'incidents.notices.customers names no channel: there is nowhere to send customers notices',
    );
  });
});

describe('incidents: reminders from several instances', () => {
  it.each([
    { backend: 'sqlite', place: () => Promise.resolve(sqlitePlace(cleanups).options) },
    { backend: 'postgres', place: async () => (await postgresPlace(cleanups)).options },
  ])('concurrent ticks record one reminder and one missed escalation on $backend', async ({ place }) => {
    const { service, pager, clock } = await setup(await place());
    await service.declare({ title: 'Login down', severity: 'P1', commander: 'alice', page: false }, alice);
    clock.set('2026-03-01T10:21:00Z');
    await Promise.all([service.tick(clock.now()), service.tick(clock.now()), service.tick(clock.now())]);
    const reminders = pager.notes.filter((n) => n.kind === 'reminder');
    expect(new Set(reminders.map((n) => n.dedupKey))).toEqual(
      new Set(['incident:INC-1:update-due:2026-03-01T10:15:00.000Z']),
    );
    const missed = pager.pageCalls.filter((p) => p.dedupKey.includes('update-missed'));
    expect(new Set(missed.map((p) => p.dedupKey)).size).toBe(1);
    const kinds = (await service.timeline('INC-1')).map((e) => e.kind);
    expect(kinds.filter((k) => k === 'status-update-due')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'status-update-missed')).toHaveLength(1);
    expect((await service.get('INC-1')).nextUpdateDueAt).toBe('2026-03-01T10:36:00.000Z');
  });
});

describe('incidents: alerts', () => {
  it.each([
    { backend: 'sqlite', place: () => Promise.resolve(sqlitePlace(cleanups).options) },
    { backend: 'postgres', place: async () => (await postgresPlace(cleanups)).options },
  ])('concurrent openOrJoin for one group open one incident on $backend', async ({ place }) => {
    const { service, pager } = await setup(await place());
    const input = (fp: string) => ({
      groupKey: 'g:login',
      title: 'HighErrorRate on login',
      severity: 'P1' as const,
      service: 'login',
      runbook: 'restart-login',
      alert: alert(fp, { runbookUrl: 'gameops:slow-queries' }),
    });
    const results = await Promise.all([
      service.openOrJoin(input('a')),
      service.openOrJoin(input('a')),
      service.openOrJoin(input('b')),
      service.openOrJoin(input('c')),
    ]);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.incidentId))).toEqual(new Set(['INC-1']));
    expect(await service.list()).toHaveLength(1);
    const fired = (await service.timeline('INC-1')).filter((e) => e.kind === 'alert-fired');
    expect(fired).toHaveLength(3);
    expect(pager.pageCalls.every((p) => p.dedupKey === 'incident:INC-1')).toBe(true);
    expect(pager.pageCalls).toHaveLength(4);
    const inc = await service.get('INC-1');
    expect(inc.source).toBe('alert');
    expect(inc.suggestedRunbooks).toEqual(['restart-login', 'slow-queries']);
  });

  it('resolves with its alerts (configurable) and a new alert for the group then opens a new incident', async () => {
    const { service, pager } = await setup();
    const input = {
      groupKey: 'g1',
      title: 'Disk',
      severity: 'P3' as const,
      service: 'db',
      alert: alert('a'),
    };
    await service.openOrJoin(input);
    await service.openOrJoin({ ...input, alert: alert('b') });
    await service.alertResolved('INC-1', { ...alert('a'), status: 'resolved' }, 1);
    expect((await service.get('INC-1')).status).toBe('declared');
    await service.alertResolved('INC-1', { ...alert('b'), status: 'resolved' }, 0);
    await service.alertResolved('INC-1', { ...alert('b'), status: 'resolved' }, 0);
    const inc = await service.get('INC-1');
    expect(inc.status).toBe('resolved');
    expect(new Set(pager.resolves)).toEqual(new Set(['INC-1']));
    expect((await service.timeline('INC-1')).filter((e) => e.kind === 'alert-resolved')).toHaveLength(2);
    expect(await service.openOrJoin({ ...input, alert: alert('c') })).toEqual({
      incidentId: 'INC-2',
      created: true,
    });
  });
});

describe('incidents: alert groups', () => {
  it('names an alert-opened incident after its group; impact runs from the first alert; each alert resolves on the timeline', async () => {
    const { service, clock } = await setup();
    const input = (fp: string, startsAt: string) => ({
      groupKey: '{}/{team="game"}:{alertname="LoginFailing", service="login"}',
      title: 'login 500s on a1',
      severity: 'P2' as const,
      service: 'login',
      alert: alert(fp, { name: 'LoginFailing', summary: `login 500s on ${fp}`, startsAt }),
    });
    clock.set('2026-03-01T15:05:47Z');
    await service.openOrJoin(input('a1', '2026-03-01T15:00:00.000Z'));
    await service.openOrJoin(input('a2', '2026-03-01T15:02:00.000Z'));
    const opened = await service.get('INC-1');
    expect(opened.title).toBe('LoginFailing (service=login)');
    expect(opened.summary).toBe('login 500s on a1');

    // One webhook resolves both: intake sees nothing still firing on either call.
    clock.set('2026-03-01T15:06:05Z');
    const endsAt = '2026-03-01T15:06:00.000Z';
    await service.alertResolved(
      'INC-1',
      { ...input('a1', '2026-03-01T15:00:00.000Z').alert, status: 'resolved', endsAt },
      0,
    );
    await service.alertResolved(
      'INC-1',
      { ...input('a2', '2026-03-01T15:02:00.000Z').alert, status: 'resolved', endsAt },
      0,
    );
    expect((await service.get('INC-1')).status).toBe('resolved');
    const resolved = (await service.timeline('INC-1')).filter((e) => e.kind === 'alert-resolved');
    expect(resolved.map((e) => e.data.fingerprint).sort()).toEqual(['a1', 'a2']);
    const pm = await service.postmortem('INC-1');
    expect(pm.version).toBe(1);
    expect(pm.markdown).toContain('- **Duration**: 6 minutes');
    expect(pm.markdown.match(/alert resolved: LoginFailing/g)).toHaveLength(2);
  });

  it('a group key without labels keeps the given title (heartbeats, generic alerts)', async () => {
    const { service } = await setup();
    await service.openOrJoin({
      groupKey: 'generic:disk',
      title: 'Disk full on db1',
      severity: 'P3',
      service: 'db',
      alert: alert('d'),
    });
    expect((await service.get('INC-1')).title).toBe('Disk full on db1');
  });
});

describe('incidents: runbooks, timeline and post-mortem', () => {
  it('runs a runbook from the incident and merges its steps and approvals into the timeline', async () => {
    const { service, runs, clock } = await setup();
    await service.declare({ title: 'Login down', severity: 'P1', page: false }, alice);
    clock.advance(5 * 60_000);
    const run = await service.runRunbook('INC-1', 'restart-login', { pods: 2 }, alice, {
      idempotencyKey: 'k1',
    });
    expect(run.id).toBe('run-1');
    expect(runs.started[0]).toMatchObject({ trigger: 'api', reason: 'incident INC-1', idempotencyKey: 'k1' });
    expect((await service.get('INC-1')).runs.map((r) => r.runId)).toEqual(['run-1']);
    const messages = (await service.timeline('INC-1')).map((e) => e.message);
    expect(messages).toEqual([
      'P1 incident declared by alice: Login down',
      'runbook restart-login started (run run-1)',
      'run run-1 (restart-login) running',
      'approval requested for step approve of run run-1',
      'step approve approved by bob',
      'step restart running',
      'step restart failed: exit 1',
    ]);
  });

  it('exports the timeline as JSON, Markdown and injection-safe CSV', async () => {
    const { service } = await setup();
    await service.declare({ title: 'Login down', severity: 'P2', page: false }, alice);
    await service.note('INC-1', '=HYPERLINK("http://evil","x")', alice);
    await service.note('INC-1', '-2+3, "quoted"', alice);
    const csv = await service.export('INC-1', 'csv');
    expect(csv.split('\r\n')[0]).toBe('at,kind,actor,message,run');
    expect(csv).toContain(`,note,alice,"'=HYPERLINK(""http://evil"",""x"")",`);
    expect(csv).toContain(`,note,alice,"'-2+3, ""quoted""",`);
    const md = await service.export('INC-1', 'markdown');
    expect(md).toContain('# Timeline: INC-1 Login down');
    expect(md).toContain(
      '- 2026-03-01 19:00 - **declared** P2 incident declared by alice: Login down (alice)',
    );
    const json = JSON.parse(await service.export('INC-1', 'json')) as { entries: unknown[] };
    expect(json.entries).toHaveLength(3);
  });

  it('generates the §8.1 post-mortem, keeps edited sections, refuses a stale base, carries open items', async () => {
    const { service, clock } = await setup();
    await service.openOrJoin({
      groupKey: 'g',
      title: 'Login errors',
      severity: 'P1',
      service: 'login',
      alert: alert('a'),
    });
    await service.setDetails(
      'INC-1',
      { impact: '30% of users unable to login', rootCause: 'Database connection pool exhaustion' },
      alice,
    );
    await service.actionItems.add(
      'INC-1',
      { title: 'Increase default connection pool to 200', owner: { team: 'dba' }, dueDate: '2026-03-10' },
      alice,
    );
    clock.advance(45 * 60_000);
    await service.transition('INC-1', 'resolved', alice);
    const pm = await service.postmortem('INC-1');
    expect(pm.version).toBe(1);
    const md = pm.markdown;
    expect(md).toMatch(/^# Incident Post-Mortem: INC-1\n/);
    expect(md).toContain('- **Date**: 2026-03-01');
    // Impact starts with the alert (09:59), a minute before the incident was opened from it.
    expect(md).toContain('- **Duration**: 46 minutes');
    expect(md).toContain('- **Impact**: 30% of users unable to login');
    expect(md).toContain('- **Root Cause**: Database connection pool exhaustion');
    expect(md).toContain('_Times in Asia/Seoul._');
    expect(md).toContain('- 18:59 - alert fired: HighErrorRate: login errors above 5%');
    expect(md).toContain('## Root Cause Analysis\nDatabase connection pool exhaustion');
    expect(md).toContain(
      '- [ ] Increase default connection pool to 200 (Owner: DBA Team, Due: 2026-03-10, Status: open)',
    );
    expect(md).toContain('(http://prometheus:9090/graph?g0.expr=errors)');

    const lessons = md.replace(
      /## Lessons Learned\n[^#]*/,
      '## Lessons Learned\n1. Pool sizing was based on old traffic\n\n',
    );
    const withItem = lessons.replace(
      /(\(Owner: DBA Team, Due: 2026-03-10, Status: open\) <!-- item:\w+ -->)/,
      '$1\n- [ ] Add connection pool monitoring (Owner: dba)',
    );
    const edited = await service.edit('INC-1', { baseVersion: 1, markdown: withItem }, bob);
    expect(edited).toMatchObject({ version: 2, kind: 'edited', createdBy: 'bob' });
    expect(edited.edited).toEqual(expect.arrayContaining(['Lessons Learned', 'Action Items']));
    const stale = await failure(service.edit('INC-1', { baseVersion: 1, markdown: withItem }, alice));
    expect(stale).toBeInstanceOf(ConflictError);
    expect(stale.message).toContain('is at version 2, not 1');
    expect((await service.actionItems.list('INC-1')).map((i) => [i.title, i.owner])).toEqual([
      ['Increase default connection pool to 200', { team: 'dba' }],
      ['Add connection pool monitoring', { team: 'dba' }],
    ]);
    const first = (await service.actionItems.list('INC-1'))[0]!;
    await service.actionItems.update('INC-1', first.id, { status: 'done' }, alice);
    await service.note('INC-1', 'follow-up call held', alice);
    const regenerated = await service.postmortem('INC-1', { regenerate: true }, alice);
    expect(regenerated.version).toBe(3);
    expect(regenerated.markdown).toContain('1. Pool sizing was based on old traffic');
    expect(regenerated.markdown).toContain('follow-up call held');
    expect(regenerated.markdown).toContain(
      '- [ ] Add connection pool monitoring (Owner: DBA Team, Due: none, Status: open)',
    );
    expect(regenerated.markdown).toContain('- [x] Increase default connection pool to 200');
    expect(regenerated.history.map((h) => [h.version, h.kind])).toEqual([
      [1, 'generated'],
      [2, 'edited'],
      [3, 'generated'],
    ]);
    expect(
      (await failure(service.edit('INC-1', { baseVersion: 3, markdown: 'hello' }, alice))).message,
    ).toContain('a post-mortem starts with "# Incident Post-Mortem: INC-<n>"');
  });
});

describe('incidents: review fixes', () => {
  const places = [
    { backend: 'sqlite', place: () => Promise.resolve(sqlitePlace(cleanups).options) },
    { backend: 'postgres', place: async () => (await postgresPlace(cleanups)).options },
  ];

  it.each(places)('a reopened incident pages anew, with a key per reopen, on $backend', async ({ place }) => {
    const { service, pager, clock } = await setup(await place());
    const input = (fp: string) => ({
      groupKey: 'g:login',
      title: 'Login down',
      severity: 'P1' as const,
      service: 'login',
      alert: alert(fp),
    });
    await service.openOrJoin(input('a'));
    clock.advance(60_000);
    await service.transition('INC-1', 'resolved', alice);
    clock.advance(60_000);
    await service.transition('INC-1', 'investigating', alice, 'came back');
    clock.advance(60_000);
    await service.transition('INC-1', 'resolved', alice);
    await service.transition('INC-1', 'investigating', alice, 'again');
    const opening = pager.pageCalls.filter((p) => !p.dedupKey.includes(':severity:'));
    expect([...new Set(opening.map((p) => p.dedupKey))]).toEqual([
      'incident:INC-1',
      'incident:INC-1:reopen-1',
      'incident:INC-1:reopen-2',
    ]);
    // escalateTo is told again too, under the reopen's key.
    expect(pager.notes.map((n) => n.dedupKey)).toEqual(
      expect.arrayContaining(['incident:INC-1:opened:P1', 'incident:INC-1:reopen-1:opened:P1']),
    );
    // A joining alert after the reopen asks for the reopen's page, not the first (resolved) one.
    pager.pageCalls.length = 0;
    expect(await service.openOrJoin(input('b'))).toEqual({ incidentId: 'INC-1', created: false });
    expect(pager.pageCalls.map((p) => p.dedupKey)).toEqual(['incident:INC-1:reopen-2']);
  });

  it.each(places)(
    'a joining alert of a higher severity raises the incident in the same change on $backend',
    async ({ place }) => {
      const { service, pager } = await setup(await place());
      const input = (fp: string, severity: 'P1' | 'P2' | 'P3') => ({
        groupKey: 'g:login',
        title: 'Errors on login',
        severity,
        service: 'login',
        alert: alert(fp),
      });
      await service.openOrJoin(input('a', 'P3'));
      expect((await service.get('INC-1')).warRoom).toBe(false);
      await service.openOrJoin(input('b', 'P1'));
      const inc = await service.get('INC-1');
      expect(inc).toMatchObject({
        severity: 'P1',
        warRoom: true,
        nextUpdateDueAt: '2026-03-01T10:15:00.000Z',
      });
      const timeline = await service.timeline('INC-1');
      expect(timeline.filter((e) => e.kind === 'severity').map((e) => e.message)).toEqual([
        'severity P3 → P1: alert HighErrorRate is P1 (war room opened)',
      ]);
      // The raise and the alert are one change: the severity entry is stored right before the alert's.
      const raised = timeline.find((e) => e.kind === 'severity');
      const fired = timeline.find((e) => e.kind === 'alert-fired' && e.data.fingerprint === 'b');
      expect(raised?.seq).toBe((fired?.seq ?? 0) - 1);
      expect(pager.notes.map((n) => n.dedupKey)).toContain('incident:INC-1:opened:P1');
      expect(pager.pageCalls.at(-1)).toMatchObject({ dedupKey: 'incident:INC-1', severity: 'P1' });
      // Never lowered automatically.
      await service.openOrJoin(input('c', 'P3'));
      expect((await service.get('INC-1')).severity).toBe('P1');
      expect((await service.timeline('INC-1')).filter((e) => e.kind === 'severity')).toHaveLength(1);
    },
  );

  it('openOrJoin returns the incident when paging fails, records it once and pages on a later call', async () => {
    const { service, pager } = await setup();
    const realPage = pager.page;
    let failing = true;
    pager.page = (input) =>
      failing
        ? Promise.reject(new InputError('no escalation policy: set oncall.defaultPolicy'))
        : realPage(input);
    const input = (fp: string) => ({
      groupKey: 'g',
      title: 'Disk full',
      severity: 'P3' as const,
      service: 'db',
      alert: alert(fp),
    });
    expect(await service.openOrJoin(input('a'))).toEqual({ incidentId: 'INC-1', created: true });
    expect(await service.openOrJoin(input('b'))).toEqual({ incidentId: 'INC-1', created: false });
    const failed = (await service.timeline('INC-1')).filter((e) => e.kind === 'page-failed');
    expect(failed.map((e) => e.message)).toEqual([
      'could not page the on-call: no escalation policy: set oncall.defaultPolicy',
    ]);
    failing = false;
    await service.openOrJoin(input('b'));
    expect([...pager.pages.keys()]).toEqual(['incident:INC-1']);
  });

  it.each(places)(
    'resolving a big group resolves pages and writes the post-mortem once on $backend',
    async ({ place }) => {
      const { service, pager, clock } = await setup(await place());
      const fps = Array.from({ length: 40 }, (_, i) => `fp${i}`);
      for (const fp of fps)
        await service.openOrJoin({
          groupKey: 'g',
          title: 'Down',
          severity: 'P2',
          service: 'db',
          alert: alert(fp),
        });
      clock.advance(300_000);
      // As after one webhook that resolves them all: every call sees nothing still firing.
      for (const fp of fps) await service.alertResolved('INC-1', { ...alert(fp), status: 'resolved' }, 0);
      // Alertmanager re-sends one of them: its entry is not repeated.
      await service.alertResolved('INC-1', { ...alert('fp3'), status: 'resolved' }, 0);
      expect(pager.resolves).toEqual(['INC-1']);
      const pm = await service.postmortem('INC-1');
      expect(pm.history.map((h) => h.version)).toEqual([1]);
      const timeline = await service.timeline('INC-1');
      expect(timeline.filter((e) => e.kind === 'alert-resolved')).toHaveLength(40);
      expect(timeline.filter((e) => e.kind === 'status' && e.data.to === 'resolved')).toHaveLength(1);
    },
  );

  it('after downtime, one reminder and one escalation cover the gap; the next is due a cadence from now', async () => {
    const { service, pager, clock } = await setup();
    await service.declare({ title: 'Login down', severity: 'P1', page: false, commander: 'alice' }, alice);
    clock.advance(5 * 3600_000);
    for (let i = 0; i < 30; i++) {
      await service.tick(clock.now());
      clock.advance(1000);
    }
    expect(pager.notes.filter((n) => n.kind === 'reminder')).toHaveLength(1);
    expect(pager.pageCalls.filter((p) => p.dedupKey.includes('update-missed'))).toHaveLength(1);
    expect((await service.get('INC-1')).nextUpdateDueAt).toBe('2026-03-01T15:15:00.000Z');
    clock.set('2026-03-01T15:15:00Z');
    await service.tick(clock.now());
    expect(pager.notes.filter((n) => n.kind === 'reminder')).toHaveLength(2);
  });

  it('CSV and Markdown exports show terminal escapes as text, keeping line breaks where CSV quotes them', async () => {
    const { service } = await setup();
    await service.declare({ title: 'Login \u001b[2J down', severity: 'P2', page: false }, alice);
    await service.note('INC-1', 'copied \u001b]52;c;ZWNobw==\u0007\nsecond line', alice);
    const csv = await service.export('INC-1', 'csv');
    const markdown = await service.export('INC-1', 'markdown');
    const control = (out: string): string[] =>
      [...out].filter((c) => (c < ' ' && !'\t\r\n'.includes(c)) || c === '\u007f');
    expect(control(csv)).toEqual([]);
    expect(control(markdown)).toEqual([]);
    expect(markdown).toContain('copied \\u001b\\]52;c;ZWNobw==\\u0007 second line');
    expect(csv).toContain('"copied \\u001b]52;c;ZWNobw==\\u0007\nsecond line"');
    expect(markdown).toContain('# Timeline: INC-1 Login \\u001b\\[2J down');
  });

  it('reading a post-mortem never saves one; the draft can be edited as version 0', async () => {
    const { service, store } = await setup();
    await service.declare({ title: 'Login down', severity: 'P2', page: false }, alice);
    const draft = await service.postmortem('INC-1', {}, viewer);
    expect(draft).toMatchObject({ version: 0, history: [], kind: 'generated' });
    expect(await store.incidents.postmortems({ service: 'test-game', environment: 'test' }, 1)).toEqual([]);
    expect((await service.postmortem('INC-1', {}, viewer)).markdown).toBe(draft.markdown);
    const edited = draft.markdown.replace(
      /## Lessons Learned\n[^#]*/,
      '## Lessons Learned\nCheck pools.\n\n',
    );
    const saved = await service.edit('INC-1', { baseVersion: 0, markdown: edited }, alice);
    expect(saved).toMatchObject({ version: 1, kind: 'edited', edited: ['Lessons Learned'] });
  });

  it('action item edits in the Markdown are synced by item id and survive regeneration; Timeline edits are refused', async () => {
    const { service } = await setup();
    await service.declare({ title: 'Login down', severity: 'P2', page: false }, alice);
    const item = await service.actionItems.add(
      'INC-1',
      { title: 'Add pool alerts', owner: { team: 'dba' }, dueDate: '2026-03-10' },
      alice,
    );
    await service.transition('INC-1', 'resolved', alice);
    const v1 = await service.postmortem('INC-1');
    const line = `- [ ] Add pool alerts (Owner: DBA Team, Due: 2026-03-10, Status: open) <!-- item:${item.id} -->`;
    expect(v1.markdown).toContain(line);
    const changedLine = `- [x] Add pool saturation alerts (Owner: Bob, Due: 2026-03-20, Status: done) <!-- item:${item.id} -->`;
    await service.edit('INC-1', { baseVersion: 1, markdown: v1.markdown.replace(line, changedLine) }, bob);
    expect(await service.actionItems.list('INC-1')).toEqual([
      expect.objectContaining({
        id: item.id,
        title: 'Add pool saturation alerts',
        owner: { person: 'bob' },
        dueDate: '2026-03-20',
        status: 'done',
      }),
    ]);
    const v3 = await service.postmortem('INC-1', { regenerate: true }, alice);
    expect(v3.markdown).toContain(
      `- [x] Add pool saturation alerts (Owner: Bob, Due: 2026-03-20, Status: done) <!-- item:${item.id} -->`,
    );
    // Clearing owner and due date round-trips too.
    const cleared = v3.markdown.replace(
      '(Owner: Bob, Due: 2026-03-20, Status: done)',
      '(Owner: unassigned, Due: none, Status: done)',
    );
    await service.edit('INC-1', { baseVersion: v3.version, markdown: cleared }, bob);
    const [after] = await service.actionItems.list('INC-1');
    expect(after?.owner).toBeUndefined();
    expect(after?.dueDate).toBeUndefined();

    const latest = await service.postmortem('INC-1');
    const timelineEdit = latest.markdown.replace(
      '_Times in Asia/Seoul._',
      '_Times in Asia/Seoul._\n- 19:30 - made up',
    );
    const refused = await failure(
      service.edit('INC-1', { baseVersion: latest.version, markdown: timelineEdit }, bob),
    );
    expect(refused).toBeInstanceOf(InputError);
    expect(refused.message).toContain('the Timeline section is generated from the incident timeline');
    const badOwner = latest.markdown.replace('Owner: unassigned', 'Owner: nobody-here');
    const refusedOwner = await failure(
      service.edit('INC-1', { baseVersion: latest.version, markdown: badOwner }, bob),
    );
    expect(refusedOwner).toBeInstanceOf(InputError);
    expect(refusedOwner.message).toContain('Action Items owner "nobody-here"');
    expect((await service.postmortem('INC-1')).version).toBe(latest.version);
  });
});
