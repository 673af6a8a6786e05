/**
 * The runbook engine: runs runbooks durably in gameops's own store (ADR 0007; design notes in
 * ARCHITECTURE.md next to this file).
 *
 * Every transition of a run happens in one store transaction together with its events and its audit
 * record. A worker holds a lease on the runs it drives and claims every step attempt with a fencing token
 * from a monotonic counter; an outcome is recorded only while its fence is still the step's current one.
 * After a crash, steps left running are re-run when read-only or idempotent, checked with the action's
 * `verify()` when it has one, and otherwise sent to needs-verification for a person: nothing
 * non-idempotent is ever silently run twice.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  type Clock,
  ConflictError,
  ErrorCode,
  GameopsError,
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
  errorMessage,
  toGameopsError,
} from '../core/index.ts';
import type {
  RunTx,
  Store,
  StoredEvent,
  StoredRun,
  StoredStep,
  StepPatch,
  RunPatch,
} from '../store/index.ts';
import {
  coveringApprovals,
  deriveRunStatus,
  downstreamOf,
  stepsUsingParams,
  failsRun,
  isDone,
  isReady,
  retryDelayMs,
} from './engine-graph.ts';
import type {
  AccessPolicy,
  ActionDefinition,
  ActionStep,
  Actor,
  ApprovalStep,
  ApprovalView,
  Assertion,
  Catalog,
  CheckOutcome,
  Effect,
  Plan,
  PlannedStep,
  Runbook,
  RunbookInfo,
  RunbookLibrary,
  RunEvent,
  RunService,
  RunStatus,
  RunSummary,
  RunView,
  StartRunInput,
  Step,
  StepContext,
  StepState,
  StepStatus,
} from './model.ts';
import { TERMINAL_RUN_STATUSES } from './model.ts';
import { approvalHash, canonicalJson, planRun } from './plan.ts';
import {
  FINISHED_STEP_STATUSES,
  evaluateCondition,
  resolveTemplate,
  type TemplateScope,
} from './template.ts';

/** What the engine needs; one engine per process and scope. */
export interface EngineOptions {
  store: Store;
  clock: Clock;
  catalog: Catalog;
  library: RunbookLibrary;
  policy: AccessPolicy;
  /** Given to actions and checks as `StepContext.services`. */
  services: unknown;
  /** The gameops instance whose runs these are (several may share one PostgreSQL). */
  scope: { service: string; environment: string };
  /** How long a worker's claim on a run lasts without renewal (PostgreSQL; SQLite voids it at start). */
  leaseTtlMs: number;
  /** Masks secrets in anything shown or stored for people (params, outputs, log lines, audit data). */
  mask: (v: unknown) => unknown;
  /**
   * Sends a notify step's message; without it, messages go to the run log only. `step` names the run and
   * step, for a delivery id that is the same on every attempt of the step.
   */
  notify?: (
    channel: string | undefined,
    message: string,
    signal: AbortSignal,
    step: { runId: string; stepId: string },
  ) => Promise<void>;
  log: Logger;
  /** @default `<hostname>:<pid>:<random>` */
  workerId?: string;
  /**
   * When `work` stops: how long running steps get to finish (their outcomes are recorded); those
   * still running after it are abandoned to recovery. @default 10000
   */
  shutdownGraceMs?: number;
}

/** The run service plus the worker that drives runs. */
export interface Engine extends RunService {
  /** Claims and drives runs until `signal` aborts; resumes interrupted runs at start. */
  work(signal: AbortSignal): Promise<void>;
  /**
   * Drives runs in this process until nothing can move without a person or the clock: the run `runId`
   * and its sub-runs when given, otherwise every run of the scope. Returns the run's view when given.
   */
  runUntilIdle(options?: { runId?: string; signal?: AbortSignal }): Promise<RunView | undefined>;
  /** Something changed (a run was started elsewhere, the clock moved): look again now. */
  wake(): void;
  /** This worker's id (its leases carry it). */
  readonly workerId: string;
}

/** Longest stored log line; longer ones are cut. */
export const MAX_LOG_LINE_BYTES = 4096;
/** Log lines kept per step (per process lifetime of the step); later ones are counted and dropped. */
export const MAX_LOG_LINES_PER_STEP = 10_000;
/** How often a long poll re-reads the store (for events written by other processes). */
const EVENT_POLL_MS = 500;
/** The longest a worker waits before looking at its runs again. */
const MAX_IDLE_MS = 1_000;
/** Events returned by one `events` call at most. */
const EVENTS_PAGE = 1_000;
/** Steps started at once in one run. */
const MAX_PARALLEL_STEPS = 16;
/** How long shutdown waits for running steps to return before leaving them to recovery. */
const SHUTDOWN_GRACE_MS = 10_000;
/**
 * Idempotency-key prefixes only schedule actors may use: the scheduler's occurrence keys and the
 * maintenance window service's run keys (`maintenance:<window id>`, MAINTENANCE_ACTOR of kind schedule).
 * Anyone else taking such a key would get, or pre-empt, the run of an occurrence or a window.
 */
const RESERVED_KEY_PREFIXES: ReadonlyArray<{ prefix: string; owner: string }> = [
  { prefix: 'schedule:', owner: 'the scheduler' },
  { prefix: 'maintenance:', owner: 'the maintenance window service' },
];

/** The actor of transitions the engine makes on its own. */
/** The error code of a step whose attempt was stopped while it ran: it may or may not have taken effect. */
const UNKNOWN_OUTCOME = 'unknown_outcome';

const ENGINE_ACTOR: Actor = { id: 'system', name: 'runbook engine', role: 'admin', kind: 'system' };

/** A Runbook as stored with its run: everything but the zod schema. */
type RunDefinition = Omit<Runbook, 'params'>;

/** An approval step's stored state: the view plus the hash of each covered step. */
interface StoredApproval extends ApprovalView {
  stepHashes: Record<string, string>;
  /**
   * Covered steps that started under this grant: a person re-running one of them (retry, verify
   * not-done) asks for a new decision.
   */
  usedBy?: string[];
}

interface Compensation {
  status: 'running' | 'succeeded' | 'failed' | 'needs-verification';
  error?: { code: string; message: string };
}

interface CachedRun {
  run: StoredRun;
  def: RunDefinition;
  defs: Map<string, Step>;
  coveredBy: Map<string, string>;
  steps: Map<string, StoredStep>;
}

type ExecMode = 'run' | 'poll' | 'verify' | 'compensate';
type AbortKind = 'timeout' | 'cancel' | 'shutdown' | 'lease';

class AbortedError extends GameopsError {
  readonly kind: AbortKind;
  constructor(kind: AbortKind, code: ErrorCode, message: string) {
    super(code, message);
    this.kind = kind;
  }
}

interface Execution {
  runId: string;
  stepId: string;
  mode: ExecMode;
  fence: number;
  attempt: number;
  /** What runs, for messages: `action fleet.scale`, `check cpu`. */
  what: string;
  controller: AbortController;
  /** Clock ms at which it times out, and the message then. */
  deadline?: { at: number; message: string };
  timer?: NodeJS.Timeout;
  outcome?: { ok: true; value: unknown } | { ok: false; error: GameopsError };
  recording: boolean;
  logs: string[];
  logFlush?: Promise<void>;
  logTimer?: NodeJS.Timeout;
}

interface Launch {
  exec: Execution;
  work: (ctx: StepContext) => Promise<unknown>;
}

/** Builds the engine. Nothing runs until `work` or `runUntilIdle` is called. */
export function createEngine(options: EngineOptions): Engine {
  return new RunbookEngine(options);
}

class RunbookEngine implements Engine {
  readonly workerId: string;
  readonly #o: EngineOptions;
  readonly #cache = new Map<string, CachedRun>();
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #execs = new Map<string, Map<string, Execution>>();
  readonly #logCounts = new Map<string, { kept: number; dropped: number }>();
  readonly #eventWaiters = new Map<string, Set<() => void>>();
  readonly #dirty = new Set<string>();
  /** Sub-run → parent run, for driving a run together with its sub-runs. */
  readonly #parents = new Map<string, string>();
  #wakers: (() => void)[] = [];
  #scan = true;
  #started: Promise<void> | undefined;
  readonly #shutdown = new AbortController();

  constructor(options: EngineOptions) {
    if (!Number.isInteger(options.leaseTtlMs) || options.leaseTtlMs < 100) {
      throw new InputError(`leaseTtlMs must be a whole number of at least 100 (got ${options.leaseTtlMs})`);
    }
    this.#o = options;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  }

  // -------------------------------------------------------------------------------------------------
  // RunService

  async runbooks(actor: Actor): Promise<RunbookInfo[]> {
    this.#o.policy.check(actor, { action: 'read' });
    return this.#o.library
      .list()
      .map((runbook) => info(runbook, this.#o.catalog))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async runbook(name: string, actor: Actor): Promise<RunbookInfo> {
    this.#o.policy.check(actor, { action: 'read' });
    return info(this.#runbookOf(name), this.#o.catalog);
  }

  async plan(input: { runbook: string; params: Record<string, unknown> }, actor: Actor): Promise<Plan> {
    this.#o.policy.check(actor, { action: 'read' });
    const runbook = this.#runbookOf(input.runbook);
    const params = validateParams(runbook, input.params);
    return planRun(runbook, params, {
      catalog: this.#o.catalog,
      services: this.#o.services,
      requestedBy: actor.name,
      mask: this.#o.mask,
    });
  }

  async start(input: StartRunInput, actor: Actor): Promise<RunView> {
    const runbook = this.#runbookOf(input.runbook);
    this.#o.policy.check(actor, { action: 'run', runbook });
    const params = validateParams(runbook, input.params ?? {});
    this.#checkArgs(runbook.steps, params, actor.name);
    const reserved = RESERVED_KEY_PREFIXES.find(({ prefix }) => input.idempotencyKey?.startsWith(prefix));
    if (reserved && actor.kind !== 'schedule') {
      throw new InputError(
        `idempotencyKey "${input.idempotencyKey}": keys starting with ${reserved.prefix} are reserved for ${reserved.owner}`,
        { details: { field: 'idempotencyKey' } },
      );
    }
    const key = input.idempotencyKey === undefined ? undefined : this.#scopedKey(input.idempotencyKey);
    const same = (existing: StoredRun): string => {
      // The same key means the same request: another runbook or other parameters is a conflict.
      if (existing.runbook !== runbook.name || canonicalJson(existing.params) !== canonicalJson(params)) {
        throw new ConflictError(
          `idempotencyKey "${input.idempotencyKey}" was already used by run ${existing.id} of ${existing.runbook} with other parameters; use a new key`,
          { details: { field: 'idempotencyKey', runId: existing.id } },
        );
      }
      return existing.id;
    };
    const id = await this.#o.store.runs.transaction(`starting runbook ${runbook.name}`, async (tx) => {
      if (key !== undefined) {
        const existing = await tx.findByIdempotencyKey(key);
        if (existing) return same(existing);
      }
      const created = await this.#insertRun(tx, {
        runbook,
        params,
        trigger: input.trigger,
        actor,
        ...(key === undefined ? {} : { idempotencyKey: key }),
        ...(input.reason === undefined ? {} : { reason: input.reason }),
      });
      if (created) return created;
      // Another process started it with the same key in the meantime.
      const existing = key === undefined ? undefined : await tx.findByIdempotencyKey(key);
      if (!existing) throw new ConflictError(`run of ${runbook.name} could not be created`);
      return same(existing);
    });
    this.#notifyEvents(id);
    this.wake();
    return this.#view(id);
  }

  async get(runId: string, actor: Actor): Promise<RunView> {
    this.#o.policy.check(actor, { action: 'read' });
    return this.#view(runId);
  }

