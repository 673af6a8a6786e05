import { Command, Option } from 'commander';
import {
  checkBackupIdInput,
  formatSetSize,
  type BackupDetail,
  type BackupRequest,
  type BackupSummary,
} from '../../app/backups.ts';
import { COMPONENT_KINDS, type ComponentKind } from '../../backups/types.ts';
import { formatBytes } from '../../checks/thresholds.ts';
import { formatDuration, InputError } from '../../core/index.ts';
import type { RunView } from '../../runbooks/model.ts';
import { ExitCode, RUN_EXIT_CODES_HELP } from '../exit.ts';
import { printable, table } from '../render.ts';
import type { RunSession } from '../run-session.ts';
import { followAndReport, writeJson } from './run.ts';

/*
 * `gameops backup`: backups of runbook §5. create, verify, drill, prune and restore start the built-in
 * backup runbooks and follow them as `gameops run` does (durable, audited, restore approval-gated, the
 * progress lines streamed); list and show read the catalog (in this process, or the server's API while
 * `gameops serve` runs or GAMEOPS_URL is set).
 */

const INCIDENT_RE = /^(?:[Ii][Nn][Cc]-)?\d{1,9}$/;
const TARGET_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

function collectComponent(value: string, previous: ComponentKind[] | undefined): ComponentKind[] {
  if (!(COMPONENT_KINDS as readonly string[]).includes(value))
    throw new InputError(`--component: "${printable(value)}" is not one of ${COMPONENT_KINDS.join(', ')}`);
  const kind = value as ComponentKind;
  return previous?.includes(kind) ? previous : [...(previous ?? []), kind];
}

/** The id as given, refused (InputError naming it) unless it has the shape of a backup id. */
export function backupIdArg(id: string): string {
  return checkBackupIdInput(id);
}

function componentOption(what: string): Option {
  return new Option(
    '--component <kind>',
    `${what} (repeatable: ${COMPONENT_KINDS.join(', ')}); default: all`,
  ).argParser(collectComponent);
}

interface FollowOptions {
  json?: boolean;
  detach?: boolean;
}

function followOptions(command: Command): Command {
  return command
    .addOption(new Option('--detach', 'start the run and return at once (prints the run id)'))
    .option('--json', 'print the run as JSON');
}

/**
 * A verify, drill or restore of one set, checked before its run starts (the id, the target, the
 * components): in this process against the catalog, through the API by the backup route that starts it.
 */
interface Checked {
  request: BackupRequest;
  /** The backup route that checks and starts it on a server, e.g. `/api/backups/<id>/restore`. */
  route: string;
  /** Its body. */
  body: Record<string, unknown>;
}

/**
 * Starts `runbook` (through `incident` when given, so the run is linked into its timeline) and follows it
 * as `gameops run` does. With `checked`, a wrong id, target or component is refused (exit 3) before any
 * run starts.
 */
async function startAndFollow(
  command: Command,
  runbook: string,
  params: Record<string, unknown>,
  options: FollowOptions & { incident?: string | undefined },
  checked?: Checked,
): Promise<void> {
  const { withRunSession } = await import('../run-session.ts');
  await withRunSession(command, async (session) => {
    const view = await start(session, runbook, params, options.incident, checked, options.json === true);
    process.stderr.write(
      `gameops: run ${printable(view.id)} of ${printable(view.runbook)} started by ${printable(view.requestedBy.name)} ` +
        `(${session.where})${options.incident ? ` for incident ${printable(options.incident)}` : ''}\n`,
    );
    if (options.detach) {
      if (options.json) writeJson(view);
      else process.stdout.write(`${printable(view.id)}\n`);
      process.exitCode = ExitCode.ok;
      return;
    }
    await followAndReport(session, view.id, options.json === true);
  });
}

async function serverTransport(session: RunSession) {
  const { sessionTarget } = await import('../session-target.ts');
  const { readEnv } = await import('../../config/index.ts');
  const target = await sessionTarget(session.resources, readEnv());
  if (!('server' in target)) throw new InputError('the server went away; run the command again');
  const { createApiTransport } = await import('../api-client.ts');
  const { url, token } = target.server;
  return createApiTransport({ url, ...(token ? { token } : {}) });
}

