import { readFileSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { Command, Option } from 'commander';
import { errorMessage, InputError, UnavailableError } from '../../core/index.ts';
import type { RunbookInfo, RunView } from '../../runbooks/model.ts';
import { ExitCode, RUN_EXIT_CODES_HELP } from '../exit.ts';
import { painter, printable } from '../render.ts';
import type { RunSession } from '../run-session.ts';

/** Exit code after Ctrl-C (128 + SIGINT), as shells report it. */
export const INTERRUPTED = 130;
const PARAM_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Names that would change an object's prototype instead of setting a parameter (silently lost). */
const RESERVED_PARAM_NAMES = new Set(['__proto__', 'constructor', 'prototype']);

function refuseReserved(key: string, where: string): void {
  if (RESERVED_PARAM_NAMES.has(key))
    throw new InputError(
      `${where}: "${key}" cannot be a parameter name (__proto__, constructor and prototype are refused)`,
    );
}
const MAX_PARAMS_FILE = 1024 * 1024;

export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * `-p key=value` pairs into parameters. A value that is valid JSON is taken as JSON (`-p replicas=4` is the
 * number 4, `-p dry=true` a boolean, `-p 'ids=[1,2]'` an array); anything else is a string
 * (`-p reason=slow login`). To pass the string "4", quote it as JSON: `-p 'version="4"'`.
 * @throws InputError naming the pair.
 */
export function parseParamPairs(pairs: readonly string[], flag = '-p'): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? '' : pair.slice(0, eq).trim();
    if (eq < 0 || !PARAM_NAME_RE.test(key))
      throw new InputError(
        `${flag}: "${printable(pair)}" is not key=value (a parameter name: letters, digits and _, then =)`,
      );
    refuseReserved(key, flag);
    params[key] = parseValue(pair.slice(eq + 1));
  }
  return params;
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * Reads parameters from a YAML or JSON file (by extension; `.json` is JSON, anything else YAML, which
 * also reads JSON). The file must hold one mapping.
 * @throws InputError naming the file and what is wrong.
 */
export async function readParamsFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_PARAMS_FILE) throw new InputError(`--params-file ${path}: larger than 1 MiB`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`--params-file ${path}: cannot read it: ${errorMessage(err)}`);
  }
  let value: unknown;
  try {
    if (extname(path).toLowerCase() === '.json') value = JSON.parse(text);
    else {
      const { parse } = await import('yaml');
      value = parse(text, { maxAliasCount: 100 });
    }
  } catch (err) {
    throw new InputError(
      `--params-file ${path}: not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${errorMessage(err)}`,
    );
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new InputError(`--params-file ${path}: must hold a mapping of parameter names to values`);
  for (const key of Object.keys(value)) refuseReserved(key, `--params-file ${path}`);
  return value as Record<string, unknown>;
}

/** Parameters from `--params-file` and then `-p` (which win). */
export async function paramsFrom(options: {
  param?: string[];
  paramsFile?: string;
}): Promise<Record<string, unknown>> {
  return {
    ...(options.paramsFile !== undefined ? await readParamsFile(options.paramsFile) : {}),
    ...parseParamPairs(options.param ?? []),
  };
}

export function paramOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '-p, --param <key=value>',
        'a parameter (repeatable); the value is JSON when it parses as JSON, else a string',
      ).argParser(collect),
    )
    .option('--params-file <file>', 'parameters from a YAML or JSON file (-p values override it)');
}

/** The sequence number of a run's latest event (0 when it has none). */
export async function latestSeq(session: RunSession, runId: string): Promise<number> {
  let seq = 0;
  for (;;) {
    const events = await session.service.events(runId, seq, session.actor, { waitMs: 0 });
    const last = events.at(-1);
    if (!last || last.seq <= seq) return seq;
    seq = last.seq;
  }
}

export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Ctrl-C (and SIGTERM) abort `signal` instead of killing the process, so a follow or a wait stops
 * cleanly and the command can say where things are. A second Ctrl-C exits at once.
 */
