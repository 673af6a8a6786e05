/**
 * The Kubernetes adapter: the game servers are the pods of one Deployment (docs/adr/0005).
 *
 * - instances/usage: pods by the fleet selector; metrics.k8s.io for CPU and memory; nodes for capacity.
 * - logs/countLines: one streamed log request per pod (logs.ts), counted with lines.ts.
 * - scale: the Deployment's scale subresource. restart: the `kubectl.kubernetes.io/restartedAt`
 *   template annotation (what `kubectl rollout restart` does), or, for selected instances, deleting
 *   their pods a batch at a time. setVersion: the game container's image tag. rollback: the pod template
 *   of the newest earlier ReplicaSet running another version (what `kubectl rollout undo` does).
 *   Every one waits like `kubectl rollout status`; on a failure or timeout the rollout is left in place.
 * - readConfig/patchConfig: a ConfigMap, written with its resourceVersion as a precondition and a
 *   bounded retry on 409 Conflict.
 * - autoscaler: an autoscaling/v2 HorizontalPodAutoscaler, when one is configured.
 * - exportConfigObjects/applyConfigObjects: the namespace's ConfigMaps and Secrets, for backups
 *   (config-objects.ts).
 *
 * One state-changing operation at a time per adapter (ConflictError otherwise), and none while the
 * cluster shows a rollout of another change in progress (rollback excepted: it is the way out).
 */
import type {
  KubeConfig,
  V1Container,
  V1Deployment,
  V1Pod,
  V2HorizontalPodAutoscaler,
  V2MetricSpec,
  V2MetricStatus,
} from '@kubernetes/client-node';
import {
  type Clock,
  ConflictError,
  GameopsError,
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
} from '../../core/index.ts';
import type { KubernetesPlatformConfig } from '../../config/index.ts';
import { countLinesMatching, linePattern, splitLines } from '../lines.ts';
import type {
  AutoscalerStatus,
  ConfigApplyResult,
  ConfigObject,
  GameConfig,
  Instance,
  InstanceFilter,
  LineCount,
  LogRotation,
  LogLine,
  LogQuery,
  NodeUsage,
  Platform,
  ResourceUsage,
  RestartOptions,
  RolloutProgress,
  RolloutResult,
  UsageReport,
  WaitOptions,
} from '../port.ts';
import { Kube, loadKubeConfig } from './client.ts';
import { applyNamespaceConfig, exportNamespaceConfig } from './config-objects.ts';
import { checkVersion, imageVersion, parseImage, sameImage, withTag } from './image.ts';
import { mergeSources, openPodLog, type PodLogOptions, type PodLogStream } from './logs.ts';
import { byName, checkFilter, selectorText, toInstance } from './pods.ts';
import { cpuMillicores, memoryBytes, parseGoDuration } from './quantity.ts';
import { createRegistryCheck, type ImageCheck } from './registry.ts';
import {
  checkWaitOptions,
  deadlineExceeded,
  fleetCounts,
  isTerminal,
  isTerminating,
  rolloutInProgress,
  rolloutStatus,
  waitForRollout,
  type ProgressingCondition,
  type RolloutCheck,
  type StatusOptions,
} from './rollout.ts';

/** What the adapter logs through (a pino Logger fits). */
export interface PlatformLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface KubernetesPlatformOptions {
  config: KubernetesPlatformConfig;
  clock: Clock;
  log?: PlatformLog;
  /** A loaded KubeConfig (tests); otherwise `config.kubeconfig` / the default chain is read. */
  kubeConfig?: KubeConfig;
  /** Deadline of one API request (not of a streamed log). @default 15 000 */
  requestTimeoutMs?: number;
  /** Pauses between two looks at a rollout: the first after a change, doubling to `max`. @default 200 / 2 000 */
  pollMs?: { initial: number; max: number };
  /** Checks that an image tag exists before rolling to it; `false` skips the check. @default the registry check */
  imageCheck?: ImageCheck | false;
  /**
   * Once a rollout is done, how long pods still terminating are given to go before the operation ends
   * anyway, naming them in its progress (a pod can stay Terminating for hours: a long grace period, a
   * finalizer, a lost node). Never beyond the operation's timeout. @default 5 000
   */
  terminatingSettleMs?: number;
}

const MAX_REPLICAS = 10_000;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const MAX_CONFIG_BYTES = 1024 * 1024;
const CONFIG_ATTEMPTS = 5;
const WRITE_ATTEMPTS = 3;
const LOG_CONCURRENCY = 4;
const COUNT_CONCURRENCY = 8;
const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';
const REVISION = 'deployment.kubernetes.io/revision';
const TEMPLATE_HASH = 'pod-template-hash';
const MERGE_PATCH = 'application/merge-patch+json';
const STRATEGIC_PATCH = 'application/strategic-merge-patch+json';
const JSON_PATCH = 'application/json-patch+json';

/** What a wait is for: a deadline that is not about it, and the game image the template must keep. */
interface WaitTarget extends StatusOptions {
  /** The game container's image this operation rolls to; another one in the template is a ConflictError. */
  image?: string;
}

const noLog: PlatformLog = { debug: () => {}, info: () => {}, warn: () => {} };