  async list(filter: Parameters<RunService['list']>[0], actor: Actor): Promise<RunSummary[]> {
    this.#o.policy.check(actor, { action: 'read' });
    const limit = filter.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
      throw new InputError(`limit must be a whole number from 1 to 500 (got ${limit})`);
    }
    let before: { createdAt: string; id: string } | undefined;
    if (filter.before !== undefined) {
      const run = await this.#o.store.runs.getRun(filter.before);
      if (!run || !this.#inScope(run)) throw new NotFoundError(`run ${filter.before} not found`);
      before = { createdAt: run.createdAt, id: run.id };
    }
    const runs = await this.#o.store.runs.listRuns({
      ...this.#o.scope,
      ...(filter.runbook === undefined ? {} : { runbook: filter.runbook }),
      ...(filter.status === undefined ? {} : { status: filter.status }),
      ...(before ? { before } : {}),
      limit,
    });
    return runs.map((run) => summary(run));
  }

  async events(
    runId: string,
    afterSeq: number,
    actor: Actor,
    options: { waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<RunEvent[]> {
    this.#o.policy.check(actor, { action: 'read' });
    if (!Number.isInteger(afterSeq) || afterSeq < 0) {
      throw new InputError(`afterSeq must be a whole number of at least 0 (got ${afterSeq})`);
    }
    await this.#runInScope(runId);
    const waitMs = Math.max(0, Math.min(options.waitMs ?? 0, 300_000));
    const endAt = Date.now() + waitMs;
    for (;;) {
      const events = await this.#o.store.runs.events(runId, afterSeq, EVENTS_PAGE);
      if (events.length > 0) return events.map(toRunEvent);
      const left = endAt - Date.now();
      if (left <= 0 || options.signal?.aborted) return [];
      await this.#waitForEvents(runId, Math.min(left, EVENT_POLL_MS), options.signal);
    }
  }

  async decide(input: Parameters<RunService['decide']>[0], actor: Actor): Promise<RunView> {
    const cached = await this.#load(input.runId);
    const def = this.#stepDef(cached, input.stepId);
    if (def.kind !== 'approval') {
      throw new InputError(
        `step ${input.stepId} of run ${input.runId} is a ${def.kind} step, not an approval`,
      );
    }
    this.#o.policy.check(actor, { action: 'approve', step: { id: def.id, approvers: def.approvers } });
    // Four eyes: whoever asked for what is approved (requested the run, or set its parameters by a
    // retry) may not approve it, under any of their tokens.
    const requesters = def.fourEyes ? await this.#requesters(cached.run) : [];
    const outcome = await this.#withRun(input.runId, `deciding approval ${def.id}`, async (t) => {
      const state = t.step(def.id);
      const approval = state.approval as StoredApproval | undefined;
      if (state.status !== 'waiting' || !approval || approval.decision !== undefined) {
        throw new ConflictError(
          `approval ${def.id} of run ${t.run.id} is not waiting for a decision (step is ${state.status})`,
        );
      }
      const same = def.fourEyes
        ? [t.run.requestedBy, ...requesters].find((other) => samePerson(actor, other))
        : undefined;
      if (same) {
        const what =
          same === t.run.requestedBy ? `requested run ${t.run.id}` : `set the parameters of run ${t.run.id}`;
        throw new NotAllowedError(
          `approval ${def.id} needs four eyes: ${actor.name} (${actor.id}) ${what} and cannot approve it; ask someone else`,
        );
      }
      if (t.now.getTime() >= Date.parse(approval.expiresAt)) {
        throw new ConflictError(
          `the approval request of step ${def.id} expired at ${approval.expiresAt}: retry the run from ${def.id} to ask again`,
        );
      }
      const fresh = this.#approvalPlan(t, def);
      if (fresh.planHash !== approval.planHash) {
        // What the covered steps would do has changed under the request: ask again, then refuse.
        t.patchStep(
          def.id,
          { approval: this.#newRequest(t, def, fresh) },
          {
            message: 'the covered steps changed since the approval was requested: approve again',
          },
        );
        return 'changed' as const;
      }
      if (input.planHash !== approval.planHash) return 'stale' as const;
      const decided: StoredApproval = {
        ...approval,
        decision: input.decision === 'approve' ? 'approved' : 'rejected',
        decidedBy: actor,
        decidedAt: t.nowIso,
        ...(input.comment === undefined ? {} : { comment: input.comment }),
      };
      const comment = input.comment ? `: ${input.comment}` : '';
      if (input.decision === 'approve') {
        // A granted approval stays valid for expiresInMs from the decision.
        decided.expiresAt = new Date(t.now.getTime() + def.expiresInMs).toISOString();
        t.patchStep(
          def.id,
          {
            status: 'succeeded',
            approval: decided,
            finishedAt: t.nowIso,
            output: { decision: 'approved', by: actor.name },
          },
          {
            actor,
            message: `approved by ${actor.name}${comment}`,
            action: 'approval.approve',
            data: { planHash: approval.planHash },
          },
        );
      } else {
        t.patchStep(
          def.id,
          {
            status: 'failed',
            approval: decided,
            finishedAt: t.nowIso,
            error: { code: 'rejected', message: `rejected by ${actor.name}${comment}` },
          },
          {
            actor,
            message: `rejected by ${actor.name}${comment}`,
            action: 'approval.reject',
            data: { planHash: approval.planHash },
          },
        );
      }
      return 'decided' as const;
    });
    if (outcome !== 'decided') {
      throw new ConflictError(
        'parameters changed since the approval was requested: re-read the plan (`gameops runs show`) and decide on its current hash',
        { details: { runId: input.runId, stepId: input.stepId } },
      );
    }
    this.#kick(input.runId);
    return this.#view(input.runId);
  }

  async complete(input: Parameters<RunService['complete']>[0], actor: Actor): Promise<RunView> {
    const cached = await this.#load(input.runId);
    this.#o.policy.check(actor, { action: 'run', runbook: cached.def });
    const def = this.#stepDef(cached, input.stepId);
    if (def.kind !== 'manual') {
      throw new InputError(
        `step ${input.stepId} of run ${input.runId} is a ${def.kind} step, not a manual step`,
      );
    }
    const evidence = input.evidence?.trim();
    if (def.evidence === 'required' && !evidence) {
      throw new InputError(
        `step ${def.id} needs evidence (a link or a note of what was done): give --evidence`,
        {
          details: { field: 'evidence' },
        },
      );
    }
    if (def.evidence === 'none' && evidence) {
      throw new InputError(`step ${def.id} takes no evidence; put it in the note instead`, {
        details: { field: 'evidence' },
      });
    }
    await this.#withRun(input.runId, `completing step ${def.id}`, async (t) => {
      const state = t.step(def.id);
      if (state.status !== 'waiting') {
        throw new ConflictError(
          `manual step ${def.id} of run ${t.run.id} is not waiting (it is ${state.status})`,
        );
      }
      t.patchStep(
        def.id,
        {
          status: 'succeeded',
          finishedAt: t.nowIso,
          output: {
            by: actor.name,
            ...(input.note ? { note: input.note } : {}),
            ...(evidence ? { evidence } : {}),
          },
        },
        {
          actor,
          action: 'step.complete',
          message: `completed by ${actor.name}${input.note ? `: ${input.note}` : ''}`,
          data: { note: input.note, evidence },
        },
      );
    });
    this.#kick(input.runId);
    return this.#view(input.runId);
  }

  async verify(input: Parameters<RunService['verify']>[0], actor: Actor): Promise<RunView> {
    const cached = await this.#load(input.runId);
    this.#o.policy.check(actor, { action: 'run', runbook: cached.def });
    const def = this.#stepDef(cached, input.stepId);
    await this.#withRun(input.runId, `verifying step ${def.id}`, async (t) => {
      const state = t.step(def.id);
      if (state.status !== 'needs-verification') {
        throw new ConflictError(
          `step ${def.id} of run ${t.run.id} does not need verification (it is ${state.status})`,
        );
      }
      const comp = state.compensation as Compensation | undefined;
      const note = input.note ? `: ${input.note}` : '';
      const meta = { actor, action: 'step.verify', data: { outcome: input.outcome, note: input.note } };
      if (comp?.status === 'needs-verification') {
        if (input.outcome === 'done') {
          t.patchStep(
            def.id,
            { status: 'compensated', compensation: { status: 'succeeded' }, error: null },
            {
              ...meta,
              message: `compensation verified as done by ${actor.name}${note}`,
            },
          );
        } else {
          t.patchStep(
            def.id,
            { status: 'succeeded', compensation: null, error: null },
            {
              ...meta,
              message: `compensation verified as not done by ${actor.name}${note}: it runs again`,
            },
          );
        }
      } else if (input.outcome === 'done') {
        t.patchStep(
          def.id,
          {
            status: 'succeeded',
            finishedAt: t.nowIso,
            error: null,
            output: { verified: 'done', by: actor.name },
          },
          { ...meta, message: `verified as done by ${actor.name}${note}` },
        );
      } else {
        t.patchStep(
          def.id,
          { status: 'pending', error: null, notBefore: null },
          {
            ...meta,
            message: `verified as not done by ${actor.name}${note}: it runs again`,
          },
        );
        // It ran under an approval: running it again needs a new decision.
        const approvalId = t.cached.coveredBy.get(def.id);
        const grant =
          approvalId === undefined ? undefined : (t.step(approvalId).approval as StoredApproval | undefined);
        if (approvalId !== undefined && grant?.usedBy?.includes(def.id)) {
          t.patchStep(
            approvalId,
            { status: 'pending', approval: null, output: null, finishedAt: null },
            { actor, message: `${def.id} runs again: its approval is asked again` },
          );
        }
      }
    });
    this.#kick(input.runId);
    return this.#view(input.runId);
  }

  async cancel(runId: string, actor: Actor, reason?: string): Promise<RunView> {
    const cached = await this.#load(runId);
    this.#o.policy.check(actor, { action: 'run', runbook: cached.def });
    const cancelled: string[] = [];
    await this.#withRun(runId, `cancelling run ${runId}`, async (t) => {
      if (isTerminal(t.run.status)) {
        throw new ConflictError(`run ${runId} is already ${t.run.status}`);
      }
      const why = `cancelled by ${actor.name}${reason ? `: ${reason}` : ''}`;
      await this.#cancelIn(t, why, actor, cancelled);
    });
    for (const id of cancelled) {
      this.#abortRun(id, 'cancel', 'the run was cancelled');
      this.#notifyEvents(id);
    }
    this.wake();
    return this.#view(runId);
  }

  async pause(runId: string, actor: Actor): Promise<RunView> {
    const cached = await this.#load(runId);
    this.#o.policy.check(actor, { action: 'run', runbook: cached.def });
    await this.#withRun(runId, `pausing run ${runId}`, async (t) => {
      if (isTerminal(t.run.status)) throw new ConflictError(`run ${runId} is already ${t.run.status}`);
      if (t.run.paused) throw new ConflictError(`run ${runId} is already paused`);
      t.patchRun(
        { paused: true, status: 'paused', reason: `paused by ${actor.name}: no new steps start` },
        { actor, action: 'run.pause' },
      );
    });
    this.#kick(runId);
    return this.#view(runId);
  }

  async resume(runId: string, actor: Actor): Promise<RunView> {
    const cached = await this.#load(runId);
    this.#o.policy.check(actor, { action: 'run', runbook: cached.def });
    await this.#withRun(runId, `resuming run ${runId}`, async (t) => {
      if (isTerminal(t.run.status)) throw new ConflictError(`run ${runId} is already ${t.run.status}`);
      if (!t.run.paused) throw new ConflictError(`run ${runId} is not paused (it is ${t.run.status})`);
      t.patchRun({ paused: false, status: 'running', reason: null }, { actor, action: 'run.resume' });
    });
    this.#kick(runId);
    return this.#view(runId);
  }

  async retry(input: Parameters<RunService['retry']>[0], actor: Actor): Promise<RunView> {
    const cached = await this.#load(input.runId);
    this.#o.policy.check(actor, { action: 'run', runbook: cached.def });
    this.#stepDef(cached, input.from);
    let params: Record<string, unknown> | undefined;
    if (input.params !== undefined) {
      const runbook = this.#o.library.get(cached.run.runbook);
      if (!runbook) {
        throw new NotFoundError(
          `runbook ${cached.run.runbook} is no longer in the library: its parameters cannot be checked; retry without new parameters`,
        );
      }
      params = validateParams(runbook, { ...cached.run.params, ...input.params });
      this.#checkArgs(cached.def.steps, params, cached.run.requestedBy.name);
    }
    await this.#withRun(input.runId, `retrying run ${input.runId}`, async (t) => {
      const status = t.run.status;
      if (status !== 'failed' && status !== 'cancelled' && status !== 'needs-verification') {
        throw new ConflictError(
          `run ${t.run.id} is ${status}: only a failed, cancelled or needs-verification run can be retried`,
        );
      }
      const reset = downstreamOf(t.cached.def.steps, input.from);
      if (params) {
        // Steps that use a changed parameter run again with it (and what follows them), so no step
        // or approval shows the new value next to results computed from the old one.
        const changed = new Set(
          Object.keys({ ...t.run.params, ...params }).filter(
            (key) => canonicalJson(t.run.params[key] ?? null) !== canonicalJson(params[key] ?? null),
          ),
        );
        for (const id of stepsUsingParams(t.cached.def.steps, changed)) reset.add(id);
      }
      // A grant is used once: re-running a step that ran under it needs a new decision.
      for (const def of t.cached.def.steps) {
        if (def.kind !== 'approval' || reset.has(def.id)) continue;
        const used = (t.step(def.id).approval as StoredApproval | undefined)?.usedBy ?? [];
        if (used.some((id) => reset.has(id))) reset.add(def.id);
      }
      for (const def of t.cached.def.steps) {
        const state = t.step(def.id);
        const unfinished =
          state.status !== 'succeeded' &&
          state.status !== 'warned' &&
          state.status !== 'skipped' &&
          state.status !== 'needs-verification';
        if (!reset.has(def.id) && !unfinished) continue;
        if (state.status === 'running') continue;
        // Only a person says whether such a step took effect: a retry from elsewhere leaves it be.
        if (state.status === 'needs-verification' && def.id !== input.from) continue;
        if (
          (state.status === 'cancelled' || state.status === 'failed') &&
          state.error?.code === UNKNOWN_OUTCOME &&
          this.#unsafeToRepeat(def)
        ) {
          t.patchStep(
            def.id,
            {
              status: 'needs-verification',
              notBefore: null,
              error: {
                code: UNKNOWN_OUTCOME,
                message: `step ${def.id} was stopped while attempt ${state.attempt} ran (${state.error.message}) and is not idempotent: check whether it took effect, then \`gameops runs verify\` it done or not-done`,
              },
            },
            {
              actor,
              message: `retry from ${input.from}: the outcome of ${def.id} is unknown; it needs verification`,
            },
          );
          continue;
        }
        t.patchStep(
          def.id,
          {
            status: 'pending',
            error: null,
            output: null,
            notBefore: null,
            finishedAt: null,
            finishedSeq: null,
            approval: null,
            childRunId: null,
            compensation: null,
          },
          { actor, message: `reset by retry from ${input.from}` },
        );
      }
      t.patchRun(
        {
          status: 'running',
          reason: null,
          finishedAt: null,
          cancelRequested: false,
          compensating: false,
          paused: false,
          ...(params ? { params } : {}),
          deadlineAt: t.cached.def.timeoutMs
            ? new Date(t.now.getTime() + t.cached.def.timeoutMs).toISOString()
            : null,
        },
        {
          actor,
          action: 'run.retry',
          message: `retried from ${input.from} by ${actor.name}`,
          data: { fromStep: input.from, ...(input.params ? { params: this.#o.mask(input.params) } : {}) },
        },
      );
    });
    this.#kick(input.runId);
    this.wake();
    return this.#view(input.runId);
  }

  // -------------------------------------------------------------------------------------------------
  // Driving runs

  wake(): void {
    this.#scan = true;
    this.#signal();
  }

  async work(signal: AbortSignal): Promise<void> {
    await this.#startOnce();
    const onAbort = () => this.#signal();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      while (!signal.aborted) {
        try {
          await this.#pass(undefined);
        } catch (err) {
          // The store is unavailable (or a run is broken): log, wait, look again. Runs stop cleanly.
          this.#o.log.warn({ err: errorMessage(err) }, 'runbook worker pass failed; retrying');
          this.#scan = true;
        }
        if (this.#dirty.size === 0 && !signal.aborted) await this.#idle(this.#idleMs());
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      await this.#stop();
    }
  }

  async runUntilIdle(options: { runId?: string; signal?: AbortSignal } = {}): Promise<RunView | undefined> {
    await this.#startOnce();
    if (options.runId !== undefined) await this.#runInScope(options.runId);
    const signal = options.signal;
    this.#scan = true;
    for (;;) {
      if (signal?.aborted) break;
      const progressed = await this.#pass(options.runId);
      if (progressed || this.#hasDirty(options.runId)) continue;
      const busy = this.#busyRuns(options.runId);
      if (!busy) break;
      await this.#idle(this.#idleMs(), signal);
      this.#scan = true;
    }
    return options.runId === undefined ? undefined : this.#view(options.runId);
  }

  /** Once per engine: on the embedded store, every lease held by another worker is void. */
  #startOnce(): Promise<void> {
    this.#started ??= (async () => {
      if (this.#o.store.backend === 'sqlite') {
        const voided = await this.#o.store.runs.voidLeasesExcept(this.workerId, this.#o.scope);
        if (voided > 0) this.#o.log.info({ voided }, 'runbook engine took over runs of a previous process');
      }
    })();
    return this.#started;
  }

  /** One pass: advance every run that may move. Returns whether anything changed. */
  async #pass(only: string | undefined): Promise<boolean> {
    if (this.#scan) {
      this.#scan = false;
      const active = await this.#o.store.runs.activeRuns(this.#o.scope);
      const wanted = only === undefined ? undefined : familyOf(only, active);
      for (const run of active) {
        if (run.parentRunId) this.#parents.set(run.id, run.parentRunId);
        if (wanted && !wanted.has(run.id)) continue;
        if (run.leaseOwner && run.leaseOwner !== this.workerId && run.leaseExpiresAt) {
          if (Date.parse(run.leaseExpiresAt) > this.#o.clock.now().getTime()) continue;
        }
        this.#dirty.add(run.id);
      }
      // Runs with steps in flight here are watched even when their lease looks foreign.
      for (const runId of this.#execs.keys()) if (!wanted || wanted.has(runId)) this.#dirty.add(runId);
    }
    const batch = [...this.#dirty].filter((id) => only === undefined || this.#belongsTo(id, only));
    for (const id of batch) this.#dirty.delete(id);
    if (batch.length === 0) return false;
    const results = await Promise.allSettled(batch.map((id) => this.#advance(id)));
    let progressed = false;
    let failure: unknown;
    results.forEach((result, i) => {
      if (result.status === 'rejected') failure ??= result.reason;
      else if (result.value) {
        progressed = true;
        this.#dirty.add(batch[i]!);
      }
    });
    if (failure !== undefined) throw toGameopsError(failure);
    return progressed;
  }

  #belongsTo(runId: string, root: string): boolean {
    let id: string | undefined = runId;
    for (let depth = 0; id !== undefined && depth < 32; depth++) {
      if (id === root) return true;
      id = this.#parents.get(id);
    }
    return false;
  }

  #hasDirty(only: string | undefined): boolean {
    for (const id of this.#dirty) if (only === undefined || this.#belongsTo(id, only)) return true;
    return false;
  }

  #busyRuns(only: string | undefined): boolean {
    for (const [runId, execs] of this.#execs) {
      if (execs.size > 0 && (only === undefined || this.#belongsTo(runId, only))) return true;
    }
    return false;
  }

  #idleMs(): number {
    return Math.max(50, Math.min(MAX_IDLE_MS, Math.floor(this.#o.leaseTtlMs / 3)));
  }

  #signal(): void {
    const wakers = this.#wakers;
    this.#wakers = [];
    for (const wake of wakers) wake();
  }

  #idle(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#scan = true;
        done();
      }, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.#wakers.push(done);
    });
  }

  /** Marks a run to be advanced soon. */
  #kick(runId: string): void {
    this.#dirty.add(runId);
    this.#signal();
  }

  async #stop(): Promise<void> {
    this.#shutdown.abort();
    // Running steps may finish within the grace period: their outcomes are recorded as usual (no new
    // step starts). Returns as soon as none runs.
    const deadline = Date.now() + (this.#o.shutdownGraceMs ?? SHUTDOWN_GRACE_MS);
    for (;;) {
      for (const exec of [...this.#execs.values()].flatMap((m) => [...m.values()])) {
        if (exec.outcome && !exec.recording) await this.#record(exec);
      }
      const left = deadline - Date.now();
      if (!this.#busyRuns(undefined) || left <= 0) break;
      await this.#idle(Math.min(left, 250));
    }
    // The rest is abandoned: not recorded; whoever drives the run next recovers those steps.
    for (const exec of [...this.#execs.values()].flatMap((m) => [...m.values()])) {
      exec.controller.abort(
        new AbortedError(
          'shutdown',
          ErrorCode.unavailable,
          `step ${exec.stepId} was interrupted: gameops is stopping`,
        ),
      );
      clearTimeout(exec.timer);
      clearTimeout(exec.logTimer);
    }
    this.#execs.clear();
    // Leases are released so another worker (PostgreSQL) takes over at once; on SQLite the next start
    // voids them anyway. Runs with unrecorded outcomes keep theirs and are recovered.
    for (const [runId, cached] of this.#cache) {
      if (cached.run.leaseOwner !== this.workerId || isTerminal(cached.run.status)) continue;
      await this.#o.store.runs
        .transaction(`releasing the lease of run ${runId}`, async (tx) => {
          const run = await tx.lockRun(runId);
          if (run?.leaseOwner === this.workerId)
            await tx.updateRun(runId, { leaseOwner: null, leaseExpiresAt: null });
        })
        .catch((err: unknown) =>
          this.#o.log.warn({ err: errorMessage(err), runId }, 'could not release run lease'),
        );
    }
    this.#cache.clear();
  }

  /**
   * Moves one run as far as it can go now: records finished steps, takes the lease, recovers steps
   * interrupted elsewhere, applies timeouts, starts ready steps, derives the run's status.
   */
  async #advance(runId: string): Promise<boolean> {
    let progressed = false;
    for (const exec of [...(this.#execs.get(runId)?.values() ?? [])]) {
      if (exec.outcome && !exec.recording) progressed = (await this.#record(exec)) || progressed;
    }
    let launches: Launch[] = [];
    const moved = await this.#withRun(runId, `advancing run ${runId}`, async (t) => {
      const result = await this.#advanceIn(t);
      launches = t.launches;
      return result;
    });
    for (const launch of launches) this.#launch(launch);
    return progressed || moved === true || launches.length > 0;
  }

  async #advanceIn(t: Txn): Promise<boolean> {
    const run = t.run;
    const now = t.now.getTime();
    const local = this.#execs.get(run.id) ?? new Map<string, Execution>();
    if (isTerminal(run.status)) {
      if (run.leaseOwner === this.workerId) t.patchRun({ leaseOwner: null, leaseExpiresAt: null });
      for (const exec of local.values()) this.#abortExec(exec, 'cancel', `run ${run.id} is ${run.status}`);
      return false;
    }
    // The lease.
    const foreign = run.leaseOwner !== undefined && run.leaseOwner !== this.workerId;
    if (foreign && run.leaseExpiresAt !== undefined && Date.parse(run.leaseExpiresAt) > now) {
      for (const exec of local.values()) {
        this.#abortExec(exec, 'lease', `run ${run.id} is now driven by worker ${run.leaseOwner}`);
      }
      return false;
    }
    const leaseUntil = new Date(now + this.#o.leaseTtlMs).toISOString();
    if (run.leaseOwner !== this.workerId) {
      t.patchRun({ leaseOwner: this.workerId, leaseExpiresAt: leaseUntil });
      if (foreign) t.log(undefined, `worker ${this.workerId} took over from ${run.leaseOwner}`);
    } else if (!run.leaseExpiresAt || Date.parse(run.leaseExpiresAt) - now < this.#o.leaseTtlMs / 2) {
      t.patchRun({ leaseExpiresAt: leaseUntil }, { quiet: true });
    }
    if (run.status === 'queued' || (!run.startedAt && !run.paused)) {
      // A run paused while queued starts (and gets its deadline) when it is resumed.
      t.patchRun(
        {
          ...(run.status === 'queued' ? { status: 'running' as const } : {}),
          startedAt: t.nowIso,
          ...(t.cached.def.timeoutMs
            ? { deadlineAt: new Date(now + t.cached.def.timeoutMs).toISOString() }
            : {}),
        },
        {},
      );
    }
    // The run's deadline.
    if (t.run.deadlineAt && now >= Date.parse(t.run.deadlineAt)) {
      const why = `run timed out after ${t.cached.def.timeoutMs ?? 0} ms`;
      await this.#failRunNow(t, why, local);
      return true;
    }
    // Someone else (a cancel and retry through another process) replaced these attempts: stop them
    // before anything is claimed again; their results would be refused anyway.
    for (const exec of local.values()) {
      const state = t.states.get(exec.stepId);
      const comp = state?.compensation as Compensation | undefined;
      const current =
        state !== undefined &&
        state.fence === exec.fence &&
        (exec.mode === 'compensate' ? comp?.status === 'running' : state.status === 'running');
      if (!current && !exec.outcome) {
        this.#abortExec(
          exec,
          'cancel',
          `step ${exec.stepId} of run ${run.id} was changed by another process`,
        );
      }
    }
    // Steps' own deadlines.
    for (const exec of local.values()) {
      if (!exec.outcome && exec.deadline && now >= exec.deadline.at) {
        this.#abortExec(exec, 'timeout', exec.deadline.message);
      }
    }
    // Steps left running by a worker that is gone.
    for (const def of t.cached.def.steps) {
      const state = t.step(def.id);
      const comp = state.compensation as Compensation | undefined;
      const running = state.status === 'running' || comp?.status === 'running';
      if (running && !local.has(def.id)) await this.#recover(t, def, state);
    }
    // Failure handling: a failing step stops new starts; compensation runs once nothing else does.
    const failingNow = () => t.cached.def.steps.filter((def) => failsRun(def, t.step(def.id)));
    if (failingNow().length === 0 && !t.run.paused && !this.#anyUnverified(t)) {
      await this.#startReady(t, local);
    }
    const failing = failingNow();
    if (failing.length > 0) await this.#handleFailure(t, failing, local);
    this.#deriveStatus(t);
    return t.changed;
  }

  #anyUnverified(t: Txn): boolean {
    return t.cached.def.steps.some((def) => t.step(def.id).status === 'needs-verification');
  }

  /** Applies the run's status derived from its steps; a finished run gives up its lease. */
  #deriveStatus(t: Txn): void {
    if (isTerminal(t.run.status)) return;
    const derived = deriveRunStatus(t.cached.def.steps, t.states, {
      paused: t.run.paused,
      compensating: t.run.compensating,
      compensationPending: t.run.compensating && this.#compensationCandidates(t).length > 0,
    });
    if (derived.status === 'paused' && t.run.status === 'paused') return;
    let reason = derived.reason;
    if (derived.status === 'failed' && t.run.compensating)
      reason = `${reason}; ${this.#compensationReport(t)}`;
    if (derived.status !== t.run.status || (reason ?? null) !== (t.run.reason ?? null)) {
      const terminal = isTerminal(derived.status);
      t.patchRun(
        {
          status: derived.status,
          reason: reason ?? null,
          ...(terminal ? { finishedAt: t.nowIso, leaseOwner: null, leaseExpiresAt: null } : {}),
        },
        { message: reason, quiet: derived.status === t.run.status },
      );
      if (terminal && t.run.parentRunId) t.afterCommit(() => this.#kick(t.run.parentRunId!));
    }
  }

  /** Starts every pending step that is ready, and moves waiting and retrying steps whose time came. */
  async #startReady(t: Txn, local: Map<string, Execution>): Promise<void> {
    const now = t.now.getTime();
    let running = t.steps().filter((s) => s.status === 'running').length;
    for (const def of t.cached.def.steps) {
      const state = t.step(def.id);
      if (state.status === 'pending') {
        const approvalId = t.cached.coveredBy.get(def.id);
        const approvalStatus = approvalId === undefined ? undefined : t.step(approvalId).status;
        if (
          (approvalStatus === 'failed' || approvalStatus === 'cancelled') &&
          !failsRun(t.cached.defs.get(approvalId!)!, t.step(approvalId!))
        ) {
          // Never granted (rejected, expired, and the run goes on): it is skipped, not left waiting.
          t.patchStep(
            def.id,
            { status: 'skipped', finishedAt: t.nowIso },
            {
              message: `not run: approval ${approvalId} was ${approvalStatus === 'failed' ? 'not granted' : 'cancelled'}`,
            },
          );
          continue;
        }
        if (!isReady(def, t.states, t.cached.defs, t.cached.coveredBy)) continue;
        if (running >= MAX_PARALLEL_STEPS && def.kind !== 'group') continue;
        if (await this.#startStep(t, def)) running++;
      } else if (state.status === 'retrying') {
        if (state.notBefore && now < Date.parse(state.notBefore)) continue;
        if (running >= MAX_PARALLEL_STEPS) continue;
        if (await this.#startStep(t, def)) running++;
      } else if (state.status === 'waiting') {
        await this.#checkWaiting(t, def, state, local);
      }
    }
  }

  /** Starts one step; returns whether something now runs in this process. */
  async #startStep(t: Txn, def: Step): Promise<boolean> {
    const scope = this.#templateScope(t);
    const state = t.step(def.id);
    const first = state.status === 'pending';
    if (first && def.when) {
      let holds: boolean;
      try {
        holds = evaluateCondition(def.when, scope);
      } catch (err) {
        this.#failStep(t, def, toGameopsError(err), 'when');
        return false;
      }
      if (!holds) {
        t.patchStep(def.id, { status: 'skipped', finishedAt: t.nowIso }, { message: 'condition is false' });
        return false;
      }
    }
    const startedAt = state.startedAt ?? t.nowIso;
    switch (def.kind) {
      case 'group':
        t.patchStep(def.id, { status: 'succeeded', startedAt, finishedAt: t.nowIso });
        return false;
      case 'manual':
        t.patchStep(def.id, { status: 'waiting', startedAt }, { message: def.instructions });
        return false;
      case 'approval': {
        let plan: ApprovalPlan;
        try {
          plan = this.#approvalPlan(t, def);
        } catch (err) {
          this.#failStep(t, def, toGameopsError(err), 'approval');
          return false;
        }
        const request = this.#newRequest(t, def, plan);
        t.patchStep(
          def.id,
          { status: 'waiting', startedAt, approval: request },
          { message: request.message ?? def.message, data: { planHash: plan.planHash } },
        );
        return false;
      }
      case 'wait':
        if (def.until === undefined) {
          t.patchStep(def.id, {
            status: 'waiting',
            startedAt,
            notBefore: new Date(t.now.getTime() + (def.forMs ?? 0)).toISOString(),
          });
          return false;
        }
        return this.#claimPoll(t, def, startedAt);
      case 'runbook':
        return this.#startChild(t, def, scope, startedAt);
      case 'notify': {
        let message: string;
        try {
          message = asText(resolveTemplate(def.message, scope));
        } catch (err) {
          this.#failStep(t, def, toGameopsError(err), 'message');
          return false;
        }
        const notify = this.#o.notify;
        await this.#claim(t, def, 'run', `notify ${def.channel ?? '(run log)'}`, startedAt, async (ctx) => {
          ctx.log(message);
          if (notify)
            await notify(def.channel, message, ctx.signal, { runId: ctx.runId, stepId: ctx.stepId });
          return { channel: def.channel ?? null, sent: notify !== undefined };
        });
        return true;
      }
      case 'check': {
        const check = def.check === undefined ? undefined : this.#o.catalog.check(def.check);
        if (def.check !== undefined && !check) {
          this.#failStep(t, def, new InputError(`unknown check "${def.check}"`), 'check');
          return false;
        }
        let args: unknown;
        try {
          args = resolveTemplate(def.args, scope);
          if (check) args = parseArgs(check.args, args, def.id, 'args');
        } catch (err) {
          this.#failStep(t, def, toGameopsError(err), 'args');
          return false;
        }
        await this.#claim(t, def, 'run', `check ${def.check ?? '(assertions)'}`, startedAt, (ctx) =>
          check ? check.run(args, ctx) : Promise.resolve(undefined),
        );
        return true;
      }
      case 'action': {
        const action = this.#o.catalog.action(def.action);
        if (!action) {
          this.#failStep(t, def, new InputError(`unknown action "${def.action}"`), 'action');
          return false;
        }
        let args: unknown;
        try {
          args = parseArgs(action.args, resolveTemplate(def.args, scope), def.id, 'args');
        } catch (err) {
          this.#failStep(t, def, toGameopsError(err), 'args');
          return false;
        }
        if (!this.#approvalStillHolds(t, def)) return false;
        await this.#claim(t, def, 'run', `action ${action.name}`, startedAt, (ctx) => action.run(args, ctx), {
          args,
          audit: {
            action: action.name,
            effect: action.effect,
            target: safeTarget(action, args, this.#o.services),
          },
        });
        return true;
      }
    }
  }

  /**
   * Before a covered step runs: its approval must not have expired and its resolved arguments must
   * hash to what was approved. Otherwise the approval is requested again and the step waits.
   */
  #approvalStillHolds(t: Txn, def: ActionStep): boolean {
    const approvalId = t.cached.coveredBy.get(def.id);
    if (approvalId === undefined) return true;
    const approvalDef = t.cached.defs.get(approvalId) as ApprovalStep;
    if (t.step(approvalId).status === 'skipped') {
      // Its condition was false, this step's was not: it never runs unapproved.
      this.#failStep(
        t,
        def,
        new ConflictError(
          `approval ${approvalId} was skipped (its condition is false), so step ${def.id} it covers may not run`,
        ),
        'approval',
      );
      return false;
    }
    const approval = t.step(approvalId).approval as StoredApproval | undefined;
    let problem: string | undefined;
    let plan: ApprovalPlan | undefined;
    try {
      plan = this.#approvalPlan(t, approvalDef);
    } catch (err) {
      problem = `its plan cannot be computed: ${errorMessage(err)}`;
    }
    if (!approval || approval.decision !== 'approved') problem ??= 'it was not granted';
    else if (t.now.getTime() >= Date.parse(approval.expiresAt)) {
      problem ??= `the approval expired at ${approval.expiresAt}`;
    } else if (plan && plan.stepHashes[def.id] !== approval.stepHashes[def.id]) {
      problem ??= `the arguments or target of ${def.id} changed since they were approved`;
    }
    if (problem === undefined) {
      // Consumed: this grant covers this start (and its automatic retries), not a later re-run.
      if (!approval!.usedBy?.includes(def.id)) {
        t.patchStep(approvalId, {
          approval: { ...approval!, usedBy: [...(approval!.usedBy ?? []), def.id] },
        });
      }
      return true;
    }
    if (!plan) {
      this.#failStep(t, approvalDef, new InputError(problem), 'approval');
      return false;
    }
    t.patchStep(
      approvalId,
      { status: 'waiting', finishedAt: null, output: null, approval: this.#newRequest(t, approvalDef, plan) },
      { message: `step ${def.id} was not run: ${problem}; approve again` },
    );
    return false;
  }

  /** Waiting steps whose time came: wait delays and polls, sub-runs that finished, expired requests. */
  async #checkWaiting(t: Txn, def: Step, state: StoredStep, local: Map<string, Execution>): Promise<void> {
    const now = t.now.getTime();
    if (def.kind === 'wait') {
      if (local.has(def.id)) return;
      if (state.notBefore && now < Date.parse(state.notBefore)) return;
      if (def.until === undefined) {
        t.patchStep(def.id, { status: 'succeeded', finishedAt: t.nowIso, notBefore: null });
        return;
      }
      if (
        def.timeoutMs !== undefined &&
        state.startedAt &&
        now >= Date.parse(state.startedAt) + def.timeoutMs
      ) {
        this.#failStep(
          t,
          def,
          new UnavailableError(`step ${def.id}: the condition did not hold within ${def.timeoutMs} ms`),
          'wait',
        );
        return;
      }
      await this.#claimPoll(t, def, state.startedAt ?? t.nowIso);
    } else if (def.kind === 'runbook' && state.childRunId) {
      const child = await t.tx.getRun(state.childRunId);
      if (!child) {
        this.#failStep(t, def, new NotFoundError(`sub-run ${state.childRunId} is missing`), 'runbook');
      } else if (child.status === 'succeeded') {
        t.patchStep(def.id, {
          status: 'succeeded',
          finishedAt: t.nowIso,
          output: { runId: child.id, status: child.status },
        });
      } else if (child.status === 'failed' || child.status === 'cancelled') {
        this.#failStep(
          t,
          def,
          new GameopsError(
            ErrorCode.conflict,
            `sub-run ${child.id} (${child.runbook}) ${child.status}: ${child.reason ?? ''}`,
          ),
          'runbook',
          true,
        );
      }
    } else if (def.kind === 'approval') {
      const approval = state.approval as StoredApproval | undefined;
      if (approval && approval.decision === undefined && now >= Date.parse(approval.expiresAt)) {
        this.#failStep(
          t,
          def,
          new GameopsError(
            ErrorCode.conflict,
            `the approval request expired at ${approval.expiresAt} without a decision`,
          ),
          'approval',
          true,
        );
      }
    }
  }

  async #claimPoll(t: Txn, def: Extract<Step, { kind: 'wait' }>, startedAt: string): Promise<boolean> {
    const until = def.until!;
    const check = until.check === undefined ? undefined : this.#o.catalog.check(until.check);
    if (until.check !== undefined && !check) {
      this.#failStep(t, def, new InputError(`unknown check "${until.check}"`), 'until.check');
      return false;
    }
    let args: unknown;
    try {
      args = resolveTemplate(until.args, this.#templateScope(t));
      if (check) args = parseArgs(check.args, args, def.id, 'until.args');
    } catch (err) {
      this.#failStep(t, def, toGameopsError(err), 'until.args');
      return false;
    }
    await this.#claim(t, def, 'poll', `check ${until.check ?? '(assertions)'}`, startedAt, (ctx) =>
      check ? check.run(args, ctx) : Promise.resolve(undefined),
    );
    return true;
  }

  async #startChild(
    t: Txn,
    def: Extract<Step, { kind: 'runbook' }>,
    scope: TemplateScope,
    startedAt: string,
  ): Promise<boolean> {
    const runbook = this.#o.library.get(def.runbook);
    if (!runbook) {
      this.#failStep(t, def, new NotFoundError(`runbook ${def.runbook} is not in the library`), 'runbook');
      return false;
    }
    try {
      // A sub-run runs for the parent's requester: they must be allowed to run it themselves.
      this.#o.policy.check(t.run.requestedBy, { action: 'run', runbook });
    } catch (err) {
      this.#failStep(t, def, toGameopsError(err), 'runbook', true);
      return false;
    }
    let params: Record<string, unknown>;
    try {
      const resolved = resolveTemplate(def.params, scope);
      params = validateParams(runbook, (resolved ?? {}) as Record<string, unknown>);
    } catch (err) {
      this.#failStep(t, def, toGameopsError(err), 'params');
      return false;
    }
    const childId = await this.#insertRun(t.tx, {
      runbook,
      params,
      trigger: 'runbook',
      actor: t.run.requestedBy,
      parent: { runId: t.run.id, stepId: def.id },
    });
    t.patchStep(
      def.id,
      { status: 'waiting', startedAt, childRunId: childId },
      { message: `started sub-run ${childId} of ${runbook.name}` },
    );
    t.afterCommit(() => {
      this.#parents.set(childId!, t.run.id);
      this.#kick(childId!);
    });
    return false;
  }

  /** Claims an attempt (fence, attempt row, running) and queues its execution for after the commit. */
  async #claim(
    t: Txn,
    def: Step,
    mode: ExecMode,
    what: string,
    startedAt: string,
    work: (ctx: StepContext) => Promise<unknown>,
    extra: { args?: unknown; audit?: Record<string, unknown> } = {},
  ): Promise<void> {
    const fence = await t.tx.nextFence();
    const state = t.step(def.id);
    const attempt = mode === 'verify' ? Math.max(1, state.attempt) : state.attempt + 1;
    await t.tx.insertAttempt({
      runId: t.run.id,
      stepId: def.id,
      attempt,
      fence,
      worker: this.workerId,
      status: mode === 'compensate' ? 'compensating' : mode === 'verify' ? 'verifying' : 'started',
      startedAt: t.nowIso,
    });
    const patch: StepPatch = { fence, attempt };
    if (mode === 'compensate') {
      patch.compensation = { status: 'running' } satisfies Compensation;
    } else {
      patch.status = 'running';
      patch.startedAt = startedAt;
      patch.notBefore = null;
    }
    const message =
      mode === 'compensate'
        ? `compensating: ${what}`
        : mode === 'verify'
          ? `asking ${what} whether attempt ${attempt} took effect`
          : `attempt ${attempt}: ${what}`;
    // A wait polls again and again (every intervalMs, for as long as an hour): its repeated claims are not
    // told as events or audit records, only the first one and what changes (see the 'poll' outcome).
    const repeatPoll = mode === 'poll' && state.status === 'waiting' && state.attempt > 0;
    t.patchStep(def.id, patch, {
      message,
      force: !repeatPoll,
      quiet: repeatPoll,
      data: {
        attempt,
        fence,
        mode,
        ...(extra.audit ?? {}),
        ...(extra.args === undefined ? {} : { args: this.#o.mask(extra.args) }),
      },
    });
    const exec: Execution = {
      runId: t.run.id,
      stepId: def.id,
      mode,
      fence,
      attempt,
      what,
      controller: new AbortController(),
      recording: false,
      logs: [],
    };
    const timeoutMs = mode === 'compensate' ? undefined : def.timeoutMs;
    if (timeoutMs !== undefined) {
      // A wait's timeout bounds the whole wait, so a poll may last until its end.
      const from = def.kind === 'wait' ? Date.parse(startedAt) : t.now.getTime();
      exec.deadline = {
        at: from + timeoutMs,
        message: `step ${def.id} (${what}) timed out after ${timeoutMs} ms`,
      };
    }
    if (t.run.deadlineAt) {
      const at = Date.parse(t.run.deadlineAt);
      if (!exec.deadline || at < exec.deadline.at) {
        exec.deadline = {
          at,
          message: `step ${def.id} (${what}) was stopped: run ${t.run.id} timed out after ${t.cached.def.timeoutMs ?? 0} ms`,
        };
      }
    }
    // Registered now: a later pass in this transaction must not mistake it for an orphan.
    let runExecs = this.#execs.get(t.run.id);
    if (!runExecs) this.#execs.set(t.run.id, (runExecs = new Map<string, Execution>()));
    runExecs.set(def.id, exec);
    t.onRollback(() => {
      if (runExecs.get(def.id) === exec) runExecs.delete(def.id);
    });
    t.launches.push({ exec, work });
  }

  #launch({ exec, work }: Launch): void {
    const ctx: StepContext = {
      runId: exec.runId,
      stepId: exec.stepId,
      attempt: exec.attempt,
      fence: exec.fence,
      clock: this.#o.clock,
      signal: exec.controller.signal,
      log: (line) => this.#logLine(exec, line),
      services: this.#o.services,
    };
    if (exec.deadline) {
      const ms = Math.max(0, exec.deadline.at - this.#o.clock.now().getTime());
      const deadline = exec.deadline;
      exec.timer = setTimeout(
        () => {
          if (this.#o.clock.now().getTime() >= deadline.at)
            this.#abortExec(exec, 'timeout', deadline.message);
          else this.#kick(exec.runId);
        },
        Math.min(ms, 2 ** 31 - 1),
      );
      exec.timer.unref();
    }
    const signal = exec.controller.signal;
    const aborted = new Promise<never>((_, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    // A connector that ignores its signal cannot hold the step: the race ends at the abort.
    aborted.catch(() => undefined);
    Promise.race([Promise.resolve().then(() => work(ctx)), aborted])
      .then(
        (value) => {
          // What an action returns is stored as JSON: no BigInt, cycles or NUL bytes get that far.
          exec.outcome = { ok: true, value: storable(value) };
        },
        (err: unknown) => {
          const error = signal.aborted ? toGameopsError(signal.reason) : toGameopsError(err);
          if (error.message.includes('\u0000')) error.message = stripNul(error.message);
          exec.outcome = { ok: false, error };
        },
      )
      .finally(() => {
        clearTimeout(exec.timer);
        this.#kick(exec.runId);
      })
      .catch(() => undefined);
  }

  #abortExec(exec: Execution, kind: AbortKind, message: string): void {
    if (exec.outcome || exec.controller.signal.aborted) return;
    const code = kind === 'timeout' || kind === 'shutdown' ? ErrorCode.unavailable : ErrorCode.conflict;
    exec.controller.abort(new AbortedError(kind, code, message));
  }

  #abortRun(runId: string, kind: AbortKind, message: string): void {
    for (const exec of this.#execs.get(runId)?.values() ?? []) {
      this.#abortExec(exec, kind, `step ${exec.stepId} (${exec.what}) was stopped: ${message}`);
    }
  }

  /** Records a finished execution; returns whether the run changed. */
  async #record(exec: Execution): Promise<boolean> {
    const outcome = exec.outcome!;
    const runExecs = this.#execs.get(exec.runId);
    const forget = () => {
      if (runExecs?.get(exec.stepId) === exec) runExecs.delete(exec.stepId);
      if (runExecs?.size === 0) this.#execs.delete(exec.runId);
      clearTimeout(exec.logTimer);
    };
    if (!outcome.ok && outcome.error instanceof AbortedError) {
      const kind = outcome.error.kind;
      if (kind === 'shutdown' || kind === 'lease' || kind === 'cancel') {
        // Not ours to record: the step stays running and whoever drives the run next recovers it (a
        // cancel already recorded the attempt's outcome as unknown).
        forget();
        return false;
      }
    }
    exec.recording = true;
    try {
      await exec.logFlush;
      const changed = await this.#withRun(exec.runId, `recording step ${exec.stepId}`, (t) =>
        this.#recordIn(t, exec),
      );
      forget();
      return changed;
    } catch (err) {
      exec.recording = false;
      this.#o.log.warn(
        { err: errorMessage(err), runId: exec.runId, stepId: exec.stepId },
        'could not record a step outcome; will retry',
      );
      if (err instanceof UnavailableError) return false;
      // The store refuses this result itself: it would refuse it again. Fail the step with why (not
      // retried), rather than leave it running for recovery to run again and again.
      forget();
      return this.#failUnrecordable(exec, toGameopsError(err));
    }
  }

  async #failUnrecordable(exec: Execution, err: GameopsError): Promise<boolean> {
    const error = this.#maskedError({
      code: err.code,
      message: `step ${exec.stepId} (${exec.what}): its result could not be stored: ${err.message}`,
    });
    return this.#withRun(exec.runId, `failing step ${exec.stepId}`, async (t) => {
      const def = t.cached.defs.get(exec.stepId);
      const state = t.states.get(exec.stepId);
      if (!def || !state || state.fence !== exec.fence) return false;
      const comp = state.compensation as Compensation | undefined;
      const guard = { fence: exec.fence, status: state.status };
      await t.tx.updateAttempt(exec.runId, exec.stepId, exec.attempt, {
        status: 'failed',
        finishedAt: t.nowIso,
        error,
      });
      if (exec.mode === 'compensate') {
        if (comp?.status !== 'running') return false;
        t.patchStep(
          def.id,
          { compensation: { status: 'failed', error } satisfies Compensation },
          { guard, message: `compensation failed: ${error.message}`, force: true },
        );
      } else {
        if (state.status !== 'running') return false;
        this.#failStep(t, def, error, undefined, true, guard);
      }
      return true;
    }).catch((failure: unknown) => {
      this.#o.log.warn(
        { err: errorMessage(failure), runId: exec.runId, stepId: exec.stepId },
        'could not record that a step outcome cannot be stored',
      );
      return false;
    });
  }

  async #recordIn(t: Txn, exec: Execution): Promise<boolean> {
    const def = t.cached.defs.get(exec.stepId);
    const state = t.states.get(exec.stepId);
    const comp = state?.compensation as Compensation | undefined;
    const current =
      def !== undefined &&
      state !== undefined &&
      state.fence === exec.fence &&
      (exec.mode === 'compensate' ? comp?.status === 'running' : state.status === 'running');
    this.#flushLogsIn(t, exec);
    const outcome = exec.outcome!;
    if (!current) {
      // Fencing: a newer attempt (or a cancel) replaced this one; its late result is refused.
      await t.tx.updateAttempt(exec.runId, exec.stepId, exec.attempt, {
        status: 'stale',
        finishedAt: t.nowIso,
        error: { code: 'conflict', message: `fence ${exec.fence} is no longer current: result refused` },
      });
      t.touch();
      this.#o.log.warn(
        { runId: exec.runId, stepId: exec.stepId, fence: exec.fence, currentFence: state?.fence },
        'refused a step outcome whose fence is no longer current',
      );
      return true;
    }
    const guard = { fence: exec.fence, status: state.status };
    const error = outcome.ok ? undefined : outcome.error;
    await t.tx.updateAttempt(exec.runId, exec.stepId, exec.attempt, {
      status:
        exec.mode === 'compensate' ? (error ? 'failed' : 'compensated') : error ? 'failed' : 'succeeded',
      finishedAt: t.nowIso,
      error: error ? this.#maskedError(error) : null,
    });
    switch (exec.mode) {
      case 'compensate':
        if (error) {
          t.patchStep(
            def.id,
            { compensation: { status: 'failed', error: this.#maskedError(error) } satisfies Compensation },
            { guard, message: `compensation failed: ${error.message}`, force: true },
          );
        } else {
          t.patchStep(def.id, { status: 'compensated', compensation: { status: 'succeeded' } }, { guard });
        }
        return true;
      case 'verify': {
        const answer = outcome.ok ? outcome.value : 'unknown';
        if (answer === 'done') {
          t.patchStep(
            def.id,
            { status: 'succeeded', finishedAt: t.nowIso, output: { verified: 'done' } },
            { guard, message: `verify(): attempt ${exec.attempt} took effect` },
          );
        } else if (answer === 'not-done') {
          t.patchStep(
            def.id,
            { status: 'pending' },
            { guard, message: `verify(): attempt ${exec.attempt} did not take effect; it runs again` },
          );
        } else {
          t.patchStep(
            def.id,
            {
              status: 'needs-verification',
              error: {
                code: 'unknown_outcome',
                message: `the outcome of attempt ${exec.attempt} (${exec.what}) is unknown${error ? ` (verify failed: ${error.message})` : ''}: check by hand, then \`gameops runs verify\``,
              },
            },
            { guard },
          );
        }
        return true;
      }
      case 'poll': {
        const verdict = this.#judgeCheck(
          t,
          def,
          outcome,
          (def as Extract<Step, { kind: 'wait' }>).until!.assert,
        );
        if (verdict.status !== 'failed') {
          t.patchStep(
            def.id,
            { status: 'succeeded', finishedAt: t.nowIso, output: verdict.output ?? null, error: null },
            { guard },
          );
          return true;
        }
        const timeoutMs = def.timeoutMs;
        const startedAt = state.startedAt ? Date.parse(state.startedAt) : t.now.getTime();
        if (timeoutMs !== undefined && t.now.getTime() >= startedAt + timeoutMs) {
          this.#failStep(
            t,
            def,
            new UnavailableError(
              `step ${def.id}: the condition did not hold within ${timeoutMs} ms: ${verdict.error?.message ?? ''}`,
            ),
            'wait',
            true,
            guard,
          );
          return true;
        }
        const interval = (def as Extract<Step, { kind: 'wait' }>).intervalMs;
        t.patchStep(
          def.id,
          {
            status: 'waiting',
            notBefore: new Date(t.now.getTime() + interval).toISOString(),
            error: verdict.error ?? null,
          },
          // Told once per reason: a poll whose reason did not change is not an event again.
          {
            guard,
            message: `not yet: ${verdict.error?.message ?? ''}`,
            quiet: state.error?.message === verdict.error?.message,
          },
        );
        return true;
      }
      case 'run':
        break;
    }
    if (def.kind === 'check') {
      const verdict = this.#judgeCheck(t, def, outcome, def.assert);
      if (verdict.status === 'failed') {
        this.#failOrRetry(t, def, state, verdict.error!, guard, verdict.output);
      } else {
        t.patchStep(
          def.id,
          {
            status: verdict.status,
            finishedAt: t.nowIso,
            output: verdict.output ?? null,
            error: verdict.error ?? null,
          },
          { guard, ...(verdict.error ? { message: verdict.error.message } : {}) },
        );
      }
      return true;
    }
    if (outcome.ok) {
      t.patchStep(
        def.id,
        { status: 'succeeded', finishedAt: t.nowIso, output: outcome.value ?? null, error: null },
        { guard },
      );
    } else if (outcome.error instanceof AbortedError && this.#unsafeToRepeat(def)) {
      // Stopped mid-flight: it may have taken effect. Never re-run it automatically.
      await t.tx.updateAttempt(exec.runId, exec.stepId, exec.attempt, {
        status: 'unknown',
        finishedAt: t.nowIso,
        error: this.#maskedError(outcome.error),
      });
      t.patchStep(
        def.id,
        {
          status: 'needs-verification',
          notBefore: null,
          error: {
            code: UNKNOWN_OUTCOME,
            message: `${outcome.error.message}; ${exec.what} is not idempotent and its outcome is unknown: check whether it took effect, then \`gameops runs verify\` it done or not-done`,
          },
        },
        { guard },
      );
    } else {
      this.#failOrRetry(t, def, state, outcome.error, guard);
    }
    return true;
  }

  /** Running it again could do its mutation twice: a mutating action that is not idempotent, or a notify. */
  #unsafeToRepeat(def: Step): boolean {
    if (def.kind === 'notify') return true;
    if (def.kind !== 'action') return false;
    const action = this.#o.catalog.action(def.action);
    return !action || (action.effect !== 'read-only' && !action.idempotent);
  }

  #failOrRetry(
    t: Txn,
    def: Step,
    state: StoredStep,
    error: { code: string; message: string },
    guard: { fence: number; status: StepStatus },
    output?: unknown,
  ): void {
    const delay = retryDelayMs(def.retry, state.attempt + 1, error.code);
    if (delay === undefined) {
      this.#failStep(t, def, error, undefined, true, guard, output);
      return;
    }
    t.patchStep(
      def.id,
      {
        status: 'retrying',
        notBefore: new Date(t.now.getTime() + delay).toISOString(),
        error: { code: error.code, message: error.message },
        ...(output === undefined ? {} : { output }),
      },
      { guard, message: `attempt ${state.attempt} failed (${error.message}); retrying in ${delay} ms` },
    );
  }

  #failStep(
    t: Txn,
    def: Step,
    error: { code: string; message: string },
    field?: string,
    keepMessage = false,
    guard?: { fence: number; status: StepStatus },
    output?: unknown,
  ): void {
    const message =
      keepMessage || error.message.startsWith(`step ${def.id}`)
        ? error.message
        : `step ${def.id}${field ? ` (${field})` : ''}: ${error.message}`;
    t.patchStep(
      def.id,
      {
        status: 'failed',
        finishedAt: t.nowIso,
        error: { code: error.code, message },
        notBefore: null,
        ...(output === undefined ? {} : { output }),
      },
      { message, ...(guard ? { guard } : {}) },
    );
  }

  /**
   * A check's verdict: the worst of the check's own status and its assertions. Assertions see the
   * check's values as the step's output (`${{ steps.<this step>.output.<value> }}`).
   */
  #judgeCheck(
    t: Txn,
    def: Step,
    outcome: NonNullable<Execution['outcome']>,
    assertions: Assertion[],
  ): {
    status: 'succeeded' | 'warned' | 'failed';
    output?: unknown;
    error?: { code: string; message: string };
  } {
    if (!outcome.ok) return { status: 'failed', error: errorOf(outcome.error) };
    const result = outcome.value as CheckOutcome | undefined;
    const values = result?.values ?? {};
    const fails: string[] = [];
    const warns: string[] = [];
    if (result?.status === 'fail') fails.push(result.summary);
    if (result?.status === 'warn') warns.push(result.summary);
    const scope = this.#templateScope(t);
    scope.steps[def.id] = { status: 'running', output: values };
    for (const assertion of assertions) {
      let holds: boolean;
      let message: string;
      try {
        holds = evaluateCondition(assertion, scope);
        message = holds ? '' : asText(resolveTemplate(assertion.message, scope));
      } catch (err) {
        holds = false;
        message = `assertion could not be evaluated: ${errorMessage(err)}`;
      }
      if (!holds) (assertion.status === 'fail' ? fails : warns).push(message);
    }
    if (fails.length > 0)
      return { status: 'failed', output: values, error: { code: 'check_failed', message: fails.join('; ') } };
    if (warns.length > 0)
      return { status: 'warned', output: values, error: { code: 'check_warned', message: warns.join('; ') } };
    return { status: 'succeeded', output: values };
  }

  /** A step left running with no one running it here: re-run, verify, or hand it to a person. */
  async #recover(t: Txn, def: Step, state: StoredStep): Promise<void> {
    await t.tx.updateAttempt(t.run.id, def.id, state.attempt, {
      status: 'unknown',
      finishedAt: t.nowIso,
      error: { code: 'unknown_outcome', message: 'the worker running it was lost' },
    });
    const comp = state.compensation as Compensation | undefined;
    if (comp?.status === 'running' && def.kind === 'action' && def.compensate) {
      const action = this.#o.catalog.action(def.compensate.action);
      if (action && (action.effect === 'read-only' || action.idempotent)) {
        t.patchStep(
          def.id,
          { compensation: null },
          { message: 'compensation interrupted; it is idempotent and runs again', force: true },
        );
      } else {
        t.patchStep(
          def.id,
          {
            status: 'needs-verification',
            compensation: { status: 'needs-verification' } satisfies Compensation,
            error: {
              code: 'unknown_outcome',
              message: `compensation ${def.compensate.action} was interrupted and is not idempotent: check whether it took effect, then \`gameops runs verify\``,
            },
          },
          { force: true },
        );
      }
      return;
    }
    const lost = `attempt ${state.attempt} was interrupted (its worker was lost)`;
    switch (def.kind) {
      case 'check':
        t.patchStep(
          def.id,
          { status: 'pending' },
          { message: `${lost}; checks are read-only: it runs again` },
        );
        return;
      case 'wait':
        t.patchStep(
          def.id,
          { status: 'waiting', notBefore: t.nowIso },
          { message: `${lost}; polling again` },
        );
        return;
      case 'action': {
        const action = this.#o.catalog.action(def.action);
        if (action && (action.effect === 'read-only' || action.idempotent)) {
          t.patchStep(
            def.id,
            { status: 'pending' },
            {
              message: `${lost}; ${action.name} is ${action.effect === 'read-only' ? 'read-only' : 'idempotent'}: it runs again`,
            },
          );
          return;
        }
        if (action?.verify) {
          let args: unknown;
          try {
            args = parseArgs(action.args, resolveTemplate(def.args, this.#templateScope(t)), def.id, 'args');
          } catch {
            args = undefined;
          }
          if (args !== undefined) {
            const verify = action.verify.bind(action);
            await this.#claim(
              t,
              def,
              'verify',
              `action ${action.name}`,
              state.startedAt ?? t.nowIso,
              (ctx) => verify(args, ctx),
              { args },
            );
            return;
          }
        }
        break;
      }
      case 'notify':
      case 'approval':
      case 'manual':
      case 'group':
      case 'runbook':
        break;
    }
    t.patchStep(def.id, {
      status: 'needs-verification',
      error: {
        code: 'unknown_outcome',
        message: `${lost} and ${def.kind === 'action' ? `action ${def.action}` : `this ${def.kind} step`} is not idempotent: check whether it took effect, then \`gameops runs verify\` it done or not-done`,
      },
    });
  }

  /** Stops starting steps after a failure; runs compensations once nothing else runs. */
  async #handleFailure(t: Txn, failing: Step[], local: Map<string, Execution>): Promise<void> {
    const cause = failing[0]!;
    for (const def of t.cached.def.steps) {
      const state = t.step(def.id);
      if (state.status === 'pending' || state.status === 'retrying' || state.status === 'waiting') {
        if (def.kind === 'runbook' && state.childRunId)
          await this.#cancelChild(t, state.childRunId, `parent step ${cause.id} failed`);
        const exec = local.get(def.id);
        if (exec) this.#abortExec(exec, 'cancel', `step ${cause.id} failed`);
        t.patchStep(
          def.id,
          { status: 'cancelled', finishedAt: t.nowIso, notBefore: null },
          { message: `not run: step ${cause.id} failed` },
        );
      }
    }
    if (!t.run.compensating && failing.some((def) => def.onFailure === 'compensate')) {
      t.patchRun({ compensating: true }, { message: `step ${cause.id} failed: compensating` });
    }
    if (!t.run.compensating) return;
    const busy = t.cached.def.steps.some((def) => {
      const state = t.step(def.id);
      return (
        state.status === 'running' || (state.compensation as Compensation | undefined)?.status === 'running'
      );
    });
    if (busy || this.#anyUnverified(t)) return;
    const next = this.#compensationCandidates(t)[0];
    if (!next) return;
    const step = next as ActionStep;
    const action = this.#o.catalog.action(step.compensate!.action);
    let args: unknown;
    try {
      if (!action) throw new InputError(`unknown action "${step.compensate!.action}"`);
      args = parseArgs(
        action.args,
        resolveTemplate(step.compensate!.args, this.#templateScope(t)),
        step.id,
        'compensate.args',
      );
    } catch (err) {
      const error = this.#maskedError(toGameopsError(err));
      t.patchStep(
        step.id,
        { compensation: { status: 'failed', error } satisfies Compensation },
        {
          message: `compensation failed: ${error.message}`,
          force: true,
        },
      );
      return;
    }
    await this.#claim(
      t,
      step,
      'compensate',
      `action ${action.name}`,
      t.step(step.id).startedAt ?? t.nowIso,
      (ctx) => action.run(args, ctx),
      {
        args,
        audit: {
          action: action.name,
          effect: action.effect,
          target: safeTarget(action, args, this.#o.services),
        },
      },
    );
  }

  /** Finished steps with a compensation not yet run, newest completion first. */
  #compensationCandidates(t: Txn): Step[] {
    return t.cached.def.steps
      .filter((def) => {
        const state = t.step(def.id);
        return (
          def.kind === 'action' &&
          def.compensate !== undefined &&
          (state.status === 'succeeded' || state.status === 'warned') &&
          state.compensation === undefined
        );
      })
      .sort((a, b) => (t.step(b.id).finishedSeq ?? 0) - (t.step(a.id).finishedSeq ?? 0));
  }

  #compensationReport(t: Txn): string {
    const done: string[] = [];
    const failed: string[] = [];
    const newestFirst = [...t.cached.def.steps].sort(
      (a, b) => (t.step(b.id).finishedSeq ?? 0) - (t.step(a.id).finishedSeq ?? 0),
    );
    for (const def of newestFirst) {
      const comp = t.step(def.id).compensation as Compensation | undefined;
      if (comp?.status === 'succeeded') done.push(def.id);
      if (comp?.status === 'failed') failed.push(`${def.id} (${comp.error?.message ?? 'failed'})`);
    }
    const parts = [`compensated: ${done.length > 0 ? done.join(', ') : 'nothing'}`];
    if (failed.length > 0) parts.push(`COMPENSATION FAILED for ${failed.join('; ')}`);
    return parts.join('; ');
  }

  /** The run's deadline passed: running steps fail, the rest is cancelled, the run fails. */
  async #failRunNow(t: Txn, why: string, local: Map<string, Execution>): Promise<void> {
    for (const def of t.cached.def.steps) {
      const state = t.step(def.id);
      if (isDone(state.status) || state.status === 'needs-verification') continue;
      const exec = local.get(def.id);
      if (exec) this.#abortExec(exec, 'timeout', why);
      if (def.kind === 'runbook' && state.childRunId) await this.#cancelChild(t, state.childRunId, why);
      if (state.status === 'running') {
        await t.tx.updateAttempt(t.run.id, def.id, state.attempt, {
          status: 'unknown',
          finishedAt: t.nowIso,
          error: { code: UNKNOWN_OUTCOME, message: why },
        });
        t.patchStep(def.id, {
          status: 'failed',
          finishedAt: t.nowIso,
          error: {
            code: UNKNOWN_OUTCOME,
            message: `step ${def.id} was stopped while running (outcome unknown): ${why}`,
          },
        });
      } else {
        t.patchStep(def.id, { status: 'cancelled', finishedAt: t.nowIso, notBefore: null }, { message: why });
      }
    }
    t.patchRun(
      { status: 'failed', reason: why, finishedAt: t.nowIso, leaseOwner: null, leaseExpiresAt: null },
      { message: why },
    );
    if (t.run.parentRunId) t.afterCommit(() => this.#kick(t.run.parentRunId!));
  }

  async #cancelIn(t: Txn, why: string, actor: Actor, cancelled: string[]): Promise<void> {
    for (const def of t.cached.def.steps) {
      const state = t.step(def.id);
      if (isDone(state.status)) continue;
      if (def.kind === 'runbook' && state.childRunId)
        await this.#cancelChild(t, state.childRunId, why, cancelled);
      if (state.status === 'running') {
        await t.tx.updateAttempt(t.run.id, def.id, state.attempt, {
          status: 'unknown',
          finishedAt: t.nowIso,
        });
      }
      t.patchStep(
        def.id,
        {
          status: 'cancelled',
          finishedAt: t.nowIso,
          notBefore: null,
          ...(state.status === 'running'
            ? {
                error: {
                  code: UNKNOWN_OUTCOME,
                  message: `cancelled while running: outcome unknown (${why})`,
                },
              }
            : {}),
        },
        { actor, message: state.status === 'running' ? 'cancelled while running: outcome unknown' : why },
      );
    }
    t.patchRun(
      {
        status: 'cancelled',
        cancelRequested: true,
        reason: why,
        finishedAt: t.nowIso,
        leaseOwner: null,
        leaseExpiresAt: null,
      },
      { actor, action: 'run.cancel', message: why },
    );
    cancelled.push(t.run.id);
    if (t.run.parentRunId) t.afterCommit(() => this.#kick(t.run.parentRunId!));
  }

  /** Cancels a sub-run inside the parent's transaction (the lock order is always parent, then child). */
  async #cancelChild(t: Txn, childId: string, why: string, cancelled: string[] = []): Promise<void> {
    const child = await t.tx.lockRun(childId);
    if (!child || isTerminal(child.status)) return;
    const cached = this.#hydrate(
      child,
      await t.tx.steps(childId),
      await this.#knownDefinition(childId, () => t.tx.definition(childId)),
    );
    const sub = new Txn(this, t.tx, cached, t.now);
    await this.#cancelIn(sub, `parent run ${t.run.id}: ${why}`, ENGINE_ACTOR, cancelled);
    await sub.flush();
    t.nested(sub);
    t.afterCommit(() => this.#abortRun(childId, 'cancel', `parent run ${t.run.id} stopped it`));
  }

  // -------------------------------------------------------------------------------------------------
  // Approvals

  #approvalPlan(t: Txn, def: ApprovalStep): ApprovalPlan {
    const runbook = { ...t.cached.def, params: ANY_PARAMS } as Runbook;
    const known = this.#templateScope(t).steps;
    const ctx = {
      catalog: this.#o.catalog,
      services: this.#o.services,
      known,
      runId: t.run.id,
      requestedBy: t.run.requestedBy.name,
      only: def.covers,
    };
    const covered = (plan: Plan) => plan.steps.filter((step) => def.covers.includes(step.id));
    const exact = covered(planRun(runbook, t.run.params, ctx));
    const shown = covered(planRun(runbook, t.run.params, { ...ctx, mask: this.#o.mask }));
    return {
      planHash: approvalHash(exact),
      stepHashes: Object.fromEntries(exact.map((step) => [step.id, approvalHash([step])])),
      covers: shown,
    };
  }

  /**
   * Parameters that make an action's arguments invalid are refused before the run starts: every
   * action (and compensation) whose arguments depend on parameters alone is checked against its
   * action's schema. Arguments that use other steps' outputs are checked when the step runs.
   * @throws InputError naming the parameter's step and field
   */
  #checkArgs(steps: readonly Step[], params: Record<string, unknown>, requestedBy: string): void {
    const scope: TemplateScope = { params, steps: {}, run: { id: '', requestedBy } };
    const known = (t: unknown): { value: unknown } | undefined => {
      try {
        return { value: resolveTemplate(t, scope) };
      } catch {
        return undefined; // uses what is not known before the run
      }
    };
    const problems: string[] = [];
    const check = (stepId: string, actionName: string, args: unknown, field: string) => {
      const action = this.#o.catalog.action(actionName);
      const resolved = known(args);
      if (!action || !resolved) return;
      try {
        parseArgs(action.args, resolved.value, stepId, field);
      } catch (err) {
        problems.push(errorMessage(err));
      }
    };
    for (const step of steps) {
      if (step.kind !== 'action') continue;
      if (step.when) {
        let holds: boolean | undefined;
        try {
          holds = evaluateCondition(step.when, scope);
        } catch {
          holds = undefined;
        }
        if (holds === false) continue;
      }
      check(step.id, step.action, step.args, 'args');
      if (step.compensate) check(step.id, step.compensate.action, step.compensate.args, 'compensate.args');
    }
    if (problems.length > 0) {
      throw new InputError(`these parameters make steps invalid: ${problems.join('; ')}`, {
        details: { field: 'params' },
      });
    }
  }

  /** Everyone who set the run's parameters by a retry (from the audit log, which keeps them all). */
  async #requesters(run: StoredRun): Promise<Actor[]> {
    const records = await this.#o.store.audit.list({
      target: `run:${run.id}`,
      action: 'run.retry',
      limit: 1000,
    });
    return records.filter((record) => record.data.params !== undefined).map((record) => record.actor);
  }

  #newRequest(t: Txn, def: ApprovalStep, plan: ApprovalPlan): StoredApproval {
    let message: string;
    try {
      message = this.maskText(asText(resolveTemplate(def.message, this.#templateScope(t))));
    } catch {
      message = def.message; // a reference not known yet: shown as written
    }
    return {
      message,
      planHash: plan.planHash,
      requestedAt: t.nowIso,
      expiresAt: new Date(t.now.getTime() + def.expiresInMs).toISOString(),
      covers: plan.covers,
      stepHashes: plan.stepHashes,
    };
  }

  // -------------------------------------------------------------------------------------------------
  // Logs and events

  #logLine(exec: Execution, line: string): void {
    const key = `${exec.runId}\u0000${exec.stepId}`;
    let count = this.#logCounts.get(key);
    if (!count) this.#logCounts.set(key, (count = { kept: 0, dropped: 0 }));
    if (count.kept >= MAX_LOG_LINES_PER_STEP) {
      count.dropped++;
      return;
    }
    count.kept++;
    const masked = this.#o.mask(stripNul(String(line)));
    exec.logs.push(cutLine(typeof masked === 'string' ? masked : String(masked)));
    if (!exec.logTimer && !exec.recording) {
      exec.logTimer = setTimeout(() => {
        exec.logTimer = undefined;
        if (exec.recording || exec.logs.length === 0) return;
        const lines = exec.logs.splice(0);
        const previous = exec.logFlush ?? Promise.resolve();
        exec.logFlush = previous
          .then(() =>
            this.#withRun(exec.runId, `writing the log of step ${exec.stepId}`, async (t) => {
              for (const text of lines) t.log(exec.stepId, text);
            }),
          )
          .then(
            () => undefined,
            (err: unknown) => {
              // Lines that could not be stored go with the outcome instead.
              exec.logs.unshift(...lines);
              this.#o.log.warn(
                { err: errorMessage(err), runId: exec.runId },
                'could not store step log lines',
              );
            },
          );
      }, 100);
      exec.logTimer.unref();
    }
  }

  #flushLogsIn(t: Txn, exec: Execution): void {
    clearTimeout(exec.logTimer);
    exec.logTimer = undefined;
    for (const text of exec.logs.splice(0)) t.log(exec.stepId, text);
    const key = `${exec.runId}\u0000${exec.stepId}`;
    const count = this.#logCounts.get(key);
    if (count?.dropped) {
      t.log(exec.stepId, `... ${count.dropped} lines dropped`);
      count.dropped = 0;
    }
  }

  #notifyEvents(runId: string): void {
    const waiters = this.#eventWaiters.get(runId);
    if (!waiters) return;
    this.#eventWaiters.delete(runId);
    for (const wake of waiters) wake();
  }

  #waitForEvents(runId: string, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      let waiters = this.#eventWaiters.get(runId);
      if (!waiters) this.#eventWaiters.set(runId, (waiters = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      waiters.add(done);
    });
  }

  // -------------------------------------------------------------------------------------------------
  // State

  /**
   * Runs `work` in a transaction over one run, serialised with every other transition of that run in
   * this process (and, on PostgreSQL, with other processes by the run's row lock).
   */
  async #withRun<T>(runId: string, doing: string, work: (t: Txn) => Promise<T>): Promise<T> {
    const previous = this.#locks.get(runId) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const chain = previous.then(() => mine);
    this.#locks.set(runId, chain);
    await previous;
    let txn: Txn | undefined;
    try {
      const result = await this.#o.store.runs.transaction(doing, async (tx) => {
        const run = await tx.lockRun(runId);
        if (!run || !this.#inScope(run)) throw new NotFoundError(`run ${runId} not found`);
        const cached = this.#cache.get(runId);
        const base =
          cached && cached.run.revision === run.revision
            ? { ...cached, run }
            : this.#hydrate(
                run,
                await tx.steps(runId),
                await this.#knownDefinition(runId, () => tx.definition(runId)),
              );
        txn = new Txn(this, tx, base, this.#o.clock.now());
        const value = await work(txn);
        await txn.flush();
        return value;
      });
      if (txn) {
        for (const done of txn.committed()) {
          const id = done.cached.run.id;
          if (done.wrote) this.#notifyEvents(id);
          if (isTerminal(done.cached.run.status) && !this.#execs.has(id)) this.#forget(id);
          else this.#cache.set(id, done.cached);
        }
        txn.runAfterCommit();
      }
      return result;
    } catch (err) {
      this.#cache.delete(runId);
      txn?.runRollbacks();
      throw err;
    } finally {
      release();
      if (this.#locks.get(runId) === chain) this.#locks.delete(runId);
    }
  }

  /** A finished run is no longer kept in memory (a long-running server sees many). */
  #forget(runId: string): void {
    this.#cache.delete(runId);
    this.#parents.delete(runId);
    for (const key of this.#logCounts.keys())
      if (key.startsWith(`${runId}\u0000`)) this.#logCounts.delete(key);
  }

  #hydrate(run: StoredRun, steps: StoredStep[], definition: unknown): CachedRun {
    const def = definition as RunDefinition;
    const defs = new Map(def.steps.map((step) => [step.id, step]));
    const stepMap = new Map(steps.map((step) => [step.stepId, step]));
    return { run, def, defs, coveredBy: coveringApprovals(def.steps), steps: stepMap };
  }

  /** The run's definition never changes: a cached copy is good whatever the run's revision. */
  #knownDefinition(runId: string, read: () => Promise<unknown>): Promise<unknown> {
    const cached = this.#cache.get(runId);
    return cached ? Promise.resolve(cached.def) : read();
  }

  async #load(runId: string): Promise<CachedRun> {
    const run = await this.#runInScope(runId);
    const cached = this.#cache.get(runId);
    if (cached && cached.run.revision === run.revision) return cached;
    return this.#hydrate(
      run,
      await this.#o.store.runs.steps(runId),
      await this.#knownDefinition(runId, () => this.#o.store.runs.definition(runId)),
    );
  }

  async #runInScope(runId: string): Promise<StoredRun> {
    if (typeof runId !== 'string' || runId.length === 0 || runId.length > 200) {
      throw new InputError('a run id is required');
    }
    const run = await this.#o.store.runs.getRun(runId);
    if (!run || !this.#inScope(run)) throw new NotFoundError(`run ${runId} not found`);
    return run;
  }

  #inScope(run: StoredRun): boolean {
    return run.service === this.#o.scope.service && run.environment === this.#o.scope.environment;
  }

  #stepDef(cached: CachedRun, stepId: string): Step {
    const def = cached.defs.get(stepId);
    if (!def) {
      throw new NotFoundError(
        `run ${cached.run.id} has no step ${stepId} (steps: ${cached.def.steps.map((s) => s.id).join(', ')})`,
      );
    }
    return def;
  }

  #runbookOf(name: string): Runbook {
    const runbook = this.#o.library.get(name);
    if (!runbook) {
      const known = this.#o.library.list().map((r) => r.name);
      throw new NotFoundError(`unknown runbook "${name}" (known: ${known.join(', ') || 'none'})`);
    }
    return runbook;
  }

  #scopedKey(key: string): string {
    if (typeof key !== 'string' || key.length === 0 || key.length > 300) {
      throw new InputError('idempotencyKey must be 1 to 300 characters');
    }
    return `${this.#o.scope.service}/${this.#o.scope.environment}/${key}`;
  }

  #templateScope(t: Txn): TemplateScope {
    const steps: TemplateScope['steps'] = {};
    for (const state of t.steps()) {
      if (FINISHED_STEP_STATUSES.includes(state.status)) {
        steps[state.stepId] = {
          status: state.status,
          ...(state.output === undefined ? {} : { output: state.output }),
        };
      }
    }
    return { params: t.run.params, steps, run: { id: t.run.id, requestedBy: t.run.requestedBy.name } };
  }

  async #insertRun(
    tx: RunTx,
    input: {
      runbook: Runbook;
      params: Record<string, unknown>;
      trigger: StartRunInput['trigger'];
      actor: Actor;
      idempotencyKey?: string;
      reason?: string;
      parent?: { runId: string; stepId: string };
    },
  ): Promise<string | undefined> {
    const now = this.#o.clock.now();
    const nowIso = now.toISOString();
    const { params: _schema, ...definition } = input.runbook;
    const id = newRunId(now);
    const run: StoredRun = {
      id,
      ...this.#o.scope,
      runbook: input.runbook.name,
      version: input.runbook.version,
      definitionHash: input.runbook.hash,
      params: input.params,
      status: 'queued',
      trigger: input.trigger,
      requestedBy: input.actor,
      ...(input.idempotencyKey === undefined ? {} : { idempotencyKey: input.idempotencyKey }),
      ...(input.parent ? { parentRunId: input.parent.runId, parentStepId: input.parent.stepId } : {}),
      createdAt: nowIso,
      ...(input.reason === undefined ? {} : { reason: input.reason }),
      paused: false,
      cancelRequested: false,
      compensating: false,
      eventSeq: 1,
      revision: 1,
      updatedAt: nowIso,
    };
    if (!(await tx.insertRun(run, definition))) return undefined;
    await tx.insertSteps(
      input.runbook.steps.map((step) => ({
        runId: id,
        stepId: step.id,
        kind: step.kind,
        status: 'pending' as const,
        attempt: 0,
        fence: 0,
      })),
    );
    await tx.insertEvents([
      {
        runId: id,
        seq: 1,
        at: nowIso,
        type: 'run',
        status: 'queued',
        ...(input.reason ? { message: input.reason } : {}),
      },
    ]);
    await auditIn(
      tx,
      {
        actor: input.actor,
        action: 'run.start',
        target: `run:${id}`,
        data: {
          runbook: input.runbook.name,
          version: input.runbook.version,
          definitionHash: input.runbook.hash,
          trigger: input.trigger,
          params: this.#o.mask(input.params),
          ...(input.parent ? { parentRunId: input.parent.runId, parentStepId: input.parent.stepId } : {}),
        },
      },
      now,
    );
    return id;
  }

  async #view(runId: string): Promise<RunView> {
    const cached = await this.#load(runId);
    const { run, def } = cached;
    const steps: StepState[] = def.steps.map((stepDef) => {
      const state = cached.steps.get(stepDef.id);
      return stepView(stepDef, state, this.#o.mask);
    });
    let outcome: RunSummary['outcome'];
    if (run.status === 'succeeded') {
      const checks = def.steps.filter((stepDef) => stepDef.kind === 'check');
      const status = (id: string) => cached.steps.get(id)?.status;
      outcome = checks.some((c) => status(c.id) === 'failed')
        ? 'fail'
        : checks.some((c) => status(c.id) === 'warned')
          ? 'warn'
          : 'ok';
    }
    return {
      ...summary(run),
      ...(outcome ? { outcome } : {}),
      params: this.#o.mask(run.params) as Record<string, unknown>,
      definitionHash: run.definitionHash,
      steps,
    };
  }

  /** For Txn: how to mask. */
  maskValue(v: unknown): unknown {
    return this.#o.mask(v);
  }

  /** For Txn: a message with its secrets masked (errors of actions may quote them). */
  /** An error as stored (step, attempt, compensation): secrets masked, NUL removed. */
  #maskedError(error: { code: string; message: string }): { code: string; message: string } {
    return { code: error.code, message: this.maskText(stripNul(error.message)) };
  }

  maskText(text: string): string {
    const masked = this.#o.mask(text);
    return typeof masked === 'string' ? masked : String(text);
  }
}

