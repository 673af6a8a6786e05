import type { styleText } from 'node:util';
import { formatDuration } from '../core/index.ts';
import type {
  ApprovalView,
  Plan,
  PlannedStep,
  RunbookInfo,
  RunEvent,
  RunStatus,
  RunSummary,
  RunView,
  StepState,
  StepStatus,
} from '../runbooks/model.ts';
import { TERMINAL_RUN_STATUSES } from '../runbooks/model.ts';
import { ExitCode } from './exit.ts';
import { printable, table } from './render.ts';

/**
 * Human output of `gameops runbooks …`, `gameops run …` and `gameops runs …`. Runbook titles,
 * descriptions, step titles, arguments, logs and error messages come from outside (runbook files,
 * connectors, the API) and go through `printable` (directly or through `table`).
 */

type Style = Parameters<typeof styleText>[0];
export type Paint = (style: Style, text: string) => string;
const plain: Paint = (_s, t) => t;

/** One symbol and colour per step status, for progress lines and tables. */
const STEP_SYMBOL: Record<StepStatus, { symbol: string; style: Style }> = {
  pending: { symbol: '·', style: 'gray' },
  running: { symbol: '▶', style: 'cyan' },
  retrying: { symbol: '↻', style: 'yellow' },
  waiting: { symbol: '⏸', style: 'yellow' },
  'needs-verification': { symbol: '?', style: ['yellow', 'bold'] },
  succeeded: { symbol: '✓', style: 'green' },
  warned: { symbol: '!', style: 'yellow' },
  failed: { symbol: '✗', style: 'red' },
  skipped: { symbol: '-', style: 'gray' },
  cancelled: { symbol: '⊘', style: 'gray' },
  compensated: { symbol: '↺', style: 'magenta' },
};

const RUN_STYLE: Record<RunStatus, Style> = {
  queued: 'gray',
  running: 'cyan',
  waiting: 'yellow',
  paused: 'yellow',
  'needs-verification': ['yellow', 'bold'],
  succeeded: 'green',
  failed: ['red', 'bold'],
  cancelled: 'gray',
};

/** Run statuses in which nothing moves until a person acts. */
export const PERSON_BLOCKED: readonly RunStatus[] = ['waiting', 'needs-verification', 'paused'];

export function isTerminal(status: RunStatus): boolean {
  return TERMINAL_RUN_STATUSES.includes(status);
}

/** Terminal, or blocked on a person: a follow stops here. */
export function isSettled(status: RunStatus): boolean {
  return isTerminal(status) || PERSON_BLOCKED.includes(status);
}

/**
 * How a run that ended went, beyond its status: `fail` when a step failed even though the run went on
 * (a check with `onFailure: continue`, as every daily-check check is), `warn` when a check warned, else
 * `ok`. The engine's `outcome` when the view carries one; otherwise derived from the steps.
 */
export function runOutcome(
  view: Pick<RunView, 'status' | 'steps'> & { outcome?: unknown },
): 'ok' | 'warn' | 'fail' {
  if (view.status === 'failed' || view.status === 'cancelled') return 'fail';
  if (view.outcome === 'ok' || view.outcome === 'warn' || view.outcome === 'fail') return view.outcome;
  if (view.steps.some((s) => s.status === 'failed')) return 'fail';
  if (view.steps.some((s) => s.status === 'warned')) return 'warn';
  return 'ok';
}

/**
 * The exit code of `gameops run` / `runs follow` for where the run stands: 0 succeeded with every check
 * passed, 1 succeeded with warnings (a check step warned), 2 failed or cancelled, or succeeded although a
 * step failed (a check with `onFailure: continue`), 4 waiting for a person (approval, manual step,
 * verification, paused), 0 for a run still queued or running (`--detach`).
 */
export function runExitCode(view: Pick<RunView, 'status' | 'steps'> & { outcome?: unknown }): ExitCode {
  switch (view.status) {
    case 'succeeded': {
      const outcome = runOutcome(view);
      return outcome === 'fail' ? ExitCode.fail : outcome === 'warn' ? ExitCode.warn : ExitCode.ok;
    }
    case 'failed':
    case 'cancelled':
      return ExitCode.fail;
    case 'waiting':
    case 'needs-verification':
    case 'paused':
      return ExitCode.waiting;
    case 'queued':
    case 'running':
      return ExitCode.ok;
  }
}

