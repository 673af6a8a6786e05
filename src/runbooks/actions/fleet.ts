/**
 * Fleet actions (runbook §3.1, §3.2): status, usage ranked by CPU and memory, autoscaler status, scaling,
 * rolling restarts, diagnostics kept as artefacts, the traffic gate, maintenance (players' notices, drain
 * with a deadline, restarting drained instances, log rotation), and memory trends (Prometheus when
 * configured, otherwise sampled from the platform). And the `fleet.cpu` check the high-cpu runbook waits on.
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { GameopsConfig } from '../../config/index.ts';
import {
  errorMessage,
  InputError,
  NotFoundError,
  playerTextSchema,
  sleep,
  UnavailableError,
} from '../../core/index.ts';
import {
  storeArtefact,
  type Artefact,
  type Fleet,
  type DrainPlayersResult,
  type Instance,
  type LogRotation,
  type NoticeResult,
  type RolloutProgress,
  type UsageReport,
} from '../../platform/index.ts';
import type { ActionDefinition, CheckDefinition, CheckOutcome, StepContext } from '../model.ts';
import { maybeServices, servicesOf, type RunbookServices } from './services.ts';

const MAX_REPLICAS = 1000;
const instanceName = z.string().min(1).max(253);
const namesArg = z.array(instanceName).min(1).max(1000).optional();
/** A rollout's timeout argument (fleet and maintenance actions that roll instances). */
export const rolloutTimeoutArg = z
  .number()
  .int()
  .min(1000)
  .max(6 * 3_600_000)
  .optional()
  .describe('How long the rollout may take (ms); default: the platform config rolloutTimeout.');

/** What the fleet actions act on, named from the config: `deployment game/game-server` or the local fleet. */
export function fleetTarget(config: GameopsConfig | undefined): string {
  const platform = config?.platform;
  if (!platform) return 'the fleet (no platform configured)';
  if (platform.kind === 'kubernetes') return `deployment ${platform.namespace}/${platform.deployment}`;
  return `local fleet in ${join(config.database.dataDir, 'fleet')}`;
}

/** {@link fleetTarget} of the services an action's `target` is given. */
export function fleetTargetOf(services: unknown): string {
  return fleetTarget(maybeServices(services)?.config);
}

function throwIfAborted(ctx: StepContext): void {
  if (ctx.signal.aborted)
    throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new UnavailableError('aborted');
}

/** Rollout progress to the step log. */
export function progressLogger(ctx: StepContext): (p: RolloutProgress) => void {
  return (p) => ctx.log(`${p.operation}: ${p.message}`);
}

/** CPU in percent of one core, from millicores, rounded to 0.1. */
export function cpuPercent(millicores: number): number {
  return Math.round(millicores) / 10;
}

export interface RankedUsage {
  name: string;
  cpuMillicores: number;
  /** Of one core. */
  cpuPercent: number;
  memoryBytes: number;
}

export interface UsageOutput {
  at: string;
  windowMs: number;
  instances: number;
  byCpu: RankedUsage[];
  byMemory: RankedUsage[];
  /** The instance using the most CPU; absent when none was measured. */
  hottest?: RankedUsage;
  /** The instance using the most memory; absent when none was measured. */
  largest?: RankedUsage;
  nodes: UsageReport['nodes'];
}

/** The usage report ranked: by CPU (then name) and by memory (then name), `top` of each. */
export function rankUsage(report: UsageReport, top: number): UsageOutput {
  const all = report.instances.map((i): RankedUsage => ({
    name: i.name,
    cpuMillicores: i.cpuMillicores,
    cpuPercent: cpuPercent(i.cpuMillicores),
    memoryBytes: i.memoryBytes,
  }));
  const byCpu = [...all].sort((a, b) => b.cpuMillicores - a.cpuMillicores || a.name.localeCompare(b.name));
  const byMemory = [...all].sort((a, b) => b.memoryBytes - a.memoryBytes || a.name.localeCompare(b.name));
  return {
    at: report.at,
    windowMs: report.windowMs,
    instances: all.length,
    byCpu: byCpu.slice(0, top),
    byMemory: byMemory.slice(0, top),
    ...(byCpu[0] ? { hottest: byCpu[0] } : {}),
    ...(byMemory[0] ? { largest: byMemory[0] } : {}),
    nodes: report.nodes,
  };
}

const statusArgs = z.strictObject({ names: namesArg });

