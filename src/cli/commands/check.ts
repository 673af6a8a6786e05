import { Command, Option } from 'commander';
import { InputError, parseDuration } from '../../core/index.ts';
import { withResources } from '../context.ts';
import { EXIT_CODES_HELP } from '../exit.ts';
import { painter, renderRunMarkdown, renderRunText } from '../render.ts';

interface DailyOptions {
  json?: boolean;
  markdown?: boolean;
  timeout?: string;
  record: boolean;
}

export function checkCommand(): Command {
  const check = new Command('check').description('Run health checks against the game service.');
  check
    .command('daily')
    .description(
      'The daily health check (runbook §1.1): database, Redis, disk and active alerts, run concurrently, ' +
        'each with a deadline. Results are recorded so the next run reports deltas (slow queries, restarts).',
    )
    .addOption(new Option('--json', 'print the run as JSON (schema in the README)').conflicts('markdown'))
    .option('--markdown', 'print Markdown to paste into a ticket')
    .option('--timeout <duration>', 'per-check deadline, e.g. 5s (default: checks.timeout in the config)')
    .option('--no-record', 'do not record the result in the store')
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (options: DailyOptions, command: Command) => {
      const timeoutMs = options.timeout === undefined ? undefined : parseTimeout(options.timeout);
      await withResources(command, options.record ? 'optional' : 'none', async (resources) => {
        const { runAndRecordDailyCheck } = await import('../../app/index.ts');
        const { exitCodeFor } = await import('../../checks/index.ts');
        const { run, warning } = await runAndRecordDailyCheck(
          resources,
          'cli',
          timeoutMs === undefined ? {} : { timeoutMs },
        );
        if (warning) process.stderr.write(`gameops: warning: ${warning}\n`);
        if (!resources.loaded.configured)
          process.stderr.write(
            'gameops: no config file found; every check is "not configured" (see --config)\n',
          );
        if (options.json) process.stdout.write(`${JSON.stringify(run, null, 2)}\n`);
        else if (options.markdown) process.stdout.write(`${renderRunMarkdown(run)}\n`);
        else process.stdout.write(`${renderRunText(run, painter(process.stdout))}\n`);
        process.exitCode = exitCodeFor(run.status);
      });
    });
  return check;
}

function parseTimeout(text: string): number {
  try {
    const ms = parseDuration(text);
    if (ms < 100 || ms > 600_000) throw new Error('must be between 100ms and 10m');
    return ms;
  } catch (err) {
    throw new InputError(`--timeout: ${(err as Error).message}`);
  }
}