export function interruptible(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(INTERRUPTED);
    process.stderr.write(`\ngameops: ${name} received, stopping (press Ctrl-C again to quit at once)\n`);
    controller.abort(new UnavailableError(`interrupted by ${name}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/**
 * Follows a run with a progress display on stderr (in-process: also runs it), then prints the outcome
 * (stdout: the run as JSON with `--json`, else what happened and, when it waits for a person, the command
 * that continues it) and sets the exit code. Ctrl-C: stops following (exit 130).
 */
export async function followAndReport(
  session: RunSession,
  runId: string,
  json: boolean,
  afterSeq = 0,
): Promise<void> {
  const { ProgressDisplay, renderOutcome, runExitCode, shellArg } = await import('../run-render.ts');
  const { followRun } = await import('../run-session.ts');
  const interrupt = interruptible();
  const stderr = process.stderr;
  const display = new ProgressDisplay({
    write: (t) => stderr.write(t),
    tty: stderr.isTTY === true,
    paint: painter(stderr),
    afterSeq,
  });
  let view: RunView;
  try {
    view = await followRun(session, runId, display, interrupt.signal);
  } finally {
    interrupt.dispose();
  }
  const now = session.resources.clock.now();
  if (interrupt.signal.aborted) {
    stderr.write(
      `gameops: stopped following run ${printable(runId)} (${view.status}); ` +
        (session.drive
          ? `it goes on when \`gameops runs follow ${shellArg(runId)}\` or \`gameops serve\` runs\n`
          : `the server goes on with it: gameops runs follow ${shellArg(runId)}\n`),
    );
    if (json) writeJson(view);
    process.exitCode = INTERRUPTED;
    return;
  }
  if (json) writeJson(view);
  else process.stdout.write(`${renderOutcome(view, now, painter(process.stdout))}\n`);
  process.exitCode = runExitCode(view);
}

interface RunOptions {
  param?: string[];
  paramsFile?: string;
  dryRun?: boolean;
  follow?: boolean;
  detach?: boolean;
  json?: boolean;
}

export function runCommand(): Command {
  const command = new Command('run')
    .summary('Run a runbook (or --dry-run it)')
    .description(
      'Start a run of a runbook and follow it: one line per step transition on stderr, logs indented. When ' +
        'the run needs a person (an approval, a manual step, a verification) the command that continues it ' +
        'is printed and gameops exits with 4. While `gameops serve` runs (or with GAMEOPS_URL) the run goes ' +
        'through its API and its worker; otherwise this process runs it, as the local admin or as the actor ' +
        'of GAMEOPS_TOKEN.',
    )
    .argument('<runbook>', 'the runbook (gameops runbooks list)');
  paramOptions(command)
    .option('--dry-run', 'print the resolved plan (targets, arguments, approvals, compensation); run nothing')
    .addOption(
      new Option('--follow', 'follow the run until it ends or needs a person (the default)').conflicts(
        'detach',
      ),
    )
    .addOption(new Option('--detach', 'start it and return at once (prints the run)').conflicts('dryRun'))
    .option('--json', 'print the plan or the run as JSON')
    .addHelpText(
      'after',
      `
Examples:
  gameops run high-cpu --dry-run
  gameops run slow-queries -p minSeconds=30
  gameops run memory-leak --params-file params.yaml --detach
${RUN_EXIT_CODES_HELP}

Environment: GAMEOPS_TOKEN (act as this API token's identity), GAMEOPS_URL (a gameops server to use).`,
    )
    .action(async (runbook: string, options: RunOptions, cmd: Command) => {
      const params = await paramsFrom(options);
      const { withRunSession } = await import('../run-session.ts');
      await withRunSession(cmd, async (session) => {
        const { service, actor } = session;
        const render = await import('../run-render.ts');
        if (options.dryRun) {
          const plan = await service.plan({ runbook, params }, actor);
          if (options.json) {
            writeJson(plan);
            return;
          }
          let info: RunbookInfo | undefined;
          try {
            info = await service.runbook(runbook, actor);
          } catch {
            // The plan is the point; approval rules are shown when the runbook can be read.
          }
          process.stdout.write(`${render.renderPlan(plan, painter(process.stdout), info)}\n`);
          process.exitCode = ExitCode.ok;
          return;
        }
        const view = await service.start({ runbook, params, trigger: 'cli' }, actor);
        process.stderr.write(
          `gameops: run ${printable(view.id)} of ${printable(view.runbook)} v${printable(view.version)} ` +
            `started by ${printable(view.requestedBy.name)} (${session.where})\n`,
        );
        if (options.detach) {
          if (options.json) writeJson(view);
          else process.stdout.write(`${printable(view.id)}\n`);
          if (session.drive)
            process.stderr.write(
              'gameops: no server is running: the run waits until `gameops serve` starts or ' +
                `\`gameops runs follow ${render.shellArg(view.id)}\` runs it\n`,
            );
          process.exitCode = ExitCode.ok;
          return;
        }
        await followAndReport(session, view.id, options.json === true);
      });
    });
  return command;
}