const statusAction: ActionDefinition<z.infer<typeof statusArgs>> = {
  name: 'fleet.status',
  description:
    'The instances with what each game server says (players, version), the gate and the autoscaler.',
  effect: 'read-only',
  idempotent: true,
  args: statusArgs,
  target: (_args, services) => fleetTargetOf(services),
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    return fleet.status({ ...(args.names ? { names: args.names } : {}), signal: ctx.signal });
  },
};

const usageArgs = z.strictObject({
  top: z.number().int().min(1).max(1000).default(10).describe('How many instances each ranking lists.'),
  atLeast: z
    .number()
    .int()
    .min(0)
    .max(MAX_REPLICAS)
    .default(0)
    .describe('Fail (not found) when fewer running instances were measured.'),
  names: namesArg,
});

const usageAction: ActionDefinition<z.infer<typeof usageArgs>, UsageOutput> = {
  name: 'fleet.usage',
  description: 'CPU and memory per instance, ranked by CPU and by memory (kubectl top pods).',
  effect: 'read-only',
  idempotent: true,
  args: usageArgs,
  target: (_args, services) => fleetTargetOf(services),
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    const report = await fleet.platform.usage(args.names ? { names: args.names } : undefined);
    const ranked = rankUsage(report, args.top);
    if (ranked.instances < args.atLeast)
      throw new NotFoundError(
        `${fleet.platform.describe()}: ${ranked.instances} running instance(s) measured, ${args.atLeast} needed`,
      );
    const hot = ranked.hottest;
    if (hot)
      ctx.log(`hottest: ${hot.name} at ${hot.cpuPercent} % CPU; ${ranked.instances} instance(s) measured`);
    return ranked;
  },
};

const autoscalerAction: ActionDefinition<Record<string, never>> = {
  name: 'fleet.autoscaler',
  description:
    'Autoscaler status: replicas current and desired, bounds, metrics, conditions (kubectl get hpa).',
  effect: 'read-only',
  idempotent: true,
  args: z.strictObject({}),
  target: (_args, services) => fleetTargetOf(services),
  async run(_args, ctx) {
    return (await servicesOf(ctx).fleet()).platform.autoscaler();
  },
};

const planScaleArgs = z.strictObject({
  replicas: z
    .number()
    .int()
    .min(1)
    .max(MAX_REPLICAS)
    .nullable()
    .optional()
    .describe(
      'Replicas asked for; default or null: runbooks.highCpu.scaleUpTo, else current + 50 % (at least +1).',
    ),
});

export interface ScalePlan {
  current: number;
  replicas: number;
  /** True when `replicas` is more than the fleet runs now. */
  scaleUp: boolean;
  /** Where the number came from: `param`, `config` or `current + 50 %`. */
  from: string;
}

/** The replica count a scale-up proposes. Pure. */
export function proposeReplicas(
  current: number,
  asked: number | undefined,
  configured: number | undefined,
): ScalePlan {
  if (asked !== undefined) return { current, replicas: asked, scaleUp: asked > current, from: 'param' };
  if (configured !== undefined)
    return {
      current,
      replicas: configured,
      scaleUp: configured > current,
      from: 'config runbooks.highCpu.scaleUpTo',
    };
  const replicas = Math.min(MAX_REPLICAS, Math.max(current + 1, Math.ceil(current * 1.5)));
  return { current, replicas, scaleUp: replicas > current, from: 'current + 50 %' };
}

const planScaleAction: ActionDefinition<z.infer<typeof planScaleArgs>, ScalePlan> = {
  name: 'fleet.plan-scale',
  description:
    'Works out the replica count of a scale-up (param, else runbooks.highCpu.scaleUpTo, else current + 50 %), before an approval binds it.',
  effect: 'read-only',
  idempotent: true,
  args: planScaleArgs,
  target: (_args, services) => fleetTargetOf(services),
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const fleet = await services.fleet();
    const autoscaler = await fleet.platform.autoscaler();
    const plan = proposeReplicas(
      autoscaler.desiredReplicas,
      args.replicas ?? undefined,
      services.config.runbooks.highCpu.scaleUpTo,
    );
    ctx.log(
      plan.scaleUp
        ? `proposing ${plan.replicas} replicas (now ${plan.current}; from ${plan.from})`
        : `the fleet already runs ${plan.current} replicas, not fewer than ${plan.replicas} (from ${plan.from}): no scale-up`,
    );
    return plan;
  },
};

/** Ready instances and the desired count, for verify. */
async function replicaState(
  fleet: Fleet,
): Promise<{ desired: number; ready: number; instances: Instance[] }> {
  const [autoscaler, instances] = await Promise.all([
    fleet.platform.autoscaler(),
    fleet.platform.instances(),
  ]);
  return { desired: autoscaler.desiredReplicas, ready: instances.filter((i) => i.ready).length, instances };
}

