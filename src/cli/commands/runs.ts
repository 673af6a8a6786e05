import { createInterface } from 'node:readline/promises';
import { Command, Option } from 'commander';
import { ConflictError, InputError, NotFoundError } from '../../core/index.ts';
import type { RunStatus, RunView, StepState } from '../../runbooks/model.ts';
import { ExitCode, RUN_EXIT_CODES_HELP } from '../exit.ts';
import { painter, printable } from '../render.ts';
import type { RunSession } from '../run-session.ts';
import { followAndReport, latestSeq, paramOptions, paramsFrom, writeJson } from './run.ts';

const RUN_STATUSES: readonly RunStatus[] = [
  'queued',
  'running',
  'waiting',
  'paused',
  'needs-verification',
  'succeeded',
  'failed',
  'cancelled',
];

interface JsonOption {
  json?: boolean;
}
interface DetachOption {
  detach?: boolean;
}

async function session<T>(command: Command, work: (s: RunSession) => Promise<T>): Promise<T> {
  const { withRunSession } = await import('../run-session.ts');
  return withRunSession(command, work);
}

/** A run's step, or NotFoundError naming the run's steps. */
export function findStep(view: RunView, stepId: string): StepState {
  const step = view.steps.find((s) => s.id === stepId);
  if (!step)
    throw new NotFoundError(
      `run ${view.id} has no step "${printable(stepId)}" (its steps: ${view.steps.map((s) => s.id).join(', ')})`,
    );
  return step;
}

/** Parses `--status a,b`. @throws InputError naming the bad status. */
export function parseStatuses(text: string): RunStatus[] {
  const out: RunStatus[] = [];
  for (const raw of text.split(',')) {
    const s = raw.trim();
    if (s === '') continue;
    if (!RUN_STATUSES.includes(s as RunStatus))
      throw new InputError(`--status: "${printable(s)}" is not a run status (${RUN_STATUSES.join(', ')})`);
    out.push(s as RunStatus);
  }
  return out;
}

function parseLimit(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 500)
    throw new InputError(`--limit: "${printable(text)}" is not an integer from 1 to 500`);
  return n;
}

/**
 * After a change (approve, complete, verify, retry, resume): in-process, move the run on and follow it;
 * remotely, follow what the server's worker does. `--detach`: print the run as it is and return.
 */
async function afterChange(
  s: RunSession,
  view: RunView,
  options: JsonOption & DetachOption,
  afterSeq: number,
): Promise<void> {
  if (!options.detach) {
    await followAndReport(s, view.id, options.json === true, afterSeq);
    return;
  }
  const { runExitCode } = await import('../run-render.ts');
  await printRun(s, view, options);
  process.exitCode = view.status === 'queued' || view.status === 'running' ? ExitCode.ok : runExitCode(view);
}

/**
 * Makes a change to a run (`act`), then says what was done on stderr (`done`, after `gameops: `, when given)
 * and goes on as {@link afterChange}, following from the last event before the change.
 */
async function change(
  s: RunSession,
  runId: string,
  options: JsonOption & DetachOption,
  act: () => Promise<RunView>,
  done?: string,
): Promise<void> {
  const mark = await latestSeq(s, runId);
  const view = await act();
  if (done !== undefined) process.stderr.write(`gameops: ${done}\n`);
  await afterChange(s, view, options, mark);
}

/** In-process (`s.drive`), moves the run on for at most `timeoutMs` and returns it as it is then; else `view`. */
async function driven(s: RunSession, runId: string, view: RunView, timeoutMs: number): Promise<RunView> {
  if (!s.drive) return view;
  await s.drive(runId, AbortSignal.timeout(timeoutMs));
  return s.service.get(runId, s.actor);
}

/** Asks on the terminal; false unless the answer is yes. */
async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

function detachOption(): Option {
  return new Option(
    '--detach',
    'do not follow the run afterwards (in-process: it waits for `gameops serve` or `runs follow`)',
  );
}