/** Shell-quotes an argument for a command line printed to copy (only when it needs it). */
export function shellArg(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

/** What a person has to do for the run to move on, as commands to copy. Empty when nothing. */
export function unblockCommands(view: Pick<RunView, 'id' | 'status' | 'steps'>): string[] {
  const id = shellArg(view.id);
  if (view.status === 'paused') return [`gameops runs resume ${id}`];
  const out: string[] = [];
  for (const step of view.steps) {
    const s = shellArg(step.id);
    if (step.status === 'needs-verification')
      out.push(`gameops runs verify ${id} ${s} --done      # it took effect; or --not-done to run it again`);
    else if (step.status === 'waiting' && step.kind === 'approval' && !step.approval?.decision)
      out.push(`gameops runs approve ${id} ${s}     # or: gameops runs reject ${id} ${s}`);
    else if (step.status === 'waiting' && step.kind === 'manual')
      out.push(`gameops runs complete ${id} ${s} --note '...' [--evidence URL]`);
  }
  return out;
}

/** One line per run: why it waits, what to type. */
export function renderUnblock(view: RunView, paint: Paint = plain): string {
  const commands = unblockCommands(view);
  const lines = [
    `${paint(RUN_STYLE[view.status], `Run ${printable(view.id)} is ${view.status}`)}` +
      (view.reason ? `: ${printable(view.reason)}` : ''),
  ];
  if (commands.length > 0) {
    lines.push('To continue:');
    for (const c of commands) lines.push(`  ${printable(c)}`);
  }
  return lines.join('\n');
}

/** Lines of output shown per step at most; `--json` shows everything. */
const OUTPUT_LINES_PER_STEP = 6;
/** Longest output line; longer ones are cut. */
const OUTPUT_LINE_CHARS = 160;
/** Longest single value in an output line (a statement prefix, a path). */
const OUTPUT_VALUE_CHARS = 80;

/**
 * The key outputs of the steps that have one, compactly: per step a few lines (a list as one line per item
 * with its scalar fields, e.g. slow-queries' long queries with id, user, time and statement prefix; an
 * object's scalar fields on one line and its lists below), every value escaped and cut. `--json` shows all.
 */
export function renderStepOutputs(steps: StepState[]): string[] {
  const out: string[] = [];
  for (const step of steps) {
    if (step.output === undefined || step.output === null) continue;
    const lines = outputLines(step.output);
    if (lines.length === 0) continue;
    const shown = lines.slice(0, OUTPUT_LINES_PER_STEP);
    if (lines.length > shown.length)
      shown.push(`… ${lines.length - shown.length} more line(s) (--json shows all)`);
    if (shown.length === 1 && !shown[0]!.startsWith('-')) out.push(`  ${printable(step.id)}: ${shown[0]!}`);
    else out.push(`  ${printable(step.id)}:`, ...shown.map((l) => `    ${l}`));
  }
  return out;
}

function outputLines(value: unknown): string[] {
  if (Array.isArray(value)) return listLines(value);
  if (typeof value !== 'object' || value === null) return [cut(scalarText(value), OUTPUT_LINE_CHARS)];
  const entries = Object.entries(value as Record<string, unknown>);
  const scalars = entries.filter(([, v]) => isScalar(v));
  const lines: string[] = [];
  if (scalars.length > 0) lines.push(fieldsLine(scalars));
  for (const [key, v] of entries) {
    if (isScalar(v)) continue;
    if (Array.isArray(v)) {
      lines.push(`${printable(key)} (${v.length}):${v.length === 0 ? ' none' : ''}`);
      lines.push(...listLines(v).map((l) => `  ${l}`));
    } else {
      lines.push(cut(`${printable(key)}: ${jsonText(v, OUTPUT_LINE_CHARS)}`, OUTPUT_LINE_CHARS));
    }
  }
  return lines;
}

function listLines(items: unknown[]): string[] {
  return items.map((item) =>
    typeof item === 'object' && item !== null && !Array.isArray(item)
      ? `- ${fieldsLine(Object.entries(item as Record<string, unknown>).filter(([, v]) => isScalar(v)))}`
      : `- ${cut(isScalar(item) ? scalarText(item) : jsonText(item, OUTPUT_LINE_CHARS), OUTPUT_LINE_CHARS)}`,
  );
}

function fieldsLine(fields: Array<[string, unknown]>): string {
  return cut(
    fields.map(([k, v]) => `${printable(k)}=${cut(scalarText(v), OUTPUT_VALUE_CHARS)}`).join(' '),
    OUTPUT_LINE_CHARS,
  );
}

function isScalar(v: unknown): boolean {
  return v === null || ['string', 'number', 'boolean'].includes(typeof v);
}

/** A scalar as text, escaped; strings with spaces quoted. */
function scalarText(v: unknown): string {
  if (typeof v === 'string') {
    const text = printable(v.replace(/\s+/g, ' '));
    return /[\s"]/.test(text) || text === '' ? `"${text.replaceAll('"', '\\"')}"` : text;
  }
  return printable(String(v));
}

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// ---------------------------------------------------------------------------------------------------
// Runbooks

export function renderRunbookList(runbooks: readonly RunbookInfo[]): string {
  if (runbooks.length === 0) return 'No runbooks.';
  return table(
    ['NAME', 'VERSION', 'SOURCE', 'RUN BY', 'STEPS', 'TITLE'],
    runbooks.map((r) => [
      r.name,
      r.version,
      sourceText(r.source),
      rolesText(r.runBy),
      String(r.steps.length),
      r.title,
    ]),
  );
}

function sourceText(source: RunbookInfo['source']): string {
  return source.kind === 'builtin' ? 'builtin' : source.path;
}

function rolesText(roles: readonly string[]): string {
  return roles.length === 0 ? 'admin' : roles.join(',');
}

interface JsonSchemaLike {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  items?: JsonSchemaLike;
  anyOf?: JsonSchemaLike[];
  oneOf?: JsonSchemaLike[];
  default?: unknown;
  description?: string;
  properties?: Record<string, JsonSchemaLike>;
  required?: string[];
  minimum?: number;
  maximum?: number;
  format?: string;
}

/** A JSON Schema fragment as a short type: `integer`, `"a"|"b"`, `string[]`, `number|null`. */
export function schemaTypeText(schema: JsonSchemaLike | undefined): string {
  if (!schema || typeof schema !== 'object') return 'any';
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join('|');
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return alternatives.map(schemaTypeText).join('|');
  const type = Array.isArray(schema.type) ? schema.type.join('|') : schema.type;
  if (type === 'array') return `${schemaTypeText(schema.items)}[]`;
  let text = type ?? 'any';
  if (schema.format) text += ` (${schema.format})`;
  // zod's integers carry the safe-integer bounds: not worth showing.
  const bound = (n: number | undefined): number | undefined =>
    n === undefined || Math.abs(n) >= Number.MAX_SAFE_INTEGER ? undefined : n;
  const [min, max] = [bound(schema.minimum), bound(schema.maximum)];
  if (min !== undefined || max !== undefined) text += ` ${min ?? ''}..${max ?? ''}`;
  return text;
}

/** The parameters of a runbook from its JSON Schema: name, type, required or default, description. */
export function paramRows(paramsJsonSchema: Record<string, unknown>): string[][] {
  const schema = paramsJsonSchema as JsonSchemaLike;
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([name, prop]) => [
    name,
    schemaTypeText(prop),
    prop.default !== undefined
      ? `default ${JSON.stringify(prop.default)}`
      : required.has(name)
        ? 'required'
        : 'optional',
    prop.description ?? '',
  ]);
}

/** `gameops runbooks show`: what it is, who may run it, its parameters and its steps. */
export function renderRunbook(info: RunbookInfo, paint: Paint = plain): string {
  const out: string[] = [
    `${paint('bold', printable(info.name))} v${printable(info.version)}: ${printable(info.title)}`,
  ];
  if (info.description) out.push(printable(info.description));
  out.push(
    '',
    `Source: ${printable(sourceText(info.source))}`,
    `Run by: ${rolesText(info.runBy)}${info.runBy.includes('admin') || info.runBy.length === 0 ? '' : ' (and higher roles)'}`,
  );
  if (info.tags.length > 0) out.push(`Tags: ${info.tags.map(printable).join(', ')}`);
  const params = paramRows(info.paramsJsonSchema);
  out.push('', paint('bold', 'Parameters'));
  out.push(
    params.length === 0 ? '  (none)' : indent(table(['NAME', 'TYPE', 'DEFAULT', 'DESCRIPTION'], params)),
  );
  out.push('', paint('bold', 'Steps'));
  out.push(
    indent(
      table(
        ['STEP', 'KIND', 'ACTION', 'EFFECT', 'TITLE'],
        info.steps.map((s) => [s.id, s.kind, s.action ?? '-', s.effect ?? '-', s.title]),
      ),
    ),
  );
  const gates = info.steps.filter((s) => s.kind === 'approval' && s.covers);
  if (gates.length > 0) {
    out.push('', paint('bold', 'Approvals'));
    for (const g of gates) out.push(`  ${printable(g.id)}: ${approvalRule(g)}`);
  }
  return out.join('\n');
}

function approvalRule(s: {
  covers?: string[];
  approvers?: string[];
  fourEyes?: boolean;
  expiresInMs?: number;
}): string {
  const parts: string[] = [];
  if (s.covers) parts.push(`covers ${s.covers.map(printable).join(', ')}`);
  if (s.approvers) parts.push(`approvers: ${rolesText(s.approvers)} or higher`);
  if (s.fourEyes) parts.push('four-eyes: someone other than the requester');
  if (s.expiresInMs !== undefined) parts.push(`expires after ${formatDuration(s.expiresInMs)}`);
  return parts.join('; ');
}

function indent(text: string, by = '  '): string {
  return text
    .split('\n')
    .map((l) => (l === '' ? l : by + l))
    .join('\n');
}

/** Compact JSON of outside values, made printable. Long values are cut with a note. */
export function jsonText(value: unknown, max = 2000): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'undefined';
  } catch {
    text = String(value);
  }
  if (text.length > max) text = `${text.slice(0, max)}… (${text.length} characters; --json shows all)`;
  return printable(text);
}

