import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { GameopsConfig } from '../config/index.ts';
import { httpAuth } from '../connectors/index.ts';
import {
  mapLimit,
  maskSecrets,
  toGameopsError,
  withTimeout,
  type Clock,
  type Secret,
} from '../core/index.ts';
import type { Platform } from '../platform/port.ts';
import { alertsCheck } from './alerts.ts';
import { backupsCheck } from './backups.ts';
import { databaseCheck } from './database.ts';
import { diskCheck } from './disk.ts';
import { fleetCheck } from './fleet.ts';
import { gameCheck } from './game.ts';
import { logsCheck } from './logs.ts';
import { redisCheck } from './redis.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import type { KeptConnections } from './kept-connections.ts';
import type { Check, CheckContext, CheckResult, CheckRun, GameStatusReader } from './types.ts';

/** The checks of runbook §1.1, in report order. */
export const dailyChecks: readonly Check[] = [
  databaseCheck,
  redisCheck,
  diskCheck,
  alertsCheck,
  fleetCheck,
  logsCheck,
  gameCheck,
  backupsCheck,
];

const DEFAULT_TIMEOUT_MS = 5000;

export interface DailyCheckOptions {
  config: GameopsConfig;
  clock: Clock;
  /**
   * Recent recorded runs of the same service and environment, newest first (or just the last one). Deltas
   * (slow queries) and restart detection of each check compare against the newest run in which THAT check
   * measured: a run where it was `error` or `skipped` holds no figures, and comparing with it would lose
   * what happened while the dependency was down. The app passes the last ~20 runs.
   */
  previous?: CheckRun | readonly CheckRun[] | undefined;
  trigger: CheckRun['trigger'];
  /**
   * Deadline of each check; a dependency that is down or never answers gives `error` within it.
   * @default config.checks.timeout (5 s)
   */
  timeoutMs?: number;
  /** @default dailyChecks */
  checks?: readonly Check[];
  /**
   * How many checks run at the same time; 1 runs them one after the other.
   * @default all at once
   */
  concurrency?: number;
  /** Aborts every check still running (each then reports `error`). */
  signal?: AbortSignal;
  /** The game-server platform; the fleet, logs and game checks report `error` without it. */
  platform?: Platform | undefined;
  /** Reads game servers' `/ops/status` for the game check. */
  gameStatus?: GameStatusReader | undefined;
  /** Why there is no platform although one is configured; the game-server checks report it. */
  platformProblem?: string | undefined;
  /** The backup catalog for the backups check (the store's). */
  backupCatalog?: CheckContext['backupCatalog'];
  /** Connections kept between runs (the server's); without it the database and redis checks connect per run. */
  kept?: KeptConnections | undefined;
}

/**
 * Runs the daily health check of runbook §1.1: every check concurrently, each under its own deadline, so one
 * dependency that hangs never delays or hides the others. Never throws for a failing dependency: that is a
 * result with status `error`. Checks that are not configured report `skipped` ("not configured").
 */
export async function runDailyCheck(options: DailyCheckOptions): Promise<CheckRun> {
  const timeoutMs = options.timeoutMs ?? options.config.checks.timeout ?? DEFAULT_TIMEOUT_MS;
  // Checks size their own budgets (PING sample, connect timeout) from the effective deadline.
  const config: GameopsConfig =
    timeoutMs === options.config.checks.timeout
      ? options.config
      : { ...options.config, checks: { ...options.config.checks, timeout: timeoutMs } };
  const checks = options.checks ?? dailyChecks;
  const history = newestFirst(options.previous);
  const secrets = configSecrets(config);
  const startedAt = options.clock.now();
  const started = performance.now();

  const results = await mapLimit(checks, options.concurrency ?? checks.length, (check) =>
    runOne(check, {
      config,
      clock: options.clock,
      timeoutMs,
      ...lastMeasured(history, check.name),
      secrets,
      signal: options.signal,
      platform: options.platform,
      gameStatus: options.gameStatus,
      platformProblem: options.platformProblem,
      backupCatalog: options.backupCatalog,
      kept: options.kept,
    }),
  );

  const finishedAt = options.clock.now();
  return {
    id: randomUUID(),
    kind: 'daily',
    service: config.service.name,
    environment: config.service.environment,
    trigger: options.trigger,
    status: worstOf(results.map((r) => r.status)),
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: Math.round(performance.now() - started),
    results,
  };
}

/** The same run with one check at a time: the baseline a benchmark compares the concurrent run against. */
export function runChecksSequentially(options: Omit<DailyCheckOptions, 'concurrency'>): Promise<CheckRun> {
  return runDailyCheck({ ...options, concurrency: 1 });
}