interface ApprovalPlan {
  planHash: string;
  stepHashes: Record<string, string>;
  covers: PlannedStep[];
}

interface ChangeMeta {
  /** Who made the change. @default the engine */
  actor?: Actor;
  /** The audit action. @default `step.<status>` / `run.<status>` */
  action?: string;
  message?: string | undefined;
  data?: Record<string, unknown>;
  /** Only write when the stored fence and status still match (fencing). */
  guard?: { fence: number; status: StepStatus };
  /** Record an event and an audit record even when the status does not change. */
  force?: boolean;
  /** No event or audit record (lease renewals). */
  quiet?: boolean;
}

/**
 * One transition of one run: changes are applied to a copy in memory and written by `flush`, together
 * with their events and audit records, inside the caller's transaction.
 */
class Txn {
  readonly tx: RunTx;
  readonly now: Date;
  readonly nowIso: string;
  cached: CachedRun;
  launches: Launch[] = [];
  changed = false;
  readonly #engine: RunbookEngine;
  readonly #runPatch: RunPatch = {};
  readonly #stepPatches = new Map<
    string,
    { patch: StepPatch; guard?: { fence: number; status: StepStatus } }
  >();
  readonly #events: StoredEvent[] = [];
  readonly #audits: { actor: Actor; action: string; target: string; data?: Record<string, unknown> }[] = [];
  readonly #after: (() => void)[] = [];
  readonly #nested: Txn[] = [];
  readonly #rollbacks: (() => void)[] = [];
  #wrote = false;