async function start(
  session: RunSession,
  runbook: string,
  params: Record<string, unknown>,
  incident: string | undefined,
  checked: Checked | undefined,
  json: boolean,
): Promise<RunView> {
  if (!session.api && !json) {
    // The run's ✗ lines say what failed: the backups' JSON log lines would repeat it over them.
    const { quietBackupLogs } = await import('../../app/backups.ts');
    quietBackupLogs(session.resources);
  }
  if (checked && !session.api) {
    const { openBackups, checkBackupRequest } = await import('../../app/backups.ts');
    await checkBackupRequest(await openBackups(session.resources), session.resources.config, checked.request);
  }
  if (checked && session.api) {
    // The server's backup route checks the set, the target and the components before it starts the run.
    const api = await serverTransport(session);
    const body = { ...checked.body, ...(incident !== undefined ? { incident } : {}) };
    const started = (await api.send('POST', checked.route, body)) as { runId: string };
    return session.service.get(started.runId, session.actor);
  }
  if (incident === undefined)
    return session.service.start({ runbook, params, trigger: 'cli' }, session.actor);
  if (!session.api) {
    const { openOps } = await import('../../app/ops.ts');
    return (await openOps(session.resources)).incidents.runRunbook(incident, runbook, params, session.actor, {
      trigger: 'cli',
    });
  }
  const api = await serverTransport(session);
  return (await api.send('POST', `/api/incidents/${encodeURIComponent(incident)}/runs`, {
    runbook,
    params,
    trigger: 'cli',
  })) as RunView;
}

/** Reads the catalog in this process or from the server. */
async function withCatalog<T>(
  command: Command,
  work: (catalog: {
    list(limit: number): Promise<BackupSummary[]>;
    show(id: string): Promise<BackupDetail>;
  }) => Promise<T>,
): Promise<T> {
  const { withOpsSession } = await import('../ops-session.ts');
  return withOpsSession(command, async (session) => {
    const remote = session.remote;
    if (remote)
      return work({
        list: async (limit) =>
          ((await remote.send('GET', `/api/backups?limit=${limit}`)) as { backups: BackupSummary[] }).backups,
        show: async (id) =>
          (await remote.send('GET', `/api/backups/${encodeURIComponent(id)}`)) as BackupDetail,
      });
    const { openBackups, backupSummary, backupDetail } = await import('../../app/backups.ts');
    const { resources } = session;
    const service = await openBackups(resources);
    return work({
      list: async (limit) =>
        (await service.list({ limit })).map((s) => backupSummary(s, resources.clock.now())),
      show: async (id) => {
        const { set, manifest } = await service.show(id);
        return backupDetail(set, manifest, resources.clock.now());
      },
    });
  });
}

/** `gameops backup list` as text. */
export function renderBackupList(sets: readonly BackupSummary[]): string {
  if (sets.length === 0) return 'no backup sets (gameops backup create takes one)';
  return table(
    ['ID', 'STATE', 'AGE', 'SIZE', 'COMPONENTS'],
    sets.map((s) => [
      s.id,
      s.status,
      formatDuration(s.ageSeconds * 1000),
      s.state === 'complete' || s.state === 'pruned' ? formatBytes(s.sizeBytes) : '-',
      s.components.join(','),
    ]),
  );
}