// ---------------------------------------------------------------------------------------------------
// Plans

/** `--dry-run` and the approval prompt: every step with its exact target and arguments. */
export function renderPlan(plan: Plan, paint: Paint = plain, info?: RunbookInfo): string {
  const out: string[] = [
    `${paint('bold', `Plan for ${printable(plan.runbook)} v${printable(plan.version)}`)} (definition ${plan.hash.slice(0, 12)})`,
    `Params: ${jsonText(plan.params)}`,
    '',
  ];
  const infoStep = new Map(info?.steps.map((s) => [s.id, s]));
  plan.steps.forEach((step, i) => {
    out.push(...plannedStepLines(step, i + 1, paint, infoStep.get(step.id)));
  });
  const approvals = plan.steps.filter((s) => s.kind === 'approval');
  const gated = plan.steps.filter((s) => s.approvedBy);
  out.push('');
  if (approvals.length === 0) out.push('No step needs an approval.');
  else
    for (const a of approvals) {
      const covers = gated.filter((s) => s.approvedBy === a.id).map((s) => s.id);
      const rule = infoStep.get(a.id) ?? a.approval;
      out.push(
        `Approval ${paint('bold', printable(a.id))} must allow: ${covers.length > 0 ? covers.map(printable).join(', ') : '(nothing)'}` +
          (rule ? `; ${approvalRule({ ...rule, covers: undefined })}` : ''),
      );
    }
  const compensated = plan.steps.filter((s) => s.compensation);
  if (compensated.length > 0)
    out.push(
      `On failure, compensated (in reverse order): ${compensated.map((s) => printable(s.id)).join(', ')}`,
    );
  out.push('Dry run: nothing was run.');
  return out.join('\n');
}

