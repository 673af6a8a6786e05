import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { bootstrap, secretMasker, shutdown, type Resources } from '../app/index.ts';
import { ConflictError, InputError, ManualClock, NotAllowedError, NotFoundError } from '../core/index.ts';
import { createAccessPolicy } from '../identity/index.ts';
import { createCatalog, createRunbookServices } from '../runbooks/actions/index.ts';
import { compileRunbook } from '../runbooks/compile.ts';
import { createEngine, type Engine } from '../runbooks/engine.ts';
import { createLibrary } from '../runbooks/library.ts';
import type { ActionDefinition, RunEvent, RunView } from '../runbooks/model.ts';
import { bearer, createToken } from '../../test/support/auth.ts';
import { postgresPlace, type Cleanups } from '../../test/support/store-places.ts';
import { createApiClient, parseEventStream } from '../cli/api-client.ts';
import { createServerContext } from './context.ts';
import { installAuth } from './auth.ts';
import { errorHandler } from './errors.ts';
import { buildServer, type GameopsServer } from './index.ts';
import { runRoutes } from './routes/runs.ts';

/** What the test actions did: `test.record` calls, and whether `test.flaky` fails. */
interface TestWorld {
  recorded: Array<{ replicas: number }>;
  flakyFails: boolean;
}

/** A mutating, non-idempotent action that records its calls (the thing an approval protects). */
function recordAction(world: TestWorld): ActionDefinition {
  const args = z.strictObject({ replicas: z.number().int().min(1).max(20) });
  return {
    name: 'test.record',
    description: 'Records the replicas it was asked for.',
    effect: 'mutating',
    idempotent: false,
    args,
    target: () => 'recorder test/world',
    async run(a, ctx) {
      const { replicas } = a as z.infer<typeof args>;
      ctx.log(`recording ${replicas}`);
      world.recorded.push({ replicas });
      return Promise.resolve({ replicas });
    },
  };
}

/** Fails (not retryably) while `world.flakyFails`: the "fix" a retry-from-step follows. */
function flakyAction(world: TestWorld): ActionDefinition {
  return {
    name: 'test.flaky',
    description: 'Fails while the world says so.',
    effect: 'read-only',
    idempotent: true,
    args: z.strictObject({}),
    target: () => 'nothing',
    async run(_a, ctx) {
      ctx.log('trying');
      if (world.flakyFails) throw new InputError('the flaky thing is broken');
      return Promise.resolve({ fixed: true });
    },
  };
}

const RUNBOOKS = [
  {
    name: 'scale-up',
    title: 'Scale up after a look',
    runBy: ['operator'],
    params: {
      replicas: { type: 'integer', minimum: 1, maximum: 20, required: true, description: 'target size' },
      note: { type: 'string', default: 'none' },
    },
    steps: [
      { id: 'look', action: 'noop', args: { message: 'looking before scaling to ${{ params.replicas }}' } },
      {
        id: 'ok',
        approval: { covers: ['change'], approvers: ['operator'], fourEyes: true, expiresIn: '10m' },
      },
      { id: 'change', action: 'test.record', args: { replicas: '${{ params.replicas }}' } },
      { id: 'done', action: 'noop', args: { message: 'done' } },
    ],
  },
  {
    name: 'flaky',
    runBy: ['operator'],
    steps: [
      { id: 'first', action: 'noop', args: { message: 'first' } },
      { id: 'breaks', action: 'test.flaky' },
      { id: 'after', action: 'noop', args: { message: 'after' } },
    ],
  },
  {
    name: 'tick',
    runBy: ['operator'],
    steps: [
      { id: 'read', manual: { instructions: 'Read the dashboard', evidence: 'optional' } },
      { id: 'after', action: 'noop' },
    ],
  },
  {
    name: 'chatty',
    runBy: ['operator'],
    steps: [
      { id: 'one', action: 'noop', args: { message: 'line one' } },
      { id: 'two', action: 'noop', args: { message: 'line two' } },
      { id: 'three', action: 'noop', args: { message: 'line three' } },
    ],
  },
];

interface Harness {
  resources: Resources;
  engine: Engine;
  world: TestWorld;
  clock: ManualClock;
  alice: { authorization: string };
  bob: { authorization: string };
  viewer: { authorization: string };
  tokens: { alice: string; bob: string };
}