/** `gameops backup show` as text. */
export function renderBackupDetail(d: BackupDetail): string {
  const lines = [
    `${d.id}  ${d.status}`,
    `  created ${d.createdAt} (${formatDuration(d.ageSeconds * 1000)} ago) by ${d.requestedBy}` +
      (d.completedAt ? `, completed ${d.completedAt}` : ''),
    `  storage: ${d.storage}`,
    `  size: ${d.objectBytes === null ? `${formatBytes(d.sizeBytes)} in ${d.objects} object(s)` : formatSetSize(d.objects, d.objectBytes, d.sizeBytes)}; components: ${d.components.join(', ')}`,
  ];
  if (d.error) lines.push(`  error: ${d.error}`);
  if (d.prunedAt) lines.push(`  pruned ${d.prunedAt}`);
  const m = d.manifest;
  if (m) {
    lines.push(
      `  manifest: ${m.format}, gameops ${m.gameopsVersion}, ${m.compression.kind} level ${m.compression.level}, ` +
        `${m.encryption.kind} to ${m.encryption.recipients.join(', ')}`,
    );
    for (const c of m.components) {
      lines.push(
        `  ${c.kind}: ${c.objects} object(s), ${formatBytes(c.sizeBytes)} stored (${formatBytes(c.plainBytes)} plain), ` +
          `${c.tool.name} ${c.tool.version}, ${c.startedAt} → ${c.completedAt}`,
      );
      const source = Object.entries(c.source)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => `${k} ${String(v)}`);
      if (source.length > 0) lines.push(`    source: ${source.join(', ')}`);
      for (const note of c.notes) lines.push(`    note: ${note}`);
    }
  }
  lines.push(
    `  last verify: ${d.verify ? `${d.verify.ok ? 'ok' : `FAILED: ${d.verify.error ?? ''}`} at ${d.verify.at}` : 'never'}`,
  );
  lines.push(`  last drill: ${d.drill ? `${d.drill.ok ? 'ok' : 'FAILED'} at ${d.drill.at}` : 'never'}`);
  if (d.lastDrill) {
    for (const c of d.lastDrill.components) {
      const bad = c.checks.filter((k) => !k.ok);
      lines.push(
        `    ${c.component}: ${c.ok ? 'ok' : 'MISMATCH'}, ${c.checks.length - bad.length}/${c.checks.length} check(s) match`,
      );
      for (const k of bad.slice(0, 10))
        lines.push(
          `      ${k.subject}${k.expected !== undefined ? `: expected ${k.expected}, got ${k.actual ?? '?'}` : ''}`,
        );
      for (const note of c.notes) lines.push(`      note: ${note}`);
    }
    for (const e of d.lastDrill.errors) lines.push(`    ${e.component}: error: ${e.error}`);
  }
  return lines.join('\n');
}

