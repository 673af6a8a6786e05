/**
 * The stand-in's control plane, run on a short timer: the Deployment controller (one ReplicaSet per pod
 * template, revisions, rolling update within maxSurge/maxUnavailable, Recreate, progress deadline,
 * status and conditions), the ReplicaSet controller (pods follow `replicas`, replacements for deleted
 * pods) and a kubelet (containers start, become Ready, crash-loop, terminate gracefully, write logs).
 *
 * Time is real and short: delays are milliseconds, so a whole rollout takes a fraction of a second.
 */
import { clone, fnv32a, randomSuffix, safeEncode, stableStringify } from './json.ts';
import { jsonLine, logKey, type LogStore } from './logs.ts';
import {
  REVISION,
  TEMPLATE_HASH,
  type Condition,
  type ContainerStatus,
  type Deployment,
  type Hpa,
  type IntOrString,
  type NodeObject,
  type Pod,
  type PodTemplate,
  type ReplicaSet,
} from './objects.ts';
import type { Store } from './store.ts';

export interface ControllerOptions {
  /** Pod created → containers started. @default 10 */
  startDelayMs: number;
  /** Containers started → Ready. @default 20 */
  readyDelayMs: number;
  /** Pod deleted → gone (graceful termination). @default 10 */
  terminationDelayMs: number;
  /** A crash-looping container restarts this often. @default 25 */
  crashIntervalMs: number;
  /** Overrides every Deployment's `progressDeadlineSeconds` (real time in ms). */
  progressDeadlineMs: number | undefined;
  /** How often the controllers run. @default 5 */
  tickMs: number;
}

interface PodRuntime {
  createdAt: number;
  /** When the current container instance started (running or about to crash). */
  startedAt?: number;
  lastCrashAt?: number;
  deleteAt?: number;
  /** Ready may become true at this time (start + readyDelay). */
  readyAt?: number;
  /** When the failing init container last exited. */
  lastInitCrashAt?: number;
}

