/**
 * Runbook §4.2: database maintenance, on MySQL 8 and MariaDB. One read-only plan (what helps, from the
 * live schema and `maintenance.db`), one approval covering every statement that changes something, then
 * one step per kind of work, each skipped when the plan found nothing to do (or with `dryRun`, which only
 * plans and logs the statements). The `maintenance` runbook
 * (§4.1) embeds the same plan and task steps after its own approval (`dbMaintenanceSteps`).
 */
import { z } from 'zod';
import { defineRunbook } from '../compile.ts';
import type { RunbookInput, StepInput } from '../input.ts';

/** Options of `dbMaintenanceSteps`. */
export interface DbMaintenanceStepsOptions {
  /** Step ids are `<prefix>-plan`, `<prefix>-optimize`, … (default `db`). */
  prefix?: string;
  /** What the plan step needs (default: the step before it in the list it is placed in). */
  needs?: string[];
  /** The plan step's `dryRun` argument: a value or a template such as `${{ params.dryRun }}` (default false). */
  dryRun?: boolean | string;
  /**
   * The plan step's `duringPlay` argument: false (or a template) makes the plan refuse, before any approval,
   * to rebuild, reorganise, drop or purge while the traffic gate is open. Default: unset, not checked: the
   * maintenance runbook places the task steps after it has closed the gate.
   */
  duringPlay?: boolean | string;
}

/** The plan step, the task steps after it (in order) and the ids an approval must cover. */
export interface DbMaintenanceSteps {
  planStep: StepInput;
  taskSteps: StepInput[];
  /** The ids of every task step (all of them change something): the approval's `covers`. */
  covers: string[];
  /**
   * The plan step's id (`<prefix>-plan`): `${{ steps.<id>.output.summary }}` for an approval message,
   * `${{ steps.<id>.output.work }}` (true when any task step will run: something to do, not a dry run)
   * for its condition.
   */
  planId: string;
}

/**
 * The `db.plan` step and the task steps (`<prefix>-add-partitions`, `-rotate`, `-purge`, `-optimize`,
 * `-analyze`, `-query-cache`: purges and drops first, then the rebuilds and statistics they call for), each run only when the plan found work for it, with the plan's lists as
 * arguments: an approval placed after the plan step binds the exact tables, partition names and purge
 * cutoffs (an approval placed before it would see the arguments as pending, and be asked again once
 * they are known). The actions check every argument against the live schema again when they run.
 * A string argument is taken as the prefix.
 */
export function dbMaintenanceSteps(options: DbMaintenanceStepsOptions | string = {}): DbMaintenanceSteps {
  const {
    prefix = 'db',
    needs,
    dryRun,
    duringPlay,
  } = typeof options === 'string' ? ({ prefix: options } as DbMaintenanceStepsOptions) : options;
  const planId = `${prefix}-plan`;
  const out = (path: string): string => `\${{ steps.${planId}.output.${path} }}`;
  const when = (path: string) => ({ value: out(path), op: 'truthy' as const });
  const planStep: StepInput = {
    id: planId,
    title: 'Plan database maintenance',
    ...(needs ? { needs } : {}),
    action: 'db.plan',
    args: {
      ...(dryRun === undefined ? {} : { dryRun }),
      ...(duringPlay === undefined ? {} : { duringPlay }),
    },
  };
  const taskSteps: StepInput[] = [
    {
      id: `${prefix}-add-partitions`,
      title: 'Create future partitions',
      when: when('run.addPartitions'),
      action: 'db.add-partitions',
      args: { tables: out('addPartitions') },
    },
    {
      id: `${prefix}-rotate`,
      title: 'Archive, verify and drop old partitions',
      when: when('run.rotate'),
      action: 'db.rotate-partitions',
      args: { partitions: out('rotate') },
    },
    {
      id: `${prefix}-purge`,
      title: 'Purge stale rows in batches',
      when: when('run.purge'),
      action: 'db.purge',
      args: { rules: out('purge') },
    },
    {
      id: `${prefix}-optimize`,
      title: 'Rebuild fragmented tables (OPTIMIZE TABLE)',
      when: when('run.optimize'),
      action: 'db.optimize',
      args: { tables: out('optimize.tables') },
    },
    {
      id: `${prefix}-analyze`,
      title: 'Refresh statistics (ANALYZE TABLE)',
      when: when('run.analyze'),
      action: 'db.analyze',
      args: { tables: out('analyze.tables') },
    },
    {
      id: `${prefix}-query-cache`,
      title: 'Flush the query cache',
      when: when('run.queryCache'),
      action: 'db.query-cache',
      args: {},
    },
  ];
  return { planStep, taskSteps, covers: taskSteps.map((s) => s.id), planId };
}

/** Runbook §4.2 on its own: plan, one approval for everything that changes the database, the work. */
export function dbMaintenanceRunbook(): RunbookInput {
  const { planStep, taskSteps, covers, planId } = dbMaintenanceSteps({
    dryRun: '${{ params.dryRun }}',
    duringPlay: '${{ params.duringPlay }}',
  });
  return defineRunbook({
    name: 'db-maintenance',
    version: '1',
    title: 'Database maintenance',
    description:
      'Runbook §4.2 (maintenance.db): OPTIMIZE only the tables whose free space passes both thresholds, ANALYZE ' +
      'them, create future partitions of the time-partitioned tables, archive partitions past retention to the ' +
      'backup storage (zstd + age, SHA-256), read the archive back and compare row count and checksum, and only ' +
      'then drop them; purge stale rows in bounded batches; flush the query cache where the server has one on. ' +
      'One approval covers every statement; each step is skipped when the plan found nothing for it.',
    runBy: ['operator'],
    tags: ['database', 'maintenance'],
    params: z.object({
      dryRun: z
        .boolean()
        .default(false)
        .describe(
          'Plan only: log every statement that would run (the plan step’s output), run none, ask no approval.',
        ),
      duringPlay: z
        .boolean()
        .default(false)
        .describe(
          'Allow rebuilds, partition changes, drops and purges while players are on. Default: refused unless the ' +
            'traffic gate is closed (maintenance mode on).',
        ),
    }),
    steps: [
      planStep,
      {
        id: 'approve',
        title: 'Approve the database maintenance',
        // Nothing to do: no approval is asked, and every task step is skipped by its own condition.
        when: { value: `\${{ steps.${planId}.output.work }}`, op: 'truthy' },
        approval: {
          covers,
          approvers: ['operator'],
          expiresIn: '1h',
          message:
            `\${{ steps.${planId}.output.summary }} ` +
            'Approve: gameops runs approve ${{ run.id }} approve --yes; refuse: gameops runs reject ${{ run.id }} approve.',
        },
      },
      ...taskSteps,
    ],
  });
}
