import { z } from 'zod';
import { BACKUP_ID_PATTERN, COMPONENT_KINDS, type ComponentKind } from '../../backups/types.ts';
import { defineRunbook } from '../compile.ts';
import type { RunbookInput } from '../input.ts';

const idParam = z
  .string()
  .max(100)
  .regex(BACKUP_ID_PATTERN, 'a backup id such as bk-20261126T170500Z-3f9a2c (gameops backup list)');
const componentsParam = z
  .array(z.enum(COMPONENT_KINDS))
  .min(1)
  .max(COMPONENT_KINDS.length)
  .nullable()
  .default(null);
const targetParam = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'original, or a backups.targets name')
  .default('original')
  .describe('original (the configured systems) or a backups.targets name, e.g. a staging clone.');

/** The step `verify`: reads back every object of the set whose id step `from` output. */
function verifyStep(from: 'create' | 'set') {
  return {
    id: 'verify',
    title: 'Verify every object',
    action: 'backup.verify',
    args: { id: `\${{ steps.${from}.output.id }}` },
  };
}

/**
 * Runbook §5.1: one backup set across the configured components, read back and checked, then retention.
 * Prune is its own step after a successful verify: when the backup or its verification fails the run
 * stops before it, so backups that stop never make prune delete the older ones.
 */
export function backupRunbook(): RunbookInput {
  return defineRunbook({
    name: 'backup',
    version: '1',
    title: 'Back up',
    description:
      'Runbook §5.1: takes one backup set (MySQL, Redis, the platform config, files: every configured one, or ' +
      '`components`), verifies every object (size, SHA-256, decrypt, decompress), then prunes by retention ' +
      '(keepDays, daily/weekly/monthly, never fewer than minVerified verified sets) unless `prune` is false. ' +
      'Prune never runs when the backup or its verification failed.',
    runBy: ['operator'],
    tags: ['backup'],
    params: z.object({
      components: componentsParam.describe('Components to back up (default: every configured one).'),
      prune: z.boolean().default(true).describe('Prune by retention after a verified backup.'),
    }),
    steps: [
      {
        id: 'create',
        title: 'Take the backup set',
        action: 'backup.create',
        args: { components: '${{ params.components }}' },
      },
      verifyStep('create'),
      {
        id: 'prune',
        title: 'Prune by retention',
        needs: ['verify'],
        when: { value: '${{ params.prune }}', op: 'truthy' },
        action: 'backup.prune',
        args: { dryRun: false },
      },
    ],
  });
}

/** Runbook §5.3: a restore drill of one set (default: the newest complete one). */
export function backupDrillRunbook(): RunbookInput {
  return defineRunbook({
    name: 'backup-drill',
    version: '1',
    title: 'Backup restore drill',
    description:
      'Runbook §5.3: verifies a set (default: the newest complete one), restores it into scratch copies (a scratch ' +
      'database, a scratch Redis on a free port, a scratch directory), compares row counts, checksums, key counts ' +
      'and sampled values with the numbers recorded at backup time, drops the copies and records "last verified ' +
      'restorable" per component. Touches no production data.',
    runBy: ['operator'],
    tags: ['backup', 'drill'],
    params: z.object({
      id: idParam.nullable().default(null).describe('The set to drill (default: the newest complete one).'),
      components: componentsParam.describe('Components to drill (default: every one in the set).'),
    }),
    steps: [
      {
        id: 'set',
        title: 'The set to drill',
        action: 'backup.latest',
        args: { id: '${{ params.id }}' },
      },
      verifyStep('set'),
      {
        id: 'drill',
        title: 'Restore into scratch copies and compare',
        action: 'backup.drill',
        args: { id: '${{ steps.set.output.id }}', components: '${{ params.components }}' },
      },
      {
        // The run log only (no channel is told): a noop logging the line, so the output does not claim
        // a notification was sent.
        id: 'report',
        title: 'Report',
        action: 'noop',
        args: {
          message:
            'Drill of backup ${{ steps.set.output.id }} (${{ steps.set.output.age }} old): restorable. ' +
            'Per component: gameops backup show ${{ steps.set.output.id }}',
        },
      },
    ],
  });
}

/** The restore step of one component, run only when the restore plan (backup.restore-plan) includes it. */
function restoreStep(id: string, title: string, component: ComponentKind) {
  return {
    id,
    title,
    when: { value: `\${{ steps.plan.output.${component} }}`, op: 'truthy' as const },
    action: 'backup.restore',
    args: { id: '${{ params.id }}', component, target: '${{ params.target }}' },
  };
}

const RESTORE_COVERS = [
  'stop-traffic',
  'restore-mysql',
  'restore-redis',
  'restore-config',
  'restore-files',
  'restart',
  'traffic-back',
];

/**
 * Runbook §5.2: restore a set, approval-gated. The set is verified and the restore worked out first (the
 * components in the set, the target, whether traffic is stopped); the approval names the set, its age,
 * the components and the target. Restoring to the original systems with a platform closes the traffic
 * gate (maintenance mode) first and opens it after the game servers restarted; a failed restore leaves
 * the gate closed (players stay out of a half-restored game). Then the daily check and a notification.
 */