interface DeploymentRuntime {
  lastProgressAt: number;
  newRs: string;
  last: { updated: number; ready: number; available: number; old: number };
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** Grace periods this long or longer are honoured in real time (shorter ones take terminationDelayMs). */
export const LONG_GRACE_SECONDS = 600;

/** `25%` of `total`, rounded up (surge) or down (unavailable), as intstr.GetScaledValueFromIntOrPercent. */
export function scaled(
  value: IntOrString | undefined,
  total: number,
  roundUp: boolean,
  fallback: string,
): number {
  const v = value ?? fallback;
  if (typeof v === 'number') return v;
  const pct = Number(v.replace(/%$/, ''));
  const exact = (pct * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

export function rollingParams(d: Deployment): { maxSurge: number; maxUnavailable: number } {
  const desired = d.spec.replicas;
  if (d.spec.strategy.type === 'Recreate') return { maxSurge: 0, maxUnavailable: desired };
  const ru = d.spec.strategy.rollingUpdate ?? {};
  const maxSurge = scaled(ru.maxSurge, desired, true, '25%');
  let maxUnavailable = scaled(ru.maxUnavailable, desired, false, '25%');
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable: Math.min(maxUnavailable, desired) };
}

function withoutHash(template: PodTemplate): PodTemplate {
  const t = clone(template);
  t.metadata = { ...(t.metadata ?? {}) };
  if (t.metadata.labels) {
    const labels = { ...t.metadata.labels };
    delete labels[TEMPLATE_HASH];
    t.metadata.labels = labels;
  }
  if (t.metadata.creationTimestamp === null) delete t.metadata.creationTimestamp;
  if (t.metadata.annotations && Object.keys(t.metadata.annotations).length === 0)
    delete t.metadata.annotations;
  return t;
}

export function templateHash(template: PodTemplate, collisionCount = 0): string {
  return safeEncode(fnv32a(stableStringify(withoutHash(template)) + String(collisionCount)));
}

function templatesEqual(a: PodTemplate, b: PodTemplate): boolean {
  return stableStringify(withoutHash(a)) === stableStringify(withoutHash(b));
}

export function revisionOf(obj: { metadata: { annotations?: Record<string, string> } }): number {
  const n = Number(obj.metadata.annotations?.[REVISION] ?? '0');
  return Number.isFinite(n) ? n : 0;
}

function isOwnedBy(
  obj: { metadata: { ownerReferences?: Array<{ uid: string; controller?: boolean }> } },
  uid: string,
): boolean {
  return (obj.metadata.ownerReferences ?? []).some((r) => r.uid === uid && r.controller === true);
}

export function setCondition(conditions: Condition[], next: Condition, now: number): Condition[] {
  const old = conditions.find((c) => c.type === next.type);
  const transitioned = !old || old.status !== next.status;
  const merged: Condition = {
    ...next,
    lastTransitionTime: transitioned ? iso(now) : old.lastTransitionTime,
  };
  if (next.lastUpdateTime !== undefined || old?.lastUpdateTime !== undefined) {
    const changed = transitioned || old?.reason !== next.reason || old?.message !== next.message;
    merged.lastUpdateTime = changed ? iso(now) : (old?.lastUpdateTime ?? iso(now));
  }
  return [...conditions.filter((c) => c.type !== next.type), merged];
}

export interface PodMetricsSample {
  cpu: string;
  memory: string;
}

export class Controller {
  readonly #store: Store;
  readonly #logs: LogStore;
  readonly #options: ControllerOptions;
  readonly #pods = new Map<string, PodRuntime>();
  readonly #deployments = new Map<string, DeploymentRuntime>();
  /** ReplicaSets created by the Deployment controller and not yet reported in a Deployment's status. */
  readonly #created = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #ipCounter = 10;
  /** While frozen nothing reconciles: generation is not observed, pods do not change. */
  frozen = false;
  /** Pods held not-ready whatever their containers do (a failing readiness probe). */
  readonly notReady = new Set<string>();
  /**
   * Nodes whose kubelet is unreachable (a lost node): nothing on them changes any more, so a pod
   * deleted there stays Terminating for ever, and the scheduler places no new pod on them.
   */
  readonly lostNodes = new Set<string>();
  /** Per pod usage overrides (`{ cpu: '250m', memory: '64Mi' }` per container). */
  readonly usage = new Map<string, PodMetricsSample>();

  constructor(store: Store, logs: LogStore, options: ControllerOptions) {
    this.#store = store;
    this.#logs = logs;
    this.#options = options;
  }

  start(): void {
    this.#timer = setInterval(() => this.tick(), this.#options.tickMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  runtime(podUid: string): PodRuntime | undefined {
    return this.#pods.get(podUid);
  }

  /** Ends the grace period of a terminating pod now (its process exited). */
  endGrace(pod: Pod, now = Date.now()): void {
    const rt = this.#pods.get(pod.metadata.uid);
    if (rt?.deleteAt !== undefined && rt.deleteAt > now) rt.deleteAt = now;
  }

  tick(now = Date.now()): void {
    if (this.frozen) return;
    this.step(now);
  }

  /**
   * One pass of every controller, frozen or not (tests use it to stop between two passes). A Deployment
   * whose new generation is observed in this pass gets its status from the ReplicaSets' statuses as they
   * were before the ReplicaSet controller acted, as the real Deployment controller (reading its informer
   * cache) writes observedGeneration with counts that lag one sync behind; the next pass catches up.
   */
  step(now = Date.now()): void {
    const observing = new Set<Deployment>();
    for (const d of this.#store.list<Deployment>('deployments')) {
      this.#reconcileDeployment(d);
      if ((d.status.observedGeneration ?? 0) < (d.metadata.generation ?? 1)) observing.add(d);
    }
    for (const d of observing) this.#deploymentStatus(d, now);
    const byOwner = this.#podsByOwner();
    for (const rs of this.#store.list<ReplicaSet>('replicasets'))
      this.#reconcileReplicaSet(rs, byOwner.get(rs.metadata.uid) ?? [], now);
    for (const pod of this.#store.list<Pod>('pods')) this.#kubelet(pod, now);
    const after = this.#podsByOwner();
    for (const rs of this.#store.list<ReplicaSet>('replicasets'))
      this.#replicaSetStatus(rs, after.get(rs.metadata.uid) ?? []);
    for (const d of this.#store.list<Deployment>('deployments'))
      if (!observing.has(d)) this.#deploymentStatus(d, now);
    for (const hpa of this.#store.list<Hpa>('horizontalpodautoscalers')) this.#hpaStatus(hpa);
  }

  #podsByOwner(): Map<string, Pod[]> {
    const map = new Map<string, Pod[]>();
    for (const pod of this.#store.list<Pod>('pods')) {
      const owner = pod.metadata.ownerReferences?.find((r) => r.controller === true);
      if (!owner) continue;
      const list = map.get(owner.uid);
      if (list) list.push(pod);
      else map.set(owner.uid, [pod]);
    }
    return map;
  }

  #ownedReplicaSets(d: Deployment): ReplicaSet[] {
    return this.#store
      .list<ReplicaSet>('replicasets', d.metadata.namespace)
      .filter((rs) => isOwnedBy(rs, d.metadata.uid));
  }

  #isAvailable(pod: Pod): boolean {
    return isActive(pod) && podReady(pod);
  }

  #rsCounts(rs: ReplicaSet): { active: number; available: number } {
    const pods = this.#store
      .list<Pod>('pods', rs.metadata.namespace)
      .filter((p) => isOwnedBy(p, rs.metadata.uid) && isActive(p));
    return { active: pods.length, available: pods.filter((p) => this.#isAvailable(p)).length };
  }

  #createReplicaSet(d: Deployment, revision: number): ReplicaSet {
    let collision = d.status.collisionCount ?? 0;
    let hash = templateHash(d.spec.template, collision);
    while (this.#store.get('replicasets', d.metadata.namespace, `${d.metadata.name}-${hash}`)) {
      collision++;
      hash = templateHash(d.spec.template, collision);
    }
    if (collision !== (d.status.collisionCount ?? 0)) d.status.collisionCount = collision;
    const template = clone(d.spec.template);
    template.metadata = {
      ...(template.metadata ?? {}),
      labels: { ...(template.metadata?.labels ?? {}), [TEMPLATE_HASH]: hash },
    };
    const { maxSurge } = rollingParams(d);
    const created = this.#store.create<ReplicaSet>('replicasets', {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: `${d.metadata.name}-${hash}`,
        namespace: d.metadata.namespace,
        uid: '',
        resourceVersion: '',
        creationTimestamp: '',
        labels: { ...(d.spec.template.metadata?.labels ?? {}), [TEMPLATE_HASH]: hash },
        annotations: {
          [REVISION]: String(revision),
          'deployment.kubernetes.io/desired-replicas': String(d.spec.replicas),
          'deployment.kubernetes.io/max-replicas': String(d.spec.replicas + maxSurge),
        },
        ownerReferences: [
          {
            apiVersion: 'apps/v1',
            kind: 'Deployment',
            name: d.metadata.name,
            uid: d.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        replicas: 0,
        minReadySeconds: d.spec.minReadySeconds,
        selector: { matchLabels: { ...d.spec.selector.matchLabels, [TEMPLATE_HASH]: hash } },
        template,
      },
      status: {
        replicas: 0,
        fullyLabeledReplicas: 0,
        readyReplicas: 0,
        availableReplicas: 0,
        observedGeneration: 0,
      },
    });
    this.#created.add(created.metadata.uid);
    return created;
  }

  #setReplicas(rs: ReplicaSet, replicas: number): void {
    if (rs.spec.replicas === replicas) return;
    const previous = clone(rs.spec);
    rs.spec.replicas = replicas;
    this.#store.update('replicasets', rs, previous);
  }

  #reconcileDeployment(d: Deployment): void {
    const owned = this.#ownedReplicaSets(d);
    let newRs = owned.find((rs) => templatesEqual(rs.spec.template, d.spec.template));
    const maxRevision = owned.reduce((m, rs) => Math.max(m, revisionOf(rs)), 0);
    if (!newRs) {
      if (d.spec.paused) return;
      newRs = this.#createReplicaSet(d, maxRevision + 1);
      owned.push(newRs);
    } else if (revisionOf(newRs) < maxRevision) {
      // An old template came back (rollback): its ReplicaSet is reused under the next revision.
      const old = String(revisionOf(newRs));
      const history = newRs.metadata.annotations?.['deployment.kubernetes.io/revision-history'];
      newRs.metadata.annotations = {
        ...newRs.metadata.annotations,
        [REVISION]: String(maxRevision + 1),
        'deployment.kubernetes.io/revision-history': history ? `${history},${old}` : old,
      };
      this.#store.update('replicasets', newRs);
    }
    const revision = String(revisionOf(newRs));
    if (d.metadata.annotations?.[REVISION] !== revision) {
      d.metadata.annotations = { ...d.metadata.annotations, [REVISION]: revision };
      this.#store.update('deployments', d);
    }
    this.#cleanupHistory(d, owned, newRs);
    if (d.spec.paused) return;

    const desired = d.spec.replicas;
    const olds = owned.filter((rs) => rs !== newRs).sort((a, b) => revisionOf(a) - revisionOf(b));
    const activeOlds = olds.filter((rs) => rs.spec.replicas > 0 || this.#rsCounts(rs).active > 0);

    if (d.spec.strategy.type === 'Recreate') {
      for (const rs of olds) this.#setReplicas(rs, 0);
      if (activeOlds.every((rs) => this.#rsCounts(rs).active === 0)) this.#setReplicas(newRs, desired);
      return;
    }

    const { maxSurge, maxUnavailable } = rollingParams(d);
    // Scale the new ReplicaSet up (within maxSurge) or down to the desired count.
    if (newRs.spec.replicas > desired || activeOlds.length === 0) {
      this.#setReplicas(newRs, desired);
    } else {
      const total = owned.reduce((n, rs) => n + rs.spec.replicas, 0);
      const room = desired + maxSurge - total;
      if (room > 0) this.#setReplicas(newRs, Math.min(desired, newRs.spec.replicas + room));
    }
    if (activeOlds.length === 0) return;

    // Scale old ReplicaSets down without going under desired - maxUnavailable available pods.
    const allPods = owned.reduce((n, rs) => n + rs.spec.replicas, 0);
    const minAvailable = desired - maxUnavailable;
    const newCounts = this.#rsCounts(newRs);
    const newUnavailable = Math.max(0, newRs.spec.replicas - newCounts.available);
    let budget = allPods - minAvailable - newUnavailable;
    if (budget <= 0) return;
    // First the old pods that are not available anyway.
    for (const rs of olds) {
      if (budget <= 0) break;
      const counts = this.#rsCounts(rs);
      const unhealthy = Math.max(0, rs.spec.replicas - counts.available);
      const cut = Math.min(unhealthy, budget);
      if (cut > 0) {
        this.#setReplicas(rs, rs.spec.replicas - cut);
        budget -= cut;
      }
    }
    const totalAvailable = owned.reduce((n, rs) => n + this.#rsCounts(rs).available, 0);
    let scalable = Math.min(budget, totalAvailable - minAvailable);
    for (const rs of olds) {
      if (scalable <= 0) break;
      const cut = Math.min(rs.spec.replicas, scalable);
      if (cut > 0) {
        this.#setReplicas(rs, rs.spec.replicas - cut);
        scalable -= cut;
      }
    }
  }

  #cleanupHistory(d: Deployment, owned: ReplicaSet[], newRs: ReplicaSet): void {
    const idle = owned
      .filter((rs) => rs !== newRs && rs.spec.replicas === 0 && this.#rsCounts(rs).active === 0)
      .sort((a, b) => revisionOf(a) - revisionOf(b));
    const excess = idle.length - d.spec.revisionHistoryLimit;
    for (const rs of idle.slice(0, Math.max(0, excess))) {
      this.#store.delete('replicasets', rs.metadata.namespace, rs.metadata.name);
      owned.splice(owned.indexOf(rs), 1);
    }
  }

  #reconcileReplicaSet(rs: ReplicaSet, pods: Pod[], now: number): void {
    const active = pods.filter(isActive);
    const diff = active.length - rs.spec.replicas;
    if (diff < 0) for (let i = 0; i < -diff; i++) this.#createPod(rs, now);
    if (diff > 0) {
      // Delete the least useful first: unscheduled, pending, not ready, then the youngest.
      const rank = (p: Pod): number =>
        (p.spec.nodeName ? 0 : 4) + (p.status.phase === 'Pending' ? 2 : 0) + (podReady(p) ? 0 : 1);
      const victims = [...active].sort(
        (a, b) =>
          rank(b) - rank(a) || b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp),
      );
      for (const pod of victims.slice(0, diff)) this.deletePod(pod, now);
    }
  }

  #pickNode(): NodeObject | undefined {
    const nodes = this.#store.list<NodeObject>('nodes').filter((n) => !this.lostNodes.has(n.metadata.name));
    if (nodes.length === 0) return undefined;
    const load = new Map<string, number>(nodes.map((n) => [n.metadata.name, 0]));
    for (const pod of this.#store.list<Pod>('pods')) {
      if (pod.spec.nodeName) load.set(pod.spec.nodeName, (load.get(pod.spec.nodeName) ?? 0) + 1);
    }
    return [...nodes].sort(
      (a, b) =>
        load.get(a.metadata.name)! - load.get(b.metadata.name)! ||
        a.metadata.name.localeCompare(b.metadata.name),
    )[0];
  }

  #createPod(rs: ReplicaSet, now: number): void {
    const template = clone(rs.spec.template);
    const node = this.#pickNode();
    const pod = this.#store.create<Pod>('pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: `${rs.metadata.name}-${randomSuffix()}`,
        generateName: `${rs.metadata.name}-`,
        namespace: rs.metadata.namespace,
        uid: '',
        resourceVersion: '',
        creationTimestamp: '',
        labels: template.metadata?.labels ?? {},
        ...(template.metadata?.annotations ? { annotations: template.metadata.annotations } : {}),
        ownerReferences: [
          {
            apiVersion: 'apps/v1',
            kind: 'ReplicaSet',
            name: rs.metadata.name,
            uid: rs.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: { ...template.spec, ...(node ? { nodeName: node.metadata.name } : {}) },
      status: {
        phase: 'Pending',
        qosClass: 'BestEffort',
        conditions: [
          {
            type: 'PodScheduled',
            status: node ? 'True' : 'False',
            lastTransitionTime: iso(now),
            lastProbeTime: null,
            ...(node ? {} : { reason: 'Unschedulable', message: '0/0 nodes are available' }),
          },
        ],
        ...(node ? { hostIP: node.status.addresses[0]?.address } : {}),
        containerStatuses: template.spec.containers.map((c) => ({
          name: c.name,
          image: c.image,
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: {
            waiting: {
              reason: template.spec.initContainers?.length ? 'PodInitializing' : 'ContainerCreating',
            },
          },
          lastState: {},
        })),
        ...(template.spec.initContainers?.length
          ? {
              initContainerStatuses: template.spec.initContainers.map((c) => ({
                name: c.name,
                image: c.image,
                imageID: '',
                ready: false,
                started: false,
                restartCount: 0,
                state: { waiting: { reason: 'PodInitializing' } },
                lastState: {},
              })),
            }
          : {}),
      },
    });
    this.#pods.set(pod.metadata.uid, { createdAt: now });
  }

  /**
   * Graceful deletion: the pod is Terminating (not ready) until terminationDelayMs has passed, or, when
   * its `terminationGracePeriodSeconds` is {@link LONG_GRACE_SECONDS} or more (a game server finishing
   * its matches), for that grace period in real time, its containers running meanwhile.
   */
  deletePod(pod: Pod, now = Date.now()): void {
    if (pod.metadata.deletionTimestamp !== undefined) return;
    const rt = this.#pods.get(pod.metadata.uid) ?? { createdAt: now };
    const grace = pod.spec.terminationGracePeriodSeconds;
    const long = grace !== undefined && grace >= LONG_GRACE_SECONDS;
    rt.deleteAt = now + (long ? grace * 1000 : this.#options.terminationDelayMs);
    this.#pods.set(pod.metadata.uid, rt);
    pod.metadata.deletionTimestamp = iso(now + (long ? grace * 1000 : 0));
    pod.metadata.deletionGracePeriodSeconds = long
      ? grace
      : Math.ceil(this.#options.terminationDelayMs / 1000);
    this.#setReady(pod, false, now);
    this.#store.update('pods', pod);
  }

  #setReady(pod: Pod, ready: boolean, now: number): void {
    for (const s of pod.status.containerStatuses ?? []) s.ready = ready && s.state.running !== undefined;
    const all = ready && (pod.status.containerStatuses ?? []).every((s) => s.ready);
    let conditions = pod.status.conditions ?? [];
    conditions = setCondition(
      conditions,
      { type: 'ContainersReady', status: all ? 'True' : 'False', lastProbeTime: null },
      now,
    );
    conditions = setCondition(
      conditions,
      { type: 'Ready', status: all ? 'True' : 'False', lastProbeTime: null },
      now,
    );
    pod.status.conditions = conditions;
  }

  #logStartup(pod: Pod, name: string, image: string, at: number): void {
    const podName = pod.metadata.name;
    this.#logs.appendLines(
      logKey(pod.metadata.uid, name),
      [
        jsonLine(at, 'INFO', 'game server starting', { pod: podName, image }),
        jsonLine(at, 'INFO', 'loaded config', { pod: podName }),
        jsonLine(at, 'INFO', 'listening', { pod: podName, port: 7000 }),
      ],
      at,
    );
  }

