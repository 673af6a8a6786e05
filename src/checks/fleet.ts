import { UnavailableError } from '../core/index.ts';
import type { Instance, Platform, UsageReport } from '../platform/port.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import { formatBytes, levelFor, percentOf } from './thresholds.ts';
import type { Check, CheckContext, Finding } from './types.ts';

/** How many instances are listed in `values` (all are counted). */
const MAX_LISTED = 100;

/**
 * Runbook §1.1 steps 1–2 (`kubectl get pods`, `kubectl top`): every game-server instance running and
 * ready, restarts since the last check, and CPU/memory of nodes and instances. Works the same on
 * Kubernetes and on the local platform (through the platform port).
 */
export const fleetCheck: Check = {
  name: 'fleet',
  configured: (config) => config.platform !== undefined,
  target: (config) => (config.platform ? `the ${config.platform.kind} platform` : 'the platform'),
  async run(ctx) {
    const platform = requirePlatform(ctx);
    const t = ctx.config.checks.thresholds.fleet;
    // Usage is worth showing, not worth failing the check over (metrics-server may be missing).
    const [instances, usage] = await Promise.all([
      platform.instances(),
      platform.usage().then(
        (u): UsageReport | { problem: string } => u,
        (err: unknown) => ({ problem: err instanceof Error ? err.message : String(err) }),
      ),
    ]);
    const findings: Finding[] = [];

    const notRunning = instances.filter((i) => i.phase !== 'running');
    const notReady = instances.filter((i) => i.phase === 'running' && !i.ready);
    for (const i of notRunning.slice(0, 20))
      findings.push({
        status: i.phase === 'pending' ? CheckStatus.warn : CheckStatus.fail,
        subject: i.name,
        message: `${i.phase}${i.reason ? `: ${i.reason}` : ''} (version ${i.version})`,
        value: i.phase,
      });
    for (const i of notReady.slice(0, 20))
      findings.push({
        status: CheckStatus.warn,
        subject: i.name,
        message: `running but not ready${i.reason ? `: ${i.reason}` : ''}`,
        value: 'not ready',
      });
    if (instances.length === 0)
      findings.push({
        status: CheckStatus.fail,
        subject: 'instances',
        message: `no game-server instances on ${platform.describe()}`,
        value: 0,
      });

    const previous = previousRestarts(ctx);
    const restarts = restartDeltas(instances, previous);
    for (const r of restarts.filter((x) => x.delta !== undefined && x.delta >= t.restartsWarn).slice(0, 20))
      findings.push({
        status: levelFor(r.delta!, t.restartsWarn, t.restartsFail),
        subject: r.name,
        message: `restarted ${r.delta} time${r.delta === 1 ? '' : 's'} since the last check (${r.restarts} in all)`,
        value: r.delta,
        threshold: t.restartsWarn,
      });

    const usageValues = 'problem' in usage ? { problem: usage.problem } : usageFindings(usage, t, findings);
    if ('problem' in usage)
      findings.push({
        status: CheckStatus.warn,
        subject: 'usage',
        message: `CPU and memory unknown: ${usage.problem}`,
      });

    const ready = instances.filter((i) => i.ready).length;
    const versions = [...new Set(instances.map((i) => i.version))];
    const totalRestarts = restarts.reduce((n, r) => n + (r.delta ?? 0), 0);
    return {
      status: worstOf([CheckStatus.ok, ...findings.map((f) => f.status)]),
      summary:
        `${ready}/${instances.length} instances ready on ${platform.describe()}` +
        `${versions.length > 0 ? `, version ${versions.join(', ')}` : ''}` +
        `${totalRestarts > 0 ? `, ${totalRestarts} restarts since the last check` : ''}`,
      values: {
        platform: platform.kind,
        target: platform.describe(),
        total: instances.length,
        ready,
        versions,
        instances: instances.slice(0, MAX_LISTED).map((i) => ({
          name: i.name,
          phase: i.phase,
          ready: i.ready,
          restarts: i.restarts,
          version: i.version,
          node: i.node ?? null,
          startedAt: i.startedAt ?? null,
          ...(i.reason ? { reason: i.reason } : {}),
        })),
        listedTruncated: instances.length > MAX_LISTED,
        restartsByInstance: Object.fromEntries(instances.map((i) => [i.name, i.restarts])),
        usage: usageValues,
      },
      findings,
    };
  },
};