export function backupRestoreRunbook(): RunbookInput {
  return defineRunbook({
    name: 'backup-restore',
    version: '1',
    title: 'Restore from a backup',
    description:
      'Runbook §5.2: verifies the set, then (after an operator approves: the set, its age, the components, the ' +
      'target) stops traffic (maintenance mode, when restoring to the original systems with a platform), restores ' +
      'MySQL, Redis, the platform config and the files (each when selected and in the set), restarts the game ' +
      'servers, lets traffic back, runs the daily check and notifies `channel`. Start it with `gameops backup ' +
      'restore` or `gameops incident run <incident> backup-restore` to have its steps on the incident timeline.',
    runBy: ['operator'],
    tags: ['backup', 'restore'],
    params: z.object({
      id: idParam.describe('The set to restore (gameops backup list).'),
      components: componentsParam.describe('Components to restore (default: every one in the set).'),
      target: targetParam,
      channel: z
        .string()
        .min(1)
        .max(100)
        .nullable()
        .default(null)
        .describe('A notifications channel told when the restore is done (default: the run log only).'),
    }),
    steps: [
      {
        id: 'verify',
        title: 'Verify the set',
        action: 'backup.verify',
        args: { id: '${{ params.id }}' },
      },
      {
        id: 'plan',
        title: 'Work out the restore',
        action: 'backup.restore-plan',
        args: {
          id: '${{ params.id }}',
          components: '${{ params.components }}',
          target: '${{ params.target }}',
        },
      },
      {
        id: 'approve',
        title: 'Approve the restore',
        approval: {
          covers: RESTORE_COVERS,
          approvers: ['operator'],
          expiresIn: '1h',
          message:
            '${{ steps.plan.output.summary }}. ' +
            'Approve: gameops runs approve ${{ run.id }} approve --yes (without --yes on a terminal, to confirm ' +
            'the plan first); refuse: gameops runs reject ${{ run.id }} approve.',
        },
      },
      {
        id: 'stop-traffic',
        title: 'Stop traffic (maintenance mode)',
        when: { value: '${{ steps.plan.output.stopTraffic }}', op: 'truthy' },
        action: 'fleet.gate',
        args: {
          closed: true,
          message: 'Maintenance: restoring from backup ${{ steps.plan.output.id }}',
        },
      },
      restoreStep('restore-mysql', 'Restore MySQL', 'mysql'),
      restoreStep('restore-redis', 'Restore Redis', 'redis'),
      restoreStep('restore-config', 'Apply the platform config', 'kubernetes'),
      restoreStep('restore-files', 'Restore the files', 'files'),
      {
        id: 'restart',
        title: 'Restart the game servers',
        when: { value: '${{ steps.plan.output.stopTraffic }}', op: 'truthy' },
        action: 'fleet.restart',
      },
      {
        id: 'traffic-back',
        title: 'Let traffic back',
        when: { value: '${{ steps.plan.output.stopTraffic }}', op: 'truthy' },
        action: 'fleet.gate',
        args: { closed: false },
      },
      {
        id: 'check',
        title: 'Daily check',
        onFailure: 'continue',
        runbook: 'daily-check',
      },
      {
        id: 'tell',
        title: 'Notify',
        needs: ['check'],
        when: { value: '${{ params.channel }}', op: 'truthy' },
        action: 'notify.send',
        args: {
          channel: '${{ params.channel }}',
          message:
            'Restore done: ${{ steps.plan.output.restoreList }} from backup ${{ params.id }} to ${{ params.target }} ' +
            '(run ${{ run.id }}); daily check: ${{ steps.check.status }}.',
        },
      },
      {
        // The run log (the channel, when given, was told by \`tell\`).
        id: 'done',
        title: 'Report',
        needs: ['tell'],
        action: 'noop',
        args: {
          message:
            'Restore of ${{ steps.plan.output.restoreList }} from backup ${{ params.id }} to ${{ params.target }} ' +
            'done (run ${{ run.id }}); daily check: ${{ steps.check.status }}.',
        },
      },
    ],
  });
}

/** Runbook §5.1: read every object of one set back and check it. */
export function backupVerifyRunbook(): RunbookInput {
  return defineRunbook({
    name: 'backup-verify',
    version: '1',
    title: 'Verify a backup set',
    description:
      'Reads every object of a set back (default: the newest complete one): sizes, SHA-256, test-decrypts and ' +
      'test-decompresses. Fails naming the first bad object. Reads only (records the result in the catalog).',
    runBy: ['operator'],
    tags: ['backup', 'read-only'],
    params: z.object({
      id: idParam.nullable().default(null).describe('The set to verify (default: the newest complete one).'),
    }),
    steps: [
      { id: 'set', title: 'The set to verify', action: 'backup.latest', args: { id: '${{ params.id }}' } },
      verifyStep('set'),
    ],
  });
}

/** Runbook §5.4: retention on demand, or what it would delete and why (dryRun). */
export function backupPruneRunbook(): RunbookInput {
  return defineRunbook({
    name: 'backup-prune',
    version: '1',
    title: 'Prune backups by retention',
    description:
      'Deletes the sets retention lets go: everything younger than keepDays stays, then daily/weekly/monthly ' +
      'sets, never fewer than minVerified verified sets and never the newest verified one; only objects listed ' +
      'in manifests (or recorded for a failed set) are deleted. dryRun lists what would go and why.',
    runBy: ['operator'],
    tags: ['backup'],
    params: z.object({
      dryRun: z.boolean().default(false).describe('Only list what would go and why.'),
    }),
    steps: [
      {
        id: 'prune',
        title: 'Prune by retention',
        action: 'backup.prune',
        args: { dryRun: '${{ params.dryRun }}' },
      },
    ],
  });
}
