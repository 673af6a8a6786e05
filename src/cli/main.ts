import { Command, CommanderError } from 'commander';
import { errorMessage, GameopsError, VERSION } from '../core/index.ts';
import { checkCommand } from './commands/check.ts';
import { configCommand } from './commands/config.ts';
import { serveCommand } from './commands/serve.ts';
import { EXIT_CODES_HELP, ExitCode } from './exit.ts';

/** Builds the `gameops` command tree. Exported for tests. */
export function buildProgram(): Command {
  const program = new Command('gameops')
    .description(
      'Operations for online game services: health checks, runbooks, incidents, backups, maintenance.',
    )
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'config file (default: $GAMEOPS_CONFIG, else ./gameops.yaml if present)')
    .option('--log-level <level>', 'log level for stderr logs: error, warn, info, debug')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `${EXIT_CODES_HELP}\n\nEnvironment: GAMEOPS_CONFIG, DATABASE_URL (PostgreSQL store), GAMEOPS_DATA_DIR, NO_COLOR.`,
    )
    .exitOverride();
  for (const sub of [checkCommand(), configCommand(), serveCommand()]) program.addCommand(sub.exitOverride());
  for (const sub of program.commands) for (const leaf of sub.commands) leaf.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
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

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exitCode = code;
}