  /**
   * Runs the pod's init containers one after the other (a sidecar, restartPolicy Always, just starts);
   * one whose image tag contains `broken` exits with code 1 and is restarted with backoff for ever
   * (Init:CrashLoopBackOff), the pod staying Pending. True once they have all completed.
   */
  #initialized(pod: Pod, rt: PodRuntime, now: number): boolean {
    const inits = pod.status.initContainerStatuses ?? [];
    const specs = pod.spec.initContainers ?? [];
    if (inits.length === 0) return true;
    const done = (s: ContainerStatus, i: number): boolean =>
      s.state.terminated?.exitCode === 0 || (specs[i]?.restartPolicy === 'Always' && s.started);
    if (inits.every(done)) return true;
    if (now < rt.createdAt + this.#options.startDelayMs) return false;
    const i = inits.findIndex((s, j) => !done(s, j));
    const s = inits[i]!;
    if (isBroken(s.image)) {
      if (now - (rt.lastInitCrashAt ?? 0) < this.#options.crashIntervalMs) return false;
      rt.lastInitCrashAt = now;
      s.lastState = {
        terminated: { exitCode: 1, reason: 'Error', startedAt: iso(now), finishedAt: iso(now) },
      };
      s.restartCount++;
      s.state = {
        waiting: {
          reason: 'CrashLoopBackOff',
          message: `back-off restarting failed container ${s.name} in pod ${pod.metadata.name}`,
        },
      };
    } else if (specs[i]?.restartPolicy === 'Always') {
      s.state = { running: { startedAt: iso(now) } };
      s.started = true;
      s.ready = true;
    } else {
      s.state = {
        terminated: { exitCode: 0, reason: 'Completed', startedAt: iso(now), finishedAt: iso(now) },
      };
    }
    pod.status.conditions = setCondition(
      pod.status.conditions ?? [],
      {
        type: 'Initialized',
        status: inits.every(done) ? 'True' : 'False',
        lastProbeTime: null,
        ...(inits.every(done)
          ? {}
          : {
              reason: 'ContainersNotInitialized',
              message: `containers with incomplete status: [${s.name}]`,
            }),
      },
      now,
    );
    this.#store.update('pods', pod);
    return false;
  }

  /**
   * The grace period of a deleted pod is over: its containers are killed and the pod reaches a terminal
   * phase (kubelet ≥ 1.27), while finalizers keep the object listed, Terminating, until they are removed.
   */
  #stopContainers(pod: Pod, now: number): void {
    if (pod.status.phase === 'Succeeded' || pod.status.phase === 'Failed') return;
    for (const s of pod.status.containerStatuses ?? []) {
      if (s.state.running === undefined) continue;
      s.state = {
        terminated: {
          exitCode: 0,
          reason: 'Completed',
          startedAt: s.state.running.startedAt,
          finishedAt: iso(now),
        },
      };
      s.ready = false;
      s.started = false;
    }
    pod.status.phase = 'Succeeded';
    this.#setReady(pod, false, now);
    this.#store.update('pods', pod);
    for (const c of pod.spec.containers) this.#logs.end(logKey(pod.metadata.uid, c.name));
  }

