/**
 * Runbook §4.1: planned maintenance. The window service (src/maintenance/service.ts) starts it
 * `maintenance.leadTime` before a window with `MaintenanceRunParams`; `gameops run maintenance -p …` starts
 * one by hand. Everything that reads comes first (preflight, the database plan, the approval's summary), so
 * a window that cannot work fails before anything changed and the approval is asked during the lead time;
 * then the run waits for the start.
 *
 * From the silence on, every step that changes something has `onFailure: compensate` and, where it can be
 * undone, a compensation: the engine undoes the succeeded ones newest first (the version, the drained
 * instances, the gate, the silences). With `hold` the gate and the silences stay as they are (maintenance
 * stays on, the step log says how to reopen: the `maintenance-reopen` runbook).
 */
import { z } from 'zod';
import { CHECK_NAMES } from '../../checks/index.ts';
import { MAINTENANCE_TASKS, WINDOW_ID_PATTERN, type MaintenanceRunParams } from '../../maintenance/types.ts';
import { defineRunbook } from '../compile.ts';
import type { RunbookInput } from '../input.ts';
import { dbMaintenanceSteps } from './db-maintenance.ts';

const windowParam = z
  .string()
  .max(100)
  .regex(WINDOW_ID_PATTERN, 'a window id such as mw-20261126T0400Z-3f9a2c (gameops maintenance list)');
const isoTime = z.iso.datetime({
  offset: true,
  error: 'an ISO 8601 time with its offset, e.g. 2026-12-03T04:00:00Z',
});

/** The parameters of `maintenance` (exactly MaintenanceRunParams), with errors that name the field. */
export const maintenanceParams = z
  .object({
    window: windowParam
      .nullable()
      .default(null)
      .describe('The window this run serves (null: started by hand).'),
    startsAt: isoTime.describe('When the window starts: the run waits until then.'),
    endsAt: isoTime.describe('When it ends: silences last until then plus maintenance.silence.after.'),
    tasks: z
      .array(z.enum(MAINTENANCE_TASKS))
      .max(MAINTENANCE_TASKS.length)
      .default([])
      .describe('db (database maintenance), logs (rotate game-server logs), update (roll to version).'),
    version: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/, 'a version such as 1.4.2 (letters, digits, . _ + -)')
      .nullable()
      .default(null)
      .describe('The game-server version to roll to (task update).'),
    message: z
      .string()
      .min(1)
      .max(500)
      .nullable()
      .default(null)
      .describe("The players' notice when logins close (default: one naming the times)."),
    hold: z
      .boolean()
      .default(false)
      .describe(
        'On failure keep maintenance on (gate closed, alerts silenced) for a person to fix and reopen.',
      ),
  })
  .superRefine((p, ctx) => {
    if (Date.parse(p.endsAt) <= Date.parse(p.startsAt))
      ctx.addIssue({
        code: 'custom',
        path: ['endsAt'],
        message: `must be after startsAt (${p.startsAt})`,
      });
    if (new Set(p.tasks).size !== p.tasks.length)
      ctx.addIssue({ code: 'custom', path: ['tasks'], message: 'a task is listed twice' });
    if (p.tasks.includes('update') && p.version === null)
      ctx.addIssue({
        code: 'custom',
        path: ['version'],
        message: 'task update needs the version to roll to',
      });
    if (!p.tasks.includes('update') && p.version !== null)
      ctx.addIssue({
        code: 'custom',
        path: ['version'],
        message: `a version (${p.version}) is only used by task update, which is not in tasks`,
      });
  }) satisfies z.ZodType<MaintenanceRunParams>;

type Step = RunbookInput['steps'][number];

const truthy = (value: string) => ({ value, op: 'truthy' as const });
/** A task's steps run when it is in `tasks` (a parameter, so dry-run shows the skips). */
const task = (name: string) => ({ value: name, op: 'in' as const, to: '${{ params.tasks }}' });
const anyTask = truthy('${{ params.tasks }}');
const out = (step: string, path: string): string => `\${{ steps.${step}.output.${path} }}`;

