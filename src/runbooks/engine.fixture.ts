/**
 * Test kit of the runbook engine (tests, the crash-test worker, the soak script and the benchmark): a
 * catalog of small actions whose behaviour tests control, runbooks written directly in the compiled
 * model, actors of each role, and an engine over a real store. Not part of gameops itself.
 */
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { z } from 'zod';
import { type Clock, ConflictError, InputError, UnavailableError, isSecret } from '../core/index.ts';
import type { GameopsConfig } from '../config/index.ts';
import { createAccessPolicy } from '../identity/index.ts';
import type { Store } from '../store/index.ts';
import { createEngine, type Engine, type EngineOptions } from './engine.ts';
import type {
  ActionDefinition,
  Actor,
  Catalog,
  CheckDefinition,
  Runbook,
  RunbookLibrary,
  Step,
  StepContext,
} from './model.ts';

export const actors = {
  alice: { id: 'token:alice', name: 'alice', role: 'operator', kind: 'token' },
  bob: { id: 'token:bob', name: 'bob', role: 'operator', kind: 'token' },
  viewer: { id: 'token:vic', name: 'vic', role: 'viewer', kind: 'token' },
  admin: { id: 'local:root', name: 'root', role: 'admin', kind: 'local' },
} satisfies Record<string, Actor>;

/** A promise with its resolve and reject, to hold an action until the test lets it go. */
export interface Gate {
  promise: Promise<void>;
  open(): void;
  fail(err: Error): void;
  /** Resolves once an action is waiting on the gate. */
  entered: Promise<StepContext>;
  /** Called by the action that waits on it. */
  enter(ctx: StepContext): void;
}

export function gate(): Gate {
  let open!: () => void;
  let fail!: (err: Error) => void;
  let enter!: (ctx: StepContext) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  promise.catch(() => undefined);
  const entered = new Promise<StepContext>((resolve) => (enter = resolve));
  return { promise, open, fail, entered, enter };
}

/** What the test actions did, in order. */
export interface Journal {
  calls: Array<{ action: string; runId: string; stepId: string; attempt: number; args: unknown }>;
  gates: Map<string, Gate>;
  /** verify() answers of `test.mutate`, by step id. */
  verifyAnswers: Map<string, 'done' | 'not-done' | 'unknown'>;
  /** Values the `test.metric` check returns. */
  metrics: Record<string, unknown>;
  /** Lines `test.chatty` logs. */
  logLines: string[];
}

export function journal(): Journal {
  return { calls: [], gates: new Map(), verifyAnswers: new Map(), metrics: {}, logLines: [] };
}

const anyArgs = z.record(z.string(), z.unknown()).default({});

function action(
  name: string,
  effect: ActionDefinition['effect'],
  idempotent: boolean,
  j: Journal,
  run: (args: Record<string, unknown>, ctx: StepContext) => Promise<unknown>,
  extra: Partial<ActionDefinition<Record<string, unknown>>> = {},
): ActionDefinition<Record<string, unknown>> {
  return {
    name,
    description: `test action ${name}`,
    effect,
    idempotent,
    args: anyArgs,
    target: (args) => `test/${typeof args.target === 'string' ? args.target : name}`,
    run: async (args, ctx) => {
      j.calls.push({ action: name, runId: ctx.runId, stepId: ctx.stepId, attempt: ctx.attempt, args });
      return run(args, ctx);
    },
    ...extra,
  };
}

