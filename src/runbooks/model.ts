/**
 * The runbook model (ADR 0007): what a runbook is once compiled, what a run is while and after it runs,
 * and the service the CLI and the API drive. Built-in runbooks (TypeScript) and user runbooks (YAML) both
 * compile to `Runbook`; the engine only ever sees this shape.
 */
import type { z } from 'zod';
import type { Clock } from '../core/index.ts';

// ---------------------------------------------------------------------------------------------------
// Identity (enforced by the server; see src/identity/)

/** Roles, weakest first. Each role may do everything the roles before it may. */
export const ROLES = ['viewer', 'responder', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who did something. `id` is stable and compared for four-eyes; `name` is for people. */
export interface Actor {
  /** `token:<tokenId>`, `local:<os user>`, `schedule:<name>`, `system`. */
  id: string;
  /** The person or system, e.g. the token's name ("alice") or "scheduler". */
  name: string;
  role: Role;
  kind: 'token' | 'local' | 'schedule' | 'system';
}

// ---------------------------------------------------------------------------------------------------
// Actions: what action steps call

/** What an operation does to the world. Decides approvals, dry-run and crash recovery. */
export type Effect = 'read-only' | 'mutating' | 'destructive';

/** What every action, check and notifier receives while it runs. */
export interface StepContext {
  runId: string;
  stepId: string;
  attempt: number;
  /** The fencing token of this attempt: larger than every earlier attempt's of any step. */
  fence: number;
  clock: Clock;
  /** Aborted on the step's timeout, the run's timeout, cancel, and shutdown. */
  signal: AbortSignal;
  /** Appends a line to the step's log (stored, streamed; secrets are masked before storing). */
  log(line: string): void;
  /** The application resources (config, fleet, connectors); typed in src/runbooks/actions. */
  services: unknown;
}

/** A registered operation. `name` is how runbooks refer to it, e.g. `fleet.scale`. */
export interface ActionDefinition<Args = unknown, Output = unknown> {
  name: string;
  description: string;
  effect: Effect;
  /** Running it twice with the same arguments has the same effect as once. */
  idempotent: boolean;
  /** Validates the resolved arguments; the error names the field. */
  args: z.ZodType<Args>;
  /** The exact thing acted on, for people and for the approval hash, e.g. `deployment game/game-server`. */
  target(args: Args, services: unknown): string;
  run(args: Args, ctx: StepContext): Promise<Output>;
  /**
   * After a crash left an attempt's outcome unknown: did it take effect? `unknown` (or no verify) sends
   * the step to needs-verification for a person to decide.
   */
  verify?(args: Args, ctx: StepContext): Promise<'done' | 'not-done' | 'unknown'>;
}

/** A named check a check step calls; the step's assertions then judge its values. */
export interface CheckDefinition<Args = unknown> {
  name: string;
  description: string;
  args: z.ZodType<Args>;
  run(args: Args, ctx: StepContext): Promise<CheckOutcome>;
}

export type CheckVerdict = 'ok' | 'warn' | 'fail';

export interface CheckOutcome {
  status: CheckVerdict;
  summary: string;
  values: Record<string, unknown>;
  findings?: Array<{ status: CheckVerdict; subject: string; message: string }>;
}

// ---------------------------------------------------------------------------------------------------
// Templates and conditions

/**
 * A JSON value in which strings may hold `${{ expr }}` references: `params.<path>`, `steps.<id>.output.<path>`,
 * `steps.<id>.status`, `run.id`, `run.requestedBy`. A string that is exactly one reference keeps the
 * referenced value's type; otherwise references are interpolated as text. See template.ts.
 */
export type Template = unknown;

export type CompareOp = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'in' | 'notIn' | 'exists' | 'truthy';

/** `value` (a template) compared with `to`. `exists`/`truthy` ignore `to`. */
export interface Condition {
  value: Template;
  op: CompareOp;
  to?: Template;
}

/** A check step's assertion: when the condition does NOT hold, the step is `status` with `message`. */
export interface Assertion extends Condition {
  status: 'warn' | 'fail';
  message: string;
}

// ---------------------------------------------------------------------------------------------------
// Steps (compiled: flat, with explicit dependencies)

export interface RetryPolicy {
  /** Total attempts including the first. */
  attempts: number;
  initialDelayMs: number;
  factor: number;
  maxDelayMs: number;
  /** Error codes (core/errors ErrorCode) that are never retried. @default ['input', 'not_allowed'] */
  nonRetryable: string[];
}

export type OnFailure = 'abort' | 'continue' | 'compensate';

interface StepBase {
  /** Unique in its runbook; `[a-z0-9][a-z0-9_-]*`, group children are `<group>.<child>`. */
  id: string;
  title: string;
  /** Steps that must be finished (succeeded or skipped; failed only with onFailure continue) first. */
  needs: string[];
  /** Run only when this holds; otherwise the step is `skipped`. */
  when?: Condition;
  timeoutMs?: number;
  retry?: RetryPolicy;
  /** @default 'abort' */
  onFailure: OnFailure;
  /** Where it was defined, for errors: `file.yaml:12` or `builtin high-cpu`. */
  source?: string;
}

export interface ActionStep extends StepBase {
  kind: 'action';
  action: string;
  args: Template;
  /** Run (in reverse order of completion) when the run fails with onFailure `compensate`. */
  compensate?: { action: string; args: Template };
}

export interface CheckStep extends StepBase {
  kind: 'check';
  /** A registered CheckDefinition; without one, only the assertions are evaluated. */
  check?: string;
  args: Template;
  assert: Assertion[];
}

export interface ApprovalStep extends StepBase {
  kind: 'approval';
  /** The steps this approval allows; their resolved arguments and targets are hashed and bound. */
  covers: string[];
  /** Roles allowed to approve (a higher role also may). */
  approvers: Role[];
  /** The approver must be someone other than the run's requester. */
  fourEyes: boolean;
  /** How long the request stays open, and how long a granted approval stays valid. */
  expiresInMs: number;
  message: string;
}

export interface ManualStep extends StepBase {
  kind: 'manual';
  instructions: string;
  evidence: 'none' | 'optional' | 'required';
}

export interface WaitStep extends StepBase {
  kind: 'wait';
  /** A fixed delay, or... */
  forMs?: number;
  /** ...until this check passes (polled every `intervalMs`), failing at `timeoutMs`. */
  until?: { check?: string; args: Template; assert: Assertion[] };
  intervalMs: number;
}

export interface NotifyStep extends StepBase {
  kind: 'notify';
  /** A configured notification channel; without one the message goes to the run log only. */
  channel?: string;
  message: Template;
}

export interface SubRunbookStep extends StepBase {
  kind: 'runbook';
  runbook: string;
  params: Template;
}

/** The join node a parallel group compiles to: it needs all of the group's children. */
export interface GroupStep extends StepBase {
  kind: 'group';
  children: string[];
}

export type Step =
  ActionStep | CheckStep | ApprovalStep | ManualStep | WaitStep | NotifyStep | SubRunbookStep | GroupStep;
export type StepKind = Step['kind'];

export interface Runbook {
  name: string;
  version: string;
  title: string;
  description: string;
  source: { kind: 'builtin' } | { kind: 'file'; path: string };
  /** Validates and defaults parameters; errors name the field. */
  params: z.ZodType<Record<string, unknown>>;
  /** The same, as JSON Schema, for editors, the API and `--help`. */
  paramsJsonSchema: Record<string, unknown>;
  /** In an order where every step comes after all it needs. */
  steps: Step[];
  timeoutMs?: number;
  /** Roles that may start it. Empty: admin only (default deny). */
  runBy: Role[];
  /** sha256 of the canonical compiled definition: a run records which definition it ran. */
  hash: string;
  tags: string[];
}

// ---------------------------------------------------------------------------------------------------
// Plans (dry-run, approval binding)

export interface PlannedStep {
  id: string;
  kind: StepKind;
  title: string;
  action?: string;
  effect?: Effect;
  idempotent?: boolean;
  /** Resolved target; undefined when its arguments depend on outputs not known yet. */
  target?: string;
  /** Resolved arguments (secrets masked); undefined when not yet resolvable. */
  args?: unknown;
  /** Why args are not resolved yet, e.g. "uses steps.rank.output". */
  pending?: string;
  /** The approval step that must allow it. */
  approvedBy?: string;
  /** What runs to put things back if the run fails after it. */
  compensation?: { action: string; target?: string; args?: unknown };
  /** True when `when` is known to be false: it would be skipped. */
  skip?: boolean;
  needs: string[];
  /** Approval steps: who may approve, and what (for dry-run and the approval prompt). */
  approval?: ApprovalRule;
}

/** An approval step's rule, as shown to people. */
export interface ApprovalRule {
  covers: string[];
  approvers: Role[];
  fourEyes: boolean;
  expiresInMs: number;
}

export interface Plan {
  runbook: string;
  version: string;
  hash: string;
  params: Record<string, unknown>;
  steps: PlannedStep[];
}

// ---------------------------------------------------------------------------------------------------
// Runs

export type RunStatus =
  | 'queued'
  | 'running'
  /** Blocked on a person: an approval, a manual step. */
  | 'waiting'
  | 'paused'
  /** A non-idempotent step's outcome is unknown after a crash; a person must say whether it happened. */
  | 'needs-verification'
  | 'succeeded'
  | 'failed'
  | 'cancelled';

export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ['succeeded', 'failed', 'cancelled'];

export type StepStatus =
  | 'pending'
  | 'running'
  /** Failed, retrying at `notBefore`. */
  | 'retrying'
  /** Waiting for an approval, a tick, a wait condition or a sub-run. */
  | 'waiting'
  | 'needs-verification'
  | 'succeeded'
  /** A check step that passed with warnings. */
  | 'warned'
  | 'failed'
  | 'skipped'
  | 'cancelled'
  | 'compensated';

export type Trigger = 'cli' | 'api' | 'schedule' | 'alert' | 'runbook';

export interface StepState {
  id: string;
  kind: StepKind;
  status: StepStatus;
  attempt: number;
  /** Fencing token of the latest claim. */
  fence: number;
  startedAt?: string;
  finishedAt?: string;
  /** When a retry or the next poll of a wait is due. */
  notBefore?: string;
  output?: unknown;
  error?: { code: string; message: string };
  /** Approval: the hash of the covered steps' resolved arguments the approver must confirm. */
  approval?: ApprovalView;
  /** Sub-runbook: the child run. */
  childRunId?: string;
  /** Action steps with a `compensate` action, once the run fails with onFailure compensate. */
  compensation?: {
    status: 'running' | 'succeeded' | 'failed' | 'needs-verification';
    error?: { code: string; message: string };
  };
}

export interface ApprovalView {
  planHash: string;
  requestedAt: string;
  expiresAt: string;
  covers: PlannedStep[];
  decision?: 'approved' | 'rejected';
  decidedBy?: Actor;
  decidedAt?: string;
  comment?: string;
  /** The approval step's message, its templates resolved when the request was made (secrets masked). */
  message?: string;
}

export interface RunSummary {
  id: string;
  runbook: string;
  version: string;
  status: RunStatus;
  trigger: Trigger;
  requestedBy: Actor;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** One line: why it failed, what it waits for. */
  reason?: string;
  parentRunId?: string;
  /**
   * A succeeded run's verdict from its check steps: `fail` when a check failed (and the run went on),
   * `warn` when one warned, else `ok`. Only in a run's view (not in lists).
   */
  outcome?: 'ok' | 'warn' | 'fail';
}

export interface RunView extends RunSummary {
  /** Secrets masked. */
  params: Record<string, unknown>;
  definitionHash: string;
  steps: StepState[];
}

/** One entry of a run's event stream (server-sent events, `--follow`). `seq` grows per run. */
export interface RunEvent {
  seq: number;
  runId: string;
  at: string;
  type: 'run' | 'step' | 'log';
  stepId?: string;
  /** For `run`/`step`: the new status. */
  status?: RunStatus | StepStatus;
  /** For `log`: the line (masked); for others, a reason. */
  message?: string;
}

// ---------------------------------------------------------------------------------------------------
// The service the CLI and the API drive (in-process over the store, or remotely over HTTP)

export interface StartRunInput {
  runbook: string;
  params: Record<string, unknown>;
  trigger: Trigger;
  /** Repeated starts with the same key return the first run (schedules use `<schedule>@<occurrence>`). */
  idempotencyKey?: string;
  /** Why it was started, kept with the run (e.g. a schedule's "late by 12m" after gameops was down). */
  reason?: string;
}

export interface RunFilter {
  runbook?: string;
  status?: RunStatus[];
  limit?: number;
  /** Runs created before this id's run (paging, newest first). */
  before?: string;
}

export interface RunbookInfo {
  name: string;
  version: string;
  title: string;
  description: string;
  source: Runbook['source'];
  paramsJsonSchema: Record<string, unknown>;
  runBy: Role[];
  tags: string[];
  steps: Array<
    {
      id: string;
      kind: StepKind;
      title: string;
      action?: string;
      effect?: Effect;
      needs?: string[];
    } & Partial<ApprovalRule>
  >;
}

export interface RunService {
  runbooks(actor: Actor): Promise<RunbookInfo[]>;
  runbook(name: string, actor: Actor): Promise<RunbookInfo>;
  /** Dry-run: the resolved plan; nothing runs. @throws InputError naming the field; NotFoundError. */
  plan(input: { runbook: string; params: Record<string, unknown> }, actor: Actor): Promise<Plan>;
  start(input: StartRunInput, actor: Actor): Promise<RunView>;
  get(runId: string, actor: Actor): Promise<RunView>;
  list(filter: RunFilter, actor: Actor): Promise<RunSummary[]>;
  /** Events after `afterSeq`, waiting up to `waitMs` for the first new one (long poll; SSE builds on it). */
  events(
    runId: string,
    afterSeq: number,
    actor: Actor,
    options?: { waitMs?: number; signal?: AbortSignal },
  ): Promise<RunEvent[]>;
  /**
   * Decides an approval step. `planHash` is the hash the approver was shown; a different current hash
   * (parameters changed) is refused with ConflictError, as is an expired request, and the requester when
   * four-eyes applies (NotAllowedError).
   */
  decide(
    input: {
      runId: string;
      stepId: string;
      decision: 'approve' | 'reject';
      planHash: string;
      comment?: string;
    },
    actor: Actor,
  ): Promise<RunView>;
  /** Ticks a manual step. */
  complete(
    input: { runId: string; stepId: string; note?: string; evidence?: string },
    actor: Actor,
  ): Promise<RunView>;
  /** Settles a needs-verification step: `done` counts it as succeeded, `not-done` runs it again. */
  verify(
    input: { runId: string; stepId: string; outcome: 'done' | 'not-done'; note?: string },
    actor: Actor,
  ): Promise<RunView>;
  cancel(runId: string, actor: Actor, reason?: string): Promise<RunView>;
  pause(runId: string, actor: Actor): Promise<RunView>;
  resume(runId: string, actor: Actor): Promise<RunView>;
  /** A failed/cancelled run runs again from `from` (and everything after it); `params` overrides some. */
  retry(
    input: { runId: string; from: string; params?: Record<string, unknown> },
    actor: Actor,
  ): Promise<RunView>;
}

// ---------------------------------------------------------------------------------------------------
// Registries and policy

/** The actions and checks runbooks may call (src/runbooks/actions). */
export interface Catalog {
  action(name: string): ActionDefinition | undefined;
  check(name: string): CheckDefinition | undefined;
  actions(): ActionDefinition[];
  checks(): CheckDefinition[];
}

/** Every runbook this gameops knows: built-in ones and those loaded from `runbooks.dir`. */
export interface RunbookLibrary {
  get(name: string): Runbook | undefined;
  list(): Runbook[];
}

export type AccessRequest =
  /** Read runbooks, runs, events: viewer and up. */
  | { action: 'read' }
  /** Start, retry, cancel, pause, resume, tick, verify a run of this runbook. */
  | { action: 'run'; runbook: Pick<Runbook, 'name' | 'runBy'> }
  /** Decide this approval step. */
  | { action: 'approve'; step: Pick<ApprovalStep, 'id' | 'approvers'> }
  /** Tokens, audit verification: admin. */
  | { action: 'admin' };

/** Who may do what; the server and the CLI both ask it, and it denies by default. */
export interface AccessPolicy {
  /** @throws NotAllowedError naming the actor, the role needed and what was refused. */
  check(actor: Actor, request: AccessRequest): void;
  allows(actor: Actor, request: AccessRequest): boolean;
}