type Backend = 'sqlite' | 'postgres';
const dropDatabases: Cleanups = [];

/** A fresh database on the shared PostgreSQL, dropped after the file's tests. */
async function postgresUrl(): Promise<string> {
  return String((await postgresPlace(dropDatabases)).options.url);
}

afterAll(async () => {
  for (const drop of dropDatabases) await drop();
});

/**
 * Resources with a real store (embedded SQLite, or a fresh PostgreSQL database whose URL is a `file:`
 * secret) and a real engine over the test runbooks (injected as the engine).
 */
async function harness(backend: Backend = 'sqlite'): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-runs-'));
  const path = join(dir, 'gameops.yaml');
  let database = `database: { dataDir: ${join(dir, 'data')} }`;
  if (backend === 'postgres') {
    writeFileSync(join(dir, 'db-url'), await postgresUrl(), { mode: 0o600 });
    database = `database: { dataDir: ${join(dir, 'data')}, url: "file:${join(dir, 'db-url')}" }`;
  }
  writeFileSync(path, ['service: { name: runs-test, environment: test }', database].join('\n'));
  const clock = new ManualClock('2026-03-02T10:00:00Z');
  const resources = await bootstrap({ configPath: path, store: 'required', clock, logLevel: 'silent' });
  const world: TestWorld = { recorded: [], flakyFails: true };
  const catalog = createCatalog({ actions: [recordAction(world), flakyAction(world)] });
  const library = createLibrary(RUNBOOKS.map((rb) => compileRunbook(rb, catalog, { kind: 'builtin' })));
  const store = resources.store!;
  const engine = createEngine({
    store,
    clock,
    catalog,
    library,
    policy: createAccessPolicy(resources.config),
    services: createRunbookServices(resources),
    scope: { service: 'runs-test', environment: 'test' },
    leaseTtlMs: 8000,
    mask: secretMasker(resources.config),
    log: resources.log,
  });
  resources.engine = engine;
  const aliceToken = await createToken(store, 'operator', 'alice');
  const bobToken = await createToken(store, 'operator', 'bob');
  return {
    resources,
    engine,
    world,
    clock,
    alice: bearer(aliceToken),
    bob: bearer(bobToken),
    viewer: bearer(await createToken(store, 'viewer', 'victor')),
    tokens: { alice: aliceToken, bob: bobToken },
  };
}

