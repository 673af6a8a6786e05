import { formatDuration } from '../core/index.ts';
import type {
  Artefact,
  AutoscalerStatus,
  DrainResult,
  FleetStatus,
  GateResult,
  GateState,
  LineCount,
  RolloutProgress,
  RolloutResult,
  UsageReport,
} from '../platform/index.ts';
import { printable, table } from './render.ts';

/**
 * Human output of `gameops fleet …`. Everything shown here that came from a game server or the platform
 * (instance names, reasons, gate messages, versions) is outside text and goes through `printable`
 * (directly or through `table`).
 */

/** What a rollout-type command prints and `--json` emits; the API's operation result has the same shape. */
export interface RolloutOutcome {
  rollout: RolloutResult;
  /** The gate re-applied after the rollout, when it is closed (ADR 0006). */
  gate?: GateResult;
  /** Why the gate could not be re-applied, when that failed. */
  gateProblem?: string;
}

/** 1536 → `1.5 KiB`; binary units, one decimal below 10. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${value} B`;
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

function age(startedAt: string | undefined, now: Date): string {
  if (startedAt === undefined) return '-';
  const ms = now.getTime() - Date.parse(startedAt);
  return Number.isFinite(ms) ? formatDuration(Math.max(0, ms)) : '-';
}

/** `gameops fleet status`: exit 0 when every instance is ready and answering, 1 when some are not, 2 when none is. */
export function statusExitCode(status: FleetStatus): 0 | 1 | 2 {
  const { instances, ready, notAnswering } = status.totals;
  if (ready === 0) return 2;
  if (ready < instances || notAnswering > 0) return 1;
  return 0;
}

export function renderGate(gate: GateState): string {
  if (!gate.closed) return 'Gate: open (new logins accepted)';
  const parts = ['Gate: CLOSED (new logins refused)'];
  if (gate.message) parts.push(`message "${printable(gate.message)}"`);
  if (gate.startsAt) parts.push(`maintenance starts ${printable(gate.startsAt)}`);
  return parts.join('; ');
}

export function renderAutoscaler(autoscaler: AutoscalerStatus | undefined, problem?: string): string {
  if (autoscaler === undefined) return `Autoscaler: unknown (${printable(problem ?? 'not reported')})`;
  if (!autoscaler.enabled) return 'Autoscaler: none (replicas are set by hand: gameops fleet scale)';
  const range =
    autoscaler.minReplicas !== undefined || autoscaler.maxReplicas !== undefined
      ? `, min ${autoscaler.minReplicas ?? '-'} max ${autoscaler.maxReplicas ?? '-'}`
      : '';
  const lines = [
    `Autoscaler${autoscaler.name ? ` ${printable(autoscaler.name)}` : ''}: ${autoscaler.currentReplicas} current, ` +
      `${autoscaler.desiredReplicas} desired${range}`,
  ];
  for (const m of autoscaler.metrics)
    lines.push(
      `  ${printable(m.name)}: ${printable(m.current ?? '?')} (target ${printable(m.target ?? '?')})`,
    );
  for (const c of autoscaler.conditions)
    if (c.status !== 'True' || c.type === 'ScalingLimited')
      lines.push(
        `  ${printable(c.type)}=${printable(c.status)}${c.message ? `: ${printable(c.message)}` : ''}`,
      );
  return lines.join('\n');
}

/** The status table, totals, gate and autoscaler. */
export function renderStatus(status: FleetStatus, now: Date): string {
  const out: string[] = [`Fleet: ${printable(status.target)} (${printable(status.platform)})`, ''];
  if (status.instances.length === 0) out.push('No game-server instances.');
  else
    out.push(
      table(
        ['NAME', 'PHASE', 'READY', 'RESTARTS', 'VERSION', 'NODE', 'AGE', 'PLAYERS', 'TICK-P99'],
        status.instances.map((i) => [
          i.name,
          i.phase,
          i.ready ? 'yes' : 'no',
          String(i.restarts),
          i.version,
          i.node ?? '-',
          age(i.startedAt, now),
          i.game ? String(i.game.playersOnline) : i.gameProblem ? '?' : '-',
          i.game ? `${i.game.tickLagMs.p99.toFixed(1)}ms` : '-',
        ]),
      ),
    );
  const notes = status.instances.flatMap((i) => {
    const lines: string[] = [];
    if (!i.ready && i.reason) lines.push(`  ${printable(i.name)}: not ready: ${printable(i.reason)}`);
    if (i.gameProblem) lines.push(`  ${printable(i.name)}: not answering: ${printable(i.gameProblem)}`);
    return lines;
  });
  if (notes.length > 0) out.push('', 'Problems', ...notes);
  const t = status.totals;
  out.push(
    '',
    `Instances: ${t.ready}/${t.instances} ready` +
      (t.notAnswering > 0 ? `, ${t.notAnswering} not answering` : '') +
      ` · Players online: ${t.playersOnline}` +
      ` · Versions: ${status.versions.length > 0 ? status.versions.map(printable).join(', ') : '-'}`,
    renderGate(status.gate),
    renderAutoscaler(status.autoscaler, status.autoscalerProblem),
  );
  return out.join('\n');
}

