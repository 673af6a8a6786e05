/**
 * Pods as gameops instances: phase (CrashLoopBackOff, of a container or an init container → `crashloop`,
 * Terminating → `stopped`), the Ready condition, restarts (sum of restartCount, init containers
 * included), the game container's start time and image tag, node, ops URL (pod IP + the named or
 * numbered container port), labels, and why it is not ready (`Init:1/2`, `Init:ImagePullBackOff`… as
 * kubectl shows them while init containers hold the pod).
 */
import type { V1Container, V1ContainerStatus, V1LabelSelector, V1Pod } from '@kubernetes/client-node';
import { InputError } from '../../core/index.ts';
import { InstancePhase, type Instance, type InstanceFilter } from '../port.ts';
import { imageVersion } from './image.ts';

const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** A valid label key (`prefix/name`) and value, so they are safe inside a selector string. */
export function checkLabel(key: string, value: string): void {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const keyOk =
    name.length > 0 &&
    name.length <= 63 &&
    LABEL_NAME.test(name) &&
    (prefix === undefined || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix)));
  if (!keyOk) throw new InputError(`invalid label key ${JSON.stringify(key)}`);
  if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value)) {
    throw new InputError(`invalid value ${JSON.stringify(value)} for label ${key}`);
  }
}

/** Checks a filter before anything is asked of the API. */
export function checkFilter(filter: InstanceFilter | undefined): void {
  if (filter === undefined) return;
  if (typeof filter !== 'object' || filter === null)
    throw new InputError('the instance filter must be an object');
  if (filter.labels !== undefined) {
    if (typeof filter.labels !== 'object' || filter.labels === null)
      throw new InputError('filter.labels must be an object');
    for (const [k, v] of Object.entries(filter.labels)) checkLabel(k, v);
  }
  if (filter.names !== undefined) {
    if (
      !Array.isArray(filter.names) ||
      !filter.names.every((n) => typeof n === 'string' && n.length > 0 && n.length <= 253)
    ) {
      throw new InputError('filter.names must be a list of instance names');
    }
  }
}

/** A label selector (`matchLabels` and `matchExpressions`) as the `labelSelector` query text. */
export function selectorText(selector: V1LabelSelector | Record<string, string>): string {
  const isLabelSelector = 'matchLabels' in selector || 'matchExpressions' in selector;
  const matchLabels =
    (isLabelSelector ? (selector as V1LabelSelector).matchLabels : (selector as Record<string, string>)) ??
    {};
  const parts = Object.entries(matchLabels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => {
      checkLabel(k, v);
      return `${k}=${v}`;
    });
  for (const e of isLabelSelector ? ((selector as V1LabelSelector).matchExpressions ?? []) : []) {
    const values = e.values ?? [];
    for (const v of values) checkLabel(e.key, v);
    switch (e.operator) {
      case 'In':
        parts.push(`${e.key} in (${values.join(',')})`);
        break;
      case 'NotIn':
        parts.push(`${e.key} notin (${values.join(',')})`);
        break;
      case 'Exists':
        parts.push(e.key);
        break;
      case 'DoesNotExist':
        parts.push(`!${e.key}`);
        break;
      default:
        throw new InputError(`unsupported selector operator ${JSON.stringify(e.operator)}`);
    }
  }
  if (parts.length === 0)
    throw new InputError('the pod selector is empty: it would select every pod in the namespace');
  return parts.join(',');
}

export interface InstanceContext {
  /** The game-server container (config.container, else the Deployment's first container). */
  container: string;
  opsPort: number | string;
}

