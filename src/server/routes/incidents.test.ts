import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, openRunbooks, shutdown, type Resources } from '../../app/index.ts';
import type { Ops } from '../../app/ops.ts';
import { ManualClock } from '../../core/index.ts';
import { createIncidentService, type IncidentView } from '../../incidents/index.ts';
import { FakePager } from '../../incidents/test-support.ts';
import type { Role } from '../../runbooks/model.ts';
import { bearer, createToken } from '../../../test/support/auth.ts';
import { writeTestConfig } from '../../../test/support/config.ts';
import { buildServer, type GameopsServer } from '../index.ts';

interface Err {
  error: { code: string; message: string };
}

const EXTRA = `
people:
  - { id: alice, name: Alice }
  - { id: bob, name: Bob }
teams:
  - { id: dba, name: DBA Team, members: [bob] }
notifications:
  channels:
    - { name: status-page, kind: webhook, url: "https://status.example.com/hook" }
incidents:
  notices: { customers: [status-page] }
`;

describe('incidents API', () => {
  let resources: Resources;
  let server: GameopsServer;
  let pager: FakePager;
  const tokens = {} as Record<Role, string>;

  beforeAll(async () => {
    const { path } = writeTestConfig(EXTRA, { withServices: false });
    const clock = new ManualClock('2026-03-01T10:00:00Z');
    resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent', clock });
    pager = new FakePager();
    const incidents = createIncidentService({
      config: resources.config,
      store: resources.store!,
      clock,
      log: resources.log,
      pager,
      runs: () => openRunbooks(resources),
    });
    // openOps answers with what the resources hold: the incident service over a recording pager.
    resources.ops = { incidents } as unknown as Ops;
    server = await buildServer(resources);
    for (const role of ['viewer', 'responder'] as const)
      tokens[role] = await createToken(resources.store!, role, `test-${role}`);
  });
  afterAll(async () => {
    await server.close();
    resources.ops = undefined;
    await shutdown(resources);
  });

  const as = (
    role: Role,
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    url: string,
    payload?: object,
  ) => server.app.inject({ method, url, headers: bearer(tokens[role]), ...(payload ? { payload } : {}) });

  it('declares, lists, shows, acknowledges and moves an incident; 404 and 409 name the problem', async () => {
    const created = await as('responder', 'POST', '/api/incidents', {
      title: 'Login down',
      severity: 'p1',
      commander: 'alice',
    });
    expect(created.statusCode).toBe(201);
    expect(created.headers.location).toBe('/api/incidents/INC-1');
    expect(created.json()).toMatchObject({
      id: 'INC-1',
      severity: 'P1', // severities are accepted in any case
      status: 'declared',
      roles: { commander: { id: 'alice' } },
    });
    expect(pager.pageCalls[0]?.dedupKey).toBe('incident:INC-1');

    expect((await as('viewer', 'GET', '/api/incidents?open=true')).json()).toMatchObject({
      incidents: [{ id: 'INC-1' }],
    });
    const shown = await as('viewer', 'GET', '/api/incidents/inc-1');
    expect(shown.json()).toMatchObject({ id: 'INC-1', pages: [] });
    const missing = await as('viewer', 'GET', '/api/incidents/INC-99');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: { code: 'not_found', message: 'no incident INC-99' } });

    expect((await as('viewer', 'POST', '/api/incidents/INC-1/ack')).statusCode).toBe(403);
    const acked = await as('responder', 'POST', '/api/incidents/INC-1/ack');
    expect(acked.json()).toMatchObject({ status: 'investigating', acknowledgedBy: 'test-responder' });
    const back = await as('responder', 'POST', '/api/incidents/INC-1/status', { status: 'declared' });
    expect(back.statusCode).toBe(409);
    expect(back.json<Err>().error.message).toContain('INC-1 is investigating; it cannot go to declared');
  });

  it('describes every incident route in the OpenAPI document', async () => {
    const doc = await server.app.inject({ method: 'GET', url: '/api/openapi.json' });
    expect(doc.statusCode).toBe(200);
    const paths = Object.keys(doc.json<{ paths: Record<string, unknown> }>().paths);
    for (const p of ['/api/incidents', '/api/incidents/{id}/postmortem', '/api/incidents/{id}/timeline'])
      expect(paths).toContain(p);
  });

  it('refuses bad input with the field named', async () => {
    const badSeverity = await as('responder', 'POST', '/api/incidents', { title: 'x', severity: 'P7' });
    expect(badSeverity.statusCode).toBe(400);
    expect(badSeverity.json<Err>().error.message).toContain('severity');
    const badPerson = await as('responder', 'POST', '/api/incidents/INC-1/roles', {
      role: 'scribe',
      person: 'zed',
    });
    expect(badPerson.statusCode).toBe(400);
    expect(badPerson.json<Err>().error.message).toContain('"zed" is not a person in config people');
    expect((await as('viewer', 'GET', '/api/incidents/INC-x')).statusCode).toBe(400);
  });

  it('war room: roles, checklist, notes, status updates with notices, call-in, draft and timeline exports', async () => {
    await as('responder', 'POST', '/api/incidents/INC-1/roles', { role: 'communications', person: 'bob' });
    const ticked = await as('responder', 'POST', '/api/incidents/INC-1/checklist/first15Minutes-1', {
      done: true,
    });
    expect(ticked.json<IncidentView>().checklist[0]?.done?.by).toBe('test-responder');
    const note = await as('responder', 'POST', '/api/incidents/INC-1/notes', {
      text: '@SUM(1,2) pool maxed',
    });
    expect(note.statusCode).toBe(201);
    const draft = await as('viewer', 'GET', '/api/incidents/INC-1/updates/draft');
    expect(draft.json<{ text: string }>().text).toContain('pool maxed');
    const update = await as('responder', 'POST', '/api/incidents/INC-1/updates', {
      text: 'Mitigating',
      notify: ['customers'],
    });
    expect(update.json<IncidentView>().lastUpdateAt).toBeDefined();
    expect(pager.notes.some((n) => n.kind === 'notice' && n.to[0] && 'channel' in n.to[0])).toBe(true);
    const noChannels = await as('responder', 'POST', '/api/incidents/INC-1/notices', {
      audience: 'stakeholders',
      text: 'x',
    });
    expect(noChannels.statusCode).toBe(400);
    const callIn = await as('responder', 'POST', '/api/incidents/INC-1/call-in', {
      targets: [{ team: 'dba' }],
    });
    expect(callIn.json()).toMatchObject({ incidentId: 'INC-1', status: 'triggered' });

    const json = await as('viewer', 'GET', '/api/incidents/INC-1/timeline');
    expect(json.json<{ entries: Array<{ kind: string }> }>().entries.map((e) => e.kind)).toContain('call-in');
    const csv = await as('viewer', 'GET', '/api/incidents/INC-1/timeline?format=csv');
    expect(csv.headers['content-type']).toContain('text/csv');
    expect(csv.body).toContain(`,"'@SUM(1,2) pool maxed",`);
    const md = await as('viewer', 'GET', '/api/incidents/INC-1/timeline?format=markdown');
    expect(md.body).toContain('# Timeline: INC-1 Login down');
  });

  it('runs a runbook from the incident and links the run; an unknown runbook is 404', async () => {
    const started = await as('responder', 'POST', '/api/incidents/INC-1/runs', {
      runbook: 'daily-check',
      idempotencyKey: 'inc-1-daily',
    });
    expect(started.statusCode).toBe(201);
    const run = started.json<{ id: string; runbook: string; reason?: string }>();
    expect(run.runbook).toBe('daily-check');
    const again = await as('responder', 'POST', '/api/incidents/INC-1/runs', {
      runbook: 'daily-check',
      idempotencyKey: 'inc-1-daily',
    });
    expect(again.json<{ id: string }>().id).toBe(run.id);
    const shown = await as('viewer', 'GET', '/api/incidents/INC-1');
    expect(shown.json<IncidentView>().runs.map((r) => r.runId)).toEqual([run.id]);
    const timeline = await as('viewer', 'GET', '/api/incidents/INC-1/timeline');
    const kinds = timeline.json<{ entries: Array<{ kind: string; runId?: string }> }>().entries;
    expect(kinds.filter((e) => e.kind === 'runbook-run').length).toBeGreaterThanOrEqual(1);
    const unknown = await as('responder', 'POST', '/api/incidents/INC-1/runs', {
      runbook: 'no-such-runbook',
    });
    expect(unknown.statusCode).toBe(404);
  });

  it('post-mortem: generated, edited on a base version (stale is 409), action items CRUD', async () => {
    // Before the resolve, a viewer's GET shows an unsaved draft: reading never writes a version.
    for (let i = 0; i < 2; i++)
      expect((await as('viewer', 'GET', '/api/incidents/INC-1/postmortem')).json()).toMatchObject({
        version: 0,
        history: [],
      });
    await as('responder', 'POST', '/api/incidents/INC-1/status', { status: 'resolved' });
    const pm = await as('viewer', 'GET', '/api/incidents/INC-1/postmortem');
    expect(pm.json()).toMatchObject({ version: 1, kind: 'generated' });
    const markdown = pm
      .json<{ markdown: string }>()
      .markdown.replace(/## Lessons Learned\n[^#]*/, '## Lessons Learned\n1. Alert earlier\n\n');
    const saved = await as('responder', 'PUT', '/api/incidents/INC-1/postmortem', {
      baseVersion: 1,
      markdown,
    });
    expect(saved.json()).toMatchObject({ version: 2, edited: ['Lessons Learned'] });
    const stale = await as('responder', 'PUT', '/api/incidents/INC-1/postmortem', {
      baseVersion: 1,
      markdown,
    });
    expect(stale.statusCode).toBe(409);

    const item = await as('responder', 'POST', '/api/incidents/INC-1/action-items', {
      title: 'Pool metrics',
      owner: { team: 'dba' },
      dueDate: '2026-03-10',
    });
    expect(item.statusCode).toBe(201);
    const id = item.json<{ id: string }>().id;
    const badDate = await as('responder', 'POST', '/api/incidents/INC-1/action-items', {
      title: 'x',
      dueDate: 'tomorrow',
    });
    expect(badDate.statusCode).toBe(400);
    const done = await as('responder', 'PATCH', `/api/incidents/INC-1/action-items/${id}`, {
      status: 'done',
    });
    expect(done.json()).toMatchObject({ status: 'done', doneBy: 'test-responder' });
    const regen = await as('responder', 'POST', '/api/incidents/INC-1/postmortem/regenerate');
    expect(regen.json<{ markdown: string }>().markdown).toContain('1. Alert earlier');
    expect(regen.json<{ markdown: string }>().markdown).toContain(
      '- [x] Pool metrics (Owner: DBA Team, Due: 2026-03-10, Status: done)',
    );
    expect((await as('responder', 'DELETE', `/api/incidents/INC-1/action-items/${id}`)).statusCode).toBe(204);
    expect((await as('viewer', 'GET', '/api/incidents/INC-1/action-items')).json()).toEqual({ items: [] });
  });
});