  /**
   * The node's kubelet becomes unreachable: the node turns Ready=Unknown and the node lifecycle
   * controller marks its pods not ready; from then on nothing on it changes (see {@link lostNodes}).
   */
  loseNode(name: string, now: number): void {
    this.lostNodes.add(name);
    const node = this.#store.get<NodeObject>('nodes', undefined, name);
    if (node) {
      node.status.conditions = setCondition(
        node.status.conditions,
        {
          type: 'Ready',
          status: 'Unknown',
          reason: 'NodeStatusUnknown',
          message: 'Kubelet stopped posting node status.',
        },
        now,
      );
      this.#store.update('nodes', node);
    }
    for (const pod of this.#store.list<Pod>('pods')) {
      if (pod.spec.nodeName !== name || !podReady(pod)) continue;
      this.#setReady(pod, false, now);
      this.#store.update('pods', pod);
    }
  }

  /**
   * The kubelet evicts the pod (node pressure): it fails with reason Evicted and stays listed, terminal,
   * until someone deletes it; its ReplicaSet no longer counts it and makes a replacement.
   */
  evict(pod: Pod, now: number): void {
    pod.status.phase = 'Failed';
    pod.status.reason = 'Evicted';
    pod.status.message = 'The node was low on resource: memory.';
    for (const s of pod.status.containerStatuses ?? []) {
      s.state = { terminated: { exitCode: 137, reason: 'ContainerStatusUnknown', finishedAt: iso(now) } };
      s.ready = false;
      s.started = false;
    }
    this.#setReady(pod, false, now);
    this.#store.update('pods', pod);
  }