/** The undo of `silence` and the `unsilence` step itself (`hold` only in the undo). */
function unsilenceArgs(hold: boolean | string) {
  return {
    window: '${{ params.window }}',
    runId: '${{ run.id }}',
    silenceId: out('silence', 'silenceId'),
    suppressionId: out('silence', 'suppressionId'),
    hold,
  };
}

/**
 * The daily checks that judge whether the service is back (database, Redis, disk, fleet, logs, game). Not
 * `alerts` (it sees what fired during the window itself, silenced) nor `backups` (it judges drills and the
 * age of sets, not whether players can come back; this run has just made a verified set): they are for
 * the next daily check, and would otherwise undo a good window.
 */
export const HEALTH_CHECKS: readonly string[] = CHECK_NAMES.filter((n) => n !== 'alerts' && n !== 'backups');

/**
 * The health gate: those checks at once; a `fail` (or a check that cannot measure) fails its step and the
 * run puts the service back; warnings pass. With the gate still closed and nobody on, the game check says
 * ok ("in maintenance: 0 players, logins closed"), so maintenance itself neither fails it nor warns.
 */
function healthSteps(): Step[] {
  return [
    {
      id: 'health',
      title: 'Daily check must pass',
      parallel: HEALTH_CHECKS.map((name) => ({
        id: name,
        title: `${name} check`,
        check: `daily.${name}`,
        onFailure: 'compensate' as const,
      })),
    },
    {
      id: 'record-health',
      title: 'Record the check run',
      onFailure: 'continue',
      action: 'daily.record',
      args: {
        runId: '${{ run.id }}',
        results: HEALTH_CHECKS.map((name) => `\${{ steps.health.${name}.output }}`),
      },
    },
  ];
}

/**
 * Runbook §4.1: the maintenance of one window. Approval applies only when database work or a version
 * change is planned; it covers exactly those steps. A window with log rotation only (or no task) closes,
 * drains, backs up, rotates and reopens unattended: the window itself was planned by an operator.
 */