const scaleArgs = z.strictObject({
  replicas: z.number().int().min(0).max(MAX_REPLICAS),
  timeoutMs: rolloutTimeoutArg,
});

const scaleAction: ActionDefinition<z.infer<typeof scaleArgs>> = {
  name: 'fleet.scale',
  description:
    'Scales the fleet to N instances and waits until N are ready; a closed gate is told to new ones.',
  effect: 'mutating',
  idempotent: true,
  args: scaleArgs,
  target: (_args, services) => fleetTargetOf(services),
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    const result = await fleet.platform.scale(args.replicas, {
      signal: ctx.signal,
      onProgress: progressLogger(ctx),
      ...(args.timeoutMs !== undefined ? { timeoutMs: args.timeoutMs } : {}),
    });
    const gate = await fleet.gateAfterRollout(ctx.signal);
    if (gate.gateProblem) ctx.log(`the gate could not be re-applied: ${gate.gateProblem}`);
    return { ...result, ...gate };
  },
  async verify(args, ctx) {
    const { desired, ready } = await replicaState(await servicesOf(ctx).fleet());
    return desired === args.replicas && ready === args.replicas ? 'done' : 'not-done';
  },
};

const restartArgs = z.strictObject({
  names: namesArg.describe('Only these instances (default: all).'),
  maxUnavailable: z
    .literal(1)
    .default(1)
    .describe('Instances down at once: one, each waiting for readiness before the next.'),
  timeoutMs: rolloutTimeoutArg,
});

const restartAction: ActionDefinition<z.infer<typeof restartArgs>> = {
  name: 'fleet.restart',
  description:
    'Rolling restart: one instance at a time, each back and ready (and stable) before the next goes down.',
  effect: 'mutating',
  idempotent: false,
  args: restartArgs,
  target: (args, services) =>
    `${fleetTargetOf(services)}${args.names ? ` (instances ${args.names.join(', ')})` : ''}`,
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    const result = await fleet.platform.restart({
      maxUnavailable: args.maxUnavailable,
      signal: ctx.signal,
      onProgress: progressLogger(ctx),
      ...(args.names ? { filter: { names: args.names } } : {}),
      ...(args.timeoutMs !== undefined ? { timeoutMs: args.timeoutMs } : {}),
    });
    const gate = await fleet.gateAfterRollout(ctx.signal);
    if (gate.gateProblem) ctx.log(`the gate could not be re-applied: ${gate.gateProblem}`);
    const instances = (await fleet.platform.instances(args.names ? { names: args.names } : undefined)).map(
      (i) => ({ name: i.name, ready: i.ready, startedAt: i.startedAt, restarts: i.restarts }),
    );
    return { ...result, instances, ...gate };
  },
  // No verify: after a crash nothing tells a restart this run made from one made by anyone else, so a
  // person decides (needs-verification) rather than restarting everything a second time.
};

const diagnosticsArgs = z.strictObject({
  instance: instanceName,
  kind: z.enum(['cpu-profile', 'heap-snapshot', 'stack-dump']),
  seconds: z
    .number()
    .int()
    .min(1)
    .max(60)
    .nullable()
    .optional()
    .describe('cpu-profile: how long to profile (default or null: runbooks.highCpu.profileSeconds).'),
});

/** Takes a diagnostic of one instance and keeps it under the run's artefact directory. */
export async function takeDiagnostic(
  services: RunbookServices,
  ctx: StepContext,
  args: z.infer<typeof diagnosticsArgs>,
): Promise<Artefact> {
  const fleet = await services.fleet();
  const [instance] = await fleet.platform.instances({ names: [args.instance] });
  if (!instance)
    throw new NotFoundError(`no instance named "${args.instance}" on ${fleet.platform.describe()}`);
  if (!instance.ready || instance.opsUrl === undefined)
    throw new UnavailableError(
      `instance ${args.instance} is not ready (${instance.phase}); it cannot be profiled`,
    );
  const seconds = args.seconds ?? services.config.runbooks.highCpu.profileSeconds;
  ctx.log(
    `taking a ${args.kind} of ${args.instance}${args.kind === 'cpu-profile' ? ` for ${seconds} s` : ''}`,
  );
  const file = await fleet.game.diagnostics(instance.opsUrl, args.kind, {
    signal: ctx.signal,
    ...(args.kind === 'cpu-profile' ? { seconds } : {}),
  });

  const artefact = await storeArtefact(
    services.artefactDir(ctx.runId),
    args.instance,
    args.kind,
    file.stream,
    ctx.clock,
  );
  ctx.log(`kept ${artefact.path} (${artefact.bytes} bytes, sha256 ${artefact.sha256})`);
  return artefact;
}