/** The platform, or an error saying why it could not be opened. */
export function requirePlatform(ctx: CheckContext): Platform {
  if (!ctx.platform)
    throw new UnavailableError(
      `the platform could not be opened: ${ctx.platformProblem ?? 'unknown reason'}`,
    );
  return ctx.platform;
}

function previousRestarts(ctx: CheckContext): Record<string, number> | undefined {
  const value = ctx.previous?.values['restartsByInstance'];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const out: Record<string, number> = {};
  for (const [name, n] of Object.entries(value as Record<string, unknown>))
    if (typeof n === 'number' && Number.isFinite(n) && n >= 0) out[name] = n;
  return out;
}

export interface RestartDelta {
  name: string;
  restarts: number;
  /** Restarts since the previous check; undefined without a previous check (the first run is a baseline). */
  delta: number | undefined;
}

/**
 * Restarts of each instance since the previous check. An instance that is new since then (or whose counter
 * went down: it was recreated under the same name) counts all its restarts as new.
 */
export function restartDeltas(
  instances: readonly Pick<Instance, 'name' | 'restarts'>[],
  previous: Record<string, number> | undefined,
): RestartDelta[] {
  return instances.map((i) => {
    if (previous === undefined) return { name: i.name, restarts: i.restarts, delta: undefined };
    const before = previous[i.name];
    const delta = before === undefined || i.restarts < before ? i.restarts : i.restarts - before;
    return { name: i.name, restarts: i.restarts, delta };
  });
}

function usageFindings(
  usage: UsageReport,
  t: CheckContext['config']['checks']['thresholds']['fleet'],
  findings: Finding[],
): Record<string, unknown> {
  const nodes = usage.nodes.map((n) => {
    const cpuPercent =
      n.cpuCapacityMillicores !== undefined ? percentOf(n.cpuMillicores, n.cpuCapacityMillicores) : undefined;
    const memoryPercent =
      n.memoryCapacityBytes !== undefined ? percentOf(n.memoryBytes, n.memoryCapacityBytes) : undefined;
    if (cpuPercent !== undefined && cpuPercent >= t.cpuWarnPercent)
      findings.push({
        status: CheckStatus.warn,
        subject: `node ${n.name}`,
        message: `CPU ${cpuPercent} % (${n.cpuMillicores}m)`,
        value: cpuPercent,
        threshold: t.cpuWarnPercent,
      });
    if (memoryPercent !== undefined && memoryPercent >= t.memoryWarnPercent)
      findings.push({
        status: CheckStatus.warn,
        subject: `node ${n.name}`,
        message: `memory ${memoryPercent} % (${formatBytes(n.memoryBytes)})`,
        value: memoryPercent,
        threshold: t.memoryWarnPercent,
      });
    return { ...n, cpuPercent: cpuPercent ?? null, memoryPercent: memoryPercent ?? null };
  });
  // An instance is one process: its CPU is judged against one core.
  const busy = usage.instances.filter((i) => i.cpuMillicores / 10 >= t.cpuWarnPercent);
  for (const i of busy.slice(0, 20))
    findings.push({
      status: CheckStatus.warn,
      subject: i.name,
      message: `CPU ${Math.round(i.cpuMillicores / 10)} % of a core`,
      value: Math.round(i.cpuMillicores / 10),
      threshold: t.cpuWarnPercent,
    });
  const top = [...usage.instances].sort((a, b) => b.cpuMillicores - a.cpuMillicores).slice(0, 10);
  return { at: usage.at, windowMs: usage.windowMs, nodes, topInstancesByCpu: top };
}