export function runsCommand(): Command {
  const runs = new Command('runs')
    .description(
      'Runs of runbooks: list, show, follow, and what people do to them: approve or reject an approval step, ' +
        'complete a manual step, verify a step whose outcome is unknown, cancel, pause, resume, retry from a ' +
        'step. Through the API of `gameops serve` when it runs (or GAMEOPS_URL), else in this process.',
    )
    .addHelpText('after', RUN_EXIT_CODES_HELP);

  runs
    .command('list')
    .summary('Recent runs, newest first')
    .option('--runbook <name>', 'only runs of this runbook')
    .option('--status <list>', `only runs in these statuses (comma-separated: ${RUN_STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most this many (1-500, default 50)')
    .option('--before <run>', 'runs created before this run (paging)')
    .option('--json', 'print the runs as JSON')
    .action(
      async (
        options: JsonOption & { runbook?: string; status?: string; limit?: string; before?: string },
        command: Command,
      ) => {
        const status = options.status !== undefined ? parseStatuses(options.status) : undefined;
        const limit = options.limit !== undefined ? parseLimit(options.limit) : 50;
        await session(command, async (s) => {
          const list = await s.service.list(
            {
              limit,
              ...(options.runbook !== undefined ? { runbook: options.runbook } : {}),
              ...(status && status.length > 0 ? { status } : {}),
              ...(options.before !== undefined ? { before: options.before } : {}),
            },
            s.actor,
          );
          if (options.json) writeJson(list);
          else {
            const { renderRunList } = await import('../run-render.ts');
            process.stdout.write(
              `${renderRunList(list, s.resources.clock.now(), painter(process.stdout))}\n`,
            );
          }
        });
      },
    );

  runs
    .command('show')
    .summary('One run: steps, attempts, errors, approvals')
    .description(
      'One run: its parameters (secrets masked), every step with its status, attempt, duration and error, ' +
        'and each approval with its plan hash and the exact targets and arguments it covers.',
    )
    .argument('<run>', 'the run id')
    .option('--json', 'print the run as JSON (with step outputs)')
    .action(async (runId: string, options: JsonOption, command: Command) => {
      await session(command, async (s) => {
        await printRun(s, await s.service.get(runId, s.actor), options);
      });
    });

  runs
    .command('follow')
    .summary('Follow a run until it ends or needs a person')
    .description(
      'Prints the run’s history and then its progress until it ends or needs a person. Without a server ' +
        'this process runs it meanwhile.',
    )
    .argument('<run>', 'the run id')
    .option('--json', 'print the run as JSON at the end')
    .addHelpText('after', RUN_EXIT_CODES_HELP)
    .action(async (runId: string, options: JsonOption, command: Command) => {
      await session(command, async (s) => {
        await s.service.get(runId, s.actor);
        await followAndReport(s, runId, options.json === true);
      });
    });

  runs
    .command('approve')
    .summary('Approve an approval step (shows what it allows first)')
    .description(
      'Shows the exact targets and arguments of the steps the approval covers and the plan hash that binds ' +
        'them, asks for confirmation (on a terminal, unless --yes), then approves that hash: if the plan ' +
        'changed meanwhile the approval is refused. Then follows the run.',
    )
    .argument('<run>', 'the run id')
    .argument('<step>', 'the approval step')
    .option('--comment <text>', 'why (kept with the approval and in the audit log)')
    .option('-y, --yes', 'do not ask (needed when stdin is not a terminal)')
    .addOption(detachOption())
    .option('--json', 'print the run as JSON at the end')
    .addHelpText('after', RUN_EXIT_CODES_HELP)
    .action(
      async (
        runId: string,
        stepId: string,
        options: JsonOption & DetachOption & { comment?: string; yes?: boolean },
        command: Command,
      ) => {
        await session(command, async (s) => {
          const { renderApproval } = await import('../run-render.ts');
          const before = await s.service.get(runId, s.actor);
          const step = findStep(before, stepId);
          const approval = approvalOf(before, step);
          const out = options.json ? process.stderr : process.stdout;
          out.write(`${renderApproval(step.id, approval, painter(out), before.status).join('\n')}\n`);
          if (!options.yes) {
            if (!process.stdin.isTTY)
              throw new InputError('stdin is not a terminal, so gameops cannot ask: pass --yes to approve');
            if (
              !(await confirm(
                `Approve ${approval.covers.length} step(s) with plan hash ${approval.planHash.slice(0, 12)}?`,
              ))
            ) {
              process.stderr.write('gameops: not approved\n');
              process.exitCode = ExitCode.couldNotRun;
              return;
            }
          }
          await change(
            s,
            runId,
            options,
            () =>
              s.service.decide(
                {
                  runId,
                  stepId,
                  decision: 'approve',
                  planHash: approval.planHash,
                  ...(options.comment !== undefined ? { comment: options.comment } : {}),
                },
                s.actor,
              ),
            `approved ${printable(stepId)} of run ${printable(runId)}`,
          );
        });
      },
    );

  runs
    .command('reject')
    .summary('Reject an approval step (the run stops)')
    .argument('<run>', 'the run id')
    .argument('<step>', 'the approval step')
    .option('--comment <text>', 'why')
    .option('--json', 'print the run as JSON')
    .action(
      async (runId: string, stepId: string, options: JsonOption & { comment?: string }, command: Command) => {
        await session(command, async (s) => {
          const before = await s.service.get(runId, s.actor);
          const approval = approvalOf(before, findStep(before, stepId));
          const view = await s.service.decide(
            {
              runId,
              stepId,
              decision: 'reject',
              planHash: approval.planHash,
              ...(options.comment !== undefined ? { comment: options.comment } : {}),
            },
            s.actor,
          );
          const after = await driven(s, runId, view, 60_000);
          process.stderr.write(`gameops: rejected ${printable(stepId)} of run ${printable(runId)}\n`);
          await printRun(s, after, options);
        });
      },
    );

  runs
    .command('complete')
    .summary('Tick a manual step')
    .argument('<run>', 'the run id')
    .argument('<step>', 'the manual step')
    .option('--note <text>', 'what was done')
    .option('--evidence <link>', 'a link or reference to evidence (required by some steps)')
    .addOption(detachOption())
    .option('--json', 'print the run as JSON at the end')
    .addHelpText('after', RUN_EXIT_CODES_HELP)
    .action(
      async (
        runId: string,
        stepId: string,
        options: JsonOption & DetachOption & { note?: string; evidence?: string },
        command: Command,
      ) => {
        await session(command, async (s) => {
          await change(
            s,
            runId,
            options,
            () =>
              s.service.complete(
                {
                  runId,
                  stepId,
                  ...(options.note !== undefined ? { note: options.note } : {}),
                  ...(options.evidence !== undefined ? { evidence: options.evidence } : {}),
                },
                s.actor,
              ),
            `completed ${printable(stepId)} of run ${printable(runId)}`,
          );
        });
      },
    );

  runs
    .command('verify')
    .summary('Say whether a step whose outcome is unknown took effect')
    .description(
      'After a crash, a step that is not idempotent and whose outcome is unknown waits for a person: ' +
        '--done counts it as succeeded, --not-done runs it again.',
    )
    .argument('<run>', 'the run id')
    .argument('<step>', 'the step in needs-verification')
    .addOption(new Option('--done', 'it took effect').conflicts('notDone'))
    .addOption(new Option('--not-done', 'it did not take effect: run it again'))
    .option('--note <text>', 'how you know')
    .addOption(detachOption())
    .option('--json', 'print the run as JSON at the end')
    .addHelpText('after', RUN_EXIT_CODES_HELP)
    .action(
      async (
        runId: string,
        stepId: string,
        options: JsonOption & DetachOption & { done?: boolean; notDone?: boolean; note?: string },
        command: Command,
      ) => {
        if (!options.done && !options.notDone) throw new InputError('say --done or --not-done');
        await session(command, async (s) => {
          await change(
            s,
            runId,
            options,
            () =>
              s.service.verify(
                {
                  runId,
                  stepId,
                  outcome: options.done ? 'done' : 'not-done',
                  ...(options.note !== undefined ? { note: options.note } : {}),
                },
                s.actor,
              ),
            `${printable(stepId)} of run ${printable(runId)} verified as ${options.done ? 'done' : 'not done'}`,
          );
        });
      },
    );

  runs
    .command('cancel')
    .summary('Cancel a run')
    .argument('<run>', 'the run id')
    .option('--reason <text>', 'why')
    .option('--json', 'print the run as JSON')
    .action(async (runId: string, options: JsonOption & { reason?: string }, command: Command) => {
      await session(command, async (s) => {
        const view = await s.service.cancel(runId, s.actor, options.reason);
        // In-process, compensation (when the runbook asks for it) runs now.
        await printRun(s, await driven(s, runId, view, 10 * 60_000), options);
      });
    });

  runs
    .command('pause')
    .summary('Pause a run (running steps finish; nothing new starts)')
    .argument('<run>', 'the run id')
    .option('--json', 'print the run as JSON')
    .action(async (runId: string, options: JsonOption, command: Command) => {
      await session(command, async (s) => printRun(s, await s.service.pause(runId, s.actor), options));
    });

  runs
    .command('resume')
    .summary('Resume a paused run and follow it')
    .argument('<run>', 'the run id')
    .addOption(detachOption())
    .option('--json', 'print the run as JSON at the end')
    .addHelpText('after', RUN_EXIT_CODES_HELP)
    .action(async (runId: string, options: JsonOption & DetachOption, command: Command) => {
      await session(command, async (s) => {
        await change(s, runId, options, () => s.service.resume(runId, s.actor));
      });
    });

  const retry = runs
    .command('retry')
    .summary('Run a failed or cancelled run again from a step')
    .description(
      'Runs a failed or cancelled run again from --from (and every step after it), after a fix; -p overrides ' +
        'parameters. Steps before it keep their outcomes.',
    )
    .argument('<run>', 'the run id')
    .requiredOption('--from <step>', 'the step to start again from');
  paramOptions(retry)
    .addOption(detachOption())
    .option('--json', 'print the run as JSON at the end')
    .addHelpText('after', RUN_EXIT_CODES_HELP)
    .action(
      async (
        runId: string,
        options: JsonOption & DetachOption & { from: string; param?: string[]; paramsFile?: string },
        command: Command,
      ) => {
        const params = await paramsFrom(options);
        await session(command, async (s) => {
          await change(
            s,
            runId,
            options,
            () =>
              s.service.retry(
                { runId, from: options.from, ...(Object.keys(params).length > 0 ? { params } : {}) },
                s.actor,
              ),
            `run ${printable(runId)} runs again from ${printable(options.from)}`,
          );
        });
      },
    );

  return runs;
}

function approvalOf(view: RunView, step: StepState): NonNullable<StepState['approval']> {
  if (step.kind !== 'approval')
    throw new InputError(
      `step ${printable(step.id)} of run ${view.id} is a ${step.kind} step, not an approval` +
        (step.kind === 'manual' ? ' (gameops runs complete ticks it)' : ''),
    );
  if (!step.approval)
    throw new ConflictError(
      `step ${printable(step.id)} of run ${view.id} has not asked for approval yet (it is ${step.status})`,
    );
  if (step.approval.decision)
    throw new ConflictError(
      `step ${printable(step.id)} of run ${view.id} was already ${step.approval.decision}` +
        (step.approval.decidedBy ? ` by ${printable(step.approval.decidedBy.name)}` : ''),
    );
  return step.approval;
}

async function printRun(s: RunSession, view: RunView, options: JsonOption): Promise<void> {
  if (options.json) writeJson(view);
  else {
    const { renderRun } = await import('../run-render.ts');
    process.stdout.write(`${renderRun(view, s.resources.clock.now(), painter(process.stdout))}\n`);
  }
}
