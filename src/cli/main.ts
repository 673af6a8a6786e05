import { Command, CommanderError, Option } from 'commander';
import { z } from 'zod';
import { errorMessage, GameopsError, InputError, VERSION } from '../core/index.ts';
import { EXIT_CODES_HELP, ExitCode } from './exit.ts';

/**
 * Every top-level command, in the order `--help` lists them, and the module that defines it. A command
 * line loads only the module of the command it names: each one reaches different parts of gameops (the
 * store, the runbook engine, the platform clients), and a one-off `gameops check daily` should not pay
 * for loading the rest.
 */
const COMMANDS: ReadonlyArray<readonly [name: string, load: () => Promise<Command>]> = [
  ['check', async () => (await import('./commands/check.ts')).checkCommand()],
  ['config', async () => (await import('./commands/config.ts')).configCommand()],
  ['fleet', async () => (await import('./commands/fleet.ts')).fleetCommand()],
  ['runbooks', async () => (await import('./commands/runbooks.ts')).runbooksCommand()],
  ['run', async () => (await import('./commands/run.ts')).runCommand()],
  ['runs', async () => (await import('./commands/runs.ts')).runsCommand()],
  ['schedules', async () => (await import('./commands/schedules.ts')).schedulesCommand()],
  ['serve', async () => (await import('./commands/serve.ts')).serveCommand()],
  ['tokens', async () => (await import('./commands/tokens.ts')).tokensCommand()],
  ['audit', async () => (await import('./commands/audit.ts')).auditCommand()],
  ['incident', async () => (await import('./commands/incident.ts')).incidentCommand()],
  ['oncall', async () => (await import('./commands/oncall.ts')).oncallCommand()],
  ['alerts', async () => (await import('./commands/alerts.ts')).alertsCommand()],
  ['backup', async () => (await import('./commands/backup.ts')).backupCommand()],
  ['maintenance', async () => (await import('./commands/maintenance.ts')).maintenanceCommand()],
];

/** Root options that take a value: the command name is the first word that is neither one nor its value. */
const ROOT_VALUE_OPTIONS: ReadonlySet<string> = new Set(['-c', '--config', '--log-level']);

/**
 * The top-level command that `argv` names, when it names one; undefined for `--help`, `help <command>`,
 * no command or an unknown one (those need every command: to list them, or to suggest the closest).
 */
export function commandNamed(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return undefined;
    if (ROOT_VALUE_OPTIONS.has(arg)) i++;
    else if (!arg.startsWith('-')) return COMMANDS.some(([name]) => name === arg) ? arg : undefined;
  }
  return undefined;
}

/**
 * Builds the `gameops` command tree: with `only`, the root and that one command (what a command line
 * needs); without, every command. Exported for tests.
 */
export async function buildProgram(only?: string): Promise<Command> {
  const selected = COMMANDS.filter(([name]) => only === undefined || name === only);
  const commands = await Promise.all(selected.map(([, load]) => load()));
  const program = new Command('gameops')
    .description(
      'Operations for online game services: health checks, runbooks, incidents, backups, maintenance.',
    )
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'config file (default: $GAMEOPS_CONFIG, else ./gameops.yaml if present)')
    .addOption(
      new Option('--log-level <level>', 'log level for stderr logs').choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
        'silent',
      ]),
    )
    .hook('preAction', (_program, action) => {
      const { config } = action.optsWithGlobals<{ config?: string }>();
      if (config !== undefined && config.trim() === '')
        throw new InputError('--config: the file name is empty');
    })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `${EXIT_CODES_HELP}\n\nEnvironment: GAMEOPS_CONFIG, DATABASE_URL (PostgreSQL store), GAMEOPS_DATA_DIR, GAMEOPS_TOKEN (act as that API token), GAMEOPS_URL (use that server's API), NO_COLOR.`,
    )
    .exitOverride();
  for (const sub of commands) program.addCommand(sub.exitOverride());
  for (const sub of program.commands) for (const leaf of sub.commands) leaf.exitOverride();
  return program;
}

/** Options of `maintenance plan` that take a value: their value is handed on as it is, whatever it looks like. */
const PLAN_VALUE_OPTIONS: ReadonlySet<string> = new Set([
  '--start',
  '--end',
  '--tasks',
  '--message',
  '--name',
]);

/**
 * `gameops maintenance plan --version 1.4.0`: the program's own `--version` (print gameops's version) takes
 * that flag wherever it stands, so after `maintenance plan` it is handed on as `--version=1.4.0`, which
 * only that command's option takes (the window's game-server version). There, a `--version` with no
 * value (last, or before another option) and `-V` are refused: printing gameops's version and exiting 0
 * would look as if the window had been planned.
 * @throws InputError naming --version (or -V) when it stands after `maintenance plan` without a value.
 */
export function windowVersionArgs(argv: readonly string[]): string[] {
  const plan = argv.findIndex((arg, i) => arg === 'maintenance' && argv[i + 1] === 'plan');
  if (plan < 0) return [...argv];
  const out = argv.slice(0, plan + 2);
  for (let i = plan + 2; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (PLAN_VALUE_OPTIONS.has(arg) && next !== undefined) {
      out.push(arg, next);
      i++;
    } else if (arg === '--version') {
      if (next === undefined || next.startsWith('-'))
        throw new InputError(
          "maintenance plan --version: missing value (the window's game-server version, e.g. --version 1.4.0)",
        );
      out.push(`--version=${next}`);
      i++;
    } else if (arg.startsWith('-V')) {
      throw new InputError(
        "maintenance plan: -V is gameops's own version; the window's game-server version is --version <version>",
      );
    } else out.push(arg);
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const args = windowVersionArgs(argv);
    const command = commandNamed(args);
    // zod compiles a parser for each object schema on its first use, which pays off only in a process
    // that parses the same shapes many times: the server. A one-off command interprets them instead.
    if (command !== 'serve') z.config({ jitless: true });
    const program = await buildProgram(command);
    await program.parseAsync(args, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successful exits; every usage error is "could not run".
      return err.exitCode === 0 ? ExitCode.ok : ExitCode.couldNotRun;
    }
    const message = err instanceof GameopsError ? err.message : `unexpected error: ${errorMessage(err)}`;
    process.stderr.write(`gameops: ${message}\n`);
    return ExitCode.couldNotRun;
  }
}

/**
 * Runs the command line `argv` and exits the process with its exit code: what `bin/gameops` does, from the
 * sources or from the bundle in dist/.
 */
export async function runCli(argv: string[]): Promise<never> {
  // A reader that goes away (`gameops check daily | head -2`) is not an error of ours.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  const code = await main(argv);
  // Exit now rather than when the event loop drains: a DNS lookup that cannot be cancelled (an
  // unreachable resolver) would otherwise keep a finished command alive for minutes. Writes to
  // stdout/stderr are synchronous for files, pipes and terminals on Linux, so nothing is lost.
  process.exit(code);
}

// The bundle (scripts/build.ts) sets `import.meta.main` to true: it has no top-level await, so that
// its modules can run as scripts with a full V8 code cache (see src/cli/code-cache.ts).
if (import.meta.main) void runCli(process.argv.slice(2));