const diagnosticsAction: ActionDefinition<z.infer<typeof diagnosticsArgs>, Artefact> = {
  name: 'fleet.diagnostics',
  description:
    "A CPU profile, heap snapshot or stack dump of one instance, kept as an artefact of the run (players are not affected beyond the instance's own pause).",
  effect: 'read-only',
  idempotent: true,
  args: diagnosticsArgs,
  target: (args, services) => `instance ${args.instance} of ${fleetTargetOf(services)}`,
  async run(args, ctx) {
    return takeDiagnostic(servicesOf(ctx), ctx, args);
  },
};

const gateArgs = z.strictObject({
  closed: z.boolean(),
  message: playerTextSchema.optional(),
  startsAt: z.iso.datetime({ offset: true }).optional(),
});

const gateAction: ActionDefinition<z.infer<typeof gateArgs>> = {
  name: 'fleet.gate',
  description:
    'Closes or opens the traffic gate (maintenance mode): recorded in the game config, told to every instance.',
  effect: 'mutating',
  idempotent: true,
  args: gateArgs,
  target: (_args, services) => `traffic gate of ${fleetTargetOf(services)}`,
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    const result = await fleet.setGate(
      {
        closed: args.closed,
        ...(args.message !== undefined ? { message: args.message } : {}),
        ...(args.startsAt !== undefined ? { startsAt: args.startsAt } : {}),
      },
      ctx.signal,
    );
    if (result.status === 'partial') ctx.log(`not every instance confirmed: ${failures(result.instances)}`);
    return result;
  },
  async verify(args, ctx) {
    const gate = await (await servicesOf(ctx).fleet()).gate();
    return gate.closed === args.closed ? 'done' : 'not-done';
  },
};

// -----------------------------------------------------------------------------------------------------
// Maintenance: notices, drain with a deadline, restarting drained instances, log rotation

const noticeArgs = z.strictObject({
  message: playerTextSchema,
  startsAt: z.iso.datetime({ offset: true }).optional(),
  endsAt: z.iso.datetime({ offset: true }).optional(),
});

const noticeAction: ActionDefinition<z.infer<typeof noticeArgs>, NoticeResult> = {
  name: 'fleet.notice',
  description:
    'Tells every player of every live instance (ready or not) a one-line message (e.g. maintenance ahead) without closing logins; an instance not told is named.',
  effect: 'mutating',
  idempotent: false,
  args: noticeArgs,
  target: (_args, services) => `players of ${fleetTargetOf(services)}`,
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    const result = await fleet.notice(
      {
        message: args.message,
        ...(args.startsAt !== undefined ? { startsAt: args.startsAt } : {}),
        ...(args.endsAt !== undefined ? { endsAt: args.endsAt } : {}),
      },
      ctx.signal,
    );
    ctx.log(`notice delivered to ${result.delivered} player(s) on ${result.instances.length} instance(s)`);
    if (result.status === 'partial') ctx.log(`not told: ${failures(result.instances)}`);
    return result;
  },
  // No verify: a notice leaves nothing to check; sent twice, players read it twice.
};

/** `game-1 (no answer), game-3 (…)`: the instances that failed, for a log line. */
export function failures(
  instances: ReadonlyArray<{ instance: string; ok: boolean; error?: string }>,
): string {
  return instances
    .filter((i) => !i.ok)
    .map((i) => `${i.instance} (${i.error ?? 'no answer'})`)
    .join(', ');
}

const drainPlayersArgs = z.strictObject({
  deadlineMs: z
    .number()
    .int()
    .min(0)
    .max(6 * 3_600_000)
    .optional()
    .describe(
      'How long players may leave by themselves (ms); default: maintenance.drain.deadline. 0: at once.',
    ),
  kickNoticeSeconds: z
    .number()
    .int()
    .min(1)
    .max(600)
    .optional()
    .describe(
      'Warning before the players still there are saved and disconnected; default: maintenance.drain.kickNotice.',
    ),
  message: playerTextSchema.optional().describe('What those players are told.'),
});

/** Log a count that did not change at most this often while draining. */
const DRAIN_LOG_EVERY_MS = 10_000;

