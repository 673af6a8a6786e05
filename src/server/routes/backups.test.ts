import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authHeaders } from '../../../test/support/auth.ts';
import { backupKey, backupsSection, bootstrapIn, type BackupKey } from '../../../test/support/backups.ts';
import { openBackups } from '../../app/backups.ts';
import { shutdown, type Resources } from '../../app/index.ts';
import { buildServer, type GameopsServer } from '../index.ts';

describe('backups API', () => {
  let dir: string;
  let resources: Resources;
  let server: GameopsServer;
  let key: BackupKey;
  let setId: string;
  const bodies: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gameops-backups-api-'));
    mkdirSync(join(dir, 'game'));
    writeFileSync(join(dir, 'game', 'config.yaml'), 'motd: hi\n');
    key = await backupKey();
    resources = await bootstrapIn(dir, backupsSection(dir, key));
    server = await buildServer(resources);
    const set = await (
      await openBackups(resources)
    ).create({
      by: { id: 'local:t', name: 't', role: 'admin', kind: 'local' },
    });
    setId = set.id;
  });

  afterAll(async () => {
    await server?.close();
    if (resources) await shutdown(resources);
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(
    method: 'GET' | 'POST',
    url: string,
    role?: 'viewer' | 'responder' | 'operator',
    body?: unknown,
  ) {
    const res = await server.app.inject({
      method,
      url,
      ...(role ? { headers: await authHeaders(resources, role) } : {}),
      ...(body !== undefined ? { payload: body as Record<string, unknown> } : {}),
    });
    bodies.push(res.body);
    return res;
  }

  it('lists the sets to a viewer (state, age, size, components), not without a token', async () => {
    expect((await call('GET', '/api/backups')).statusCode).toBe(401);
    const res = await call('GET', '/api/backups', 'viewer');
    expect(res.statusCode).toBe(200);
    const { backups } = res.json<{ backups: Array<Record<string, unknown>> }>();
    expect(backups).toHaveLength(1);
    expect(backups[0]).toMatchObject({
      id: setId,
      status: 'complete',
      state: 'complete',
      components: ['files'],
      verify: null,
      drill: null,
    });
    expect(backups[0]!['sizeBytes']).toBeGreaterThan(0);
  });

  it('shows one set with its manifest summary', async () => {
    const res = await call('GET', `/api/backups/${setId}`, 'viewer');
    expect(res.statusCode).toBe(200);
    const detail = res.json<{
      manifest: { components: Array<Record<string, unknown>>; encryption: unknown };
    }>();
    expect(detail).toMatchObject({ id: setId, status: 'complete', lastDrill: null });
    expect(detail.manifest.encryption).toEqual({
      kind: 'age',
      recipients: [key.recipient],
    });
    expect(detail.manifest.components).toEqual([
      expect.objectContaining({ kind: 'files', objects: expect.any(Number) as unknown }),
    ]);
  });

  it('answers 400 naming a malformed id and 404 for an unknown one', async () => {
    for (const bad of ['bk-bad', '..%2F..%2Fetc']) {
      const res = await call('GET', `/api/backups/${bad}`, 'viewer');
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: { message: string } }>().error.message).toContain(decodeURIComponent(bad));
    }
    const unknown = await call('GET', '/api/backups/bk-20200101T000000Z-abcdef', 'viewer');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ error: { message: string } }>().error.message).toContain(
      'bk-20200101T000000Z-abcdef',
    );
    const restoreUnknown = await call(
      'POST',
      '/api/backups/bk-20200101T000000Z-abcdef/restore',
      'operator',
      {},
    );
    expect(restoreUnknown.statusCode).toBe(404);
  });

  it('refuses a target that is not configured or a component not in the set (400) before a run starts', async () => {
    const count = async () =>
      (
        await resources.store!.runs.listRuns({
          service: resources.config.service.name,
          environment: resources.config.service.environment,
          limit: 500,
        })
      ).length;
    const before = await count();
    const message = (res: { json: <T>() => T }) => res.json<{ error: { message: string } }>().error.message;
    const target = await call('POST', `/api/backups/${setId}/restore`, 'operator', { target: 'staging' });
    expect(target.statusCode).toBe(400);
    expect(message(target)).toBe(
      'no restore target "staging": use original or one of backups.targets (none configured)',
    );
    const component = await call('POST', `/api/backups/${setId}/restore`, 'operator', {
      components: ['mysql'],
    });
    expect(component.statusCode).toBe(400);
    expect(message(component)).toBe(`backup ${setId} has no mysql component (it has files)`);
    const drill = await call('POST', `/api/backups/${setId}/drill`, 'operator', { components: ['redis'] });
    expect(drill.statusCode).toBe(400);
    expect(message(drill)).toContain('has no redis component');
    for (const what of ['verify', 'drill'])
      expect(
        (await call('POST', `/api/backups/bk-20200101T000000Z-abcdef/${what}`, 'operator', {})).statusCode,
      ).toBe(404);
    expect(await count()).toBe(before);
  });

  it('lists last verified restorable per component', async () => {
    const res = await call('GET', '/api/backups/restorable', 'viewer');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ restorable: [] });
  });

  it('starts the backup runbook (202 with the run) for an operator, not a viewer', async () => {
    expect((await call('POST', '/api/backups', 'viewer', {})).statusCode).toBe(403);
    const res = await call('POST', '/api/backups', 'operator', { components: ['files'] });
    expect(res.statusCode).toBe(202);
    const started = res.json<{ runId: string; runbook: string; location: string }>();
    expect(started.runbook).toBe('backup');
    expect(res.headers['location']).toBe(`/api/runs/${started.runId}`);
    const run = await call('GET', started.location, 'viewer');
    expect(run.json()).toMatchObject({ runbook: 'backup', params: { components: ['files'], prune: true } });
  });

  it('starts verify, drill and restore runs; restore needs operator and waits for its approval inside the run', async () => {
    for (const what of ['verify', 'drill'] as const) {
      const res = await call('POST', `/api/backups/${setId}/${what}`, 'operator', {});
      expect(res.statusCode).toBe(202);
      expect(res.json()).toMatchObject({ runbook: what === 'verify' ? 'backup-verify' : 'backup-drill' });
    }
    expect((await call('POST', `/api/backups/${setId}/restore`, 'responder', {})).statusCode).toBe(403);
    const res = await call('POST', `/api/backups/${setId}/restore`, 'operator', { target: 'original' });
    expect(res.statusCode).toBe(202);
    const started = res.json<{ runId: string }>();
    const run = await call('GET', `/api/runs/${started.runId}`, 'viewer');
    expect(run.json()).toMatchObject({
      runbook: 'backup-restore',
      params: { id: setId, target: 'original', components: null },
    });
  });

  it('a restore started for an incident is linked into its timeline', async () => {
    const { openOps } = await import('../../app/ops.ts');
    const ops = await openOps(resources);
    const incident = await ops.incidents.declare(
      { title: 'players lost progress', severity: 'P2', page: false },
      { id: 'local:t', name: 't', role: 'admin', kind: 'local' },
    );
    const res = await call('POST', `/api/backups/${setId}/restore`, 'operator', { incident: incident.id });
    expect(res.statusCode).toBe(202);
    const { runId } = res.json<{ runId: string }>();
    const timeline = await ops.incidents.timeline(incident.id);
    expect(timeline.map((e) => e.message)).toContainEqual(
      expect.stringContaining(`runbook backup-restore started (run ${runId})`),
    );
    const bad = await call('POST', `/api/backups/${setId}/restore`, 'operator', { incident: '../1' });
    expect(bad.statusCode).toBe(400);
  });

  it('is described in the OpenAPI document', async () => {
    const res = await server.app.inject({ method: 'GET', url: '/api/openapi.json' });
    const paths = Object.keys(res.json<{ paths: Record<string, unknown> }>().paths);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/api/backups',
        '/api/backups/restorable',
        '/api/backups/{id}',
        '/api/backups/{id}/verify',
        '/api/backups/{id}/drill',
        '/api/backups/{id}/restore',
      ]),
    );
  });

  it('never answers the decryption key', () => {
    const secret = key.identity.slice('AGE-SECRET-KEY-1'.length);
    for (const body of bodies) expect(body).not.toContain(secret);
    expect(bodies.length).toBeGreaterThan(10);
  });
});