/** The runs given as `previous`, newest first whatever order they came in (a run without a valid time last). */
function newestFirst(previous: CheckRun | readonly CheckRun[] | undefined): CheckRun[] {
  if (previous === undefined) return [];
  const runs: readonly CheckRun[] = isRunList(previous) ? previous : [previous];
  const time = (run: CheckRun): number => {
    const t = Date.parse(run.startedAt);
    return Number.isFinite(t) ? t : Number.NEGATIVE_INFINITY;
  };
  // Array.prototype.sort is stable: runs with the same time keep the caller's order.
  return [...runs].sort((a, b) => time(b) - time(a));
}

function isRunList(previous: CheckRun | readonly CheckRun[]): previous is readonly CheckRun[] {
  return Array.isArray(previous);
}

/**
 * The result of `name` in the newest run where that check measured (status other than `error` and
 * `skipped`), with when that run started: each check gets its own previous run.
 */
function lastMeasured(
  history: readonly CheckRun[],
  name: Check['name'],
): { previous: CheckResult | undefined; previousAt: Date | undefined } {
  for (const run of history) {
    const result = run.results.find((r) => r.name === name);
    if (!result || result.status === CheckStatus.error || result.status === CheckStatus.skipped) continue;
    const at = new Date(run.startedAt);
    return { previous: result, previousAt: Number.isFinite(at.getTime()) ? at : undefined };
  }
  return { previous: undefined, previousAt: undefined };
}

interface RunOneContext {
  config: GameopsConfig;
  clock: Clock;
  timeoutMs: number;
  previous: CheckResult | undefined;
  previousAt: Date | undefined;
  secrets: Secret[];
  signal: AbortSignal | undefined;
  platform: Platform | undefined;
  gameStatus: GameStatusReader | undefined;
  platformProblem: string | undefined;
  backupCatalog: CheckContext['backupCatalog'];
  kept: KeptConnections | undefined;
}

async function runOne(check: Check, ctx: RunOneContext): Promise<CheckResult> {
  const started = performance.now();
  const durationMs = (): number => Math.round(performance.now() - started);
  if (!check.configured(ctx.config))
    return {
      name: check.name,
      status: CheckStatus.skipped,
      summary: 'not configured',
      durationMs: 0,
      values: {},
      findings: [],
    };
  const what = check.target?.(ctx.config) ?? `${check.name} check`;
  try {
    const outcome = await withTimeout(
      what,
      ctx.timeoutMs,
      (signal) =>
        check.run({
          config: ctx.config,
          clock: ctx.clock,
          signal,
          previous: ctx.previous,
          previousAt: ctx.previousAt,
          platform: ctx.platform,
          gameStatus: ctx.gameStatus,
          platformProblem: ctx.platformProblem,
          backupCatalog: ctx.backupCatalog,
          kept: ctx.kept,
        }),
      ctx.signal,
    );
    return sanitize({ name: check.name, durationMs: durationMs(), ...outcome }, ctx.secrets);
  } catch (err) {
    const error = toGameopsError(err);
    const message = oneLine(maskSecrets(error.message, ctx.secrets));
    return {
      name: check.name,
      status: CheckStatus.error,
      summary: message,
      durationMs: durationMs(),
      values: {},
      findings: [],
      error: { code: error.code, message },
    };
  }
}

/**
 * Every secret in the config, so that no result can carry one even if a driver or a server echoes it: the
 * passwords and tokens, and for the HTTP APIs the exact Authorization header and its base64 credentials.
 */
function configSecrets(config: GameopsConfig): Secret[] {
  const found = [
    config.mysql?.password,
    config.redis?.password,
    ...httpAuth(config.alertmanager).secrets,
    ...httpAuth(config.prometheus).secrets,
    config.game.opsToken,
    ...(config.platform?.kind === 'local' ? Object.values(config.platform.secretEnv) : []),
  ].filter((s): s is Secret => s !== undefined);
  // Longest first, so that a header is masked whole before a secret inside it.
  return found.sort((a, b) => b.reveal().length - a.reveal().length);
}

/** A result that survives JSON and shows no secret: strings masked, non-JSON values dropped, one-line summary. */
function sanitize(result: CheckResult, secrets: Secret[]): CheckResult {
  const mask = (text: string): string => (secrets.length > 0 ? maskSecrets(text, secrets) : text);
  const json = JSON.stringify(
    { values: result.values, findings: result.findings, error: result.error },
    (_key, value: unknown) => {
      if (typeof value === 'string') return mask(value);
      if (typeof value === 'bigint') return Number(value);
      return value;
    },
  );
  const parsed = JSON.parse(json) as Pick<CheckResult, 'values' | 'findings' | 'error'>;
  return {
    name: result.name,
    status: result.status,
    summary: oneLine(mask(result.summary)),
    durationMs: result.durationMs,
    values: parsed.values,
    findings: parsed.findings,
    ...(parsed.error ? { error: parsed.error } : {}),
  };
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