const drainPlayersAction: ActionDefinition<z.infer<typeof drainPlayersArgs>, DrainPlayersResult> = {
  name: 'fleet.drain-players',
  description:
    'Waits until no player is online (the gate closed before); at the deadline the instances still holding players tell them, then save and disconnect them. Fails when players remain or an instance does not answer.',
  effect: 'mutating',
  idempotent: true,
  args: drainPlayersArgs,
  target: (_args, services) => `players of ${fleetTargetOf(services)}`,
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const fleet = await services.fleet();
    const defaults = services.config.maintenance.drain;
    const deadlineMs = args.deadlineMs ?? defaults.deadline;
    const kickNoticeSeconds = args.kickNoticeSeconds ?? defaults.kickNotice;
    ctx.log(
      `waiting up to ${Math.round(deadlineMs / 1000)} s for players to leave; then ${kickNoticeSeconds} s of notice before the rest are disconnected`,
    );
    // Logged when the count, whether saves are pending, or the silent instances change; else every 10 s.
    let lastKey: string | undefined;
    let lastLogAt = 0;
    const result = await fleet.drainPlayers({
      deadlineMs,
      kickNoticeSeconds,
      ...(args.message !== undefined ? { message: args.message } : {}),
      signal: ctx.signal,
      onProgress: (remaining, instances) => {
        const now = ctx.clock.now().getTime();
        const silent = instances.filter((i) => !i.ok && !i.gone).length;
        const busy = instances.filter((i) => (i.playersRemaining ?? 0) > 0).length;
        const writes = instances.reduce((n, i) => n + (i.pendingWrites ?? 0), 0);
        const key = `${remaining}/${writes > 0}/${silent}`;
        if (key === lastKey && now - lastLogAt < DRAIN_LOG_EVERY_MS) return;
        lastKey = key;
        lastLogAt = now;
        ctx.log(
          `${remaining} player(s) online on ${busy} instance(s)${writes > 0 ? `; ${writes} write(s) not yet saved` : ''}${silent > 0 ? `; ${silent} instance(s) not answering` : ''}`,
        );
      },
    });
    if (result.kicked)
      ctx.log(
        `deadline reached: ${result.silentAtKick > 0 ? 'at least ' : ''}${result.playersKicked} player(s) told to leave, then saved and disconnected; ` +
          `${result.needsRestart.join(', ') || 'no instance'} refuse(s) logins until restarted`,
      );
    if (result.notWaitedFor.length > 0)
      ctx.log(
        `not waited for: ${failures(result.instances.filter((i) => result.notWaitedFor.includes(i.instance)))}`,
      );
    if (result.status === 'empty') {
      const atStart =
        result.silentAtStart > 0
          ? `at least ${result.playersAtStart} at start, ${result.silentAtStart} instance(s) silent then`
          : `${result.playersAtStart} at start`;
      ctx.log(
        `no player online and every save written after ${Math.round(result.waitedMs / 100) / 10} s (${atStart})`,
      );
      if (result.pendingWritesUnknown.length > 0)
        ctx.log(
          `accepted without knowing whether the last saves are written (the server does not report pendingWrites): ${result.pendingWritesUnknown.join(', ')}`,
        );
      return result;
    }
    const where =
      result.status === 'partial'
        ? `instance(s) not answering: ${failures(result.instances.filter((i) => !result.notWaitedFor.includes(i.instance)))}`
        : `players or unsaved writes remain on ${result.instances
            .filter((i) => (i.playersRemaining ?? 0) > 0 || (i.pendingWrites ?? 0) > 0)
            .map(
              (i) =>
                `${i.instance} (${i.playersRemaining ?? 0} player(s), ${i.pendingWrites ?? 0} write(s) pending)`,
            )
            .join(', ')}`;
    throw new UnavailableError(
      `${fleetTargetOf(services)} is not empty after ${Math.round(result.waitedMs / 1000)} s: ${result.playersRemaining} player(s) online, ${result.pendingWrites} write(s) not saved; ${where}`,
      { details: { drain: result } },
    );
  },
};

const restartDrainedArgs = z.strictObject({ timeoutMs: rolloutTimeoutArg });

