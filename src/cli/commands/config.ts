import { Command } from 'commander';
import { stringify } from 'yaml';
import { z } from 'zod';
import { configSchema, loadConfig, readEnv } from '../../config/index.ts';
import { globalOptions } from '../context.ts';
import { ExitCode } from '../exit.ts';
import { printable } from '../render.ts';

/** The JSON Schema of gameops.yaml, for editor completion (yaml-language-server, VS Code). */
export function configJsonSchema(): Record<string, unknown> {
  return {
    title: 'gameops.yaml',
    ...z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }),
  };
}

export function configCommand(): Command {
  const config = new Command('config').description('Validate and inspect gameops.yaml.');
  config
    .command('check')
    .description('Validate the config and print it resolved, with defaults filled in and secrets masked.')
    .option('--json', 'print as JSON instead of YAML')
    .action(async (options: { json?: boolean }, command: Command) => {
      const opts = globalOptions(command);
      const loaded = loadConfig({ ...(opts.config ? { path: opts.config } : {}), env: readEnv() });
      // Cron expressions and time zones are checked here and when serve starts, not while loading the config
      // (that would cost every command croner and the time-zone data), with the code serve uses: a config
      // that passes is one serve starts with. Every bad entry (runbooks.schedules, maintenance.recurring,
      // alerts.suppressions) is named with its field.
      const [{ resolveSchedules }, { checkRecurringWindows }, { compileWindows }, { InputError }] =
        await Promise.all([
          import('../../schedules/index.ts'),
          import('../../maintenance/service.ts'),
          import('../../alerts/windows.ts'),
          import('../../core/index.ts'),
        ]);
      const cronProblems: string[] = [];
      const collect = (check: () => unknown): void => {
        try {
          check();
        } catch (err) {
          if (!(err instanceof InputError)) throw err;
          cronProblems.push(err.message);
        }
      };
      collect(() => resolveSchedules(loaded.config.runbooks, { configured: loaded.configured }));
      collect(() => checkRecurringWindows(loaded.config));
      collect(() => compileWindows(loaded.config.alerts.suppressions));
      if (cronProblems.length > 0)
        throw new InputError(cronProblems.join('; '), {
          details: { problems: cronProblems },
        });
      for (const w of loaded.warnings) process.stderr.write(`gameops: warning: ${w}\n`);
      // Runbook files in runbooks.dir are checked as `gameops runbooks validate` does: file:line, exit 1.
      const { runbooksDir, validateRunbooks } = await import('../../app/index.ts');
      let runbookProblems = 0;
      const libraryRunbooks: string[] = [];
      if (runbooksDir(loaded) !== undefined) {
        const { problems, runbooks } = await validateRunbooks({ loaded });
        libraryRunbooks.push(...runbooks.map((rb) => rb.name));
        for (const p of problems) process.stderr.write(`gameops: runbook problem: ${printable(p.text)}\n`);
        runbookProblems = problems.length;
        if (problems.length > 0) process.exitCode = ExitCode.warn;
      }
      // maintenance.holdOff names runbooks of the library (built-in and runbooks.dir): a typo would hold
      // nothing off and say nothing.
      const [{ builtinRunbooks }, { didYouMean }] = await Promise.all([
        import('../../runbooks/builtin/index.ts'),
        import('../../runbooks/compile.ts'),
      ]);
      const known = [...builtinRunbooks().map((rb) => rb.name), ...libraryRunbooks];
      loaded.config.maintenance.holdOff.forEach((name, i) => {
        if (known.includes(name)) return;
        process.stderr.write(
          `gameops: config problem: maintenance.holdOff[${i}]: unknown runbook "${printable(name)}"${didYouMean(name, known)}\n`,
        );
        runbookProblems++;
        process.exitCode = ExitCode.warn;
      });
      // backups: the recipients must be age keys (their checksum too), and the identity, when set, must
      // open what is encrypted to them, or verify, drill and restore would fail only when needed.
      if (loaded.config.backups) {
        const { checkRecipients, checkIdentityFor, loadIdentities } = await import('../../backups/keys.ts');
        const { errorMessage } = await import('../../core/index.ts');
        const { recipients, identity } = loaded.config.backups.encryption;
        try {
          await checkRecipients(recipients);
          if (identity)
            checkIdentityFor(
              await loadIdentities(identity),
              recipients,
              'backups encrypted to backups.encryption.recipients',
            );
        } catch (err) {
          process.stderr.write(`gameops: backups problem: ${printable(errorMessage(err))}\n`);
          runbookProblems++;
          process.exitCode = ExitCode.warn;
        }
      }
      if (!loaded.configured) {
        process.stderr.write(
          'gameops: no config file (use --config, GAMEOPS_CONFIG or ./gameops.yaml); showing defaults\n',
        );
      } else if (runbookProblems > 0) {
        process.stderr.write(`gameops: ${loaded.file}: ${runbookProblems} problem(s) (see above)\n`);
      } else {
        process.stderr.write(`gameops: ${loaded.file} is valid\n`);
      }
      // Secret values serialise as a mask (Secret.toJSON), so this output is safe to paste.
      const plain = JSON.parse(JSON.stringify(loaded.config)) as unknown;
      process.stdout.write(options.json ? `${JSON.stringify(plain, null, 2)}\n` : stringify(plain));
    });
  config
    .command('schema')
    .description('Print the JSON Schema of gameops.yaml (for editor completion).')
    .action(() => {
      process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    });
  return config;
}