export function maintenanceRunbook(): RunbookInput {
  const db = dbMaintenanceSteps({ prefix: 'db', needs: ['preflight'] });
  // Every task needs the verified backup; the database tasks run one after the other.
  const dbTasks = db.taskSteps.map((step, i): Step => ({
    ...step,
    needs: i === 0 ? ['verify'] : [db.taskSteps[i - 1]!.id, 'verify'],
    onFailure: 'compensate',
  }));
  const lastDbTask = db.taskSteps[db.taskSteps.length - 1]!.id;
  return defineRunbook({
    name: 'maintenance',
    version: '1',
    title: 'Planned maintenance',
    description:
      'Runbook §4.1. Reads first: preflight (fleet, version, backups and database configured for the tasks), the ' +
      'database plan (task db), a summary for the approver. An operator approves when database work or a version ' +
      'change is planned (the approval covers exactly those steps; log rotation alone runs unattended). Then it ' +
      'waits for the window to start, silences alerts and suppresses paging, closes logins (maintenance mode), ' +
      'drains players (saved and disconnected at maintenance.drain.deadline), takes a backup set and verifies it ' +
      'before any task, runs the tasks (database maintenance, log rotation, version update: a failing version ' +
      'is rolled back at once), restarts drained instances, requires the daily checks of the service (database, Redis, disk, fleet, ' +
      'logs, game; warnings pass) to pass, ' +
      'reopens, ends the silences and tells maintenance.notices.channels. A failure puts the service back ' +
      '(previous version, drained instances restarted, logins open, silences ended) unless hold: then ' +
      'maintenance stays on until `gameops run maintenance-reopen`.',
    runBy: ['operator'],
    tags: ['maintenance'],
    params: maintenanceParams,
    steps: [
      {
        id: 'preflight',
        title: 'Preflight: fleet, version, backups, database',
        action: 'maintenance.preflight',
        args: {
          window: '${{ params.window }}',
          tasks: '${{ params.tasks }}',
          version: '${{ params.version }}',
          startsAt: '${{ params.startsAt }}',
          endsAt: '${{ params.endsAt }}',
          message: '${{ params.message }}',
        },
      },
      { ...db.planStep, when: task('db') },
      {
        id: 'summary',
        title: 'What the window will do',
        needs: [db.planId],
        action: 'maintenance.summarize',
        args: {
          window: '${{ params.window }}',
          startsAt: '${{ params.startsAt }}',
          endsAt: '${{ params.endsAt }}',
          tasks: '${{ params.tasks }}',
          preflight: '${{ steps.preflight.output }}',
          dbPlan: `\${{ steps.${db.planId}.output }}`,
        },
      },
      {
        id: 'approve',
        title: 'Approve the database work and the update',
        when: truthy(out('summary', 'approval')),
        approval: {
          covers: [...db.covers, 'update'],
          approvers: ['operator'],
          // The run starts maintenance.leadTime (up to a day) before the window; a grant must outlast the
          // lead time and the window itself.
          expiresIn: '30h',
          message:
            `${out('summary', 'summary')} ` +
            'Approve: gameops runs approve ${{ run.id }} approve --yes; refuse: gameops runs reject ${{ run.id }} approve.',
        },
      },
      {
        id: 'wait-start',
        title: 'Wait for the window to start',
        wait: {
          // The check measures (values.open) and this assertion alone judges: one "the window opens at …"
          // per poll, without a countdown, not the check's summary and the assertion's message both.
          until: {
            check: 'maintenance.window-open',
            args: { startsAt: '${{ params.startsAt }}' },
            assert: [
              {
                value: out('wait-start', 'open'),
                op: 'truthy',
                message: 'the window opens at ${{ params.startsAt }}',
              },
            ],
          },
          interval: '1s',
        },
      },
      {
        id: 'silence',
        title: 'Silence alerts and suppress paging',
        onFailure: 'compensate',
        retry: { attempts: 3, delay: '2s' },
        action: 'maintenance.silence',
        args: { window: '${{ params.window }}', endsAt: '${{ params.endsAt }}' },
        compensate: { action: 'maintenance.unsilence', args: unsilenceArgs('${{ params.hold }}') },
      },
      {
        id: 'close',
        title: 'Close logins (maintenance mode on)',
        onFailure: 'compensate',
        action: 'fleet.gate',
        args: {
          closed: true,
          message: out('preflight', 'playersMessage'),
          startsAt: '${{ params.startsAt }}',
        },
        compensate: {
          action: 'maintenance.reopen',
          args: { window: '${{ params.window }}', hold: '${{ params.hold }}' },
        },
      },
      {
        id: 'drain',
        title: 'Drain players (saved and disconnected at the deadline)',
        onFailure: 'compensate',
        action: 'fleet.drain-players',
        args: { message: out('preflight', 'playersMessage') },
        compensate: { action: 'fleet.restart-drained', args: {} },
      },
      {
        id: 'backup',
        title: 'Take a backup set',
        when: anyTask,
        onFailure: 'compensate',
        action: 'backup.create',
        args: {},
      },
      {
        id: 'verify',
        title: 'Verify the backup set (before any task)',
        when: anyTask,
        onFailure: 'compensate',
        action: 'backup.verify',
        args: { id: out('backup', 'id') },
      },
      ...dbTasks,
      {
        id: 'rotate-logs',
        title: 'Rotate the game-server logs',
        needs: [lastDbTask, 'verify'],
        when: task('logs'),
        onFailure: 'compensate',
        action: 'fleet.rotate-logs',
        args: {},
      },
      {
        id: 'update',
        title: 'Roll to the new version',
        needs: ['rotate-logs', 'verify'],
        when: task('update'),
        onFailure: 'compensate',
        action: 'maintenance.update',
        args: { version: '${{ params.version }}', previousVersion: out('preflight', 'previousVersion') },
        compensate: {
          action: 'maintenance.revert-version',
          args: { version: '${{ params.version }}', previousVersion: out('preflight', 'previousVersion') },
        },
      },
      {
        // Instances the deadline emptied refuse logins until restarted; an update replaced them already.
        // Always run (the action restarts only instances that say they are draining): after a crash the
        // drain step runs again, finds nobody left and says kicked: false, though the first attempt kicked.
        id: 'restart-drained',
        title: 'Restart the drained instances',
        onFailure: 'compensate',
        action: 'fleet.restart-drained',
        args: {},
      },
      ...healthSteps(),
      {
        id: 'open',
        title: 'Open logins (maintenance mode off)',
        needs: ['record-health'],
        onFailure: 'compensate',
        retry: { attempts: 3, delay: '2s' },
        action: 'fleet.gate',
        args: { closed: false },
      },
      {
        // The service is back: a silence that cannot be ended now runs out by itself (endsAt + after).
        id: 'unsilence',
        title: 'End the silence and paging suppression',
        onFailure: 'continue',
        retry: { attempts: 3, delay: '2s' },
        action: 'maintenance.unsilence',
        args: unsilenceArgs(false),
      },
      {
        id: 'done',
        title: 'Completion notice',
        needs: ['unsilence'],
        onFailure: 'continue',
        action: 'maintenance.announce',
        args: {
          message:
            'Maintenance of ${{ steps.preflight.output.label }} is over: logins are open again and the health checks ' +
            'passed. Before it: ${{ steps.preflight.output.summary }}. Run ${{ run.id }}.',
        },
      },
    ],
  });
}

