/**
 * The daily check (runbook §1.1) as check steps: one CheckDefinition per check of src/checks, each with
 * deltas against the same history `gameops check daily` uses (the store's recorded check runs), and the
 * `daily.record` action that records the step results as one check run, so the CLI's history, the API's
 * and the runbook's stay one history.
 */
import { z } from 'zod';
import {
  CHECK_NAMES,
  CheckStatus,
  dailyChecks,
  runDailyCheck,
  worstOf,
  type CheckName,
  type CheckResult,
  type CheckRun,
} from '../../checks/index.ts';
import { errorMessage, InputError, UnavailableError } from '../../core/index.ts';
import type { ActionDefinition, CheckDefinition, CheckOutcome, CheckVerdict } from '../model.ts';
import { servicesOf, type RunbookServices } from './services.ts';

/** How many recent runs deltas may look back through (as app/daily.ts). */
const HISTORY = 20;
/** Runs whose history is kept in memory while their check steps run. */
const CACHED_RUNS = 16;
const PRUNE_EVERY_MS = 3_600_000;

const histories = new WeakMap<RunbookServices, Map<string, Promise<CheckRun[]>>>();

/**
 * The recent daily-check runs of this service and environment, newest first, read once per runbook run
 * (its seven check steps share it): the in-memory history of a process that owns its embedded store, else
 * the store. A store that cannot be read gives no history (deltas start afresh), never a failed check.
 */
export function dailyHistory(services: RunbookServices, runId: string): Promise<CheckRun[]> {
  let perRun = histories.get(services);
  if (!perRun) {
    perRun = new Map();
    histories.set(services, perRun);
  }
  let history = perRun.get(runId);
  if (!history) {
    history = readHistory(services);
    perRun.set(runId, history);
    while (perRun.size > CACHED_RUNS) perRun.delete(perRun.keys().next().value!);
  }
  return history;
}

async function readHistory(services: RunbookServices): Promise<CheckRun[]> {
  const { store, resources, config } = services;
  if (!store) return [];
  if (store.backend === 'sqlite' && resources.dailyHistory) return resources.dailyHistory.runs;
  try {
    return await store.checkRuns.list({
      service: config.service.name,
      environment: config.service.environment,
      limit: HISTORY,
    });
  } catch (err) {
    services.log.warn({ err: errorMessage(err) }, 'could not read earlier check runs; deltas start afresh');
    return [];
  }
}

const VERDICT: Record<CheckStatus, CheckVerdict> = {
  ok: 'ok',
  skipped: 'ok',
  warn: 'warn',
  fail: 'fail',
  error: 'fail',
};

/** A daily-check result as a check step's outcome: `error` fails the step, `skipped` passes it. */
export function outcomeOf(result: CheckResult): CheckOutcome {
  return {
    status: VERDICT[result.status],
    summary: result.status === 'skipped' ? `skipped: ${result.summary}` : result.summary,
    values: { check: result.name, status: result.status, result },
    ...(result.findings.length > 0
      ? {
          findings: result.findings
            .filter((f) => f.status !== 'skipped' && f.status !== 'ok')
            .map((f) => ({ status: VERDICT[f.status], subject: f.subject, message: f.message })),
        }
      : {}),
  };
}

function dailyCheck(name: CheckName): CheckDefinition<Record<string, never>> {
  const check = dailyChecks.find((c) => c.name === name)!;
  return {
    name: `daily.${name}`,
    description: `The daily check's ${name} check (runbook §1.1), with deltas against the last recorded run.`,
    args: z.strictObject({}),
    async run(_args, ctx) {
      const services = servicesOf(ctx);
      const { config } = services;
      const history = await dailyHistory(services, ctx.runId);
      let fleet: Awaited<ReturnType<RunbookServices['fleet']>> | undefined;
      let platformProblem: string | undefined;
      if (config.platform && (name === 'fleet' || name === 'logs' || name === 'game')) {
        try {
          fleet = await services.fleet();
        } catch (err) {
          platformProblem = errorMessage(err);
        }
      }
      const run = await runDailyCheck({
        config,
        clock: ctx.clock,
        trigger: 'api',
        previous: history,
        backupCatalog: services.store?.backups,
        checks: [check],
        signal: ctx.signal,
        ...(fleet ? { platform: fleet.platform, gameStatus: fleet.game } : {}),
        ...(platformProblem ? { platformProblem } : {}),
      });
      const result = run.results[0]!;
      ctx.log(`${name}: ${result.status}: ${result.summary}`);
      return outcomeOf(result);
    },
  };
}

const findingSchema = z.object({
  status: z.enum(Object.values(CheckStatus)),
  subject: z.string(),
  message: z.string(),
  value: z.union([z.number(), z.string()]).optional(),
  threshold: z.number().optional(),
});

const checkResultSchema = z.object({
  name: z.enum(CHECK_NAMES),
  status: z.enum(Object.values(CheckStatus)),
  summary: z.string(),
  durationMs: z.number().min(0),
  values: z.record(z.string(), z.unknown()),
  findings: z.array(findingSchema),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});

/**
 * A check step's output (the check's values: `{ check, status, result }`), a CheckOutcome (`values.result`)
 * or a bare CheckResult → the CheckResult.
 */