function iso(value: Date | string | undefined): string | undefined {
  if (value === undefined || value === null) return undefined;
  const d = value instanceof Date ? value : new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function gameContainer(pod: V1Pod, name: string): V1Container | undefined {
  const containers = pod.spec?.containers ?? [];
  return containers.find((c) => c.name === name) ?? containers[0];
}

function opsUrl(pod: V1Pod, game: V1Container | undefined, opsPort: number | string): string | undefined {
  const ip = pod.status?.podIP;
  if (typeof ip !== 'string' || ip.length === 0) return undefined;
  let port: number | undefined;
  if (typeof opsPort === 'number') port = opsPort;
  else {
    const all = [game, ...(pod.spec?.containers ?? [])];
    port = all.flatMap((c) => c?.ports ?? []).find((p) => p.name === opsPort)?.containerPort;
  }
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return `http://${host}:${port}`;
}

function terminatedText(status: V1ContainerStatus | undefined): string | undefined {
  const t = status?.lastState?.terminated ?? status?.state?.terminated;
  if (!t) return undefined;
  return `exited with code ${t.exitCode}${t.reason ? ` (${t.reason})` : ''}`;
}

/**
 * What holds the pod in initialisation, as `kubectl get pods` shows it: the first init container that
 * has neither completed nor (a sidecar, restartPolicy Always) started. `crashing` when it crash-loops.
 */
function initBlock(pod: V1Pod): { reason: string; crashing?: V1ContainerStatus } | undefined {
  const specs = pod.spec?.initContainers ?? [];
  const statuses = pod.status?.initContainerStatuses ?? [];
  const sidecars = new Set(specs.filter((c) => c.restartPolicy === 'Always').map((c) => c.name));
  for (const [i, s] of statuses.entries()) {
    const terminated = s.state?.terminated;
    if (terminated?.exitCode === 0) continue;
    if (sidecars.has(s.name) && s.started === true) continue;
    const waiting = s.state?.waiting?.reason;
    if (waiting === 'CrashLoopBackOff') return { reason: 'Init:CrashLoopBackOff', crashing: s };
    if (terminated) {
      const why = terminated.reason
        ? terminated.reason
        : terminated.signal
          ? `Signal:${terminated.signal}`
          : `ExitCode:${terminated.exitCode}`;
      return { reason: `Init:${why}` };
    }
    if (waiting !== undefined && waiting !== '' && waiting !== 'PodInitializing')
      return { reason: `Init:${waiting}` };
    return { reason: `Init:${i}/${Math.max(specs.length, statuses.length)}` };
  }
  return undefined;
}

/** A pod → an Instance. Pods the API answered without a name are refused by the caller. */
export function toInstance(pod: V1Pod, ctx: InstanceContext): Instance {
  const name = pod.metadata?.name ?? '';
  const game = gameContainer(pod, ctx.container);
  const statuses = pod.status?.containerStatuses ?? [];
  const gameStatus = statuses.find((s) => s.name === game?.name);
  const ready = (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  const restarts = [...(pod.status?.initContainerStatuses ?? []), ...statuses].reduce(
    (n, s) => n + (Number.isSafeInteger(s.restartCount) && s.restartCount > 0 ? s.restartCount : 0),
    0,
  );
  const init = initBlock(pod);
  const crashing = [gameStatus, ...statuses].find((s) => s?.state?.waiting?.reason === 'CrashLoopBackOff');
  let phase: InstancePhase;
  let reason: string | undefined;
  if (pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null) {
    phase = InstancePhase.stopped;
    reason = 'Terminating';
  } else if (init?.crashing) {
    phase = InstancePhase.crashloop;
    const last = terminatedText(init.crashing);
    reason = `${init.reason}${last ? `: ${last}` : ''}`;
  } else if (crashing) {
    phase = InstancePhase.crashloop;
    const last = terminatedText(crashing);
    reason = `CrashLoopBackOff${last ? `: ${last}` : ''}`;
  } else {
    switch (pod.status?.phase) {
      case 'Pending':
        phase = InstancePhase.pending;
        reason =
          init?.reason ??
          statuses.map((s) => s.state?.waiting?.reason).find((r) => r !== undefined) ??
          (pod.status.conditions ?? []).find((c) => c.type === 'PodScheduled' && c.status === 'False')
            ?.reason ??
          'Pending';
        break;
      case 'Running':
        phase = InstancePhase.running;
        break;
      case 'Succeeded':
        phase = InstancePhase.stopped;
        reason = 'Completed';
        break;
      case 'Failed':
        phase = InstancePhase.failed;
        reason = pod.status.reason ?? terminatedText(gameStatus) ?? 'Failed';
        break;
      case undefined:
      default:
        phase = InstancePhase.unknown;
        reason = pod.status?.reason ?? 'the node does not report this pod';
    }
  }
  if (!ready && reason === undefined) {
    const waiting = statuses.map((s) => s.state?.waiting?.reason).find((r) => r !== undefined);
    const notReady = (pod.status?.conditions ?? []).find((c) => c.type === 'Ready' && c.status !== 'True');
    reason = init?.reason ?? waiting ?? notReady?.message ?? notReady?.reason ?? 'not ready';
  }
  const instance: Instance = {
    name,
    phase,
    ready,
    restarts,
    startedAt: iso(gameStatus?.state?.running?.startedAt),
    version: game?.image ? imageVersion(game.image) : 'unknown',
    node: pod.spec?.nodeName ?? undefined,
    opsUrl: opsUrl(pod, game, ctx.opsPort),
    labels: { ...(pod.metadata?.labels ?? {}) },
  };
  if (reason !== undefined) instance.reason = reason;
  return instance;
}

/** Name order by code unit, as the contract accepts. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