function percent(part: number, whole: number | undefined): string {
  if (whole === undefined || whole <= 0) return '-';
  return `${((part / whole) * 100).toFixed(1)}%`;
}

/** `gameops fleet top`: nodes, then instances, each sorted by CPU (busiest first). */
export function renderUsage(report: UsageReport): string {
  const byCpu = <T extends { cpuMillicores: number; name: string }>(rows: T[]): T[] =>
    [...rows].sort((a, b) => b.cpuMillicores - a.cpuMillicores || a.name.localeCompare(b.name));
  const out: string[] = [];
  out.push(
    `Sampled ${report.at}, CPU averaged over ${formatDuration(report.windowMs)}`,
    '',
    report.nodes.length === 0
      ? 'No node figures.'
      : table(
          ['NODE', 'CPU(m)', 'CPU%', 'MEMORY', 'MEMORY%'],
          byCpu(report.nodes).map((n) => [
            n.name,
            String(Math.round(n.cpuMillicores)),
            percent(n.cpuMillicores, n.cpuCapacityMillicores),
            formatBytes(n.memoryBytes),
            percent(n.memoryBytes, n.memoryCapacityBytes),
          ]),
        ),
    '',
    report.instances.length === 0
      ? 'No instance figures.'
      : table(
          ['INSTANCE', 'CPU(m)', 'CPU%', 'MEMORY'],
          byCpu(report.instances).map((i) => [
            i.name,
            String(Math.round(i.cpuMillicores)),
            `${(i.cpuMillicores / 10).toFixed(1)}%`,
            formatBytes(i.memoryBytes),
          ]),
        ),
    '',
    'Node CPU% and MEMORY% are of the node’s capacity; instance CPU% is of one core.',
  );
  return out.join('\n');
}

export function renderProgress(progress: RolloutProgress): string {
  return `${printable(progress.operation)}: ${printable(progress.message)} (${progress.updated}/${progress.desired} updated, ${progress.ready} ready, ${progress.available} available)`;
}

export function renderGateResult(result: GateResult): string {
  const out = [renderGate(result.gate)];
  const failed = result.instances.filter((i) => !i.ok);
  const told = result.instances.length - failed.length;
  out.push(
    result.instances.length === 0
      ? 'No running instance to tell (instances that start later read the gate from the game config).'
      : `Told ${told}/${result.instances.length} running instances` +
          (result.status === 'partial' ? ' (PARTIAL: the others did not confirm)' : ''),
  );
  for (const f of failed) out.push(`  ${printable(f.instance)}: ${printable(f.error ?? 'failed')}`);
  return out.join('\n');
}

export function renderRolloutOutcome(outcome: RolloutOutcome): string {
  const r = outcome.rollout;
  const out = [
    `${printable(r.operation)} done in ${formatDuration(r.durationMs)}: ${r.replicas} instances on ${printable(r.version)}` +
      (r.previousVersion && r.previousVersion !== r.version ? ` (was ${printable(r.previousVersion)})` : ''),
    renderProgress(r.progress),
  ];
  if (outcome.gate) out.push('The gate is closed; re-applied to the fleet:', renderGateResult(outcome.gate));
  if (outcome.gateProblem)
    out.push(`WARNING: the gate is closed but could not be re-applied: ${printable(outcome.gateProblem)}`);
  return out.join('\n');
}

export function renderDrain(result: DrainResult): string {
  const out = [
    result.status === 'empty'
      ? `Drained: no players left (after ${formatDuration(result.waitedMs)}).`
      : result.status === 'partial'
        ? `Not sure it is empty after ${formatDuration(result.waitedMs)}: ${result.playersRemaining} players on the ` +
          'instances that answered, and some could not be asked or stopped answering (below).'
        : `Timed out after ${formatDuration(result.waitedMs)}: ${result.playersRemaining} players still online.`,
  ];
  if (result.instances.length > 0)
    out.push(
      table(
        ['INSTANCE', 'ASKED', 'PLAYERS', 'ERROR'],
        result.instances.map((i) => [
          i.instance,
          i.ok ? 'yes' : 'no',
          i.playersRemaining === undefined ? '-' : String(i.playersRemaining),
          i.error ?? '',
        ]),
      ),
    );
  else out.push('No running instance to drain.');
  return out.join('\n');
}

export function renderArtefact(a: Artefact): string {
  return [
    `${a.kind} of ${printable(a.instance)} saved`,
    `path:    ${printable(a.path)}`,
    `size:    ${formatBytes(a.bytes)} (${a.bytes} bytes)`,
    `sha256:  ${a.sha256}`,
    `created: ${a.createdAt}`,
  ].join('\n');
}

export function renderLineCount(pattern: string, count: LineCount): string {
  const rows = Object.entries(count.perInstance).sort(([a], [b]) => a.localeCompare(b));
  return [
    table(
      ['INSTANCE', 'LINES'],
      rows.map(([name, n]) => [name, String(n)]),
    ),
    '',
    `${count.total} lines containing "${printable(pattern)}" (${formatBytes(count.bytesScanned)} scanned)`,
  ].join('\n');
}