  /** A container restart (crash, or a test's `crashContainer`): restartCount grows, Ready drops. */
  crash(pod: Pod, containerName: string, now: number, reason = 'Error'): void {
    const rt = this.#pods.get(pod.metadata.uid);
    const status = pod.status.containerStatuses?.find((s) => s.name === containerName);
    if (!rt || !status) return;
    this.#logs.appendLines(
      logKey(pod.metadata.uid, containerName),
      [jsonLine(now, 'ERROR', 'fatal: game server exited', { pod: pod.metadata.name, exitCode: 1 })],
      now,
    );
    status.lastState = {
      terminated: {
        exitCode: 1,
        reason,
        startedAt: status.state.running?.startedAt ?? iso(rt.startedAt ?? now),
        finishedAt: iso(now),
      },
    };
    status.restartCount++;
    rt.lastCrashAt = now;
    const broken = isBroken(status.image);
    if (broken) {
      status.state = {
        waiting: {
          reason: 'CrashLoopBackOff',
          message: `back-off restarting failed container ${containerName} in pod ${pod.metadata.name}`,
        },
      };
      status.started = false;
    } else {
      rt.startedAt = now;
      rt.readyAt = now + this.#options.readyDelayMs;
      status.state = { running: { startedAt: iso(now) } };
      this.#logStartup(pod, containerName, status.image, now);
    }
    this.#setReady(pod, false, now);
    this.#store.update('pods', pod);
  }

  #kubelet(pod: Pod, now: number): void {
    const rt = this.#pods.get(pod.metadata.uid);
    if (!rt) return;
    if (pod.spec.nodeName !== undefined && this.lostNodes.has(pod.spec.nodeName)) return;
    if (rt.deleteAt !== undefined) {
      if (now >= rt.deleteAt) {
        if ((pod.metadata.finalizers ?? []).length > 0) {
          // The containers are stopped, but the API keeps the object until its finalizers are gone.
          this.#stopContainers(pod, now);
          return;
        }
        this.#store.delete('pods', pod.metadata.namespace, pod.metadata.name);
        for (const c of pod.spec.containers) this.#logs.end(logKey(pod.metadata.uid, c.name));
        this.#pods.delete(pod.metadata.uid);
      }
      return;
    }
    if (!pod.spec.nodeName || !isActive(pod)) return;
    if (!this.#initialized(pod, rt, now)) return;
    let changed = false;
    const statuses = pod.status.containerStatuses ?? [];
    if (rt.startedAt === undefined && now >= rt.createdAt + this.#options.startDelayMs) {
      rt.startedAt = now;
      rt.readyAt = now + this.#options.readyDelayMs;
      pod.status.phase = 'Running';
      pod.status.startTime = iso(rt.createdAt);
      const ip = `10.244.${Math.floor(this.#ipCounter / 250)}.${(this.#ipCounter % 250) + 2}`;
      this.#ipCounter++;
      pod.status.podIP = ip;
      pod.status.podIPs = [{ ip }];
      pod.status.conditions = setCondition(
        pod.status.conditions ?? [],
        { type: 'Initialized', status: 'True', lastProbeTime: null },
        now,
      );
      for (const s of statuses) {
        s.imageID = `docker.io/library/${s.image.split('/').pop()!}@sha256:${fnv32a(s.image).toString(16).padStart(8, '0').repeat(8)}`;
        if (isMissing(s.image)) {
          s.state = {
            waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${s.image}"` },
          };
          pod.status.phase = 'Pending';
          continue;
        }
        s.containerID = `containerd://${fnv32a(pod.metadata.uid + s.name).toString(16)}`;
        s.started = true;
        s.state = { running: { startedAt: iso(now) } };
        this.#logStartup(pod, s.name, s.image, now);
        if (isBroken(s.image)) this.crash(pod, s.name, now);
      }
      this.#setReady(pod, false, now);
      changed = true;
    }
    for (const s of statuses) {
      if (
        isBroken(s.image) &&
        s.state.waiting?.reason === 'CrashLoopBackOff' &&
        now - (rt.lastCrashAt ?? 0) >= this.#options.crashIntervalMs
      ) {
        this.crash(pod, s.name, now);
      }
    }
    if (rt.readyAt !== undefined && now >= rt.readyAt) {
      const want =
        statuses.every((s) => s.state.running !== undefined) && !this.notReady.has(pod.metadata.name);
      const is = podReady(pod);
      if (want !== is) {
        this.#setReady(pod, want, now);
        changed = true;
      }
    }
    if (changed) this.#store.update('pods', pod);
  }

  #replicaSetStatus(rs: ReplicaSet, pods: Pod[]): void {
    const active = pods.filter(isActive);
    const next = {
      replicas: active.length,
      fullyLabeledReplicas: active.length,
      readyReplicas: active.filter(podReady).length,
      availableReplicas: active.filter((p) => this.#isAvailable(p)).length,
      observedGeneration: rs.metadata.generation ?? 1,
    };
    if (stableStringify(next) !== stableStringify(rs.status)) {
      rs.status = next;
      this.#store.update('replicasets', rs);
    }
  }

  #deploymentStatus(d: Deployment, now: number): void {
    const owned = this.#ownedReplicaSets(d);
    const newRs = owned.find((rs) => templatesEqual(rs.spec.template, d.spec.template));
    const sum = (f: (rs: ReplicaSet) => number): number => owned.reduce((n, rs) => n + f(rs), 0);
    const desired = d.spec.replicas;
    const updated = newRs?.status.replicas ?? 0;
    const replicas = sum((rs) => rs.status.replicas);
    const ready = sum((rs) => rs.status.readyReplicas);
    const available = sum((rs) => rs.status.availableReplicas);
    const totalSpec = sum((rs) => rs.spec.replicas);
    const old = replicas - updated;
    const { maxUnavailable } = rollingParams(d);

    let conditions = d.status.conditions ?? [];
    conditions = setCondition(
      conditions,
      available >= desired - maxUnavailable
        ? {
            type: 'Available',
            status: 'True',
            reason: 'MinimumReplicasAvailable',
            message: 'Deployment has minimum availability.',
            lastUpdateTime: iso(now),
          }
        : {
            type: 'Available',
            status: 'False',
            reason: 'MinimumReplicasUnavailable',
            message: 'Deployment does not have minimum availability.',
            lastUpdateTime: iso(now),
          },
      now,
    );
    const rsName = newRs?.metadata.name ?? '';
    const key = `${d.metadata.namespace}/${d.metadata.name}`;
    let rt = this.#deployments.get(key);
    const counts = { updated, ready, available, old };
    if (!rt || rt.newRs !== rsName) {
      rt = { lastProgressAt: now, newRs: rsName, last: counts };
      this.#deployments.set(key, rt);
      const created = newRs !== undefined && this.#created.delete(newRs.metadata.uid);
      const hasProgressing = conditions.some((c) => c.type === 'Progressing');
      if (newRs && revisionOf(newRs) > 0 && !(updated === desired && available === desired && old === 0)) {
        // As getNewReplicaSet: a created ReplicaSet resets the condition; an existing one (a rollback)
        // only sets one when there is none, so a ProgressDeadlineExceeded stays until progress is seen.
        if (created || !hasProgressing) {
          conditions = setCondition(
            conditions,
            {
              type: 'Progressing',
              status: 'True',
              reason: created ? 'NewReplicaSetCreated' : 'FoundNewReplicaSet',
              message: created ? `Created new replica set "${rsName}"` : `Found new replica set "${rsName}"`,
              lastUpdateTime: iso(now),
            },
            now,
          );
        }
      }
    }
    const progressed =
      updated > rt.last.updated ||
      ready > rt.last.ready ||
      available > rt.last.available ||
      old < rt.last.old;
    rt.last = counts;
    const complete = updated === desired && replicas === desired && available === desired && old === 0;
    const deadline = this.#options.progressDeadlineMs ?? d.spec.progressDeadlineSeconds * 1000;
    if (d.spec.paused) {
      conditions = setCondition(
        conditions,
        {
          type: 'Progressing',
          status: 'Unknown',
          reason: 'DeploymentPaused',
          message: 'Deployment is paused',
          lastUpdateTime: iso(now),
        },
        now,
      );
      rt.lastProgressAt = now;
    } else if (complete) {
      conditions = setCondition(
        conditions,
        {
          type: 'Progressing',
          status: 'True',
          reason: 'NewReplicaSetAvailable',
          message: `ReplicaSet "${rsName}" has successfully progressed.`,
          lastUpdateTime: iso(now),
        },
        now,
      );
      rt.lastProgressAt = now;
    } else if (progressed) {
      rt.lastProgressAt = now;
      conditions = setCondition(
        conditions,
        {
          type: 'Progressing',
          status: 'True',
          reason: 'ReplicaSetUpdated',
          message: `ReplicaSet "${rsName}" is progressing.`,
          lastUpdateTime: iso(now),
        },
        now,
      );
    } else if (now - rt.lastProgressAt > deadline) {
      conditions = setCondition(
        conditions,
        {
          type: 'Progressing',
          status: 'False',
          reason: 'ProgressDeadlineExceeded',
          message: `ReplicaSet "${rsName}" has timed out progressing.`,
          lastUpdateTime: iso(now),
        },
        now,
      );
    }
    const status = {
      observedGeneration: d.metadata.generation ?? 1,
      replicas,
      updatedReplicas: updated,
      readyReplicas: ready,
      availableReplicas: available,
      unavailableReplicas: Math.max(0, totalSpec - available),
      conditions,
      ...(d.status.collisionCount !== undefined ? { collisionCount: d.status.collisionCount } : {}),
    };
    // Real status omits zero counts; keep them out the same way.
    for (const k of [
      'replicas',
      'updatedReplicas',
      'readyReplicas',
      'availableReplicas',
      'unavailableReplicas',
    ] as const) {
      if (status[k] === 0) delete (status as Partial<typeof status>)[k];
    }
    const withoutTimes = (s: unknown): string =>
      stableStringify(s).replace(/"last(Update|Transition)Time":"[^"]*"/g, '');
    if (
      withoutTimes(status) !== withoutTimes(d.status) ||
      conditionsChanged(d.status.conditions ?? [], conditions)
    ) {
      d.status = status;
      this.#store.update('deployments', d);
    }
  }

  #hpaStatus(hpa: Hpa): void {
    const d = this.#store.get<Deployment>(
      'deployments',
      hpa.metadata.namespace,
      hpa.spec.scaleTargetRef.name,
    );
    if (!d) return;
    const current = d.status.replicas ?? 0;
    if (hpa.status.currentReplicas !== current || hpa.status.desiredReplicas !== d.spec.replicas) {
      hpa.status = {
        ...hpa.status,
        currentReplicas: current,
        desiredReplicas: d.spec.replicas,
        observedGeneration: hpa.metadata.generation ?? 1,
      };
      this.#store.update('horizontalpodautoscalers', hpa);
    }
  }
}