  constructor(engine: RunbookEngine, tx: RunTx, base: CachedRun, now: Date) {
    this.#engine = engine;
    this.tx = tx;
    this.now = now;
    this.nowIso = now.toISOString();
    // Copy-on-write: patched steps live in #own until the commit, the base map is left alone (a
    // failed transaction then leaves nothing behind).
    this.#base = base.steps;
    this.cached = { ...base, run: { ...base.run } };
    this.states = { get: (id) => this.#own.get(id) ?? this.#base.get(id) };
  }

  /** The run's steps as this transition sees them. */
  readonly states: { get(id: string): StoredStep | undefined };
  readonly #base: Map<string, StoredStep>;
  readonly #own = new Map<string, StoredStep>();

  get run(): StoredRun {
    return this.cached.run;
  }

  step(id: string): StoredStep {
    const state = this.#own.get(id) ?? this.#base.get(id);
    if (state) return state;
    const def = this.cached.defs.get(id);
    const fresh: StoredStep = {
      runId: this.run.id,
      stepId: id,
      kind: def?.kind ?? 'action',
      status: 'pending',
      attempt: 0,
      fence: 0,
    };
    this.#own.set(id, fresh);
    return fresh;
  }

  /** Every step, in definition order. */
  steps(): StoredStep[] {
    return this.cached.def.steps.map((def) => this.step(def.id));
  }

  patchStep(id: string, patch: StepPatch, meta: ChangeMeta = {}): void {
    if (patch.error) {
      const message = this.#engine.maskText(stripNul(patch.error.message));
      patch = { ...patch, error: { ...patch.error, message } };
    }
    const comp = patch.compensation as Compensation | null | undefined;
    if (comp?.error) {
      const message = this.#engine.maskText(stripNul(comp.error.message));
      patch = { ...patch, compensation: { ...comp, error: { ...comp.error, message } } };
    }
    const before = this.step(id);
    const next: StoredStep = { ...before };
    for (const [key, value] of Object.entries(patch) as [keyof StepPatch, unknown][]) {
      if (value === undefined) continue;
      if (value === null) delete (next as unknown as Record<string, unknown>)[key];
      else (next as unknown as Record<string, unknown>)[key] = value;
    }
    const statusChanged =
      patch.status !== undefined && patch.status !== null && patch.status !== before.status;
    let seq: number | undefined;
    if (!meta.quiet && (statusChanged || meta.force || meta.message !== undefined)) {
      seq = this.#event({
        type: 'step',
        stepId: id,
        status: next.status,
        ...(meta.message ? { message: meta.message } : {}),
      });
      if (statusChanged && isDone(next.status) && next.status !== 'compensated') {
        next.finishedSeq = seq;
        patch = { ...patch, finishedSeq: seq };
      }
      if (statusChanged || meta.force || meta.actor) {
        this.#audits.push({
          actor: meta.actor ?? ENGINE_ACTOR,
          action: meta.action ?? `step.${next.status.replace(/[^a-z-]/g, '')}`,
          target: `run:${this.run.id}/step:${id}`,
          data: {
            ...(meta.data ?? {}),
            ...(statusChanged ? { from: before.status, to: next.status } : { status: next.status }),
            ...(next.error && statusChanged ? { error: next.error.message } : {}),
            ...(meta.message ? { message: meta.message } : {}),
          },
        });
      }
    }
    this.#own.set(id, next);
    const existing = this.#stepPatches.get(id);
    this.#stepPatches.set(id, {
      patch: { ...(existing?.patch ?? {}), ...patch },
      ...((existing?.guard ?? meta.guard) ? { guard: existing?.guard ?? meta.guard } : {}),
    });
    this.changed = true;
  }

  patchRun(patch: RunPatch, meta: ChangeMeta = {}): void {
    const before = this.run.status;
    const next: StoredRun = { ...this.run };
    for (const [key, value] of Object.entries(patch) as [keyof RunPatch, unknown][]) {
      if (value === undefined) continue;
      if (value === null) delete (next as unknown as Record<string, unknown>)[key];
      else (next as unknown as Record<string, unknown>)[key] = value;
    }
    this.cached.run = next;
    Object.assign(this.#runPatch, patch);
    const statusChanged = patch.status !== undefined && patch.status !== null && patch.status !== before;
    if (!meta.quiet && (statusChanged || meta.action || meta.message !== undefined)) {
      this.#event({ type: 'run', status: next.status, ...(meta.message ? { message: meta.message } : {}) });
      this.#audits.push({
        actor: meta.actor ?? ENGINE_ACTOR,
        action: meta.action ?? `run.${next.status.replace(/[^a-z-]/g, '')}`,
        target: `run:${this.run.id}`,
        data: {
          ...(meta.data ?? {}),
          ...(statusChanged ? { from: before, to: next.status } : { status: next.status }),
          ...(next.reason && statusChanged ? { reason: next.reason } : {}),
        },
      });
      this.changed = true;
    } else if (Object.keys(patch).some((k) => k !== 'leaseExpiresAt')) {
      this.changed = true;
    }
  }

  /** A log event (masked by the caller). */
  log(stepId: string | undefined, message: string): void {
    this.#event({ type: 'log', ...(stepId ? { stepId } : {}), message });
  }

  /** Something was written outside patches (an attempt row): the run's version must move. */
  touch(): void {
    this.#wrote = true;
  }

  afterCommit(hook: () => void): void {
    this.#after.push(hook);
  }

  onRollback(hook: () => void): void {
    this.#rollbacks.push(hook);
  }

  /** The transaction failed: undo what was registered in memory, here and in nested transitions. */
  runRollbacks(): void {
    for (const sub of this.#nested) sub.runRollbacks();
    for (const hook of this.#rollbacks) hook();
  }

  nested(sub: Txn): void {
    this.#nested.push(sub);
  }

  #event(event: Omit<StoredEvent, 'runId' | 'seq' | 'at'>): number {
    const seq = this.run.eventSeq + 1;
    this.cached.run = { ...this.run, eventSeq: seq };
    this.#runPatch.eventSeq = seq;
    const message = event.message === undefined ? {} : { message: this.#engine.maskText(event.message) };
    this.#events.push({ runId: this.run.id, seq, at: this.nowIso, ...event, ...message });
    return seq;
  }

  async flush(): Promise<void> {
    const anything =
      this.#wrote ||
      this.#events.length > 0 ||
      this.#stepPatches.size > 0 ||
      Object.keys(this.#runPatch).length > 0;
    if (!anything) return;
    this.#wrote = true;
    for (const [stepId, { patch, guard }] of this.#stepPatches) {
      const ok = await this.tx.updateStep(this.run.id, stepId, patch, guard);
      if (!ok) {
        throw new ConflictError(
          `step ${stepId} of run ${this.run.id} changed under this worker (fence ${guard?.fence}): transition refused`,
        );
      }
    }
    const revision = this.run.revision + 1;
    this.cached.run = { ...this.run, revision, updatedAt: this.nowIso };
    await this.tx.updateRun(this.run.id, { ...this.#runPatch, revision, updatedAt: this.nowIso });
    if (this.#events.length > 0) await this.tx.insertEvents(this.#events);
    for (const entry of this.#audits) {
      await auditIn(
        this.tx,
        { ...entry, data: this.#engine.maskValue(entry.data) as Record<string, unknown> },
        this.now,
      );
    }
  }

  /** This transition and nested ones (sub-runs), after commit. */
  /** After the commit: this transition's run state (the base map takes the patched steps) and nested ones. */
  committed(): { cached: CachedRun; wrote: boolean }[] {
    for (const [id, state] of this.#own) this.#base.set(id, state);
    this.#own.clear();
    return [{ cached: this.cached, wrote: this.#wrote }, ...this.#nested.flatMap((sub) => sub.committed())];
  }

  runAfterCommit(): void {
    for (const sub of this.#nested) sub.runAfterCommit();
    for (const hook of this.#after) hook();
  }
}

const ANY_PARAMS = z.record(z.string(), z.unknown());

/** Appends an audit record; data that the audit log refuses (e.g. a token-like value) is replaced. */
async function auditIn(
  tx: RunTx,
  entry: { actor: Actor; action: string; target: string; data?: Record<string, unknown> },
  at: Date,
): Promise<void> {
  try {
    await tx.audit(entry, at);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    // appendAudit validates before it writes, so the transaction is still usable.
    await tx.audit({ ...entry, data: { withheld: `data not recordable: ${err.message}` } }, at);
  }
}

function validateParams(runbook: Runbook, params: Record<string, unknown>): Record<string, unknown> {
  const result = runbook.params.safeParse(params ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = ['params', ...issue.path.map(String)].join('.');
    return `${field}: ${issue.message}`;
  });
  throw new InputError(`runbook ${runbook.name}: ${problems.join('; ')}`, {
    details: { field: ['params', ...(result.error.issues[0]?.path.map(String) ?? [])].join('.') },
  });
}

function parseArgs<T>(schema: z.ZodType<T>, value: unknown, stepId: string, field: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new InputError(
    `step ${stepId}: ${result.error.issues
      .map((issue) => `${[field, ...issue.path.map(String)].join('.')}: ${issue.message}`)
      .join('; ')}`,
  );
}

function safeTarget(action: ActionDefinition, args: unknown, services: unknown): string {
  try {
    return action.target(args, services);
  } catch (err) {
    return `(target unknown: ${errorMessage(err)})`;
  }
}

function errorOf(error: GameopsError): { code: string; message: string } {
  return { code: error.code, message: error.message };
}

function asText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return '';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? '';
}

function cutLine(line: string): string {
  if (Buffer.byteLength(line) <= MAX_LOG_LINE_BYTES) return line;
  let cut = line.slice(0, MAX_LOG_LINE_BYTES);
  while (Buffer.byteLength(cut) > MAX_LOG_LINE_BYTES - 16) cut = cut.slice(0, -64);
  return `${cut}… (cut)`;
}

/** The same person: the same actor id, or the same name (token names are unique; the local admin's is the OS user). */
function samePerson(a: Actor, b: Actor): boolean {
  const keys = (x: Actor) => [x.id.toLowerCase(), x.name.toLowerCase()];
  const theirs = keys(b);
  return keys(a).some((key) => theirs.includes(key));
}

/** PostgreSQL text cannot hold NUL. */
function stripNul(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '') : text;
}

/**
 * A copy of `value` that JSON can hold and PostgreSQL can store: BigInt as a decimal string, cycles
 * and functions as markers, NUL bytes removed, Dates as ISO strings, non-finite numbers as null,
 * `toJSON` honoured (a Secret becomes its mask; one that throws becomes a marker).
 */
function storable(value: unknown): unknown {
  const seen = new Set<object>();
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') return stripNul(v);
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'number') return Number.isFinite(v) ? v : null;
    if (typeof v === 'function' || typeof v === 'symbol') return `[${typeof v}]`;
    if (v === null || typeof v !== 'object') return v;
    if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
    if (seen.has(v)) return '[circular]';
    if (depth > 64) return '[too deep]';
    seen.add(v);
    try {
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') {
        // What JSON would store (a Secret gives its mask); a toJSON that throws is not stored.
        try {
          return walk((toJSON as () => unknown).call(v), depth + 1);
        } catch {
          return '[unserialisable]';
        }
      }
      if (Array.isArray(v)) return v.map((item) => walk(item, depth + 1));
      if (v instanceof Map) return walk(Object.fromEntries(v), depth + 1);
      if (v instanceof Set) return walk([...v], depth + 1);
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(v)) {
        if (item === undefined) continue;
        out[stripNul(key)] = walk(item, depth + 1);
      }
      return out;
    } finally {
      seen.delete(v);
    }
  };
  return walk(value, 0);
}

function isTerminal(status: RunStatus): boolean {
  return TERMINAL_RUN_STATUSES.includes(status);
}

function newRunId(now: Date): string {
  return `r${now.getTime().toString(36).padStart(9, '0')}${randomBytes(4).toString('hex')}`;
}

/** `id` and every run below it, from a list of active runs. */
function familyOf(id: string, active: { id: string; parentRunId?: string }[]): Set<string> {
  const family = new Set([id]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const run of active) {
      if (!family.has(run.id) && run.parentRunId && family.has(run.parentRunId)) {
        family.add(run.id);
        grew = true;
      }
    }
  }
  return family;
}

function toRunEvent(event: StoredEvent): RunEvent {
  return {
    seq: event.seq,
    runId: event.runId,
    at: event.at,
    type: event.type,
    ...(event.stepId ? { stepId: event.stepId } : {}),
    ...(event.status ? { status: event.status as RunEvent['status'] } : {}),
    ...(event.message ? { message: event.message } : {}),
  };
}

function summary(run: StoredRun): RunSummary {
  return {
    id: run.id,
    runbook: run.runbook,
    version: run.version,
    status: run.status,
    trigger: run.trigger,
    requestedBy: run.requestedBy,
    createdAt: run.createdAt,
    ...(run.startedAt ? { startedAt: run.startedAt } : {}),
    ...(run.finishedAt ? { finishedAt: run.finishedAt } : {}),
    ...(run.reason ? { reason: run.reason } : {}),
    ...(run.parentRunId ? { parentRunId: run.parentRunId } : {}),
  };
}

function stepView(def: Step, state: StoredStep | undefined, mask: (v: unknown) => unknown): StepState {
  const view: StepState = {
    id: def.id,
    kind: def.kind,
    status: state?.status ?? 'pending',
    attempt: state?.attempt ?? 0,
    fence: state?.fence ?? 0,
  };
  if (!state) return view;
  if (state.startedAt) view.startedAt = state.startedAt;
  if (state.finishedAt) view.finishedAt = state.finishedAt;
  if (state.notBefore) view.notBefore = state.notBefore;
  if (state.output !== undefined) view.output = mask(state.output);
  if (state.error) view.error = state.error;
  if (state.childRunId) view.childRunId = state.childRunId;
  if (state.approval) {
    const { stepHashes: _hashes, usedBy: _used, ...approval } = state.approval as StoredApproval;
    view.approval = approval;
  }
  if (state.compensation) view.compensation = state.compensation as Compensation;
  return view;
}

function info(runbook: Runbook, catalog: Catalog): RunbookInfo {
  return {
    name: runbook.name,
    version: runbook.version,
    title: runbook.title,
    description: runbook.description,
    source: runbook.source,
    paramsJsonSchema: runbook.paramsJsonSchema,
    runBy: runbook.runBy,
    tags: runbook.tags,
    steps: runbook.steps.map((step) => ({
      id: step.id,
      kind: step.kind,
      title: step.title,
      needs: step.needs,
      ...(step.kind === 'action' ? actionInfo(step, catalog) : {}),
      ...(step.kind === 'approval'
        ? {
            covers: step.covers,
            approvers: step.approvers,
            fourEyes: step.fourEyes,
            expiresInMs: step.expiresInMs,
          }
        : {}),
    })),
  };
}

function actionInfo(step: ActionStep, catalog: Catalog): { action: string; effect?: Effect } {
  const effect = catalog.action(step.action)?.effect;
  return { action: step.action, ...(effect ? { effect } : {}) };
}
