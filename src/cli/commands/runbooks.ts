import { Command } from 'commander';
import type { InvalidRunbook } from '../../app/index.ts';
import { withResources } from '../context.ts';
import { ExitCode } from '../exit.ts';
import { painter, printable } from '../render.ts';
import { writeJson } from './run.ts';

interface JsonOption {
  json?: boolean;
}

/** One stderr warning per problem of each runbook file that was set aside (file:line: field: message). */
export function warnInvalid(
  invalid: InvalidRunbook[],
  write = (text: string) => process.stderr.write(text),
): void {
  for (const file of invalid) {
    write(`gameops: warning: runbook file ${printable(file.file)} is invalid and was not loaded:\n`);
    for (const p of file.problems) write(`  ${printable(p.text)}\n`);
  }
  if (invalid.length > 0) write('gameops: `gameops runbooks validate` lists every problem\n');
}

export function runbooksCommand(): Command {
  const runbooks = new Command('runbooks')
    .summary('The runbooks gameops knows (built-in and runbooks.dir): list, show, validate')
    .description(
      'The runbooks gameops knows: the built-in ones (daily-check, high-cpu, memory-leak, slow-queries, ' +
        'backup, backup-verify, backup-drill, backup-prune, backup-restore, maintenance, maintenance-reopen, ' +
        'db-maintenance) and the YAML files in runbooks.dir. `gameops run <runbook>` runs one.',
    );

  runbooks
    .command('list')
    .summary('Every runbook, with who may run it')
    .option('--json', 'print the runbooks as JSON')
    .action(async (options: JsonOption, command: Command) => {
      const { withRunSession } = await import('../run-session.ts');
      await withRunSession(command, async (s) => {
        const list = await s.service.runbooks(s.actor);
        if (options.json) writeJson(list);
        else process.stdout.write(`${(await import('../run-render.ts')).renderRunbookList(list)}\n`);
        warnInvalid(await s.invalidRunbooks());
      });
    });

  runbooks
    .command('show')
    .summary('One runbook: parameters, steps, approvals')
    .description(
      'One runbook: its parameters (type, default, description), its steps (kind, action, effect) and its ' +
        'approvals (which steps each covers, who may approve, four-eyes).',
    )
    .argument('<name>', 'the runbook')
    .option('--json', 'print the runbook as JSON (with the JSON Schema of its parameters)')
    .action(async (name: string, options: JsonOption, command: Command) => {
      const { withRunSession } = await import('../run-session.ts');
      await withRunSession(command, async (s) => {
        warnInvalid(await s.invalidRunbooks());
        const info = await s.service.runbook(name, s.actor);
        if (options.json) writeJson(info);
        else
          process.stdout.write(
            `${(await import('../run-render.ts')).renderRunbook(info, painter(process.stdout))}\n`,
          );
      });
    });

  runbooks
    .command('validate')
    .summary('Check runbook files (default: every file in runbooks.dir)')
    .description(
      'Loads and compiles runbook YAML files the way gameops does at start: unknown keys, unknown actions or ' +
        'checks, bad arguments, dangling or cyclic steps, destructive steps without an approval, duplicate ' +
        'names. Prints every problem as file:line and exits 1 when there is any. Needs no store and no server.',
    )
    .argument('[files...]', 'runbook files (default: the *.yaml files in runbooks.dir)')
    .option('--json', 'print {ok, runbooks, problems} as JSON')
    .addHelpText(
      'after',
      '\nExit codes: 0 valid, 1 problems found (listed), 3 could not run (no files, bad config).',
    )
    .action(async (files: string[], options: JsonOption, command: Command) => {
      await withResources(command, 'none', async (resources) => {
        const { validateRunbooks } = await import('../../app/index.ts');
        const result = await validateRunbooks(resources, files.length > 0 ? files : undefined);
        if (options.json) writeJson(result);
        else if (result.problems.length === 0)
          process.stdout.write(
            `${result.runbooks.length} runbook(s) valid: ${result.runbooks.map((r) => `${printable(r.name)} (${printable(r.file)})`).join(', ')}\n`,
          );
        else {
          for (const p of result.problems) process.stdout.write(`${printable(p.text)}\n`);
          process.stdout.write(`${result.problems.length} problem(s)\n`);
        }
        process.exitCode = result.problems.length === 0 ? ExitCode.ok : ExitCode.warn;
      });
    });

  return runbooks;
}