/** The test catalog. Every action records its call in the journal first. */
export function testCatalog(j: Journal): Catalog {
  const waitGate = async (args: Record<string, unknown>, ctx: StepContext) => {
    const name = typeof args.gate === 'string' ? args.gate : ctx.stepId;
    let g = j.gates.get(name);
    if (!g) j.gates.set(name, (g = gate()));
    g.enter(ctx);
    await g.promise;
    return { released: name };
  };
  const actions: ActionDefinition<Record<string, unknown>>[] = [
    action('test.noop', 'read-only', true, j, async (args) => args),
    action('test.record', 'mutating', false, j, async (args, ctx) => ({ recorded: ctx.stepId, args })),
    action('test.undo', 'mutating', true, j, async (args) => {
      if (args.fail === true) throw new UnavailableError(`undo of ${String(args.of)} failed`);
      return { undone: args.of };
    }),
    // Fails with UnavailableError until attempt `succeedOn`.
    action('test.flaky', 'mutating', true, j, async (args, ctx) => {
      const succeedOn = Number(args.succeedOn ?? 1);
      if (ctx.attempt < succeedOn) throw new UnavailableError(`flaky: attempt ${ctx.attempt} failed`);
      return { attempt: ctx.attempt };
    }),
    action('test.fail', 'mutating', true, j, async (args) => {
      if (args.code === 'input')
        throw new InputError(`test.fail: bad input ${JSON.stringify(args.why ?? '')}`);
      if (args.code === 'conflict') throw new ConflictError('test.fail: conflict');
      throw new UnavailableError(`test.fail: ${JSON.stringify(args.why ?? 'down')}`);
    }),
    // Never returns and ignores its signal: a hung connector.
    action('test.hang', 'read-only', true, j, () => new Promise<never>(() => undefined)),
    // Waits until the test opens its gate (ignoring the signal).
    action('test.gate', 'read-only', true, j, waitGate),
    action('test.gate-mutate', 'mutating', false, j, waitGate),
    // Mutating, not idempotent, but can tell whether an attempt took effect.
    action('test.mutate', 'mutating', false, j, async (args, ctx) => waitGate(args, ctx), {
      verify: async (_args, ctx) => j.verifyAnswers.get(ctx.stepId) ?? 'unknown',
    }),
    action('test.chatty', 'read-only', true, j, async (args, ctx) => {
      const lines = Number(args.lines ?? j.logLines.length);
      for (let i = 0; i < lines; i++) ctx.log(j.logLines[i % Math.max(1, j.logLines.length)] ?? `line ${i}`);
      return { logged: lines };
    }),
    {
      name: 'test.typed',
      description: 'an action with typed arguments',
      effect: 'mutating',
      idempotent: true,
      args: z.object({ replicas: z.number().int().min(1).max(10), secret: z.unknown().optional() }),
      target: (args: { replicas: number }) => `deployment game/server x${args.replicas}`,
      run: async (args: { replicas: number }, ctx: StepContext) => {
        j.calls.push({
          action: 'test.typed',
          runId: ctx.runId,
          stepId: ctx.stepId,
          attempt: ctx.attempt,
          args,
        });
        return { replicas: args.replicas };
      },
    } as unknown as ActionDefinition<Record<string, unknown>>,
  ];
  const checks: CheckDefinition[] = [
    {
      name: 'test.metric',
      description: 'returns the journal metrics',
      args: anyArgs,
      run: async () => ({ status: 'ok', summary: 'metrics read', values: { ...j.metrics } }),
    },
  ];
  const byName = new Map(actions.map((a) => [a.name, a as ActionDefinition]));
  const checkByName = new Map(checks.map((c) => [c.name, c]));
  return {
    action: (name) => byName.get(name),
    check: (name) => checkByName.get(name),
    actions: () => [...byName.values()],
    checks: () => [...checkByName.values()],
  };
}

/** A step in short: `id`, `kind` and whatever differs from the defaults. */
type StepSpec = { id: string; kind: Step['kind'] } & Record<string, unknown>;

/** A compiled runbook from short step specs: defaults filled as the compiler would. */
export function runbook(
  name: string,
  steps: StepSpec[],
  options: { params?: z.ZodType<Record<string, unknown>>; timeoutMs?: number; runBy?: Runbook['runBy'] } = {},
): Runbook {
  const full = steps.map((spec) => {
    const base = { title: spec.id, needs: [], onFailure: 'abort', ...spec } as Record<string, unknown>;
    switch (spec.kind) {
      case 'action':
        return { args: {}, ...base };
      case 'check':
        return { args: {}, assert: [], ...base };
      case 'approval':
        return {
          approvers: ['operator'],
          fourEyes: false,
          expiresInMs: 3_600_000,
          message: 'approve?',
          ...base,
        };
      case 'manual':
        return { instructions: 'do it', evidence: 'optional', ...base };
      case 'wait':
        return { intervalMs: 1_000, ...base };
      case 'notify':
        return { message: 'hello', ...base };
      case 'runbook':
        return { params: {}, ...base };
      case 'group':
        return { children: [], ...base };
    }
    return base;
  }) as unknown as Step[];
  const params = options.params ?? z.looseObject({});
  const definition = { name, steps: full, timeoutMs: options.timeoutMs };
  return {
    name,
    version: '1',
    title: name,
    description: `test runbook ${name}`,
    source: { kind: 'builtin' },
    params,
    paramsJsonSchema: {},
    steps: full,
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    runBy: options.runBy ?? ['operator'],
    hash: createHash('sha256').update(JSON.stringify(definition)).digest('hex'),
    tags: [],
  };
}

export function library(runbooks: Runbook[]): RunbookLibrary {
  const byName = new Map(runbooks.map((r) => [r.name, r]));
  return { get: (name) => byName.get(name), list: () => [...byName.values()] };
}

/** Masks Secret values and strings starting with `secret:` (what tests look for). */
export function testMask(v: unknown): unknown {
  if (isSecret(v)) return '********';
  if (typeof v === 'string') return v.replace(/secret:[^\s"]*/g, '********');
  if (Array.isArray(v)) return v.map(testMask);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, testMask(x)]));
  }
  return v;
}

export interface TestEngineOptions {
  store: Store;
  clock: Clock;
  catalog: Catalog;
  runbooks: Runbook[];
  workerId?: string;
  leaseTtlMs?: number;
  notify?: EngineOptions['notify'];
  shutdownGraceMs?: number;
}

export function testEngine(options: TestEngineOptions): Engine {
  return createEngine({
    store: options.store,
    clock: options.clock,
    catalog: options.catalog,
    library: library(options.runbooks),
    policy: createAccessPolicy({ runbooks: { access: {} } } as unknown as Pick<GameopsConfig, 'runbooks'>),
    services: {},
    scope: { service: 'game', environment: 'test' },
    leaseTtlMs: options.leaseTtlMs ?? 8_000,
    mask: testMask,
    ...(options.notify ? { notify: options.notify } : {}),
    log: pino({ level: 'silent' }),
    ...(options.workerId ? { workerId: options.workerId } : {}),
    ...(options.shutdownGraceMs === undefined ? {} : { shutdownGraceMs: options.shutdownGraceMs }),
  });
}