describe.each(['sqlite', 'postgres'] as const)(
  'runbook and run API (real %s store, real engine)',
  (backend) => {
    let h: Harness;
    let server: GameopsServer;

    beforeAll(async () => {
      h = await harness(backend);
      expect(h.resources.store?.backend).toBe(backend);
      server = await buildServer(h.resources);
    });
    afterAll(async () => {
      await server.close();
      await shutdown(h.resources);
    });

    const inject = (
      method: 'GET' | 'POST',
      url: string,
      who: { authorization: string },
      payload?: unknown,
      headers: Record<string, string> = {},
    ) =>
      server.app.inject({
        method,
        url,
        headers: { ...who, ...headers },
        ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
      });

    /** Starts a run as `who` and lets the engine move it until it needs a person or ends. */
    async function startAndSettle(
      runbook: string,
      params: Record<string, unknown>,
      who = h.alice,
    ): Promise<RunView> {
      const res = await inject('POST', '/api/runs', who, { runbook, params });
      expect(res.statusCode, res.body).toBe(201);
      const started = res.json<RunView>();
      expect(res.headers.location).toBe(`/api/runs/${started.id}`);
      return (await h.engine.runUntilIdle({ runId: started.id }))!;
    }

    it('lists runbooks and shows one with its steps and approval rules', async () => {
      const list = await inject('GET', '/api/runbooks', h.viewer);
      expect(list.statusCode).toBe(200);
      const names = list.json<{ runbooks: Array<{ name: string }> }>().runbooks.map((r) => r.name);
      expect(names).toEqual(['chatty', 'flaky', 'scale-up', 'tick']);
      const one = await inject('GET', '/api/runbooks/scale-up', h.viewer);
      expect(one.statusCode).toBe(200);
      const info = one.json<{
        paramsJsonSchema: { properties: Record<string, unknown> };
        steps: Array<{ id: string; kind: string; action?: string; effect?: string; approvers?: string[] }>;
      }>();
      expect(Object.keys(info.paramsJsonSchema.properties)).toEqual(['replicas', 'note']);
      expect(info.steps.find((s) => s.id === 'change')).toMatchObject({
        kind: 'action',
        action: 'test.record',
        effect: 'mutating',
      });
      expect(info.steps.find((s) => s.id === 'ok')).toMatchObject({
        kind: 'approval',
        covers: ['change'],
        approvers: ['operator'],
        fourEyes: true,
      });
    });

    it('answers 404 naming an unknown runbook, 401 without a token', async () => {
      const res = await inject('GET', '/api/runbooks/no-such-thing', h.viewer);
      expect(res.statusCode).toBe(404);
      expect(res.json<{ error: { message: string } }>().error.message).toContain(
        'unknown runbook "no-such-thing"',
      );
      const start = await inject('POST', '/api/runs', h.alice, { runbook: 'no-such-thing', params: {} });
      expect(start.statusCode).toBe(404);
      expect(start.body).toContain('no-such-thing');
      const anonymous = await server.app.inject({ method: 'GET', url: '/api/runbooks' });
      expect(anonymous.statusCode).toBe(401);
    });

    it('dry-runs a plan with exact targets and arguments, running nothing', async () => {
      const res = await inject('POST', '/api/runbooks/scale-up/plan', h.viewer, { params: { replicas: 6 } });
      expect(res.statusCode, res.body).toBe(200);
      const plan = res.json<{
        steps: Array<{ id: string; target?: string; args?: unknown; approvedBy?: string }>;
      }>();
      expect(plan.steps.find((s) => s.id === 'change')).toMatchObject({
        target: 'recorder test/world',
        args: { replicas: 6 },
        approvedBy: 'ok',
      });
      expect(h.world.recorded).toEqual([]);
      const runs = await inject('GET', '/api/runs?runbook=scale-up', h.viewer);
      expect(runs.json<{ runs: unknown[] }>().runs).toEqual([]);
    });

    it('refuses parameters that fail the schema with 400 naming the field', async () => {
      for (const [url, body] of [
        ['/api/runbooks/scale-up/plan', { params: { replicas: 99 } }],
        ['/api/runs', { runbook: 'scale-up', params: { replicas: 'many' } }],
        ['/api/runs', { runbook: 'scale-up', params: {} }],
      ] as const) {
        const res = await inject('POST', url, h.alice, body);
        expect(res.statusCode, url).toBe(400);
        expect(res.json<{ error: { message: string } }>().error.message).toContain('params.replicas');
      }
      const extra = await inject('POST', '/api/runs', h.alice, { runbook: 'scale-up', params: {}, extra: 1 });
      expect(extra.statusCode).toBe(400);
      const badStatus = await inject('GET', '/api/runs?status=done', h.viewer);
      expect(badStatus.statusCode).toBe(400);
      expect(badStatus.json<{ error: { message: string } }>().error.message).toContain(
        'querystring.status: "done" is not a run status',
      );
    });

    it('runs to an approval; four-eyes, a stale plan hash and an unknown step are refused; then it finishes', async () => {
      const waiting = await startAndSettle('scale-up', { replicas: 4 });
      expect(waiting.status).toBe('waiting');
      const ok = waiting.steps.find((s) => s.id === 'ok')!;
      expect(ok.status).toBe('waiting');
      const hash = ok.approval!.planHash;
      expect(ok.approval!.covers).toMatchObject([
        { id: 'change', target: 'recorder test/world', args: { replicas: 4 } },
      ]);

      const url = `/api/runs/${waiting.id}/approvals/ok`;
      const self = await inject('POST', url, h.alice, { decision: 'approve', planHash: hash });
      expect(self.statusCode).toBe(403);
      expect(self.body).toContain('four eyes');
      const stale = await inject('POST', url, h.bob, { decision: 'approve', planHash: 'b'.repeat(64) });
      expect(stale.statusCode).toBe(409);
      const unknown = await inject('POST', `/api/runs/${waiting.id}/approvals/nope`, h.bob, {
        decision: 'approve',
        planHash: hash,
      });
      expect(unknown.statusCode).toBe(404);
      expect(unknown.body).toContain('no step nope');
      const malformed = await inject('POST', url, h.bob, { decision: 'approve', planHash: 'short' });
      expect(malformed.statusCode).toBe(400);
      expect(malformed.body).toContain('body.planHash');
      expect(h.world.recorded).toEqual([]);

      const approved = await inject('POST', url, h.bob, {
        decision: 'approve',
        planHash: hash,
        comment: 'go',
      });
      expect(approved.statusCode, approved.body).toBe(200);
      const done = (await h.engine.runUntilIdle({ runId: waiting.id }))!;
      expect(done.status).toBe('succeeded');
      expect(h.world.recorded).toEqual([{ replicas: 4 }]);
      const shown = await inject('GET', `/api/runs/${waiting.id}`, h.viewer);
      const approval = shown.json<RunView>().steps.find((s) => s.id === 'ok')!.approval!;
      expect(approval).toMatchObject({ decision: 'approved', comment: 'go', decidedBy: { name: 'bob' } });
    });

    it('refuses an approval whose request expired (409)', async () => {
      const waiting = await startAndSettle('scale-up', { replicas: 3 });
      const hash = waiting.steps.find((s) => s.id === 'ok')!.approval!.planHash;
      h.clock.advance(11 * 60_000);
      const res = await inject('POST', `/api/runs/${waiting.id}/approvals/ok`, h.bob, {
        decision: 'approve',
        planHash: hash,
      });
      expect(res.statusCode).toBe(409);
      expect(res.body).toContain('expired');
      await inject('POST', `/api/runs/${waiting.id}/cancel`, h.alice, { reason: 'expired' });
    });

    it('a viewer may read but not start', async () => {
      const res = await inject('POST', '/api/runs', h.viewer, { runbook: 'chatty', params: {} });
      expect(res.statusCode).toBe(403);
      expect(res.body).toContain('run chatty');
    });

    it('retries a failed run from the failed step after a fix', async () => {
      h.world.flakyFails = true;
      const failed = await startAndSettle('flaky', {});
      expect(failed.status).toBe('failed');
      expect(failed.steps.find((s) => s.id === 'breaks')).toMatchObject({
        status: 'failed',
        error: { code: 'input', message: expect.stringContaining('broken') as unknown },
      });
      const unknown = await inject('POST', `/api/runs/${failed.id}/retry`, h.alice, { from: 'nope' });
      expect(unknown.statusCode).toBe(404);
      h.world.flakyFails = false;
      const res = await inject('POST', `/api/runs/${failed.id}/retry`, h.alice, { from: 'breaks' });
      expect(res.statusCode, res.body).toBe(200);
      const done = (await h.engine.runUntilIdle({ runId: failed.id }))!;
      expect(done.status).toBe('succeeded');
      expect(done.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    });

    it('ticks a manual step; pause, resume and cancel answer with the run', async () => {
      const waiting = await startAndSettle('tick', {});
      expect(waiting.status).toBe('waiting');
      const paused = await inject('POST', `/api/runs/${waiting.id}/pause`, h.alice);
      expect(paused.statusCode, paused.body).toBe(200);
      expect(paused.json<RunView>().status).toBe('paused');
      const resumed = await inject('POST', `/api/runs/${waiting.id}/resume`, h.alice, {});
      expect(resumed.statusCode, resumed.body).toBe(200);
      await h.engine.runUntilIdle({ runId: waiting.id });
      const ticked = await inject('POST', `/api/runs/${waiting.id}/steps/read/complete`, h.alice, {
        note: 'all green',
        evidence: 'https://grafana.example/d/1',
      });
      expect(ticked.statusCode, ticked.body).toBe(200);
      expect((await h.engine.runUntilIdle({ runId: waiting.id }))!.status).toBe('succeeded');

      // Runs are listed by creation time: the clock moves so the two are ordered.
      h.clock.advance(1000);
      const other = await startAndSettle('tick', {});
      const cancelled = await inject('POST', `/api/runs/${other.id}/cancel`, h.alice, {
        reason: 'not needed',
      });
      expect(cancelled.statusCode, cancelled.body).toBe(200);
      expect(cancelled.json<RunView>().status).toBe('cancelled');
      const verifyWrong = await inject('POST', `/api/runs/${other.id}/steps/read/verify`, h.alice, {
        outcome: 'done',
      });
      expect(verifyWrong.statusCode).toBe(409);
    });

    it('lists runs newest first with filters and paging', async () => {
      const res = await inject('GET', '/api/runs?runbook=tick&limit=1', h.viewer);
      expect(res.statusCode).toBe(200);
      const [newest] = res.json<{ runs: Array<{ id: string; status: string }> }>().runs;
      expect(newest?.status).toBe('cancelled');
      const older = await inject('GET', `/api/runs?runbook=tick&before=${newest!.id}`, h.viewer);
      expect(older.json<{ runs: Array<{ status: string }> }>().runs.map((r) => r.status)).toEqual([
        'succeeded',
      ]);
      const failedOnly = await inject('GET', '/api/runs?status=cancelled,failed', h.viewer);
      for (const r of failedOnly.json<{ runs: Array<{ status: string }> }>().runs)
        expect(['cancelled', 'failed']).toContain(r.status);
    });

    it('gives events as JSON (long poll) with Accept: application/json', async () => {
      const run = await startAndSettle('chatty', {});
      const res = await inject('GET', `/api/runs/${run.id}/events?after=0`, h.viewer, undefined, {
        accept: 'application/json',
      });
      expect(res.statusCode).toBe(200);
      const events = res.json<{ events: RunEvent[] }>().events;
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.filter((e) => e.type === 'log').map((e) => e.message)).toEqual([
        'line one',
        'line two',
        'line three',
      ]);
      const after = await inject(
        'GET',
        `/api/runs/${run.id}/events?after=${events.length}&waitMs=10`,
        h.viewer,
        undefined,
        {
          accept: 'application/json',
        },
      );
      expect(after.json<{ events: RunEvent[] }>().events).toEqual([]);
    });

    it('documents every run route in /api/openapi.json', async () => {
      const doc = (await server.app.inject({ method: 'GET', url: '/api/openapi.json' })).json<{
        paths: Record<string, Record<string, unknown>>;
      }>();
      for (const [path, method] of [
        ['/api/runbooks', 'get'],
        ['/api/runbooks/{name}', 'get'],
        ['/api/runbooks/{name}/plan', 'post'],
        ['/api/runs', 'post'],
        ['/api/runs', 'get'],
        ['/api/runs/{id}', 'get'],
        ['/api/runs/{id}/events', 'get'],
        ['/api/runs/{id}/approvals/{step}', 'post'],
        ['/api/runs/{id}/steps/{step}/complete', 'post'],
        ['/api/runs/{id}/steps/{step}/verify', 'post'],
        ['/api/runs/{id}/cancel', 'post'],
        ['/api/runs/{id}/pause', 'post'],
        ['/api/runs/{id}/resume', 'post'],
        ['/api/runs/{id}/retry', 'post'],
      ] as const)
        expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
    });
  },
);