const restartDrainedAction: ActionDefinition<z.infer<typeof restartDrainedArgs>> = {
  name: 'fleet.restart-drained',
  description:
    'Restarts only the instances that were drained (they refuse logins until restarted), one at a time; a closed gate is told to them again.',
  effect: 'mutating',
  idempotent: true,
  args: restartDrainedArgs,
  target: (_args, services) => `drained instances of ${fleetTargetOf(services)}`,
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    // Every live instance is asked, ready or not: a drained one may be momentarily failing its probe.
    const found = await fleet.drainedInstances(ctx.signal);
    const drained = found.draining;
    const unknown = found.notAnswering.map((i) => i.instance);
    if (unknown.length > 0)
      ctx.log(
        `not answering, so not known to be drained (left alone; verify stays not done): ${failures(found.notAnswering)}`,
      );
    if (drained.length === 0) {
      ctx.log('no instance is draining: nothing to restart');
      return { restarted: [], notAnswering: unknown };
    }
    ctx.log(`restarting ${drained.length} drained instance(s): ${drained.join(', ')}`);
    const result = await fleet.platform.restart({
      maxUnavailable: 1,
      filter: { names: drained },
      signal: ctx.signal,
      onProgress: progressLogger(ctx),
      ...(args.timeoutMs !== undefined ? { timeoutMs: args.timeoutMs } : {}),
    });
    const gate = await fleet.gateAfterRollout(ctx.signal);
    if (gate.gateProblem) ctx.log(`the gate could not be re-applied: ${gate.gateProblem}`);
    return { restarted: drained, notAnswering: unknown, rollout: result, ...gate };
  },
  async verify(_args, ctx) {
    // Done only when every live instance answered and none is draining: a silent one may be drained.
    const found = await (await servicesOf(ctx).fleet()).drainedInstances(ctx.signal);
    return found.draining.length > 0 || found.notAnswering.length > 0 ? 'not-done' : 'done';
  },
};

const rotateLogsAction: ActionDefinition<Record<string, never>, LogRotation> = {
  name: 'fleet.rotate-logs',
  description:
    "Rotates the game servers' logs now, keeping the configured number of old files (local); on Kubernetes the kubelet rotates them, and the result says so.",
  effect: 'mutating',
  idempotent: true,
  args: z.strictObject({}),
  target: (_args, services) => `game-server logs of ${fleetTargetOf(services)}`,
  async run(_args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    const result = await fleet.platform.rotateLogs();
    ctx.log(
      result.rotated.length > 0
        ? `rotated the logs of ${result.rotated.join(', ')}`
        : `no log rotated${result.note ? `: ${result.note}` : ' (every log is empty)'}`,
    );
    return result;
  },
};

// -----------------------------------------------------------------------------------------------------
// Memory trends

export interface MemoryPoint {
  at: string;
  bytes: number;
}

export interface InstanceMemoryTrend {
  name: string;
  series: MemoryPoint[];
  lastBytes: number;
  /** Least-squares slope over the series, bytes per minute; 0 with fewer than two points. */
  slopeBytesPerMinute: number;
}

export interface MemoryTrend {
  source: 'prometheus' | 'sampled';
  /** Why not Prometheus, when it was configured but not used. */
  note?: string;
  /** Prometheus: the metric and range; sampled: samples and interval. */
  metric?: string;
  windowMs?: number;
  samples?: number;
  intervalMs?: number;
  instances: InstanceMemoryTrend[];
  /** The instance with the most memory at the last point; absent when none was measured. */
  largest?: { name: string; memoryBytes: number };
  /** The instance whose memory grows fastest; absent when none was measured. */
  fastestGrowing?: { name: string; slopeBytesPerMinute: number };
}

/** Least-squares slope of (ms, bytes) points, in bytes per minute. Pure. */
export function slopePerMinute(points: ReadonlyArray<{ t: number; v: number }>): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const meanT = points.reduce((s, p) => s + p.t, 0) / n;
  const meanV = points.reduce((s, p) => s + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - meanT) * (p.v - meanV);
    den += (p.t - meanT) ** 2;
  }
  return den === 0 ? 0 : Math.round((num / den) * 60_000);
}