/** After a window was held: logins open, the drained instances restarted, the window's silences ended. */
export function maintenanceReopenRunbook(): RunbookInput {
  return defineRunbook({
    name: 'maintenance-reopen',
    version: '1',
    title: 'Reopen after held maintenance',
    description:
      'After a maintenance run failed with hold (maintenance left on for a person to fix): checks first that the ' +
      'window is held, failed, or running with an ended run (or the run is a maintenance run that ended), and ' +
      'refuses an unknown or scheduled window before changing anything; then opens logins ' +
      '(maintenance mode off), restarts the instances a drain left refusing logins, and ends the silences and ' +
      'paging suppression of the window (or of the run, for one started by hand).',
    runBy: ['operator'],
    tags: ['maintenance'],
    params: z
      .object({
        window: windowParam.nullable().default(null).describe('The held window (gameops maintenance list).'),
        run: z
          .string()
          .min(1)
          .max(100)
          .regex(/^[A-Za-z0-9_-]+$/, 'a run id (gameops runs list)')
          .nullable()
          .default(null)
          .describe('The held maintenance run (for one started by hand, without a window).'),
      })
      .refine((p) => p.window !== null || p.run !== null, {
        message: 'give the held window (-p window=mw-…) or run (-p run=…)',
        path: ['window'],
      }),
    steps: [
      {
        id: 'target',
        title: 'Check the window or run is one to reopen',
        action: 'maintenance.reopen-target',
        args: { window: '${{ params.window }}', runId: '${{ params.run }}' },
      },
      {
        id: 'open',
        title: 'Open logins (maintenance mode off)',
        action: 'fleet.gate',
        args: { closed: false },
      },
      {
        id: 'restart-drained',
        title: 'Restart the drained instances',
        action: 'fleet.restart-drained',
        args: {},
      },
      {
        id: 'unsilence',
        title: 'End the silences and paging suppression',
        action: 'maintenance.unsilence',
        args: { window: '${{ params.window }}', runId: '${{ params.run }}', hold: false },
      },
    ],
  });
}
