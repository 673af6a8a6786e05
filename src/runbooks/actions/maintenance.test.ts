/**
 * The maintenance actions against real things: a local fleet of the mini game server (the platform
 * contract's local adapter), the harness's Alertmanager, the embedded store for paging suppression, and a
 * local webhook receiver for the completion notice.
 */
import { appendFileSync, mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupKey, backupsSection } from '../../../test/support/backups.ts';
import { writeMiniFleetConfig } from '../../../test/support/fleet.ts';
import { closedPort, startAlertmanager, type AlertmanagerHandle } from '../../../test/harness/index.ts';
import { bootstrap, shutdown, type Resources } from '../../app/index.ts';
import { openFleet } from '../../app/fleet.ts';
import { openOps } from '../../app/ops.ts';
import { ManualClock } from '../../core/index.ts';
import { destroyFleet } from '../../platform/local/test-support.ts';
import { createCatalog } from './index.ts';
import { isMaintenanceComment, reopenCommand, silenceComment, summarize } from './maintenance.ts';
import { testConfig } from '../../checks/test-support.ts';
import { catalogAction, createRunbookServices, resourcesFor, stepContext } from './test-support.ts';
import type { RunbookServices } from './services.ts';

const catalog = createCatalog();

/** Runs an action as a step would: arguments parsed by its schema, a fresh step context. */
async function run(services: RunbookServices, name: string, args: unknown, runId?: string) {
  const a = catalogAction(name);
  const ctx = stepContext(services, runId ? { runId } : {});
  const output = await a.run(a.args.parse(args), ctx);
  return { output: output as Record<string, unknown>, lines: ctx.lines, ctx };
}

async function fails(
  services: RunbookServices,
  name: string,
  args: unknown,
): Promise<{ err: Error; lines: string[] }> {
  const a = catalogAction(name);
  const ctx = stepContext(services);
  const err = await a.run(a.args.parse(args), ctx).then(
    () => new Error('expected a failure'),
    (e: unknown) => e as Error,
  );
  return { err, lines: ctx.lines };
}

describe('maintenance: pure parts', () => {
  it('summarize: approval only for database work or a version change; one sentence for the approver', () => {
    const base = {
      window: 'mw-20261203T0400Z-abc123',
      startsAt: '2026-12-03T04:00:00Z',
      endsAt: '2026-12-03T06:00:00Z',
      tasks: ['logs' as const],
      preflight: { previousVersion: '1.0.0', version: null, playersOnline: 12, update: false },
    };
    const logs = summarize({ ...base, dbPlan: undefined });
    expect(logs.approval).toBe(false);
    expect(logs.summary).toBe(
      'Maintenance mw-20261203T0400Z-abc123: 2026-12-03 04:00–06:00 UTC; tasks: logs; 12 player(s) online now ' +
        '(they are asked to leave, then saved and disconnected).',
    );
    const update = summarize({
      ...base,
      tasks: ['db', 'update'],
      preflight: { previousVersion: '1.0.0', version: '1.1.0', playersOnline: 0, update: true },
      dbPlan: { work: false, summary: 'nothing to do' },
    });
    expect(update.approval).toBe(true);
    expect(update.summary).toMatch(/version 1\.0\.0 → 1\.1\.0; .*database: nothing to do\.$/);
    expect(
      summarize({ ...base, tasks: ['db'], dbPlan: { work: true, summary: 'drop p2024_01' } }).approval,
    ).toBe(true);
  });

  it("silence comments are found again by run or by window, never another window's", () => {
    const c = silenceComment('mw-20261203T0400Z-abc123', 'run_1', '2026-12-03T06:00:00.000Z');
    expect(isMaintenanceComment(c, { window: null, runId: 'run_1' })).toBe(true);
    expect(isMaintenanceComment(c, { window: 'mw-20261203T0400Z-abc123', runId: null })).toBe(true);
    expect(isMaintenanceComment(c, { window: 'mw-20261203T0400Z-abc12', runId: null })).toBe(false);
    expect(isMaintenanceComment(c, { window: null, runId: 'run_12' })).toBe(false);
    expect(isMaintenanceComment('someone else', { window: null, runId: 'run_1' })).toBe(false);
    expect(reopenCommand(null, 'run_1')).toBe('gameops run maintenance-reopen -p run=run_1');
  });

  it('window-open: measures open and inMs on the injected clock (the wait asserts open), no countdown in its summary', async () => {
    const clock = new ManualClock(new Date('2026-12-03T03:00:00Z'));
    const check = catalog.check('maintenance.window-open')!;
    const services = createRunbookServices(resourcesFor(testConfig()));
    const args = check.args.parse({ startsAt: '2026-12-03T04:00:00Z' });
    const before = await check.run(args, stepContext(services, { clock }));
    expect(before).toMatchObject({ status: 'ok', values: { open: false, inMs: 3_600_000 } });
    expect(before.summary).toBe('the window opens at 2026-12-03T04:00:00.000Z');
    clock.set(new Date('2026-12-03T04:00:00Z'));
    expect(await check.run(args, stepContext(services, { clock }))).toMatchObject({
      status: 'ok',
      values: { open: true, inMs: 0 },
    });
    expect(check.args.safeParse({ startsAt: 'tomorrow' }).error?.issues[0]?.path).toEqual(['startsAt']);
  });
});