function resultOf(output: unknown, index: number): CheckResult {
  const o = typeof output === 'object' && output !== null ? (output as Record<string, unknown>) : {};
  const values =
    typeof o['values'] === 'object' && o['values'] !== null ? (o['values'] as Record<string, unknown>) : {};
  const candidate = o['result'] ?? values['result'] ?? output;
  const parsed = checkResultSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(
      `results[${index}]: not a daily check step's output (${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'})`,
    );
  }
  return parsed.data;
}

/** `schedule:daily-check` → schedule, `token:…` → api, anything else (local, system) → cli. */
export function triggerOf(requestedBy: string): CheckRun['trigger'] {
  if (requestedBy.startsWith('schedule:')) return 'schedule';
  if (requestedBy.startsWith('token:')) return 'api';
  return 'cli';
}

/**
 * The trigger a check run is recorded with: the runbook run's own (schedule, cli; api for the API, an
 * alert or a parent runbook), read from the store; `requestedBy` (an actor id) when the run is not there.
 */
async function triggerFor(services: RunbookServices, runId: string, requestedBy: string | undefined) {
  try {
    const run = await services.store?.runs.getRun(runId);
    if (run) return run.trigger === 'schedule' || run.trigger === 'cli' ? run.trigger : 'api';
  } catch (err) {
    services.log.warn({ err: errorMessage(err), runId }, 'could not read the run; trigger from requestedBy');
  }
  return triggerOf(requestedBy ?? '');
}

const recordArgs = z.strictObject({
  runId: z
    .string()
    .min(1)
    .max(100)
    .describe(
      'The id the check run is recorded under: the runbook run id (${{ run.id }}), so recording twice records once.',
    ),
  requestedBy: z
    .string()
    .min(1)
    .max(300)
    .optional()
    .describe('Who asked (an actor id), for the trigger recorded when the run is not in the store.'),
  results: z.array(z.unknown()).min(1).max(CHECK_NAMES.length).describe("The check steps' outputs."),
});

const recordAction: ActionDefinition<z.infer<typeof recordArgs>> = {
  name: 'daily.record',
  description:
    "Records the daily check steps' results as one check run (gameops check daily's history and deltas).",
  effect: 'mutating',
  idempotent: true,
  args: recordArgs,
  target: (args) => `daily check run ${args.runId}`,
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const { store, config, resources } = services;
    if (!store)
      throw new UnavailableError(
        `the daily check cannot be recorded: no store${resources.storeProblem ? ` (${resources.storeProblem})` : ''}`,
      );
    const results = args.results.map(resultOf);
    const seen = new Set<string>();
    for (const r of results) {
      if (seen.has(r.name)) throw new InputError(`results: the ${r.name} check is given twice`);
      seen.add(r.name);
    }
    const existing = await store.checkRuns.get(args.runId);
    if (existing) {
      ctx.log(`check run ${args.runId} was recorded already`);
      return { id: existing.id, status: existing.status, recorded: false, alreadyRecorded: true };
    }
    const finished = ctx.clock.now();
    const durationMs = Math.max(0, ...results.map((r) => r.durationMs));
    const run: CheckRun = {
      id: args.runId,
      kind: 'daily',
      service: config.service.name,
      environment: config.service.environment,
      trigger: await triggerFor(services, args.runId, args.requestedBy),
      status: worstOf(results.map((r) => r.status)),
      startedAt: new Date(finished.getTime() - durationMs).toISOString(),
      finishedAt: finished.toISOString(),
      durationMs,
      results: [...results].sort((a, b) => CHECK_NAMES.indexOf(a.name) - CHECK_NAMES.indexOf(b.name)),
    };
    await store.checkRuns.record(run);
    resources.metrics?.observeCheckRun(run);
    histories.get(services)?.delete(ctx.runId);
    if (store.backend === 'sqlite') {
      const memo = resources.dailyHistory;
      if (memo) memo.runs = [run, ...memo.runs].slice(0, HISTORY);
    }
    const now = finished.getTime();
    const prunedAt = resources.dailyHistory?.prunedAt;
    if (prunedAt === undefined || now - prunedAt >= PRUNE_EVERY_MS || now < prunedAt) {
      try {
        const pruned = await store.checkRuns.prune(new Date(now - config.checks.retention), {
          service: config.service.name,
          environment: config.service.environment,
        });
        if (resources.dailyHistory) resources.dailyHistory.prunedAt = now;
        if (pruned > 0) ctx.log(`pruned ${pruned} check run(s) past checks.retention`);
      } catch (err) {
        ctx.log(`pruning old check runs failed: ${errorMessage(err)}`);
      }
    }
    ctx.log(`recorded check run ${run.id}: ${run.status}`);
    return { id: run.id, status: run.status, recorded: true, results: run.results.length };
  },
  async verify(args, ctx) {
    const store = servicesOf(ctx).store;
    if (!store) return 'unknown';
    return (await store.checkRuns.get(args.runId)) ? 'done' : 'not-done';
  },
};

/** The daily checks, in report order. */
export const dailyCheckDefinitions: CheckDefinition[] = CHECK_NAMES.map(dailyCheck);

/** The daily-check actions. */
export const checkActions: ActionDefinition[] = [recordAction];