export function backupCommand(): Command {
  const command = new Command('backup')
    .summary('Backups: create, list, show, verify, drill, prune, restore (runbook §5)')
    .description(
      'One backup set across MySQL, Redis, the platform config and files: each streamed through zstd and age ' +
        'to the storage with a SHA-256 per object, the manifest written last. create, verify, drill, prune and ' +
        'restore start the built-in runbooks (backup, backup-verify, backup-drill, backup-prune, ' +
        'backup-restore) and follow them as `gameops run` does: progress lines (bytes, rate, ETA) on stderr; ' +
        "durable, audited; a restore waits for an operator's approval. list and show read the catalog. " +
        'While `gameops serve` runs (or with GAMEOPS_URL) everything goes through its API.',
    )
    .addHelpText(
      'after',
      `
Backup ids look like bk-20261126T170500Z-3f9a2c; anything else is refused before anything runs.

Examples:
  gameops backup create
  gameops backup create --component mysql --component redis
  gameops backup list
  gameops backup show bk-20261126T170500Z-3f9a2c
  gameops backup verify bk-20261126T170500Z-3f9a2c
  gameops backup drill
  gameops backup prune --dry-run
  gameops backup restore bk-20261126T170500Z-3f9a2c --component mysql --target staging
${RUN_EXIT_CODES_HELP}`,
    );

  followOptions(
    command
      .command('create')
      .description(
        'Take a backup set (the `backup` runbook): create, verify every object, then prune by retention ' +
          '(not when the backup or its verification failed).',
      )
      .addOption(componentOption('a component to back up'))
      .option('--no-prune', 'do not prune by retention afterwards'),
  ).action(async (o: FollowOptions & { component?: ComponentKind[]; prune: boolean }, cmd: Command) =>
    startAndFollow(cmd, 'backup', { components: o.component ?? null, prune: o.prune }, o),
  );

  command
    .command('list')
    .description(
      'Backup sets, newest first: id, state (running, complete, failed, verified, drilled, pruned), age, size, components.',
    )
    .option('--limit <n>', 'at most this many sets (1 to 500)', '50')
    .option('--json', 'print the sets as JSON')
    .action(async (o: { limit: string; json?: boolean }, cmd: Command) => {
      const limit = Number(o.limit);
      if (!/^\d+$/.test(o.limit) || limit < 1 || limit > 500)
        throw new InputError(`--limit: "${printable(o.limit)}" is not an integer from 1 to 500`);
      await withCatalog(cmd, async (catalog) => {
        const sets = await catalog.list(limit);
        if (o.json) writeJson({ backups: sets });
        else process.stdout.write(`${renderBackupList(sets)}\n`);
      });
    });

  command
    .command('show')
    .description(
      'One set: state, size, components, the manifest summary (objects, sizes, tool versions, source ' +
        'positions, recipients, notes) and the last verify and drill.',
    )
    .argument('<id>', 'a backup id (gameops backup list)', backupIdArg)
    .option('--json', 'print the set as JSON')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      await withCatalog(cmd, async (catalog) => {
        const detail = await catalog.show(id);
        if (o.json) writeJson(detail);
        else process.stdout.write(`${renderBackupDetail(detail)}\n`);
      });
    });

  followOptions(
    command
      .command('verify')
      .description(
        'Read every object of a set back (the `backup-verify` runbook): sizes, SHA-256, test-decrypt, ' +
          'test-decompress; fails naming the first bad object.',
      )
      .argument('<id>', 'a backup id (gameops backup list)', backupIdArg),
  ).action(async (id: string, o: FollowOptions, cmd: Command) =>
    startAndFollow(cmd, 'backup-verify', { id }, o, {
      request: { id },
      route: `/api/backups/${encodeURIComponent(id)}/verify`,
      body: {},
    }),
  );

  followOptions(
    command
      .command('drill')
      .description(
        'Restore a set into scratch copies and compare with what was recorded at backup time (the ' +
          '`backup-drill` runbook); records "last verified restorable". Default: the newest complete set.',
      )
      .argument('[id]', 'a backup id (default: the newest complete set)', backupIdArg)
      .addOption(componentOption('a component to drill')),
  ).action(async (id: string | undefined, o: FollowOptions & { component?: ComponentKind[] }, cmd: Command) =>
    startAndFollow(
      cmd,
      'backup-drill',
      { id: id ?? null, components: o.component ?? null },
      o,
      id === undefined
        ? undefined
        : {
            request: { id, components: o.component ?? null },
            route: `/api/backups/${encodeURIComponent(id)}/drill`,
            body: o.component ? { components: o.component } : {},
          },
    ),
  );

  followOptions(
    command
      .command('prune')
      .description(
        'Delete the sets retention lets go (the `backup-prune` runbook): keepDays, daily/weekly/monthly, never ' +
          'fewer than minVerified verified sets, never the newest verified one.',
      )
      .option('--dry-run', 'list what would go and why; delete nothing'),
  ).action(async (o: FollowOptions & { dryRun?: boolean }, cmd: Command) =>
    startAndFollow(cmd, 'backup-prune', { dryRun: o.dryRun === true }, o),
  );

  followOptions(
    command
      .command('restore')
      .description(
        "Restore a set (the `backup-restore` runbook, runbook §5.2): verify, an operator's approval naming the " +
          'set, its age, the components and the target, maintenance mode (original target with a platform), ' +
          'MySQL, Redis, config, files, restart, traffic back, the daily check. The command exits with 4 at the ' +
          'approval and prints how to approve.',
      )
      .argument('<id>', 'a backup id (gameops backup list)', backupIdArg)
      .addOption(componentOption('a component to restore'))
      .option(
        '--target <name>',
        'original (default) or a backups.targets name, e.g. a staging clone',
        'original',
      )
      .option('--channel <name>', 'a notifications channel told when the restore is done')
      .option('--incident <id>', 'run it for this incident (INC-7): its steps go on the incident timeline'),
  ).action(
    async (
      id: string,
      o: FollowOptions & { component?: ComponentKind[]; target: string; channel?: string; incident?: string },
      cmd: Command,
    ) => {
      if (!TARGET_RE.test(o.target))
        throw new InputError(`--target: "${printable(o.target)}" is not original or a backups.targets name`);
      if (o.incident !== undefined && !INCIDENT_RE.test(o.incident))
        throw new InputError(`--incident: "${printable(o.incident)}" is not an incident id such as INC-7`);
      await startAndFollow(
        cmd,
        'backup-restore',
        { id, components: o.component ?? null, target: o.target, channel: o.channel ?? null },
        o,
        {
          request: { id, components: o.component ?? null, target: o.target },
          route: `/api/backups/${encodeURIComponent(id)}/restore`,
          body: {
            target: o.target,
            ...(o.component ? { components: o.component } : {}),
            ...(o.channel !== undefined ? { channel: o.channel } : {}),
          },
        },
      );
    },
  );

  return command;
}