describe('maintenance actions on a local fleet, Alertmanager and the store', () => {
  let resources: Resources;
  let services: RunbookServices;
  let dataDir = '';
  let hooks: string[] = [];
  let receiver: Server;
  // An Alertmanager of its own: `maintenance.silence` silences every alert by default, which would silence
  // the alerts other test files expect active on the shared one.
  let am: AlertmanagerHandle;
  const window = 'mw-20261203T0400Z-abc123';

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        hooks.push(body);
        res.writeHead(req.url === '/fail' ? 500 : 200).end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const port = (receiver.address() as AddressInfo).port;
    am = await startAlertmanager();
    const written = await writeMiniFleetConfig();
    dataDir = written.dataDir;
    const dir = mkdtempSync(join(tmpdir(), 'gameops-maint-actions-'));
    appendFileSync(
      written.path,
      [
        `alertmanager: { url: "${am.url}" }`,
        ...backupsSection(dir, await backupKey(), { storage: join(dir, 'store'), files: [dir] }),
        'notifications:',
        '  allowPrivate: ["127.0.0.1"]',
        '  channels:',
        `    - { name: ops, kind: webhook, url: "http://127.0.0.1:${port}/hook" }`,
        `    - { name: broken, kind: webhook, url: "http://127.0.0.1:${port}/fail" }`,
        'maintenance:',
        '  silence: { after: 10m }',
        '  notices: { channels: [ops, broken] }',
        '',
      ].join('\n'),
    );
    resources = await bootstrap({ configPath: written.path, store: 'required', logLevel: 'silent' });
    services = createRunbookServices(resources);
    await (await openFleet(resources)).platform.scale(2, { timeoutMs: 30_000 });
  }, 60_000);

  afterAll(async () => {
    await services?.close();
    if (resources) await shutdown(resources);
    if (dataDir) await destroyFleet(dataDir);
    receiver?.close();
    await am?.stop();
  });

  it("preflight: the fleet, its version, players and the players' notice; refuses what is missing, naming it", async () => {
    const ok = await run(services, 'maintenance.preflight', {
      window,
      startsAt: '2026-12-03T04:00:00Z',
      endsAt: '2026-12-03T06:00:00Z',
      tasks: ['logs', 'update'],
      version: 'v2',
    });
    expect(ok.output).toMatchObject({
      label: `window ${window}`,
      previousVersion: 'v1',
      instances: 2,
      readyInstances: 2,
      playersOnline: 0,
      update: true,
      alertmanager: true,
      summary: '0 player(s) online on 2/2 ready instance(s), version v1 → v2',
    });
    expect(ok.output['playersMessage']).toBe(
      'Maintenance 2026-12-03 04:00–06:00 UTC: logins are closed; please save your game and log out.',
    );
    const same = await run(services, 'maintenance.preflight', {
      startsAt: '2026-12-03T04:00:00Z',
      endsAt: '2026-12-03T06:00:00Z',
      tasks: ['update'],
      version: 'v1',
      message: 'Back soon!',
    });
    expect(same.output).toMatchObject({ update: false, playersMessage: 'Back soon!' });
    expect(same.lines).toContain('the fleet runs v1 already: no update');

    const { err } = await fails(services, 'maintenance.preflight', {
      startsAt: '2026-12-03T04:00:00Z',
      endsAt: '2026-12-03T06:00:00Z',
      tasks: ['db', 'update'],
      version: 'v9',
    });
    expect(err).toMatchObject({ code: 'input' });
    expect(err.message).toMatch(/^maintenance cannot start \(nothing was changed\): /);
    expect(err.message).toMatch(/mysql: not configured/);
    expect(err.message).toMatch(
      /version v9: unknown to the platform \(platform.versions lists v1, v2, slow, broken\)/,
    );
  });

  it('silence: an Alertmanager silence and a paging suppression until the end plus silence.after; found again, not doubled; unsilence ends both, twice is fine', async () => {
    const { alerts } = await openOps(resources);
    const endsAt = new Date(Date.now() + 3_600_000).toISOString();
    const first = await run(services, 'maintenance.silence', { window, endsAt }, 'run_silence');
    const out = first.output as {
      silenceId: string;
      suppressionId: string;
      endsAt: string;
      matchers: string[];
    };
    expect(out.matchers).toEqual(['alertname=~".+"']);
    expect(Date.parse(out.endsAt)).toBe(Date.parse(endsAt) + 600_000);
    const silence = (await alerts.silences.list()).find((s) => s.id === out.silenceId);
    expect(silence).toMatchObject({ state: 'active' });
    expect(silence?.comment).toBe(`gameops maintenance window ${window} until ${endsAt} (run run_silence)`);
    const suppression = (await alerts.windows.list()).find((w) => w.id === out.suppressionId);
    expect(suppression).toMatchObject({ active: true, name: `maintenance ${window}` });
    expect(await alerts.active({ alertname: 'GameServerDown' }, new Date())).toMatchObject({
      name: `maintenance ${window}`,
    });

    // The step run again (a resumed run) finds both instead of making new ones.
    const again = await run(services, 'maintenance.silence', { window, endsAt }, 'run_silence');
    expect(again.output).toMatchObject({ silenceId: out.silenceId, suppressionId: out.suppressionId });
    expect(again.lines.join('\n')).toMatch(/paging suppression found.*\n.*silence found/);
    const silenceAction = catalogAction('maintenance.silence');
    expect(
      await silenceAction.verify!(
        silenceAction.args.parse({ window, endsAt }),
        stepContext(services, { runId: 'run_silence' }),
      ),
    ).toBe('done');

    // Hold keeps them, and says how to reopen.
    const held = await run(services, 'maintenance.unsilence', { window, runId: 'run_silence', hold: true });
    expect(held.output).toEqual({ held: true, expired: [], ended: [] });
    expect(held.lines[0]).toMatch(new RegExp(`gameops run maintenance-reopen -p window=${window}`));
    expect((await alerts.silences.list()).find((s) => s.id === out.silenceId)?.state).toBe('active');

    const args = { window, runId: 'run_silence', silenceId: out.silenceId, suppressionId: out.suppressionId };
    const ended = await run(services, 'maintenance.unsilence', args);
    expect(ended.output).toEqual({ held: false, expired: [out.silenceId], ended: [out.suppressionId] });
    expect((await alerts.silences.list()).find((s) => s.id === out.silenceId)?.state).toBe('expired');
    expect(await alerts.active({ alertname: 'GameServerDown' }, new Date())).toBeUndefined();
    const twice = await run(services, 'maintenance.unsilence', args);
    expect(twice.output).toEqual({ held: false, expired: [], ended: [] });
    expect(twice.lines).toContain(`silence ${out.silenceId} had expired already`);
    const unsilence = catalogAction('maintenance.unsilence');
    expect(await unsilence.verify!(unsilence.args.parse(args), stepContext(services))).toBe('done');
    expect(unsilence.args.safeParse({}).error?.issues[0]?.message).toMatch(/give the window or the run/);
  });

  it('silence with Alertmanager down: fails, and takes back the paging suppression it made', async () => {
    // The same store and fleet, with Alertmanager at a port nothing listens on.
    const deadUrl = `http://127.0.0.1:${await closedPort()}`;
    const broken = createRunbookServices({
      ...resources,
      config: { ...resources.config, alertmanager: { ...resources.config.alertmanager!, url: deadUrl } },
      ops: undefined,
      opsOpening: undefined,
    });
    const { err, lines } = await fails(broken, 'maintenance.silence', {
      window,
      endsAt: new Date(Date.now() + 3_600_000).toISOString(),
    });
    expect(err).toMatchObject({ code: 'unavailable' });
    expect(lines.join('\n')).toMatch(/paging suppression .* ended again: the silence failed/);
    const { alerts } = await openOps(resources);
    expect(await alerts.active({ alertname: 'X' }, new Date())).toBeUndefined();
  });

  it('update: rolls to a version; a version failing readiness is rolled back before the step fails, naming it; revert-version puts the old one back', async () => {
    const fleet = await openFleet(resources);
    const versions = async () => [...new Set((await fleet.platform.instances()).map((i) => i.version))];
    await fleet.setGate({ closed: true, message: 'maintenance' });

    const good = await run(services, 'maintenance.update', { version: 'v2', previousVersion: 'v1' });
    expect(good.output).toMatchObject({ version: 'v2', replicas: 2 });
    expect(await versions()).toEqual(['v2']);
    // The new instances were told the gate is closed (the mini server answers with 404: it has no gate).
    expect(good.output['gate']).toMatchObject({ gate: { closed: true }, instances: [{}, {}] });
    const update = catalogAction('maintenance.update');
    expect(
      await update.verify!(
        update.args.parse({ version: 'v2', previousVersion: 'v1' }),
        stepContext(services),
      ),
    ).toBe('done');

    const { err, lines } = await fails(services, 'maintenance.update', {
      version: 'broken',
      previousVersion: 'v2',
    });
    expect(err).toMatchObject({ code: 'unavailable' });
    expect(err.message).toMatch(/^update to version broken failed: .*; the fleet is back on v2$/);
    expect(lines.join('\n')).toMatch(/version broken failed: .*; rolling back to v2/);
    expect(await versions()).toEqual(['v2']);
    expect((await fleet.status()).totals.ready).toBe(2);

    const revert = await run(services, 'maintenance.revert-version', {
      version: 'v2',
      previousVersion: 'v1',
    });
    expect(revert.output).toMatchObject({ changed: true, version: 'v1' });
    expect(await versions()).toEqual(['v1']);
    const noop = await run(services, 'maintenance.revert-version', { version: 'v2', previousVersion: 'v1' });
    expect(noop.output).toEqual({ version: 'v1', changed: false });
    await fleet.setGate({ closed: false });
  }, 90_000);

  it('reopen: opens the gate; with hold the gate stays closed and the log says how to reopen', async () => {
    const fleet = await openFleet(resources);
    await fleet.setGate({ closed: true, message: 'maintenance' });
    const held = await run(services, 'maintenance.reopen', { window, hold: true });
    expect(held.output).toMatchObject({ held: true, gate: { closed: true } });
    expect(held.lines[0]).toBe(
      `hold: maintenance stays on (gate closed) for a person to fix; when fixed: gameops run maintenance-reopen -p window=${window}`,
    );
    expect((await fleet.gate()).closed).toBe(true);
    const opened = await run(services, 'maintenance.reopen', { window, hold: false });
    expect(opened.output).toMatchObject({ held: false, gate: { closed: false }, restarted: [] });
    expect((await fleet.gate()).closed).toBe(false);
    // The mini game server has no gate endpoint: the instances that did not confirm are named.
    expect(opened.lines[0]).toMatch(
      /^gate open in the game config, but not every instance confirmed: game-0 \(/,
    );
  });

  it('preflight with no instance running: an update is refused (the version to go back to is unknown)', async () => {
    const fleet = await openFleet(resources);
    await fleet.platform.scale(0, { timeoutMs: 30_000 });
    const { err } = await fails(services, 'maintenance.preflight', {
      startsAt: '2026-12-03T04:00:00Z',
      endsAt: '2026-12-03T06:00:00Z',
      tasks: ['update'],
      version: 'v2',
    });
    expect(err.message).toMatch(
      /no instance runs, so the current version is unknown and a failed update to v2 could not be undone/,
    );
    const logsOnly = await run(services, 'maintenance.preflight', {
      startsAt: '2026-12-03T04:00:00Z',
      endsAt: '2026-12-03T06:00:00Z',
      tasks: ['logs'],
    });
    expect(logsOnly.output).toMatchObject({ previousVersion: null, instances: 0, update: false });
  });

  it('announce: every notices channel is told; one that fails is logged and the others still are', async () => {
    hooks = [];
    const told = await run(services, 'maintenance.announce', { message: 'Maintenance is over.' }, 'run_done');
    expect(told.output).toMatchObject({ sent: ['ops'], failed: [{ channel: 'broken' }] });
    expect(told.lines[0]).toBe('Maintenance is over.');
    expect(told.lines.join('\n')).toMatch(/could not tell broken: /);
    expect(hooks.some((h) => h.includes('Maintenance is over.'))).toBe(true);
  });

  it('reopen-target: refuses an unknown or scheduled window and a run that is not an ended maintenance run; a held window and an ended run pass', async () => {
    const store = resources.store!;
    const scope = {
      service: resources.config.service.name,
      environment: resources.config.service.environment,
    };
    const actor = { id: 'local:alice', name: 'alice', role: 'operator', kind: 'local' } as const;
    const now = new Date().toISOString();
    const planned = (id: string, startsAt: string) =>
      store.maintenance.create(
        scope,
        {
          id,
          name: 'maintenance',
          origin: 'adhoc',
          startsAt,
          endsAt: new Date(Date.parse(startsAt) + 3_600_000).toISOString(),
          timezone: 'UTC',
          tasks: ['logs'],
          hold: true,
          state: 'scheduled',
          createdBy: 'alice',
          createdAt: now,
          updatedAt: now,
        },
        actor,
      );
    const insert = (id: string, runbook: string, status: 'running' | 'failed') =>
      store.runs.transaction('test run', (tx) =>
        tx.insertRun(
          {
            id,
            ...scope,
            runbook,
            version: '1',
            definitionHash: 'x',
            params: {},
            status,
            trigger: 'cli',
            requestedBy: actor,
            createdAt: now,
            paused: false,
            cancelRequested: false,
            compensating: false,
            eventSeq: 0,
            revision: 0,
            updatedAt: now,
          },
          {},
        ),
      );
    await insert('run_reopen_ended', 'maintenance', 'failed');
    await insert('run_reopen_active', 'maintenance', 'running');
    await insert('run_reopen_other', 'daily-check', 'failed');

    const unknown = await fails(services, 'maintenance.reopen-target', {
      window: 'mw-20301203T0400Z-000000',
    });
    expect(unknown.err).toMatchObject({ code: 'not_found' });
    expect(unknown.err.message).toMatch(/^window mw-20301203T0400Z-000000: no such maintenance window/);

    const scheduled = await planned('mw-20301204T0400Z-aaaaaa', '2030-12-04T04:00:00.000Z');
    const early = await fails(services, 'maintenance.reopen-target', { window: scheduled.id });
    expect(early.err).toMatchObject({ code: 'conflict' });
    expect(early.err.message).toMatch(/it is scheduled; only a held or failed window/);

    const held = await planned('mw-20301205T0400Z-bbbbbb', '2030-12-05T04:00:00.000Z');
    await store.maintenance.transition(
      scope,
      held.id,
      ['scheduled'],
      { state: 'held', reason: 'db task failed' },
      actor,
      'maintenance.held',
    );
    const ok = await run(services, 'maintenance.reopen-target', {
      window: held.id,
      runId: 'run_reopen_ended',
    });
    expect(ok.output).toEqual({
      window: { id: held.id, state: 'held' },
      run: 'run_reopen_ended (failed)',
    });

    for (const [runId, pattern] of [
      ['run_nope', /^run run_nope: no run run_nope in /],
      ['run_reopen_active', /run run_reopen_active is still running; it reopens itself/],
      ['run_reopen_other', /is a daily-check run, not a maintenance run/],
    ] as const) {
      const refused = await fails(services, 'maintenance.reopen-target', { window: null, runId });
      expect(refused.err.message, runId).toMatch(pattern);
    }
  });
});