/** A raw ReplicaSet as the API sent it (read without the generated models, so no field is lost). */
interface RawReplicaSet {
  metadata: {
    name: string;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ uid?: string; controller?: boolean }>;
  };
  spec: {
    template: {
      metadata?: { labels?: Record<string, string> };
      spec: { containers: Array<{ name: string; image: string }> };
    };
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function rawReplicaSets(body: unknown, what: string): RawReplicaSet[] {
  const items = isRecord(body) ? body['items'] : undefined;
  if (!Array.isArray(items))
    throw new UnavailableError(`the Kubernetes API answered ${what} without an items list`);
  return items.filter((rs): rs is RawReplicaSet => {
    if (!isRecord(rs) || !isRecord(rs['metadata']) || typeof rs['metadata']['name'] !== 'string')
      return false;
    const spec = rs['spec'];
    const template = isRecord(spec) ? spec['template'] : undefined;
    const podSpec = isRecord(template) ? template['spec'] : undefined;
    const containers = isRecord(podSpec) ? podSpec['containers'] : undefined;
    return (
      Array.isArray(containers) &&
      containers.every((c) => isRecord(c) && typeof c['name'] === 'string' && typeof c['image'] === 'string')
    );
  });
}

/** `err` with a sentence added to its message and fields to its details, of the same kind. */
function withNote(err: unknown, note: string, extra: Record<string, unknown>): GameopsError {
  const message = `${err instanceof Error ? err.message : String(err)}. ${note}`;
  const options = {
    details: { ...(err instanceof GameopsError ? err.details : {}), ...extra },
    cause: err,
  };
  const code = err instanceof GameopsError ? err.code : undefined;
  if (code === 'input') return new InputError(message, options);
  if (code === 'not_found') return new NotFoundError(message, options);
  if (code === 'conflict') return new ConflictError(message, options);
  if (code === 'not_allowed') return new NotAllowedError(message, options);
  return new UnavailableError(message, options);
}

function podIsReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

function revisionOf(annotations: Record<string, string> | undefined): number {
  const n = Number(annotations?.[REVISION]);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** `25%` or 2 of `total` (rounded down, as maxUnavailable is). */
function resolveIntOrPercent(value: number | string | undefined, total: number, fallback: string): number {
  const v = value ?? fallback;
  if (typeof v === 'number') return v;
  const m = /^(\d+)%$/.exec(v);
  return m ? Math.floor((Number(m[1]) * total) / 100) : Number(v);
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A metric's target or current value as people write it: `70%`, `500m`, `12`. */
function metricText(m: Record<string, unknown> | undefined): string | undefined {
  if (!m) return undefined;
  const util = m['averageUtilization'];
  if (typeof util === 'number') return `${util}%`;
  for (const key of ['averageValue', 'value']) {
    const v = m[key];
    if (typeof v === 'string' || typeof v === 'number') return String(v);
  }
  return undefined;
}

/** The name and target/current parts of one HPA metric, whatever its type. */
function metricParts(m: V2MetricSpec | V2MetricStatus): {
  name: string;
  key: string;
  body: Record<string, unknown> | undefined;
} {
  const body = m as unknown as Record<string, Record<string, unknown> | undefined>;
  switch (m.type) {
    case 'Resource': {
      const r = body['resource'];
      const name = typeof r?.['name'] === 'string' ? r['name'] : 'resource';
      return { name, key: `Resource/${name}`, body: r };
    }
    case 'ContainerResource': {
      const r = body['containerResource'];
      const container = typeof r?.['container'] === 'string' ? r['container'] : '';
      const resource = typeof r?.['name'] === 'string' ? r['name'] : '';
      const name = `${container}/${resource}`;
      return { name, key: `ContainerResource/${name}`, body: r };
    }
    case 'Pods':
    case 'Object':
    case 'External': {
      const r = body[m.type === 'Pods' ? 'pods' : m.type === 'Object' ? 'object' : 'external'];
      const metric = r?.['metric'] as { name?: unknown } | undefined;
      const name = typeof metric?.name === 'string' ? metric.name : m.type;
      return { name, key: `${m.type}/${name}`, body: r };
    }
    default:
      return { name: m.type, key: m.type, body: undefined };
  }
}

export class KubernetesPlatform implements Platform {
  readonly kind = 'kubernetes';
  readonly #config: KubernetesPlatformConfig;
  readonly #kube: Kube;
  readonly #clock: Clock;
  readonly #log: PlatformLog;
  readonly #pollMs: { initial: number; max: number };
  readonly #settleMs: number;
  readonly #imageCheck: ImageCheck | false;
  readonly #ns: string;
  readonly #name: string;
  readonly #streams = new Set<AbortController>();
  /** Aborted by close(): running waits stop (the rollouts themselves go on in the cluster). */
  readonly #closing = new AbortController();
  #selector: string | undefined;
  #running: { operation: string; since: Date } | undefined;
  #closed = false;

  constructor(options: KubernetesPlatformOptions) {
    this.#config = options.config;
    this.#clock = options.clock;
    this.#log = options.log ?? noLog;
    const requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.#kube = new Kube(loadKubeConfig(options.config, options.kubeConfig), requestTimeoutMs);
    this.#pollMs = options.pollMs ?? { initial: 200, max: 2000 };
    this.#settleMs = options.terminatingSettleMs ?? 5000;
    this.#imageCheck =
      options.imageCheck ?? createRegistryCheck({ timeoutMs: Math.min(requestTimeoutMs, 10_000) });
    this.#ns = options.config.namespace;
    this.#name = options.config.deployment;
    if (options.config.selector !== undefined) this.#selector = selectorText(options.config.selector);
  }

  describe(): string {
    return `deployment ${this.#ns}/${this.#name}`;
  }

  // ------------------------------------------------------------------ reading

  #open(): void {
    if (this.#closed) throw new UnavailableError(`the Kubernetes platform for ${this.describe()} is closed`);
  }

  async #deployment(signal?: AbortSignal): Promise<V1Deployment> {
    const d = await this.#kube.call(
      { action: 'reading', kind: 'deployment', namespace: this.#ns, name: this.#name },
      (o) => this.#kube.apps.readNamespacedDeployment({ name: this.#name, namespace: this.#ns }, o),
      { signal },
    );
    const containers = d.spec?.template?.spec?.containers;
    if (
      !d.metadata?.name ||
      !Array.isArray(containers) ||
      containers.length === 0 ||
      !containers.every((c) => typeof c.name === 'string' && typeof c.image === 'string')
    ) {
      throw new UnavailableError(
        `the Kubernetes API answered deployment ${this.#ns}/${this.#name} without a pod template`,
      );
    }
    return d;
  }

  /** The game-server container of the Deployment's template. */
  #gameContainer(d: V1Deployment): V1Container {
    const containers = d.spec!.template.spec!.containers;
    const wanted = this.#config.container;
    if (wanted === undefined) return containers[0]!;
    const found = containers.find((c) => c.name === wanted);
    if (!found) {
      throw new NotFoundError(
        `container "${wanted}" is not in deployment ${this.#ns}/${this.#name} (it has: ${containers.map((c) => c.name).join(', ')})`,
      );
    }
    return found;
  }

  async #selectorText(signal?: AbortSignal): Promise<string> {
    // The Deployment's selector is immutable (apps/v1): read it once.
    this.#selector ??= selectorText((await this.#deployment(signal)).spec!.selector);
    return this.#selector;
  }

  async #listPods(signal?: AbortSignal): Promise<V1Pod[]> {
    const labelSelector = await this.#selectorText(signal);
    const list = await this.#kube.call(
      { action: 'listing', kind: 'pods', namespace: this.#ns },
      (o) => this.#kube.core.listNamespacedPod({ namespace: this.#ns, labelSelector }, o),
      { signal },
    );
    if (!Array.isArray(list.items))
      throw new UnavailableError('the Kubernetes API answered a pod list without items');
    for (const pod of list.items) {
      if (typeof pod.metadata?.name !== 'string' || pod.metadata.name.length === 0) {
        throw new UnavailableError('the Kubernetes API answered a pod without a name');
      }
    }
    return list.items;
  }

  /** The fleet's pods that match `filter`, sorted by name; unknown names are a NotFoundError. */
  async #select(filter: InstanceFilter | undefined, signal?: AbortSignal): Promise<V1Pod[]> {
    const pods = await this.#listPods(signal);
    const labels = Object.entries(filter?.labels ?? {});
    const names = filter?.names;
    if (names !== undefined) {
      const known = new Set(pods.map((p) => p.metadata!.name!));
      const unknown = [...new Set(names)].filter((n) => !known.has(n));
      if (unknown.length > 0) {
        throw new NotFoundError(
          `no instance ${unknown.map((n) => JSON.stringify(n)).join(', ')} in ${this.describe()}`,
          { details: { unknown } },
        );
      }
    }
    const wanted = names === undefined ? undefined : new Set(names);
    return pods
      .filter((p) => wanted === undefined || wanted.has(p.metadata!.name!))
      .filter((p) => labels.every(([k, v]) => p.metadata?.labels?.[k] === v))
      .sort((a, b) => byName({ name: a.metadata!.name! }, { name: b.metadata!.name! }));
  }

  #containerOf(pod: V1Pod): string {
    return this.#config.container ?? pod.spec?.containers?.[0]?.name ?? '';
  }

  async instances(filter?: InstanceFilter): Promise<Instance[]> {
    this.#open();
    checkFilter(filter);
    const pods = await this.#select(filter);
    const ctx = { container: this.#config.container ?? '', opsPort: this.#config.opsPort };
    return pods.map((pod) => toInstance(pod, ctx));
  }

  async usage(filter?: InstanceFilter): Promise<UsageReport> {
    this.#open();
    checkFilter(filter);
    const labelSelector = await this.#selectorText();
    const metricsTarget = (kind: string) => ({ action: 'reading', kind, namespace: this.#ns });
    const metricsUnavailable = (err: unknown): never => {
      if (err instanceof NotFoundError) {
        throw new UnavailableError(
          `metrics.k8s.io is not served by ${this.#kube.api.server} (is metrics-server installed?)`,
          { cause: err },
        );
      }
      throw err;
    };
    const [pods, podMetrics, nodeMetrics, nodes] = await Promise.all([
      this.#select(filter),
      this.#kube
        .call(metricsTarget('pod metrics'), (o) =>
          this.#kube.custom.listNamespacedCustomObject(
            {
              group: 'metrics.k8s.io',
              version: 'v1beta1',
              namespace: this.#ns,
              plural: 'pods',
              labelSelector,
            },
            o,
          ),
        )
        .catch(metricsUnavailable) as Promise<unknown>,
      this.#kube
        .call(metricsTarget('node metrics'), (o) =>
          this.#kube.custom.listClusterCustomObject(
            { group: 'metrics.k8s.io', version: 'v1beta1', plural: 'nodes' },
            o,
          ),
        )
        .catch((err: unknown) => this.#withoutNodeAccess(err, 'node metrics'))
        .catch(metricsUnavailable) as Promise<unknown>,
      this.#kube
        .call({ action: 'listing', kind: 'nodes' }, (o) => this.#kube.core.listNode({}, o))
        .catch((err: unknown) => this.#withoutNodeAccess(err, 'nodes')),
    ]);

    const times: number[] = [];
    let windowMs: number | undefined;
    const podUsage = new Map<string, ResourceUsage>();
    for (const item of metricItems(podMetrics, 'pod metrics')) {
      const name = item.metadata.name;
      let cpu = 0;
      let memory = 0;
      const containers = Array.isArray(item['containers']) ? (item['containers'] as unknown[]) : undefined;
      if (!containers) throw new UnavailableError(`metrics.k8s.io answered pod ${name} without containers`);
      for (const c of containers) {
        const usage = isRecord(c) && isRecord(c['usage']) ? c['usage'] : undefined;
        const m = cpuMillicores(String(usage?.['cpu']));
        const b = memoryBytes(String(usage?.['memory']));
        if (m === undefined || b === undefined) {
          throw new UnavailableError(
            `metrics.k8s.io answered an invalid usage for pod ${name}: ${JSON.stringify(usage ?? null).slice(0, 100)}`,
          );
        }
        cpu += m;
        memory += b;
      }
      podUsage.set(name, { name, cpuMillicores: cpu, memoryBytes: memory });
      collectTime(item, times);
      windowMs ??= parseGoDuration(String(item['window']));
    }

    const instances: ResourceUsage[] = [];
    for (const pod of pods) {
      const u = podUsage.get(pod.metadata!.name!);
      if (u) instances.push(u);
      else this.#log.debug({ pod: pod.metadata!.name }, 'no metrics for this pod yet');
    }

    const fleetNodes = new Set(
      pods.map((p) => p.spec?.nodeName).filter((n): n is string => typeof n === 'string'),
    );
    const capacity = new Map<string, { cpu?: number; memory?: number }>();
    for (const node of nodes?.items ?? []) {
      const name = node.metadata?.name;
      if (name === undefined || !fleetNodes.has(name)) continue;
      const alloc = node.status?.allocatable ?? node.status?.capacity ?? {};
      const cpu = alloc['cpu'] !== undefined ? cpuMillicores(alloc['cpu']) : undefined;
      const memory = alloc['memory'] !== undefined ? memoryBytes(alloc['memory']) : undefined;
      capacity.set(name, {
        ...(cpu !== undefined ? { cpu } : {}),
        ...(memory !== undefined ? { memory } : {}),
      });
    }
    const nodeUsage: NodeUsage[] = [];
    for (const item of nodeMetrics === undefined ? [] : metricItems(nodeMetrics, 'node metrics')) {
      const name = item.metadata.name;
      if (!fleetNodes.has(name)) continue;
      const usage = isRecord(item['usage']) ? item['usage'] : undefined;
      const cpu = cpuMillicores(String(usage?.['cpu']));
      const memory = memoryBytes(String(usage?.['memory']));
      if (cpu === undefined || memory === undefined) {
        throw new UnavailableError(`metrics.k8s.io answered an invalid usage for node ${name}`);
      }
      const cap = capacity.get(name);
      nodeUsage.push({
        name,
        cpuMillicores: cpu,
        memoryBytes: memory,
        ...(cap?.cpu !== undefined ? { cpuCapacityMillicores: cap.cpu } : {}),
        ...(cap?.memory !== undefined ? { memoryCapacityBytes: cap.memory } : {}),
      });
      collectTime(item, times);
      windowMs ??= parseGoDuration(String(item['window']));
    }
    nodeUsage.sort(byName);
    const at = times.length > 0 ? new Date(Math.max(...times)) : this.#clock.now();
    return { at: at.toISOString(), windowMs: windowMs ?? 0, instances, nodes: nodeUsage };
  }

  /** Node figures are extras: without the ClusterRole for them, usage still reports the pods. */
  #withoutNodeAccess(err: unknown, what: string): undefined {
    if (err instanceof NotAllowedError) {
      this.#log.warn({ err: err.message }, `cannot read ${what}: usage reports pods only`);
      return undefined;
    }
    throw err;
  }

  async autoscaler(): Promise<AutoscalerStatus> {
    this.#open();
    const hpaName = this.#config.hpa;
    if (hpaName === undefined) {
      const d = await this.#deployment();
      return {
        enabled: false,
        currentReplicas: d.status?.replicas ?? 0,
        desiredReplicas: d.spec?.replicas ?? 0,
        metrics: [],
        conditions: [],
      };
    }
    const hpa: V2HorizontalPodAutoscaler = await this.#kube.call(
      { action: 'reading', kind: 'horizontalpodautoscaler', namespace: this.#ns, name: hpaName },
      (o) =>
        this.#kube.autoscaling.readNamespacedHorizontalPodAutoscaler(
          { name: hpaName, namespace: this.#ns },
          o,
        ),
    );
    const ref = hpa.spec?.scaleTargetRef;
    if (ref && (ref.kind !== 'Deployment' || ref.name !== this.#name)) {
      this.#log.warn({ hpa: hpaName, target: ref }, `the HPA does not target ${this.describe()}`);
    }
    const current = new Map<string, Record<string, unknown> | undefined>();
    for (const m of hpa.status?.currentMetrics ?? []) {
      const parts = metricParts(m);
      current.set(parts.key, parts.body?.['current'] as Record<string, unknown> | undefined);
    }
    const metrics = (hpa.spec?.metrics ?? []).map((m) => {
      const parts = metricParts(m);
      return {
        name: parts.name,
        current: metricText(current.get(parts.key)),
        target: metricText(parts.body?.['target'] as Record<string, unknown> | undefined),
      };
    });
    const status: AutoscalerStatus = {
      enabled: true,
      name: hpaName,
      currentReplicas: hpa.status?.currentReplicas ?? 0,
      desiredReplicas: hpa.status?.desiredReplicas ?? 0,
      maxReplicas: hpa.spec?.maxReplicas ?? 0,
      metrics,
      conditions: (hpa.status?.conditions ?? []).map((c) => ({
        type: c.type,
        status: c.status,
        ...(c.message ? { message: c.message } : {}),
      })),
    };
    status.minReplicas = hpa.spec?.minReplicas ?? 1;
    return status;
  }

  // ------------------------------------------------------------------ logs

  #checkLogQuery(
    query: Omit<LogQuery, 'follow' | 'tail'> & { follow?: boolean; tail?: number },
  ): number | undefined {
    if (typeof query !== 'object' || query === null) throw new InputError('the log query must be an object');
    checkFilter(query);
    const { sinceMs, tail } = query;
    if (sinceMs !== undefined && (typeof sinceMs !== 'number' || !Number.isFinite(sinceMs) || sinceMs <= 0)) {
      throw new InputError(`sinceMs must be a positive number of milliseconds (got ${String(sinceMs)})`);
    }
    if (tail !== undefined && (!Number.isSafeInteger(tail) || tail < 0)) {
      throw new InputError(`tail must be a whole number of lines, 0 or more (got ${String(tail)})`);
    }
    if (query.follow !== undefined && typeof query.follow !== 'boolean')
      throw new InputError('follow must be true or false');
    // The API counts whole seconds: round up, so nothing inside the window is left out.
    return sinceMs === undefined ? undefined : Math.max(1, Math.ceil(sinceMs / 1000));
  }

  /**
   * The pods whose logs are read: a terminal pod (evicted, completed) runs nothing and its kubelet no
   * longer keeps its containers (the API answers 400 "container … is not available"), so it is left out.
   */
  async #logPods(query: InstanceFilter, signal: AbortSignal | undefined): Promise<V1Pod[]> {
    const selected = await this.#select(query, signal);
    const pods = selected.filter((p) => !isTerminal(p));
    if (pods.length < selected.length) {
      this.#log.debug(
        { pods: selected.filter(isTerminal).map((p) => p.metadata!.name) },
        'terminal pods (evicted, completed) left out of the log read',
      );
    }
    return pods;
  }

  /**
   * A pod whose log cannot be read (evicted meanwhile, its node unreachable, its stream cut) is left out
   * of the answer rather than failing the whole fleet's; only when no pod could be read is it an error.
   */
  #unreadable(err: unknown, signal: AbortSignal | undefined): err is InputError | UnavailableError {
    if (signal?.aborted || this.#closed) return false;
    return err instanceof InputError || err instanceof UnavailableError;
  }

  #noneReadable(unreadable: Record<string, string>, extra?: Record<string, unknown>): UnavailableError {
    const names = Object.keys(unreadable);
    return new UnavailableError(
      `could not read the log of ${names.length === 1 ? 'the selected pod' : `any of the ${names.length} selected pods`} of ${this.describe()}: ${names.map((n) => `${n}: ${unreadable[n]}`).join('; ')}`,
      { details: { ...extra, unreadable } },
    );
  }

  async *logs(query: LogQuery): AsyncIterable<LogLine> {
    this.#open();
    const sinceSeconds = this.#checkLogQuery(query);
    const signal = query.signal;
    signal?.throwIfAborted();
    const pods = await this.#logPods(query, signal);
    const abort = new AbortController();
    this.#streams.add(abort);
    const combined = signal ? AbortSignal.any([signal, abort.signal]) : abort.signal;
    const unreadable: Record<string, string> = {};
    const sources = pods.map((pod) => () => {
      const name = pod.metadata!.name!;
      const lines = this.#podLinesOrSkip(
        {
          namespace: this.#ns,
          pod: name,
          container: this.#containerOf(pod),
          follow: query.follow === true,
          ...(sinceSeconds !== undefined ? { sinceSeconds } : {}),
          ...(query.tail !== undefined ? { tailLines: query.tail } : {}),
          // A log read to its end should keep flowing: silence that long is a stuck stream (as in
          // countLines). A followed log may be quiet for any time, so it has none.
          ...(query.follow === true ? {} : { idleTimeoutMs: this.#kube.api.requestTimeoutMs }),
          signal: combined,
        },
        unreadable,
      );
      return lines[Symbol.asyncIterator]();
    });
    try {
      yield* mergeSources(sources, query.follow === true ? Math.max(1, pods.length) : LOG_CONCURRENCY, abort);
    } catch (err) {
      if (signal?.aborted || (this.#closed && abort.signal.aborted)) return;
      throw err;
    } finally {
      this.#streams.delete(abort);
    }
    if (pods.length > 0 && Object.keys(unreadable).length === pods.length)
      throw this.#noneReadable(unreadable);
  }

  /**
   * The lines of one pod. A pod gone between listing and reading has none; one whose log cannot be
   * opened is recorded in `unreadable` and warned about. A stream cut once lines have flowed still
   * fails the read: the lines already given cannot be taken back, and a silently short log would lie.
   */
  async *#podLinesOrSkip(
    options: PodLogOptions,
    unreadable: Record<string, string>,
  ): AsyncGenerator<LogLine> {
    let stream: PodLogStream;
    try {
      stream = await openPodLog(this.#kube, options);
    } catch (err) {
      if (err instanceof NotFoundError) {
        this.#log.debug({ pod: options.pod }, 'pod gone before its log was read');
        return;
      }
      if (!this.#unreadable(err, options.signal)) throw err;
      unreadable[options.pod] = err.message;
      this.#log.warn(
        { pod: options.pod, err: err.message },
        `the log of pod ${options.pod} could not be read; the other pods' logs go on`,
      );
      return;
    }
    for await (const line of splitLines(stream.chunks)) yield { instance: options.pod, line };
  }

  /**
   * Nothing to rotate from outside: containers write to stdout and the kubelet rotates their logs by
   * itself (`containerLogMaxSize`, `containerLogMaxFiles` in its configuration). Says so rather than
   * pretending, once the Deployment is known to exist (a wrong name is a NotFoundError, not a success).
   */
  async rotateLogs(): Promise<LogRotation> {
    this.#open();
    await this.#deployment();
    return {
      rotated: [],
      note:
        `the kubelet rotates the container logs of ${this.describe()} itself ` +
        '(its containerLogMaxSize and containerLogMaxFiles settings); nothing to rotate from gameops',
    };
  }

  async countLines(query: Omit<LogQuery, 'follow' | 'tail'> & { pattern: string }): Promise<LineCount> {
    this.#open();
    const sinceSeconds = this.#checkLogQuery(query);
    linePattern(query.pattern);
    const signal = query.signal;
    signal?.throwIfAborted();
    const pods = await this.#logPods(query, signal);
    const abort = new AbortController();
    this.#streams.add(abort);
    const combined = signal ? AbortSignal.any([signal, abort.signal]) : abort.signal;
    const unreadable: Record<string, string> = {};
    const failures: Record<string, Record<string, unknown> | undefined> = {};
    try {
      const counts = await mapLimit(pods, COUNT_CONCURRENCY, async (pod) => {
        const name = pod.metadata!.name!;
        try {
          let stream: PodLogStream;
          try {
            stream = await openPodLog(this.#kube, {
              namespace: this.#ns,
              pod: name,
              container: this.#containerOf(pod),
              ...(sinceSeconds !== undefined ? { sinceSeconds } : {}),
              signal: combined,
              idleTimeoutMs: this.#kube.api.requestTimeoutMs,
            });
          } catch (err) {
            if (err instanceof NotFoundError) return { name, count: 0, bytes: 0 };
            throw err;
          }
          const { count, bytes } = await countLinesMatching(stream.chunks, query.pattern, combined);
          return { name, count, bytes };
        } catch (err) {
          if (!this.#unreadable(err, signal)) throw err;
          unreadable[name] = err.message;
          failures[name] = err.details;
          return undefined;
        }
      }).catch((err: unknown) => {
        abort.abort(new Error('count stopped'));
        throw signal?.aborted ? signal.reason : err;
      });
      const names = Object.keys(unreadable);
      if (pods.length > 0 && names.length === pods.length) {
        throw this.#noneReadable(unreadable, names.length === 1 ? failures[names[0]!] : undefined);
      }
      if (names.length > 0) {
        this.#log.warn(
          { unreadable },
          `the logs of ${names.join(', ')} could not be read: counted the other ${pods.length - names.length} pods only`,
        );
      }
      const perInstance: Record<string, number> = {};
      let total = 0;
      let bytesScanned = 0;
      for (const c of counts) {
        if (c === undefined) continue;
        perInstance[c.name] = c.count;
        total += c.count;
        bytesScanned += c.bytes;
      }
      return { perInstance, total, bytesScanned, ...(names.length > 0 ? { unreadable } : {}) };
    } finally {
      this.#streams.delete(abort);
    }
  }

  // ------------------------------------------------------------------ changes

  /** One state-changing operation at a time on this adapter. */
  #begin(operation: string): () => void {
    this.#open();
    const running = this.#running;
    if (running) {
      throw new ConflictError(
        `${this.describe()} is busy: ${running.operation} is running since ${running.since.toISOString()}; wait for it to end or cancel it`,
        { details: { running: running.operation, since: running.since.toISOString() } },
      );
    }
    const mine = { operation, since: this.#clock.now() };
    this.#running = mine;
    return () => {
      if (this.#running === mine) this.#running = undefined;
    };
  }

  /** A change made elsewhere (another gameops, kubectl, CI) is still rolling out: do not pile on. */
  #refuseIfBusy(d: V1Deployment, operation: string): void {
    if (d.spec?.paused === true) {
      throw new ConflictError(
        `${this.describe()} is paused (spec.paused): resume it (kubectl rollout resume) before ${operation}`,
      );
    }
    if (rolloutInProgress(d)) {
      const check = rolloutStatus(operation, d);
      throw new ConflictError(
        `a rollout of ${this.describe()} to ${imageVersion(this.#gameContainer(d).image!)} is in progress (${check.progress.message}); wait for it to finish or roll back before ${operation}`,
        { details: { progress: check.progress } },
      );
    }
  }

  #timeout(options: WaitOptions | undefined): number {
    return options?.timeoutMs ?? this.#config.rolloutTimeout;
  }

  #waitSettings() {
    return { clock: this.#clock, pollMs: this.#pollMs, settleMs: this.#settleMs, log: this.#log };
  }

  async #fleetCheck(
    operation: string,
    what: string,
    signal: AbortSignal,
    options: WaitTarget,
    seen: { deployment?: V1Deployment },
  ): Promise<RolloutCheck> {
    const [d, pods] = await Promise.all([this.#deployment(signal), this.#listPods(signal)]);
    const check = rolloutStatus(operation, d, fleetCounts(pods), options);
    const image = this.#gameContainer(d).image!;
    if (options.image !== undefined && !sameImage(image, options.image)) {
      // Someone else (kubectl, CI, another gameops) changed the template meanwhile: the rollout now
      // under way is theirs; finishing it is not what this operation was asked for.
      throw new ConflictError(
        `${what} was superseded by ${imageVersion(image)}: the Deployment's template now asks for ${image}; gameops stopped waiting, and the rollout to ${imageVersion(image)} goes on in the cluster`,
        { details: { progress: check.progress, image, expected: options.image } },
      );
    }
    seen.deployment = d;
    return check;
  }

  /** The caller's signal, also aborted when the platform closes. */
  #waitSignal(signal: AbortSignal | undefined): AbortSignal {
    return signal ? AbortSignal.any([signal, this.#closing.signal]) : this.#closing.signal;
  }

  async #wait(
    operation: string,
    what: string,
    options: WaitOptions | undefined,
    target: WaitTarget = {},
  ): Promise<RolloutProgress> {
    return (await this.#waitFor(operation, what, options, target)).progress;
  }

  /** Waits for the rollout; also hands back the Deployment as the look that found it done saw it. */
  async #waitFor(
    operation: string,
    what: string,
    options: WaitOptions | undefined,
    target: WaitTarget,
  ): Promise<{ progress: RolloutProgress; deployment: V1Deployment }> {
    const signal = this.#waitSignal(options?.signal);
    const seen: { deployment?: V1Deployment } = {};
    const progress = await waitForRollout(
      what,
      () => this.#fleetCheck(operation, what, signal, target, seen),
      { ...options, signal, timeoutMs: this.#timeout(options) },
      this.#waitSettings(),
    );
    return { progress, deployment: seen.deployment ?? (await this.#deployment(options?.signal)) };
  }

  #result(
    operation: string,
    d: V1Deployment,
    previousVersion: string | undefined,
    started: Date,
    progress: RolloutProgress,
  ): RolloutResult {
    return {
      operation,
      version: imageVersion(this.#gameContainer(d).image!),
      previousVersion,
      replicas: d.spec?.replicas ?? 0,
      durationMs: Math.max(0, this.#clock.now().getTime() - started.getTime()),
      progress,
    };
  }

  async scale(replicas: number, options?: WaitOptions): Promise<RolloutResult> {
    if (!Number.isSafeInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS) {
      throw new InputError(
        `replicas must be a whole number from 0 to ${MAX_REPLICAS} (got ${String(replicas)})`,
      );
    }
    checkWaitOptions(options);
    options?.signal?.throwIfAborted();
    const release = this.#begin('scale');
    try {
      const started = this.#clock.now();
      const signal = options?.signal;
      const before = await this.#deployment(signal);
      this.#refuseIfBusy(before, 'scaling');
      await this.#refuseIfAutoscaled(signal);
      const version = imageVersion(this.#gameContainer(before).image!);
      if (before.spec?.replicas !== replicas) {
        await this.#kube.call(
          { action: 'scaling', kind: 'deployment', namespace: this.#ns, name: this.#name },
          (o) =>
            this.#kube.apps.patchNamespacedDeploymentScale(
              { name: this.#name, namespace: this.#ns, body: { spec: { replicas } } },
              o,
            ),
          { signal, contentType: MERGE_PATCH },
        );
        this.#log.info({ deployment: this.#name, from: before.spec?.replicas, to: replicas }, 'scaled');
      }
      const progress = await this.#wait('scale', `scale of ${this.describe()} to ${replicas}`, options);
      const after = await this.#deployment(signal);
      return this.#result('scale', after, version, started, progress);
    } finally {
      release();
    }
  }

  /** With an HPA configured, a manual scale would be undone at its next sync: refuse it. */
  async #refuseIfAutoscaled(signal?: AbortSignal): Promise<void> {
    const name = this.#config.hpa;
    if (name === undefined) return;
    let hpa: V2HorizontalPodAutoscaler;
    try {
      hpa = await this.#kube.call(
        { action: 'reading', kind: 'horizontalpodautoscaler', namespace: this.#ns, name },
        (o) => this.#kube.autoscaling.readNamespacedHorizontalPodAutoscaler({ name, namespace: this.#ns }, o),
        { signal },
      );
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
    throw new ConflictError(
      `${this.describe()} is scaled by HorizontalPodAutoscaler ${name} (${hpa.spec?.minReplicas ?? 1}-${hpa.spec?.maxReplicas ?? '?'} replicas): a manual scale would be undone at its next sync; change its minReplicas/maxReplicas instead`,
    );
  }

  async restart(options?: RestartOptions): Promise<RolloutResult> {
    const maxUnavailable = options?.maxUnavailable;
    if (maxUnavailable !== undefined && (!Number.isSafeInteger(maxUnavailable) || maxUnavailable < 1)) {
      throw new InputError(
        `maxUnavailable must be a whole number, 1 or more (got ${String(maxUnavailable)})`,
      );
    }
    checkWaitOptions(options);
    checkFilter(options?.filter);
    options?.signal?.throwIfAborted();
    const release = this.#begin('restart');
    try {
      const started = this.#clock.now();
      const d = await this.#deployment(options?.signal);
      if (options?.filter !== undefined) return await this.#restartPods(d, options, started);
      this.#refuseIfBusy(d, 'restarting');
      if (d.spec?.strategy?.type === 'Recreate' && maxUnavailable !== undefined) {
        // Recreate would take every pod down at once: honour maxUnavailable by replacing pods in batches.
        return await this.#restartPods(d, options ?? {}, started);
      }
      return await this.#rolloutRestart(d, options, started);
    } finally {
      release();
    }
  }

  /**
   * `kubectl rollout restart`: a new restartedAt annotation in the template rolls every pod. The patch
   * carries the resourceVersion it was decided on; a 409 is re-read and retried (3 attempts).
   */
  async #rolloutRestart(
    first: V1Deployment,
    options: RestartOptions | undefined,
    started: Date,
  ): Promise<RolloutResult> {
    const signal = options?.signal;
    let tighten: number | undefined;
    let original: number | string;
    for (let attempt = 1; ; attempt++) {
      const d = attempt === 1 ? first : await this.#deployment(signal);
      if (attempt > 1) this.#refuseIfBusy(d, 'restarting');
      const replicas = d.spec?.replicas ?? 1;
      const rolling = d.spec?.strategy?.rollingUpdate;
      const own = resolveIntOrPercent(rolling?.maxUnavailable, replicas, '25%');
      const surge = resolveIntOrPercent(rolling?.maxSurge, replicas, '25%');
      const effective = own === 0 && surge === 0 ? 1 : own;
      const wanted = options?.maxUnavailable;
      // The Deployment's own maxUnavailable governs; a stricter one asked for is set for this rollout only.
      tighten = wanted !== undefined && wanted < effective ? wanted : undefined;
      original = rolling?.maxUnavailable ?? '25%';
      const previous = d.spec?.template?.metadata?.annotations?.[RESTARTED_AT];
      let stamp = this.#clock.now().toISOString();
      if (stamp === previous) stamp = new Date(this.#clock.now().getTime() + 1).toISOString();
      const patch: Record<string, unknown> = {
        metadata: { resourceVersion: d.metadata?.resourceVersion },
        spec: {
          template: { metadata: { annotations: { [RESTARTED_AT]: stamp } } },
          ...(tighten !== undefined ? { strategy: { rollingUpdate: { maxUnavailable: tighten } } } : {}),
        },
      };
      try {
        await this.#kube.call(
          { action: 'restarting', kind: 'deployment', namespace: this.#ns, name: this.#name },
          (o) =>
            this.#kube.apps.patchNamespacedDeployment(
              { name: this.#name, namespace: this.#ns, body: patch },
              o,
            ),
          { signal, contentType: STRATEGIC_PATCH },
        );
      } catch (err) {
        if (err instanceof ConflictError && attempt < WRITE_ATTEMPTS) {
          this.#log.debug(
            { deployment: this.#name, attempt },
            'deployment changed meanwhile; reading it again',
          );
          continue;
        }
        if (err instanceof ConflictError) {
          throw new ConflictError(
            `${this.describe()} kept changing while gameops restarted it (${WRITE_ATTEMPTS} attempts met 409 Conflict); try again`,
            { cause: err },
          );
        }
        throw err;
      }
      this.#log.info(
        { deployment: this.#name, restartedAt: stamp, maxUnavailable: tighten },
        'rollout restart',
      );
      break;
    }
    let progress: RolloutProgress;
    try {
      progress = await this.#wait('restart', `restart of ${this.describe()}`, options);
    } catch (err) {
      // The rollout goes on in the cluster: putting the Deployment's looser maxUnavailable back now
      // would let it take more pods down at once than asked. It stays tighter until someone changes it.
      if (tighten === undefined) throw err;
      this.#log.warn(
        { deployment: this.#name, maxUnavailable: tighten, original },
        `restart did not finish; maxUnavailable of ${this.describe()} stays ${tighten} (was ${String(original)})`,
      );
      throw withNote(
        err,
        `maxUnavailable of ${this.describe()} stays ${tighten} while the rollout goes on (it was ${String(original)}); put it back once the rollout is done: kubectl -n ${this.#ns} patch deployment ${this.#name} -p '{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":${JSON.stringify(original)}}}}}'`,
        { maxUnavailable: { kept: tighten, original } },
      );
    }
    if (tighten !== undefined) await this.#restoreMaxUnavailable(tighten, original);
    const after = await this.#deployment(signal);
    const version = imageVersion(this.#gameContainer(after).image!);
    return this.#result('restart', after, version, started, progress);
  }

  /** Puts back the Deployment's maxUnavailable, unless someone changed it since (the test op fails then). */
  async #restoreMaxUnavailable(ours: number, original: number | string): Promise<void> {
    const path = '/spec/strategy/rollingUpdate/maxUnavailable';
    try {
      await this.#kube.call(
        { action: 'restoring maxUnavailable of', kind: 'deployment', namespace: this.#ns, name: this.#name },
        (o) =>
          this.#kube.apps.patchNamespacedDeployment(
            {
              name: this.#name,
              namespace: this.#ns,
              body: [
                { op: 'test', path, value: ours },
                { op: 'replace', path, value: original },
              ],
            },
            o,
          ),
        { contentType: JSON_PATCH },
      );
    } catch (err) {
      this.#log.warn(
        { err: err instanceof Error ? err.message : String(err), maxUnavailable: ours, original },
        `could not put back maxUnavailable of ${this.describe()}; it stays ${ours}`,
      );
    }
  }

  /** Replaces the selected pods `maxUnavailable` at a time, each batch waiting for the fleet to be whole. */
  async #restartPods(d: V1Deployment, options: RestartOptions, started: Date): Promise<RolloutResult> {
    const signal = options.signal;
    const targets = await this.#select(options.filter, signal);
    this.#refuseIfBusy(d, 'restarting');
    const batch = options.maxUnavailable ?? 1;
    const timeoutMs = this.#timeout(options);
    const deadline = this.#clock.now().getTime() + timeoutMs;
    const version = imageVersion(this.#gameContainer(d).image!);
    let restarted = 0;
    let last: RolloutProgress = {
      operation: 'restart',
      desired: targets.length,
      updated: 0,
      ready: d.status?.readyReplicas ?? 0,
      available: d.status?.availableReplicas ?? 0,
      message: `0/${targets.length} restarted`,
    };
    for (let i = 0; i < targets.length; i += batch) {
      const group = targets.slice(i, i + batch);
      const uids = new Set(group.map((p) => p.metadata!.uid));
      for (const pod of group) {
        const name = pod.metadata!.name!;
        try {
          await this.#kube.call(
            { action: 'deleting', kind: 'pod', namespace: this.#ns, name },
            (o) =>
              this.#kube.core.deleteNamespacedPod(
                { name, namespace: this.#ns, body: { preconditions: { uid: pod.metadata!.uid } } },
                o,
              ),
            { signal },
          );
        } catch (err) {
          // Gone already (or replaced under the same name): nothing to restart.
          if (!(err instanceof NotFoundError) && !(err instanceof ConflictError)) throw err;
        }
      }
      const done = restarted;
      const left = deadline - this.#clock.now().getTime();
      last = await waitForRollout(
        `restart of ${group.map((p) => p.metadata!.name).join(', ')} in ${this.describe()}`,
        async () => {
          const [dep, pods] = await Promise.all([this.#deployment(signal), this.#listPods(signal)]);
          const check = rolloutStatus('restart', dep, fleetCounts(pods));
          // A deleted pod counts as restarted once marked for deletion: it may stay Terminating for long
          // (a long grace period, a finalizer, a lost node). What is waited for is its replacement: as many
          // ready pods outside the batch as the Deployment wants, read from the pods themselves, since the
          // Deployment's counts may not have seen the deletion yet.
          const live = pods.filter((p) => !isTerminal(p) && !isTerminating(p));
          const waiting = live.filter((p) => uids.has(p.metadata!.uid)).length;
          const others = live.filter((p) => !uids.has(p.metadata!.uid) && podIsReady(p)).length;
          const wanted = dep.spec?.replicas ?? 1;
          const updated = done + group.length - waiting;
          const short =
            check.done && others < wanted ? `; waiting for ${wanted - others} replacements to be ready` : '';
          return {
            ...check,
            // Only the last batch gives terminating pods their moment; earlier ones go on at once.
            terminating: i + batch >= targets.length ? (check.terminating ?? []) : [],
            done: check.done && waiting === 0 && others >= wanted,
            progress: {
              ...check.progress,
              desired: targets.length,
              updated,
              message: `${updated}/${targets.length} restarted; ${check.progress.message}${short}`,
            },
          };
        },
        { ...options, signal: this.#waitSignal(signal), timeoutMs: Math.max(1, left) },
        this.#waitSettings(),
      );
      restarted += group.length;
    }
    const after = await this.#deployment(signal);
    return this.#result('restart', after, version, started, last);
  }

  async setVersion(version: string, options?: WaitOptions): Promise<RolloutResult> {
    checkVersion(version);
    checkWaitOptions(options);
    options?.signal?.throwIfAborted();
    const release = this.#begin('set-version');
    try {
      const started = this.#clock.now();
      const signal = options?.signal;
      const checked = new Set<string>();
      let previousVersion: string | undefined;
      // Set when this call changed the template: a deadline passed before it is not about it. Joining a
      // rollout already under way (same image) keeps its deadline: that one is about this version.
      let staleDeadline: ProgressingCondition | undefined;
      let target = '';
      for (let attempt = 1; ; attempt++) {
        const d = await this.#deployment(signal);
        const container = this.#gameContainer(d);
        const image = container.image!;
        target = withTag(image, version);
        if (d.spec?.paused === true) this.#refuseIfBusy(d, 'setting a version');
        if (image === target) {
          // Already the template's image: a rollout to it is done or under way; join it.
          break;
        }
        this.#refuseIfBusy(d, `rolling to ${version}`);
        if (!checked.has(target)) {
          await this.#checkImage(target, version, signal);
          checked.add(target);
        }
        try {
          await this.#kube.call(
            {
              action: `setting the version ${version} of`,
              kind: 'deployment',
              namespace: this.#ns,
              name: this.#name,
            },
            (o) =>
              this.#kube.apps.patchNamespacedDeployment(
                {
                  name: this.#name,
                  namespace: this.#ns,
                  body: {
                    metadata: { resourceVersion: d.metadata?.resourceVersion },
                    spec: { template: { spec: { containers: [{ name: container.name, image: target }] } } },
                  },
                },
                o,
              ),
            { signal, contentType: STRATEGIC_PATCH },
          );
          previousVersion = imageVersion(image);
          staleDeadline = deadlineExceeded(d);
          this.#log.info({ deployment: this.#name, from: image, to: target }, 'set version');
          break;
        } catch (err) {
          if (err instanceof ConflictError && attempt < WRITE_ATTEMPTS) continue;
          if (err instanceof ConflictError) {
            throw new ConflictError(
              `${this.describe()} kept changing while gameops set version ${version} (${WRITE_ATTEMPTS} attempts met 409 Conflict); try again`,
              { cause: err },
            );
          }
          throw err;
        }
      }
      const { progress, deployment } = await this.#waitFor(
        'set-version',
        `rollout of ${this.describe()} to ${version}`,
        options,
        { staleDeadline, image: target },
      );
      return this.#result('set-version', deployment, previousVersion, started, progress);
    } finally {
      release();
    }
  }

  async #checkImage(image: string, version: string, signal?: AbortSignal): Promise<void> {
    if (this.#imageCheck === false) return;
    const result = await this.#imageCheck(image, signal);
    if (result.status === 'missing') {
      const ref = parseImage(image);
      throw new InputError(
        `unknown version ${version}: the registry ${ref?.registry ?? ''} has no image ${ref?.repository ?? image}:${version}`,
        { details: { image } },
      );
    }
    if (result.status === 'unknown') {
      this.#log.warn({ image, why: result.why }, 'could not check that the image exists; rolling out anyway');
    }
  }

  async rollback(options?: WaitOptions): Promise<RolloutResult> {
    checkWaitOptions(options);
    options?.signal?.throwIfAborted();
    const release = this.#begin('rollback');
    try {
      const started = this.#clock.now();
      const signal = options?.signal;
      let previousVersion: string | undefined;
      let staleDeadline: ProgressingCondition | undefined;
      let rolledTo: string | undefined;
      for (let attempt = 1; ; attempt++) {
        const d = await this.#deployment(signal);
        if (d.spec?.paused === true) this.#refuseIfBusy(d, 'rolling back');
        const container = this.#gameContainer(d);
        const image = container.image!;
        const body = await this.#kube.call<unknown>(
          { action: 'listing', kind: 'replicasets', namespace: this.#ns },
          (o) =>
            this.#kube.custom.listNamespacedCustomObject(
              {
                group: 'apps',
                version: 'v1',
                namespace: this.#ns,
                plural: 'replicasets',
                labelSelector: selectorText(d.spec!.selector),
              },
              o,
            ),
          { signal },
        );
        const uid = d.metadata?.uid;
        const owned = rawReplicaSets(body, 'the replica sets').filter((rs) =>
          (rs.metadata.ownerReferences ?? []).some((r) => r.uid === uid && r.controller === true),
        );
        const current =
          revisionOf(d.metadata?.annotations) ||
          Math.max(0, ...owned.map((rs) => revisionOf(rs.metadata.annotations)));
        const gameImage = (rs: RawReplicaSet): string | undefined =>
          (
            rs.spec.template.spec.containers.find((c) => c.name === container.name) ??
            rs.spec.template.spec.containers[0]
          )?.image;
        const candidates = owned
          .filter((rs) => revisionOf(rs.metadata.annotations) < current && gameImage(rs) !== image)
          .sort((a, b) => revisionOf(b.metadata.annotations) - revisionOf(a.metadata.annotations));
        const target = candidates[0];
        if (!target) {
          throw new NotFoundError(
            `${this.describe()} has no earlier revision running another version than ${imageVersion(image)} (revision ${current}; ${owned.length} replica sets kept)`,
          );
        }
        // The old template as it was, minus the hash label the Deployment controller added to it.
        const template = structuredClone(target.spec.template) as RawReplicaSet['spec']['template'] & {
          metadata?: { labels?: Record<string, string> };
        };
        if (template.metadata?.labels) delete template.metadata.labels[TEMPLATE_HASH];
        try {
          await this.#kube.call(
            { action: 'rolling back', kind: 'deployment', namespace: this.#ns, name: this.#name },
            (o) =>
              this.#kube.custom.patchNamespacedCustomObject(
                {
                  group: 'apps',
                  version: 'v1',
                  namespace: this.#ns,
                  plural: 'deployments',
                  name: this.#name,
                  body: [
                    { op: 'replace', path: '/metadata/resourceVersion', value: d.metadata?.resourceVersion },
                    { op: 'replace', path: '/spec/template', value: template },
                  ],
                },
                o,
              ),
            { signal, contentType: JSON_PATCH },
          );
          previousVersion = imageVersion(image);
          staleDeadline = deadlineExceeded(d);
          rolledTo = gameImage(target);
          this.#log.info(
            {
              deployment: this.#name,
              from: image,
              to: gameImage(target),
              revision: revisionOf(target.metadata.annotations),
            },
            'rolled back',
          );
          break;
        } catch (err) {
          if (err instanceof ConflictError && attempt < WRITE_ATTEMPTS) continue;
          throw err;
        }
      }
      const { progress, deployment } = await this.#waitFor(
        'rollback',
        `rollback of ${this.describe()}`,
        options,
        { staleDeadline, ...(rolledTo !== undefined ? { image: rolledTo } : {}) },
      );
      return this.#result('rollback', deployment, previousVersion, started, progress);
    } finally {
      release();
    }
  }

  // ------------------------------------------------------------------ game config

  #configMapName(): string {
    const name = this.#config.configMap;
    if (name === undefined) {
      throw new InputError('platform.configMap is not set: there is no ConfigMap holding the game config');
    }
    return name;
  }

  async #readConfigMap(name: string): Promise<{ data: GameConfig; resourceVersion: string | undefined }> {
    const cm = await this.#kube.call(
      { action: 'reading', kind: 'configmap', namespace: this.#ns, name },
      (o) => this.#kube.core.readNamespacedConfigMap({ name, namespace: this.#ns }, o),
    );
    const data: GameConfig = {};
    for (const [k, v] of Object.entries(cm.data ?? {})) {
      if (typeof v !== 'string')
        throw new UnavailableError(`configmap ${this.#ns}/${name} has a non-string value for ${k}`);
      data[k] = v;
    }
    return { data, resourceVersion: cm.metadata?.resourceVersion };
  }

  async readConfig(): Promise<GameConfig> {
    this.#open();
    return (await this.#readConfigMap(this.#configMapName())).data;
  }

  async patchConfig(patch: Record<string, string | null>): Promise<GameConfig> {
    this.#open();
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      throw new InputError('the config patch must be an object of keys to strings (or null to remove)');
    }
    let size = 0;
    for (const [key, value] of Object.entries(patch)) {
      if (key.length === 0 || key.length > 253 || !CONFIG_KEY.test(key)) {
        throw new InputError(
          `invalid config key ${JSON.stringify(key)}: 1-253 letters, digits, "-", "_" and "."`,
        );
      }
      if (value !== null && typeof value !== 'string') {
        throw new InputError(`config value of ${key} must be a string, or null to remove it`);
      }
      size += key.length + (value?.length ?? 0);
    }
    if (size > MAX_CONFIG_BYTES) throw new InputError('the config patch is larger than 1 MiB');
    const name = this.#configMapName();
    for (let attempt = 1; attempt <= CONFIG_ATTEMPTS; attempt++) {
      const { data, resourceVersion } = await this.#readConfigMap(name);
      const changes = Object.entries(patch).filter(([k, v]) => (v === null ? k in data : data[k] !== v));
      if (changes.length === 0) return data;
      try {
        const updated = await this.#kube.call(
          { action: 'patching', kind: 'configmap', namespace: this.#ns, name },
          (o) =>
            this.#kube.core.patchNamespacedConfigMap(
              {
                name,
                namespace: this.#ns,
                body: { metadata: { resourceVersion }, data: Object.fromEntries(changes) },
              },
              o,
            ),
          { contentType: MERGE_PATCH },
        );
        this.#log.info({ configMap: name, keys: changes.map(([k]) => k) }, 'game config patched');
        const result: GameConfig = {};
        for (const [k, v] of Object.entries(updated.data ?? {})) if (typeof v === 'string') result[k] = v;
        return result;
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        this.#log.debug({ configMap: name, attempt }, 'configmap changed meanwhile; reading it again');
        await delay(10 * 2 ** attempt + Math.floor(Math.random() * 10));
      }
    }
    throw new ConflictError(
      `configmap ${this.#ns}/${name} kept changing: ${CONFIG_ATTEMPTS} attempts in a row met a newer version (409 Conflict); try again`,
    );
  }

  // ------------------------------------------------------------------ config objects (backups)

  async exportConfigObjects(): Promise<ConfigObject[]> {
    this.#open();
    return exportNamespaceConfig(this.#kube, this.#ns, this.#log);
  }

  async applyConfigObjects(objects: readonly ConfigObject[]): Promise<ConfigApplyResult> {
    this.#open();
    return applyNamespaceConfig(this.#kube, this.#ns, objects, this.#log);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#closing.abort(new Error(`the Kubernetes platform for ${this.describe()} was closed`));
    for (const abort of this.#streams) abort.abort(new Error('platform closed'));
    this.#streams.clear();
  }
}

interface MetricItem {
  metadata: { name: string };
  [key: string]: unknown;
}

function metricItems(body: unknown, what: string): MetricItem[] {
  const items = isRecord(body) ? body['items'] : undefined;
  if (!Array.isArray(items))
    throw new UnavailableError(`metrics.k8s.io answered the ${what} without an items list`);
  return items.filter(
    (i): i is MetricItem =>
      isRecord(i) && isRecord(i['metadata']) && typeof i['metadata']['name'] === 'string',
  );
}

function collectTime(item: MetricItem, times: number[]): void {
  const t = typeof item['timestamp'] === 'string' ? Date.parse(item['timestamp']) : Number.NaN;
  if (Number.isFinite(t)) times.push(t);
}

/** The Kubernetes platform adapter for `config` (see the module comment). */
export function createKubernetesPlatform(options: KubernetesPlatformOptions): Platform {
  return new KubernetesPlatform(options);
}