function plannedStepLines(
  step: PlannedStep,
  n: number,
  paint: Paint,
  info?: RunbookInfo['steps'][number],
): string[] {
  const head = [`${String(n).padStart(2)}. ${paint('bold', printable(step.id))}`, step.kind];
  if (step.action) head.push(printable(step.action));
  if (step.effect)
    head.push(
      paint(
        step.effect === 'read-only' ? 'green' : step.effect === 'destructive' ? ['red', 'bold'] : 'yellow',
        step.effect + (step.idempotent === false ? ', not idempotent' : ''),
      ),
    );
  if (step.skip) head.push(paint('gray', '(skipped: its condition is false)'));
  const lines = [`${head.join('  ')}  ${paint('gray', printable(step.title))}`];
  const pad = '      ';
  if (step.needs.length > 0) lines.push(`${pad}needs: ${step.needs.map(printable).join(', ')}`);
  if (step.target !== undefined) lines.push(`${pad}target: ${printable(step.target)}`);
  if (step.args !== undefined) lines.push(`${pad}args: ${jsonText(step.args)}`);
  if (step.pending !== undefined)
    lines.push(`${pad}${paint('gray', `resolved when it runs: ${printable(step.pending)}`)}`);
  if (step.approvedBy) lines.push(`${pad}needs approval: ${printable(step.approvedBy)}`);
  if (step.kind === 'approval') {
    const rule = info ?? step.approval;
    if (rule) lines.push(`${pad}${approvalRule(rule)}`);
  }
  if (step.compensation) {
    const c = step.compensation;
    lines.push(
      `${pad}on failure: ${printable(c.action)}` +
        (c.target !== undefined ? ` on ${printable(c.target)}` : '') +
        (c.args !== undefined ? ` ${jsonText(c.args)}` : ''),
    );
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------------
// Runs

function durationBetween(start: string | undefined, end: string | undefined, now: Date): string {
  if (start === undefined) return '-';
  const ms = (end === undefined ? now.getTime() : Date.parse(end)) - Date.parse(start);
  return Number.isFinite(ms) ? formatDuration(Math.max(0, ms)) : '-';
}

/** `gameops runs list`. */
export function renderRunList(runs: readonly RunSummary[], now: Date, paint: Paint = plain): string {
  if (runs.length === 0) return 'No runs.';
  return table(
    ['RUN', 'RUNBOOK', 'STATUS', 'TRIGGER', 'BY', 'CREATED', 'TOOK', 'REASON'],
    runs.map((r) => [
      r.id,
      r.runbook,
      r.status,
      r.trigger,
      r.requestedBy.name,
      r.createdAt,
      durationBetween(r.startedAt, r.finishedAt, now),
      r.reason ?? '',
    ]),
    (col, cell) => (col === 2 ? paint(RUN_STYLE[cell.trim() as RunStatus] ?? 'reset', cell) : cell),
  );
}

function stepNote(step: StepState): string {
  if (step.error) return `${step.error.code}: ${step.error.message}`;
  if (step.status === 'retrying' && step.notBefore) return `next attempt at ${step.notBefore}`;
  if (step.kind === 'approval' && step.approval) {
    const a = step.approval;
    if (a.decision) return `${a.decision} by ${a.decidedBy?.name ?? '?'}`;
    return `waiting for approval until ${a.expiresAt}`;
  }
  if (step.childRunId) return `run ${step.childRunId}`;
  return '';
}

/** `gameops runs show`: the run, its steps (attempts, errors), approvals with hash and covered steps. */
export function renderRun(view: RunView, now: Date, paint: Paint = plain): string {
  const out: string[] = [
    `${paint('bold', `Run ${printable(view.id)}`)}  ${printable(view.runbook)} v${printable(view.version)}  ${paint(RUN_STYLE[view.status], view.status.toUpperCase())}`,
  ];
  if (view.reason) out.push(`Reason: ${printable(view.reason)}`);
  out.push(
    `Requested by ${printable(view.requestedBy.name)} (${printable(view.requestedBy.id)}, ${view.requestedBy.role}) via ${view.trigger} at ${view.createdAt}`,
  );
  if (view.startedAt)
    out.push(
      `Started ${view.startedAt}` +
        (view.finishedAt ? `, finished ${view.finishedAt}` : '') +
        ` (${durationBetween(view.startedAt, view.finishedAt, now)})`,
    );
  if (view.parentRunId) out.push(`Part of run ${printable(view.parentRunId)}`);
  out.push(`Params: ${jsonText(view.params)}`, `Definition: ${printable(view.definitionHash)}`, '');
  out.push(
    table(
      ['STEP', 'KIND', 'STATUS', 'ATTEMPT', 'TOOK', 'NOTE'],
      view.steps.map((s) => [
        s.id,
        s.kind,
        `${STEP_SYMBOL[s.status].symbol} ${s.status}`,
        String(s.attempt),
        durationBetween(s.startedAt, s.finishedAt, now),
        stepNote(s),
      ]),
      (col, cell) => {
        if (col !== 2) return cell;
        const status = cell.trim().slice(2) as StepStatus;
        return STEP_SYMBOL[status] ? paint(STEP_SYMBOL[status].style, cell) : cell;
      },
    ),
  );
  const outputs = renderStepOutputs(view.steps);
  if (outputs.length > 0) out.push('', 'Outputs:', ...outputs);
  for (const step of view.steps)
    if (step.approval) out.push('', ...renderApproval(step.id, step.approval, paint, view.status));
  const commands = unblockCommands(view);
  if (commands.length > 0) out.push('', 'To continue:', ...commands.map((c) => `  ${printable(c)}`));
  return out.join('\n');
}

/**
 * An approval: its state, the plan hash, and the exact covered steps the hash binds. An undecided approval
 * of a run that has ended (`runStatus` terminal) is shown closed, not open: nobody can approve it any more.
 */
export function renderApproval(
  stepId: string,
  approval: ApprovalView,
  paint: Paint = plain,
  runStatus?: RunStatus,
): string[] {
  const state = approval.decision
    ? `${approval.decision.toUpperCase()} by ${printable(approval.decidedBy?.name ?? '?')}` +
      (approval.decidedBy ? ` (${printable(approval.decidedBy.id)})` : '') +
      (approval.decidedAt ? ` at ${approval.decidedAt}` : '') +
      (approval.comment ? `: "${printable(approval.comment)}"` : '')
    : runStatus !== undefined && isTerminal(runStatus)
      ? `closed (run ${runStatus}), requested ${approval.requestedAt}, never decided`
      : `open, requested ${approval.requestedAt}, expires ${approval.expiresAt}`;
  const lines = [
    `${paint('bold', `Approval ${printable(stepId)}`)}: ${state}`,
    `  plan hash: ${printable(approval.planHash)}`,
    '  covers:',
  ];
  approval.covers.forEach((s, i) => {
    for (const l of plannedStepLines(s, i + 1, paint)) lines.push(`  ${l}`);
  });
  return lines;
}

// ---------------------------------------------------------------------------------------------------
// Progress (`gameops run --follow`, `gameops runs follow`)

export interface ProgressOptions {
  /** Where progress goes (stderr). */
  write: (text: string) => void;
  /** Live-updating status line (a terminal). */
  tty: boolean;
  paint?: Paint;
  /** Events up to this sequence number were seen before: not shown. @default 0 */
  afterSeq?: number;
}

/**
 * Turns a run's events into progress lines: one line per step transition with a status symbol and,
 * for finished steps, how long the step took; logs indented under their step. On a terminal, a last
 * line shows what is running now and is redrawn in place.
 */
export class ProgressDisplay {
  readonly #write: (text: string) => void;
  readonly #tty: boolean;
  readonly #paint: Paint;
  readonly #started = new Map<string, number>();
  #statusLine = '';
  #lastSeq = 0;
  #lastTick: number | undefined;

  constructor(options: ProgressOptions) {
    this.#write = options.write;
    this.#tty = options.tty;
    this.#paint = options.paint ?? plain;
    this.#lastSeq = options.afterSeq ?? 0;
  }

  /** The highest sequence number shown. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Shows one event (events at or below the last shown sequence are ignored: replays after a reconnect). */
  event(event: RunEvent): void {
    if (event.seq <= this.#lastSeq) return;
    this.#lastSeq = event.seq;
    const line = this.line(event);
    if (line !== undefined) this.#print(line);
  }

  /** The line an event prints (undefined for none). Exported through the class for tests. */
  line(event: RunEvent): string | undefined {
    const p = this.#paint;
    const at = Date.parse(event.at);
    const reason = event.message ? `: ${printable(event.message)}` : '';
    if (event.type === 'log') {
      const who = event.stepId ? `[${printable(event.stepId)}] ` : '';
      return `      ${p('gray', who)}${printable(event.message ?? '')}`;
    }
    if (event.type === 'run') {
      const status = event.status as RunStatus | undefined;
      const style = status && RUN_STYLE[status] ? RUN_STYLE[status] : 'reset';
      return p(style, `run ${status ?? '?'}`) + reason;
    }
    const status = event.status as StepStatus | undefined;
    const id = printable(event.stepId ?? '?');
    if (!status || !STEP_SYMBOL[status]) return `  ${id} ${printable(String(event.status))}${reason}`;
    const { symbol, style } = STEP_SYMBOL[status];
    let took = '';
    if (status === 'running') this.#started.set(event.stepId ?? '', at);
    else {
      const began = this.#started.get(event.stepId ?? '');
      if (began !== undefined && Number.isFinite(at) && status !== 'retrying' && status !== 'waiting') {
        took = ` (${formatDuration(Math.max(0, at - began))})`;
        this.#started.delete(event.stepId ?? '');
      }
    }
    return `  ${p(style, symbol)} ${id} ${p(style, status)}${took}${reason}`;
  }

  /** On a terminal: redraws the status line with the steps running now (call it every second or so). */
  tick(now: number): void {
    if (!this.#tty) return;
    this.#lastTick = now;
    // Only steps that take a while: a quick one would just flicker.
    const running = [...this.#started]
      .filter(([, began]) => now - began >= 1000)
      .map(([id, began]) => `${printable(id)} ${formatDuration(now - began)}`);
    this.#setStatusLine(running.length > 0 ? this.#paint('gray', `  … running: ${running.join(', ')}`) : '');
  }

  /** Removes the status line (before printing something else, and at the end). */
  clear(): void {
    this.#setStatusLine('');
  }

  #print(line: string): void {
    if (this.#tty && this.#statusLine) {
      // The status line goes, the line is printed, and the status line comes back as it is now.
      this.#write('\r\x1b[2K');
      this.#statusLine = '';
    }
    this.#write(`${line}\n`);
    if (this.#lastTick !== undefined) this.tick(this.#lastTick);
  }

  #setStatusLine(text: string): void {
    if (!this.#tty || text === this.#statusLine) return;
    this.#write(`\r\x1b[2K${text}`);
    this.#statusLine = text;
  }
}

/** The one-line outcome after a follow, for stdout. */
export function renderOutcome(view: RunView, now: Date, paint: Paint = plain): string {
  if (PERSON_BLOCKED.includes(view.status)) return renderUnblock(view, paint);
  const took = durationBetween(view.startedAt ?? view.createdAt, view.finishedAt, now);
  const base = `${paint(RUN_STYLE[view.status], `Run ${printable(view.id)} ${view.status}`)}`;
  if (view.status === 'queued' || view.status === 'running')
    return `${base}${view.reason ? `: ${printable(view.reason)}` : ''}\nFollow it: gameops runs follow ${shellArg(view.id)}`;
  const failedSteps = view.steps.filter((s) => s.status === 'failed');
  const outcome = view.status === 'succeeded' ? runOutcome(view) : undefined;
  const warnedSteps = view.steps.filter((s) => s.status === 'warned').map((s) => printable(s.id));
  const note =
    outcome === 'fail'
      ? ` (${failedSteps.length} step${failedSteps.length === 1 ? '' : 's'} failed)`
      : outcome === 'warn'
        ? ` (warnings: ${warnedSteps.join(', ')})`
        : '';
  const lines = [`${base}${note} after ${took}${view.reason ? `: ${printable(view.reason)}` : ''}`];
  for (const s of failedSteps)
    if (s.error)
      lines.push(`  ${printable(s.id)}: ${printable(s.error.code)}: ${printable(s.error.message)}`);
  const outputs = renderStepOutputs(view.steps);
  if (outputs.length > 0) lines.push('Outputs:', ...outputs);
  if (view.status === 'failed' && failedSteps[0])
    lines.push(
      `Retry after a fix: gameops runs retry ${shellArg(view.id)} --from ${shellArg(failedSteps[0].id)}`,
    );
  return lines.join('\n');
}