/** The trend of each instance's series, with the largest and the fastest growing. Pure. */
export function summariseTrend(
  base: Omit<MemoryTrend, 'instances' | 'largest' | 'fastestGrowing'>,
  series: Map<string, MemoryPoint[]>,
): MemoryTrend {
  const instances = [...series.entries()]
    .filter(([, points]) => points.length > 0)
    .map(([name, points]): InstanceMemoryTrend => ({
      name,
      series: points,
      lastBytes: points.at(-1)!.bytes,
      slopeBytesPerMinute: slopePerMinute(points.map((p) => ({ t: Date.parse(p.at), v: p.bytes }))),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const largest = [...instances].sort((a, b) => b.lastBytes - a.lastBytes)[0];
  const fastest = [...instances].sort((a, b) => b.slopeBytesPerMinute - a.slopeBytesPerMinute)[0];
  return {
    ...base,
    instances,
    ...(largest ? { largest: { name: largest.name, memoryBytes: largest.lastBytes } } : {}),
    ...(fastest
      ? { fastestGrowing: { name: fastest.name, slopeBytesPerMinute: fastest.slopeBytesPerMinute } }
      : {}),
  };
}

const sampleArgs = z.strictObject({
  samples: z.number().int().min(2).max(120).default(5),
  intervalMs: z.number().int().min(0).max(600_000).default(10_000).describe('Between samples.'),
  names: namesArg,
});

/** Samples memory per instance `samples` times, `intervalMs` apart, from the platform's usage. */
export async function sampleMemory(
  fleet: Fleet,
  ctx: StepContext,
  args: z.infer<typeof sampleArgs>,
): Promise<MemoryTrend> {
  const series = new Map<string, MemoryPoint[]>();
  for (let i = 0; i < args.samples; i++) {
    if (i > 0) {
      await sleep(args.intervalMs, ctx.signal);
      throwIfAborted(ctx);
    }
    const report = await fleet.platform.usage(args.names ? { names: args.names } : undefined);
    for (const u of report.instances) {
      const points = series.get(u.name) ?? [];
      points.push({ at: report.at, bytes: u.memoryBytes });
      series.set(u.name, points);
    }
    ctx.log(`sample ${i + 1}/${args.samples}: ${report.instances.length} instance(s)`);
  }
  return summariseTrend({ source: 'sampled', samples: args.samples, intervalMs: args.intervalMs }, series);
}

const sampleAction: ActionDefinition<z.infer<typeof sampleArgs>, MemoryTrend> = {
  name: 'fleet.sample-memory',
  description:
    "Samples each instance's memory K times over an interval from the platform; series and slope per instance.",
  effect: 'read-only',
  idempotent: true,
  args: sampleArgs,
  target: (_args, services) => fleetTargetOf(services),
  async run(args, ctx) {
    return sampleMemory(await servicesOf(ctx).fleet(), ctx, args);
  },
};

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

const trendArgs = z.strictObject({
  windowMinutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 1440)
    .default(60)
    .describe('Prometheus: how far back the trend looks, in minutes.'),
  metric: z
    .string()
    .regex(METRIC_NAME, 'a Prometheus metric name')
    .default('process_resident_memory_bytes')
    .describe(
      'Prometheus: the memory gauge the game servers export (the reference server: process_resident_memory_bytes).',
    ),
  samples: z.number().int().min(2).max(120).default(5).describe('Sampled: how many samples.'),
  intervalMs: z.number().int().min(0).max(600_000).default(10_000).describe('Sampled: between samples.'),
});

/**
 * The Prometheus series that belong to the fleet's instances, by instance name: a series matches an
 * instance when its `instance` label is the instance's ops address (`host:port`, how Prometheus names a
 * scrape target) or its `pod` label is the instance's name.
 */
export function matchSeries(
  instances: ReadonlyArray<Pick<Instance, 'name' | 'opsUrl'>>,
  metric: Record<string, string>,
): string | undefined {
  for (const i of instances) {
    if (metric['pod'] === i.name) return i.name;
    if (i.opsUrl !== undefined && metric['instance'] !== undefined) {
      try {
        if (new URL(i.opsUrl).host === metric['instance']) return i.name;
      } catch {
        // An address that is not a URL matches nothing.
      }
    }
  }
  return undefined;
}

const trendAction: ActionDefinition<z.infer<typeof trendArgs>, MemoryTrend> = {
  name: 'fleet.memory-trend',
  description:
    "Memory per instance and its trend: from Prometheus when configured (the game servers' process_resident_memory_bytes), otherwise sampled from the platform.",
  effect: 'read-only',
  idempotent: true,
  args: trendArgs,
  target: (_args, services) => fleetTargetOf(services),
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const fleet = await services.fleet();
    const prometheus = services.prometheus();
    let note: string | undefined;
    const windowMs = args.windowMinutes * 60_000;
    if (prometheus) {
      try {
        const instances = (await fleet.platform.instances()).filter((i) => i.phase === 'running');
        const end = ctx.clock.now();
        const start = new Date(end.getTime() - windowMs);
        const stepSeconds = Math.max(15, Math.ceil(windowMs / 1000 / 120));
        const result = await prometheus.range(
          args.metric,
          { start, end, stepSeconds },
          { signal: ctx.signal },
        );
        const series = new Map<string, MemoryPoint[]>();
        for (const s of result.series) {
          const name = matchSeries(instances, s.metric);
          if (name === undefined) continue;
          const points = s.values
            .filter((v): v is [number, number] => v[1] !== null)
            .map(([t, v]) => ({ at: new Date(t * 1000).toISOString(), bytes: v }));
          series.set(
            name,
            [...(series.get(name) ?? []), ...points].sort((a, b) => a.at.localeCompare(b.at)),
          );
        }
        if (series.size > 0) {
          ctx.log(`${args.metric} from ${prometheus.target}: ${series.size} instance(s)`);
          return summariseTrend({ source: 'prometheus', metric: args.metric, windowMs: windowMs }, series);
        }
        note = `Prometheus at ${prometheus.target} has no ${args.metric} series for the fleet's instances over the last ${Math.round(windowMs / 60_000)} min; sampled instead`;
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        if (err instanceof InputError) throw err;
        note = `Prometheus could not be asked (${errorMessage(err)}); sampled instead`;
      }
      ctx.log(note);
    }
    const sampled = await sampleMemory(fleet, ctx, { samples: args.samples, intervalMs: args.intervalMs });
    return note ? { ...sampled, note } : sampled;
  },
};

// -----------------------------------------------------------------------------------------------------
// Checks

const cpuCheckArgs = z.strictObject({
  targetPercent: z
    .number()
    .min(1)
    .max(100_000)
    .nullable()
    .optional()
    .describe(
      'Fail while the hottest instance is at or above this CPU, % of one core (default or null: runbooks.highCpu.cpuTargetPercent).',
    ),
  names: namesArg,
});

/** Values of the `fleet.cpu` check. */
export type CpuValues = {
  hottest: string | null;
  /** CPU of the hottest instance, % of one core (0 with no instance). */
  hottestPercent: number;
  perInstance: Record<string, number>;
  instances: number;
  targetPercent: number;
};

const cpuCheck: CheckDefinition<z.infer<typeof cpuCheckArgs>> = {
  name: 'fleet.cpu',
  description:
    "The hottest instance's CPU (% of one core) and each instance's; fails at or above targetPercent (runbooks.highCpu.cpuTargetPercent).",
  args: cpuCheckArgs,
  async run(args, ctx): Promise<CheckOutcome> {
    const services = servicesOf(ctx);
    const targetPercent = args.targetPercent ?? services.config.runbooks.highCpu.cpuTargetPercent;
    const fleet = await services.fleet();
    const ranked = rankUsage(
      await fleet.platform.usage(args.names ? { names: args.names } : undefined),
      1000,
    );
    const perInstance = Object.fromEntries(ranked.byCpu.map((u) => [u.name, u.cpuPercent]));
    const hot = ranked.hottest;
    const values: CpuValues = {
      hottest: hot?.name ?? null,
      hottestPercent: hot?.cpuPercent ?? 0,
      perInstance,
      instances: ranked.instances,
      targetPercent,
    };
    if (!hot) return { status: 'fail', summary: 'no running instance was measured', values };
    const summary = `hottest ${hot.name} at ${hot.cpuPercent} % CPU of ${ranked.instances} instance(s)`;
    if (hot.cpuPercent >= targetPercent)
      return {
        status: 'fail',
        summary: `${summary}; not under ${targetPercent} %`,
        values,
        findings: ranked.byCpu
          .filter((u) => u.cpuPercent >= targetPercent)
          .map((u) => ({ status: 'fail' as const, subject: u.name, message: `${u.cpuPercent} % CPU` })),
      };
    return { status: 'ok', summary: `${summary}; under ${targetPercent} %`, values };
  },
};

const readyCheck: CheckDefinition<Record<string, never>> = {
  name: 'fleet.ready',
  description: 'Every instance the fleet should run is running and ready.',
  args: z.strictObject({}),
  async run(_args, ctx): Promise<CheckOutcome> {
    const fleet = await servicesOf(ctx).fleet();
    const { desired, ready, instances } = await replicaState(fleet);
    const notReady = instances
      .filter((i) => !i.ready)
      .map((i) => ({ name: i.name, phase: i.phase, reason: i.reason ?? null }));
    const values = { desired, ready, instances: instances.length, notReady };
    const summary = `${ready}/${desired} instance(s) ready on ${fleet.platform.describe()}`;
    if (ready < desired)
      return {
        status: 'fail',
        summary,
        values,
        findings: notReady.map((i) => ({
          status: 'fail' as const,
          subject: i.name,
          message: `${i.phase}${i.reason ? `: ${i.reason}` : ''}`,
        })),
      };
    return { status: 'ok', summary, values };
  },
};

/** The fleet actions. */
export const fleetActions: ActionDefinition[] = [
  statusAction,
  usageAction,
  autoscalerAction,
  planScaleAction,
  scaleAction,
  restartAction,
  diagnosticsAction,
  gateAction,
  noticeAction,
  drainPlayersAction,
  restartDrainedAction,
  rotateLogsAction,
  sampleAction,
  trendAction,
];

/** The fleet checks. */
export const fleetChecks: CheckDefinition[] = [cpuCheck, readyCheck];