/** Reads server-sent events from a real HTTP response until it ends or `until` says stop. */
async function readEvents(
  url: string,
  headers: Record<string, string>,
  options: { signal?: AbortSignal; until?: (e: RunEvent) => boolean } = {},
): Promise<{ events: RunEvent[]; ended: boolean; status: number; raw: string[] }> {
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal });
  const events: RunEvent[] = [];
  const raw: string[] = [];
  if (!res.ok || !res.body) return { events, ended: true, status: res.status, raw };
  try {
    for await (const e of parseEventStream(res.body)) {
      raw.push(`${e.event ?? ''}:${e.id ?? ''}`);
      if (e.event === 'error') throw new Error(e.data);
      const event = JSON.parse(e.data ?? '{}') as RunEvent;
      expect(e.id).toBe(String(event.seq));
      expect(e.event).toBe(event.type);
      events.push(event);
      if (options.until?.(event)) {
        controller.abort();
        return { events, ended: false, status: res.status, raw };
      }
    }
  } catch (err) {
    if (signal.aborted) return { events, ended: false, status: res.status, raw };
    throw err;
  }
  return { events, ended: true, status: res.status, raw };
}

function connections(server: GameopsServer): Promise<number> {
  return new Promise((resolve, reject) =>
    server.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}

describe('run events over a real HTTP connection (server-sent events)', () => {
  let h: Harness;
  let server: GameopsServer;
  let base: string;
  const working = new AbortController();
  let worker: Promise<void>;

  beforeAll(async () => {
    h = await harness();
    server = await buildServer(h.resources);
    base = await server.app.listen({ host: '127.0.0.1', port: 0 });
    // The worker `gameops serve` runs: runs proceed on their own.
    worker = h.engine.work(working.signal);
  });
  afterAll(async () => {
    working.abort();
    await worker;
    await server.close();
    await shutdown(h.resources);
  });

  it('streams every event in order and ends when the run is terminal; Last-Event-ID resumes', async () => {
    const client = createApiClient({ url: base, token: h.tokens.alice });
    const started = await client.start({ runbook: 'chatty', params: {}, trigger: 'api' }, undefined as never);
    const all = await readEvents(`${base}/api/runs/${started.id}/events`, h.alice);
    expect(all.status).toBe(200);
    expect(all.ended).toBe(true);
    expect(all.events.map((e) => e.seq)).toEqual(all.events.map((_, i) => i + 1));
    expect(all.events.at(-1)).toMatchObject({ type: 'run', status: 'succeeded' });
    expect(all.events.filter((e) => e.type === 'log').map((e) => e.message)).toEqual([
      'line one',
      'line two',
      'line three',
    ]);

    const from = 3;
    const resumed = await readEvents(`${base}/api/runs/${started.id}/events`, {
      ...h.alice,
      'last-event-id': String(from),
    });
    expect(resumed.ended).toBe(true);
    expect(resumed.events).toEqual(all.events.slice(from));
    const reconnected = await readEvents(`${base}/api/runs/${started.id}/events?after=1`, {
      ...h.alice,
      'last-event-id': String(from),
    });
    expect(reconnected.events).toEqual(all.events.slice(from));
    const viaQuery = await readEvents(
      `${base}/api/runs/${started.id}/events?after=${all.events.length}`,
      h.alice,
    );
    expect(viaQuery).toMatchObject({ ended: true, events: [] });

    // The client's stream (what `gameops run --follow` reads) sees the same events.
    const streamed: RunEvent[] = [];
    for await (const e of client.stream(started.id, 0, AbortSignal.timeout(10_000))) streamed.push(e);
    expect(streamed).toEqual(all.events);
  });

  it('answers an unknown run with 404 before any stream starts', async () => {
    const res = await fetch(`${base}/api/runs/nope/events`, { headers: { ...h.viewer } });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/json');
  });

  it('a client that goes away leaves nothing behind', async () => {
    const client = createApiClient({ url: base, token: h.tokens.alice });
    const run = await client.start({ runbook: 'tick', params: {}, trigger: 'api' }, undefined as never);
    // The run waits for a person: its stream would last forever.
    const partial = await readEvents(`${base}/api/runs/${run.id}/events`, h.alice, {
      until: (e) => e.type === 'step' && e.stepId === 'read' && e.status === 'waiting',
    });
    expect(partial.ended).toBe(false);
    // The aborted connection closes on the server too.
    for (let i = 0; i < 200 && (await connections(server)) > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(await connections(server)).toBe(0);
    await client.cancel(run.id, undefined as never, 'test over');
  });

  it('the API client speaks the whole RunService and maps errors to their classes', async () => {
    const alice = createApiClient({ url: base, token: h.tokens.alice });
    const bob = createApiClient({ url: base, token: h.tokens.bob });
    const nobody = undefined as never;
    expect((await alice.runbooks(nobody)).map((r) => r.name)).toContain('scale-up');
    expect((await alice.runbook('scale-up', nobody)).steps).toHaveLength(4);
    await expect(alice.runbook('nope', nobody)).rejects.toBeInstanceOf(NotFoundError);
    const plan = await alice.plan({ runbook: 'scale-up', params: { replicas: 2 } }, nobody);
    expect(plan.steps.find((s) => s.id === 'change')?.args).toEqual({ replicas: 2 });
    await expect(alice.plan({ runbook: 'scale-up', params: { replicas: 0 } }, nobody)).rejects.toThrow(
      /params\.replicas/,
    );
    const run = await alice.start({ runbook: 'scale-up', params: { replicas: 2 }, trigger: 'cli' }, nobody);
    expect(run.trigger).toBe('cli');
    // Wait for the worker to reach the approval.
    let view = await alice.get(run.id, nobody);
    for (let i = 0; i < 500 && view.status !== 'waiting'; i++) {
      await alice.events(run.id, 0, nobody, { waitMs: 200 });
      view = await alice.get(run.id, nobody);
    }
    expect(view.status).toBe('waiting');
    const hash = view.steps.find((s) => s.id === 'ok')!.approval!.planHash;
    await expect(
      alice.decide({ runId: run.id, stepId: 'ok', decision: 'approve', planHash: hash }, nobody),
    ).rejects.toBeInstanceOf(NotAllowedError);
    await expect(
      bob.decide({ runId: run.id, stepId: 'ok', decision: 'approve', planHash: 'c'.repeat(64) }, nobody),
    ).rejects.toBeInstanceOf(ConflictError);
    await bob.decide({ runId: run.id, stepId: 'ok', decision: 'approve', planHash: hash }, nobody);
    const events: RunEvent[] = [];
    for await (const e of alice.stream(run.id, 0, AbortSignal.timeout(20_000))) events.push(e);
    expect(events.at(-1)).toMatchObject({ type: 'run', status: 'succeeded' });
    expect((await alice.list({ runbook: 'scale-up', limit: 5 }, nobody))[0]?.id).toBe(run.id);
    const unreachable = createApiClient({ url: 'http://127.0.0.1:1', token: h.tokens.alice });
    await expect(unreachable.runbooks(nobody)).rejects.toThrow(/did not answer GET \/api\/runbooks/);
  });

  it('event streams end when the server shuts down', async () => {
    const other = await harness();
    const s = await buildServer(other.resources);
    const url = await s.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const run = await other.engine.start(
        { runbook: 'tick', params: {}, trigger: 'api' },
        {
          id: 'local:test',
          name: 'test',
          role: 'admin',
          kind: 'local',
        },
      );
      await other.engine.runUntilIdle({ runId: run.id });
      const reading = readEvents(`${url}/api/runs/${run.id}/events`, other.alice);
      // Let the stream open, then close the server: the stream ends and close() returns.
      await new Promise((r) => setTimeout(r, 100));
      await s.close(5_000);
      const result = await reading;
      expect(result.ended).toBe(true);
      expect(result.events.length).toBeGreaterThan(0);
    } finally {
      await shutdown(other.resources);
    }
  });
});

describe('run event stream heartbeat', () => {
  let h: Harness;
  afterEach(async () => {
    await shutdown(h.resources);
  });

  it('sends a heartbeat comment while the run is quiet', async () => {
    h = await harness();
    const ctx = createServerContext(h.resources);
    const app = Fastify({ logger: false }).withTypeProvider<ZodTypeProvider>();
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    app.setErrorHandler(errorHandler(h.resources.log));
    installAuth(app, ctx, { clock: h.clock });
    await app.register(runRoutes(ctx, { heartbeatMs: 30 }));
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const run = await h.engine.start(
        { runbook: 'tick', params: {}, trigger: 'api' },
        {
          id: 'local:test',
          name: 'test',
          role: 'admin',
          kind: 'local',
        },
      );
      await h.engine.runUntilIdle({ runId: run.id });
      const controller = new AbortController();
      const res = await fetch(`${url}/api/runs/${run.id}/events`, {
        headers: h.alice,
        signal: controller.signal,
      });
      let text = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        if (text.includes(': heartbeat\n\n')) break;
      }
      controller.abort();
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      expect(text).toContain('retry: 2000');
      expect(text).toMatch(/id: 1\nevent: run\ndata: \{/);
      expect(text).toContain(': heartbeat\n\n');
    } finally {
      await app.close();
    }
  });
});

describe('parseEventStream', () => {
  it('joins fields split across chunks, skips comments, joins multi-line data', async () => {
    const text =
      'retry: 10\n\n: heartbeat\n\nid: 1\nevent: log\ndata: {"a":\ndata: 1}\n\nid: 2\r\nevent: run\r\ndata: x\r\n\r\n';
    const bytes = new TextEncoder().encode(text);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < bytes.length; i += 3) yield bytes.slice(i, i + 3);
    }
    const events = [];
    for await (const e of parseEventStream(chunks())) events.push(e);
    expect(events).toEqual([
      { id: '1', event: 'log', data: '{"a":\n1}' },
      { id: '2', event: 'run', data: 'x' },
    ]);
  });
});