function conditionsChanged(a: Condition[], b: Condition[]): boolean {
  const strip = (cs: Condition[]): string =>
    stableStringify(
      cs
        .map((c) => ({ type: c.type, status: c.status, reason: c.reason }))
        .sort((x, y) => x.type.localeCompare(y.type)),
    );
  return strip(a) !== strip(b);
}

/** Counted by its ReplicaSet: not being deleted, not terminal (Succeeded/Failed, e.g. evicted). */
export function isActive(pod: Pod): boolean {
  return (
    pod.metadata.deletionTimestamp === undefined &&
    pod.status.phase !== 'Succeeded' &&
    pod.status.phase !== 'Failed'
  );
}

export function podReady(pod: Pod): boolean {
  return pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** An image whose tag contains `broken` starts and exits with code 1, forever. */
export function isBroken(image: string): boolean {
  return imageTag(image).includes('broken');
}

/** An image whose tag contains `missing` cannot be pulled. */
export function isMissing(image: string): boolean {
  return imageTag(image).includes('missing');
}

function imageTag(image: string): string {
  const last = image.split('/').pop() ?? image;
  const at = last.indexOf('@');
  const name = at >= 0 ? last.slice(0, at) : last;
  const colon = name.lastIndexOf(':');
  return colon >= 0 ? name.slice(colon + 1) : 'latest';
}

export type { ContainerStatus };
