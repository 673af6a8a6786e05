/**
 * A Kubernetes API **stand-in**: an HTTP server following the API server's REST conventions for exactly
 * the resources gameops's Kubernetes adapter uses, over a simulated control plane (controller.ts). It is
 * not Kubernetes: see README.md in this folder for what it does and does not prove.
 *
 * Conventions followed: paths (`/api/v1/namespaces/{ns}/pods/{name}/log`, `/apis/apps/v1/…/scale`),
 * bearer-token authentication (401), RBAC authorization from deploy/rbac.yaml (403), `Status` objects
 * for every error (kind, status, message, reason, details, code), one cluster-wide resourceVersion bumped
 * on every write, optimistic concurrency (409 Conflict on a stale resourceVersion, in PUT bodies and in
 * patches that carry one), `metadata.generation` / `status.observedGeneration`, the three patch content
 * types, label selectors, list kinds without per-item kind/apiVersion, chunked streaming logs.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import {
  Controller,
  isBroken,
  podReady,
  rollingParams,
  type ControllerOptions,
  type PodMetricsSample,
} from './controller.ts';
import { clone, deepEqual, fnv32a, isObject, type Json, type JsonObject } from './json.ts';
import { jsonLine, logKey, LogStore, type LogSegment } from './logs.ts';
import type {
  ConfigMap,
  Container,
  Deployment,
  Hpa,
  KObject,
  NodeObject,
  Pod,
  ReplicaSet,
  Secret,
  Service,
} from './objects.ts';
import { applyPatch, PATCH_TYPES, PatchError, type PatchType } from './patch.ts';
import { authorize, parseRbac, type RbacPolicy, type RequestAttributes } from './rbac.ts';
import { matchLabelsToString, matches, parseSelector, SelectorError } from './selector.ts';
import { Store, type Resource } from './store.ts';

interface TypeInfo {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
  /** Verbs per subresource ('' = the resource itself). */
  verbs: Record<string, string[]>;
  store?: Resource;
}

const TYPES: TypeInfo[] = [
  {
    group: '',
    version: 'v1',
    resource: 'pods',
    kind: 'Pod',
    namespaced: true,
    store: 'pods',
    verbs: { '': ['get', 'list', 'delete'], log: ['get'] },
  },
  {
    group: '',
    version: 'v1',
    resource: 'configmaps',
    kind: 'ConfigMap',
    namespaced: true,
    store: 'configmaps',
    verbs: { '': ['get', 'list', 'create', 'patch', 'update', 'delete'] },
  },
  {
    group: '',
    version: 'v1',
    resource: 'secrets',
    kind: 'Secret',
    namespaced: true,
    store: 'secrets',
    verbs: { '': ['get', 'list', 'create', 'patch', 'update', 'delete'] },
  },
  {
    group: '',
    version: 'v1',
    resource: 'services',
    kind: 'Service',
    namespaced: true,
    store: 'services',
    verbs: { '': ['get', 'list', 'patch'] },
  },
  {
    group: '',
    version: 'v1',
    resource: 'nodes',
    kind: 'Node',
    namespaced: false,
    store: 'nodes',
    verbs: { '': ['get', 'list'] },
  },
  {
    group: 'apps',
    version: 'v1',
    resource: 'deployments',
    kind: 'Deployment',
    namespaced: true,
    store: 'deployments',
    verbs: { '': ['get', 'list', 'patch', 'update'], scale: ['get', 'update', 'patch'] },
  },
  {
    group: 'apps',
    version: 'v1',
    resource: 'replicasets',
    kind: 'ReplicaSet',
    namespaced: true,
    store: 'replicasets',
    verbs: { '': ['get', 'list'] },
  },
  {
    group: 'autoscaling',
    version: 'v2',
    resource: 'horizontalpodautoscalers',
    kind: 'HorizontalPodAutoscaler',
    namespaced: true,
    store: 'horizontalpodautoscalers',
    verbs: { '': ['get', 'list'] },
  },
  {
    group: 'metrics.k8s.io',
    version: 'v1beta1',
    resource: 'pods',
    kind: 'PodMetrics',
    namespaced: true,
    verbs: { '': ['get', 'list'] },
  },
  {
    group: 'metrics.k8s.io',
    version: 'v1beta1',
    resource: 'nodes',
    kind: 'NodeMetrics',
    namespaced: false,
    verbs: { '': ['get', 'list'] },
  },
];

export interface RecordedRequest extends RequestAttributes {
  method: string;
  path: string;
  code: number;
}

export type FaultAction =
  'hang' | 'drop' | 'error500' | { delayMs: number } | { status: number; reason: string; message: string };

export interface Fault {
  /** `deployments`, `deployments/scale`, `pods/log`, … (metrics: `metrics.k8s.io/pods`); any when absent. */
  resource?: string;
  verb?: string;
  name?: string;
  action: FaultAction;
  /** How many requests it hits; forever when absent. */
  times?: number;
}

export interface LogCut {
  pod: string;
  /** Bytes of log body sent before the connection is dropped. */
  afterBytes: number;
  times?: number;
}

export interface StandInOptions {
  /** Namespace of the seeded objects. @default 'game' */
  namespace?: string;
  /** Nodes in the cluster. @default 3 */
  nodes?: number;
  controller?: Partial<ControllerOptions>;
  /** RBAC manifests (YAML text, e.g. deploy/rbac.yaml), enforced for the service-account token. */
  rbac?: string;
  /** The identity behind `token`. @default system:serviceaccount:<namespace>:gameops */
  user?: string;
  /** Size of the pieces a log is streamed in. @default 16 KiB */
  logChunkBytes?: number;
}

export interface DeploymentSeed {
  name: string;
  replicas: number;
  image: string;
  namespace?: string;
  /** Pod labels (= selector). @default { app: name } */
  labels?: Record<string, string>;
  /** Container name of the game server. @default 'game' */
  container?: string;
  /** More containers in the pod (sidecars). */
  sidecars?: Container[];
  /** Init containers, run in order before the containers (`broken` in a tag: Init:CrashLoopBackOff). */
  initContainers?: Container[];
  maxSurge?: number | string;
  maxUnavailable?: number | string;
  strategy?: 'RollingUpdate' | 'Recreate';
  progressDeadlineSeconds?: number;
  /** Named container ports of the game container. @default [{ name: 'ops', containerPort: 7001 }] */
  ports?: Container['ports'];
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const MAX_BODY = 3 * 1024 * 1024;

class HttpStatus extends Error {
  readonly body: JsonObject;
  readonly code: number;
  constructor(code: number, reason: string, message: string, details?: JsonObject) {
    super(message);
    this.code = code;
    this.body = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      // StatusReasonUnknown is "" and omitted, as for any error the API server has no reason for.
      ...(reason !== '' ? { reason } : {}),
      ...(details ? { details } : {}),
      code,
    };
  }
}

function qualified(t: TypeInfo): string {
  return t.group === '' ? t.resource : `${t.resource}.${t.group}`;
}

const notFound = (t: TypeInfo, name: string): HttpStatus =>
  new HttpStatus(404, 'NotFound', `${qualified(t)} "${name}" not found`, {
    name,
    ...(t.group ? { group: t.group } : {}),
    kind: t.resource,
  });

const conflict = (t: TypeInfo, name: string): HttpStatus =>
  new HttpStatus(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualified(t)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, ...(t.group ? { group: t.group } : {}), kind: t.resource },
  );

function invalid(
  kind: string,
  group: string,
  name: string,
  field: string,
  value: unknown,
  detail: string,
): HttpStatus {
  const message = `${field}: Invalid value: ${JSON.stringify(value) ?? 'null'}: ${detail}`;
  return new HttpStatus(
    422,
    'Invalid',
    `${kind}${group ? `.${group}` : ''} "${name}" is invalid: ${message}`,
    {
      name,
      ...(group ? { group } : {}),
      kind,
      causes: [
        {
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${JSON.stringify(value) ?? 'null'}: ${detail}`,
          field,
        },
      ],
    },
  );
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** A JSON value as text for a message. */
function text(value: Json | undefined): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? 'undefined');
}

function nameOf(obj: JsonObject): string {
  const meta = obj['metadata'];
  return isObject(meta) ? text(meta['name'] ?? '') : '';
}

function isStringMap(v: unknown): v is Record<string, string> {
  return isObject(v) && Object.values(v).every((x) => typeof x === 'string');
}

function intOrPercent(v: unknown): boolean {
  return (
    (typeof v === 'number' && Number.isInteger(v) && v >= 0) || (typeof v === 'string' && /^\d+%$/.test(v))
  );
}

/** Validates and defaults a Deployment as the API server's validation would (the parts that matter here). */
function validateDeployment(obj: JsonObject, old: Deployment | undefined): Deployment {
  const name = nameOf(obj);
  const bad = (field: string, value: unknown, detail: string): HttpStatus =>
    invalid('Deployment', 'apps', name, field, value, detail);
  const spec = obj['spec'];
  if (!isObject(spec)) throw bad('spec', spec, 'must be an object');
  const replicas = spec['replicas'] ?? 1;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
    throw bad('spec.replicas', replicas, 'must be greater than or equal to 0');
  }
  spec['replicas'] = replicas;
  const selector = spec['selector'];
  if (
    !isObject(selector) ||
    !isStringMap(selector['matchLabels']) ||
    Object.keys(selector['matchLabels']).length === 0
  ) {
    throw bad('spec.selector', selector ?? null, 'empty selector is invalid for deployment');
  }
  if (old && !deepEqual(selector, old.spec.selector))
    throw bad('spec.selector', selector, 'field is immutable');
  const template = spec['template'];
  if (!isObject(template) || !isObject(template['spec']))
    throw bad('spec.template', template ?? null, 'must be a pod template');
  const labels = isObject(template['metadata']) ? template['metadata']['labels'] : undefined;
  const matchLabels = selector['matchLabels'];
  if (!isStringMap(labels) || !Object.entries(matchLabels).every(([k, v]) => labels[k] === v)) {
    throw bad('spec.template.metadata.labels', labels ?? null, '`selector` does not match template `labels`');
  }
  const containers = template['spec']['containers'];
  if (!Array.isArray(containers) || containers.length === 0)
    throw bad('spec.template.spec.containers', containers ?? null, 'Required value');
  const names = new Set<string>();
  containers.forEach((c, i) => {
    if (!isObject(c) || typeof c['name'] !== 'string' || !DNS_LABEL.test(c['name'])) {
      throw bad(
        `spec.template.spec.containers[${i}].name`,
        isObject(c) ? c['name'] : c,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
      );
    }
    if (names.has(c['name']))
      throw bad(`spec.template.spec.containers[${i}].name`, c['name'], 'Duplicate value');
    names.add(c['name']);
    if (typeof c['image'] !== 'string' || c['image'].trim() === '' || /\s/.test(c['image'])) {
      throw bad(`spec.template.spec.containers[${i}].image`, c['image'] ?? null, 'Required value');
    }
  });
  const strategy = isObject(spec['strategy']) ? spec['strategy'] : {};
  const type = strategy['type'] ?? 'RollingUpdate';
  if (type !== 'RollingUpdate' && type !== 'Recreate')
    throw bad('spec.strategy.type', type, 'supported values: "Recreate", "RollingUpdate"');
  if (type === 'RollingUpdate') {
    const ru = isObject(strategy['rollingUpdate']) ? strategy['rollingUpdate'] : {};
    const surge = ru['maxSurge'] ?? '25%';
    const unavailable = ru['maxUnavailable'] ?? '25%';
    if (!intOrPercent(surge))
      throw bad('spec.strategy.rollingUpdate.maxSurge', surge, 'must be an integer or percentage');
    if (!intOrPercent(unavailable))
      throw bad(
        'spec.strategy.rollingUpdate.maxUnavailable',
        unavailable,
        'must be an integer or percentage',
      );
    if ((surge === 0 || surge === '0%') && (unavailable === 0 || unavailable === '0%')) {
      throw bad(
        'spec.strategy.rollingUpdate.maxUnavailable',
        unavailable,
        'may not be 0 when `maxSurge` is 0',
      );
    }
    spec['strategy'] = { type, rollingUpdate: { maxSurge: surge, maxUnavailable: unavailable } };
  } else {
    spec['strategy'] = { type };
  }
  const deadline = spec['progressDeadlineSeconds'] ?? 600;
  if (typeof deadline !== 'number' || !Number.isInteger(deadline) || deadline <= 0) {
    throw bad('spec.progressDeadlineSeconds', deadline, 'must be greater than minReadySeconds');
  }
  spec['progressDeadlineSeconds'] = deadline;
  spec['revisionHistoryLimit'] =
    typeof spec['revisionHistoryLimit'] === 'number' ? spec['revisionHistoryLimit'] : 10;
  spec['minReadySeconds'] = typeof spec['minReadySeconds'] === 'number' ? spec['minReadySeconds'] : 0;
  if (spec['paused'] !== undefined && typeof spec['paused'] !== 'boolean')
    throw bad('spec.paused', spec['paused'], 'must be a boolean');
  return obj as unknown as Deployment;
}

function validateConfigMap(obj: JsonObject, old: ConfigMap | undefined): ConfigMap {
  const name = nameOf(obj);
  const data = obj['data'];
  if (data !== undefined && data !== null) {
    if (!isObject(data)) throw invalid('ConfigMap', '', name, 'data', data, 'must be a map of strings');
    for (const [k, v] of Object.entries(data)) {
      if (!CONFIG_KEY.test(k) || k.length > 253) {
        throw invalid(
          'ConfigMap',
          '',
          name,
          `data[${k}]`,
          k,
          "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        );
      }
      if (typeof v !== 'string') throw invalid('ConfigMap', '', name, `data[${k}]`, v, 'must be a string');
    }
  }
  checkBinaryMap('ConfigMap', name, 'binaryData', obj['binaryData']);
  const binary = obj['binaryData'];
  if (isObject(data) && isObject(binary)) {
    const both = Object.keys(data).find((k) => k in binary);
    if (both !== undefined)
      throw invalid('ConfigMap', '', name, `data[${both}]`, both, 'duplicate of key present in binaryData');
  }
  if (
    old?.immutable === true &&
    (!deepEqual(obj['data'] ?? null, old.data ?? null) ||
      !deepEqual(obj['binaryData'] ?? null, old.binaryData ?? null))
  ) {
    throw invalid('ConfigMap', '', name, 'data', null, 'field is immutable when `immutable` is set');
  }
  return obj as unknown as ConfigMap;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A map of config keys to base64 values (a Secret's data, a ConfigMap's binaryData). */
function checkBinaryMap(kind: string, name: string, field: string, value: Json | undefined): void {
  if (value === undefined || value === null) return;
  if (!isObject(value)) throw invalid(kind, '', name, field, value, 'must be a map of base64 strings');
  for (const [k, v] of Object.entries(value)) {
    if (!CONFIG_KEY.test(k) || k.length > 253) {
      throw invalid(
        kind,
        '',
        name,
        `${field}[${k}]`,
        k,
        "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
      );
    }
    // The real API server answers a JSON decoding error (400) for a value that is not base64.
    if (typeof v !== 'string' || !BASE64.test(v))
      throw new HttpStatus(
        400,
        'BadRequest',
        `${kind} in version "v1" cannot be handled as a ${kind}: illegal base64 data at ${field}[${k}]`,
      );
  }
}

/** Validates and defaults a Secret as the API server would (type immutable, data base64). */
function validateSecret(obj: JsonObject, old: Secret | undefined): Secret {
  const name = nameOf(obj);
  // stringData is write-only: merged into data, as the API server does.
  const stringData = obj['stringData'];
  if (stringData !== undefined && stringData !== null) {
    if (!isStringMap(stringData))
      throw invalid('Secret', '', name, 'stringData', stringData, 'must be a map of strings');
    const data = isObject(obj['data']) ? { ...obj['data'] } : {};
    for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(v, 'utf8').toString('base64');
    obj['data'] = data;
    delete obj['stringData'];
  }
  checkBinaryMap('Secret', name, 'data', obj['data']);
  const type = obj['type'] ?? 'Opaque';
  if (typeof type !== 'string' || type === '')
    throw invalid('Secret', '', name, 'type', type, 'must be a non-empty string');
  obj['type'] = type;
  if (old && old.type !== type) throw invalid('Secret', '', name, 'type', type, 'field is immutable');
  if (old?.immutable === true && !deepEqual(obj['data'] ?? null, old.data ?? null))
    throw invalid('Secret', '', name, 'data', null, 'field is immutable when `immutable` is set');
  return obj as unknown as Secret;
}

/** Kubernetes quantity → number, for the stand-in's own metrics arithmetic. */
function quantity(q: string): number {
  const m = /^([0-9.]+)(n|u|m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q);
  if (!m) return 0;
  const mult: Record<string, number> = {
    n: 1e-9,
    u: 1e-6,
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
    Ti: 1024 ** 4,
  };
  return Number(m[1]) * (m[2] ? mult[m[2]]! : 1);
}

export class StandIn {
  readonly store = new Store();
  readonly logs = new LogStore();
  readonly controller: Controller;
  readonly namespace: string;
  /** The bearer token the kubeconfig carries; requests without it get 401. */
  readonly token = randomBytes(24).toString('base64url');
  readonly user: string;
  /** Every authenticated resource request, in order. */
  readonly requests: RecordedRequest[] = [];
  readonly #faults: Fault[] = [];
  readonly #cuts: LogCut[] = [];
  readonly #stalls: LogCut[] = [];
  readonly #interference = new Map<string, number>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #policy: RbacPolicy | undefined;
  readonly #chunkBytes: number;
  #url = '';

  constructor(options: StandInOptions = {}) {
    this.namespace = options.namespace ?? 'game';
    this.user = options.user ?? `system:serviceaccount:${this.namespace}:gameops`;
    this.#policy = options.rbac === undefined ? undefined : parseRbac(options.rbac);
    this.#chunkBytes = options.logChunkBytes ?? 16 * 1024;
    this.controller = new Controller(this.store, this.logs, {
      startDelayMs: 10,
      readyDelayMs: 20,
      terminationDelayMs: 10,
      crashIntervalMs: 25,
      progressDeadlineMs: undefined,
      tickMs: 5,
      ...options.controller,
    });
    for (let i = 1; i <= (options.nodes ?? 3); i++) this.#createNode(`standin-node-${i}`, i);
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent)
          this.#send(
            res,
            500,
            new HttpStatus(500, 'InternalError', `Internal error occurred: ${String(err)}`).body,
          );
        else res.destroy();
      });
    });
    this.#server.keepAliveTimeout = 5000;
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  get url(): string {
    return this.#url;
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('stand-in: no TCP address');
    this.#url = `http://127.0.0.1:${address.port}`;
    this.controller.start();
    return this;
  }

  async close(): Promise<void> {
    this.controller.stop();
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- seeding

  #createNode(name: string, i: number): void {
    this.store.create<NodeObject>('nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        uid: '',
        resourceVersion: '',
        creationTimestamp: '',
        labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' },
      },
      spec: { podCIDR: `10.244.${i}.0/24` },
      status: {
        capacity: { cpu: '4', memory: '16393868Ki', pods: '110', 'ephemeral-storage': '101430960Ki' },
        allocatable: { cpu: '3920m', memory: '15242892Ki', pods: '110', 'ephemeral-storage': '93478772582' },
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'KubeletReady',
            message: 'kubelet is posting ready status',
          },
        ],
        addresses: [
          { type: 'InternalIP', address: `192.168.0.${10 + i}` },
          { type: 'Hostname', address: name },
        ],
        nodeInfo: {
          kubeletVersion: 'v1.31.0-standin',
          osImage: 'stand-in',
          containerRuntimeVersion: 'containerd://standin',
        },
      },
    });
  }

  /** Creates a Deployment through the same validation and defaulting as an API write. */
  createDeployment(seed: DeploymentSeed): Deployment {
    const labels = seed.labels ?? { app: seed.name };
    const container = {
      name: seed.container ?? 'game',
      image: seed.image,
      ports: seed.ports ?? [
        { name: 'game', containerPort: 7000, protocol: 'TCP' },
        { name: 'ops', containerPort: 7001, protocol: 'TCP' },
      ],
    };
    const obj: JsonObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: seed.name, namespace: seed.namespace ?? this.namespace, annotations: {} },
      spec: {
        replicas: seed.replicas,
        selector: { matchLabels: labels },
        template: {
          metadata: { creationTimestamp: null, labels },
          spec: {
            containers: [container, ...(seed.sidecars ?? [])] as unknown as Json[],
            ...(seed.initContainers ? { initContainers: seed.initContainers as unknown as Json[] } : {}),
            terminationGracePeriodSeconds: 30,
          },
        },
        strategy:
          seed.strategy === 'Recreate'
            ? { type: 'Recreate' }
            : {
                type: 'RollingUpdate',
                rollingUpdate: {
                  maxSurge: seed.maxSurge ?? '25%',
                  maxUnavailable: seed.maxUnavailable ?? '25%',
                },
              },
        ...(seed.progressDeadlineSeconds !== undefined
          ? { progressDeadlineSeconds: seed.progressDeadlineSeconds }
          : {}),
      },
      status: {},
    };
    const d = validateDeployment(obj, undefined);
    return this.store.create('deployments', d);
  }

  createConfigMap(name: string, data: Record<string, string>, namespace = this.namespace): ConfigMap {
    return this.store.create<ConfigMap>('configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace, uid: '', resourceVersion: '', creationTimestamp: '' },
      data: { ...data },
    });
  }

  /** Seeds a Secret; `data` values are plain text (stored base64, as the API does). */
  createSecret(
    name: string,
    data: Record<string, string>,
    options: { type?: string; labels?: Record<string, string>; namespace?: string } = {},
  ): Secret {
    const encoded = Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]),
    );
    return this.store.create<Secret>('secrets', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name,
        namespace: options.namespace ?? this.namespace,
        uid: '',
        resourceVersion: '',
        creationTimestamp: '',
        ...(options.labels ? { labels: { ...options.labels } } : {}),
      },
      type: options.type ?? 'Opaque',
      data: encoded,
    });
  }

  createService(name: string, selector: Record<string, string>, namespace = this.namespace): Service {
    return this.store.create<Service>('services', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace, uid: '', resourceVersion: '', creationTimestamp: '' },
      spec: {
        selector,
        ports: [{ name: 'game', port: 7000, targetPort: 'game' }],
        type: 'ClusterIP',
        clusterIP: '10.96.0.42',
      },
      status: { loadBalancer: {} },
    });
  }

  /** An autoscaling/v2 HPA with the status a metrics-driven HPA would report. */
  createHpa(
    name: string,
    target: string,
    options: {
      min?: number;
      max: number;
      cpuTarget?: number;
      cpuCurrent?: number;
      scalingLimited?: boolean;
      namespace?: string;
    },
  ): Hpa {
    const now = Date.now();
    return this.store.create<Hpa>('horizontalpodautoscalers', {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: {
        name,
        namespace: options.namespace ?? this.namespace,
        uid: '',
        resourceVersion: '',
        creationTimestamp: '',
      },
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: target },
        ...(options.min !== undefined ? { minReplicas: options.min } : {}),
        maxReplicas: options.max,
        metrics: [
          {
            type: 'Resource',
            resource: {
              name: 'cpu',
              target: { type: 'Utilization', averageUtilization: options.cpuTarget ?? 70 },
            },
          },
        ],
      },
      status: {
        currentMetrics:
          options.cpuCurrent === undefined
            ? []
            : [
                {
                  type: 'Resource',
                  resource: {
                    name: 'cpu',
                    current: {
                      averageUtilization: options.cpuCurrent,
                      averageValue: `${options.cpuCurrent * 5}m`,
                    },
                  },
                },
              ],
        conditions: [
          {
            type: 'AbleToScale',
            status: 'True',
            reason: 'ReadyForNewScale',
            message: 'recommended size matches current size',
            lastTransitionTime: iso(now),
          },
          {
            type: 'ScalingActive',
            status: 'True',
            reason: 'ValidMetricFound',
            message:
              'the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)',
            lastTransitionTime: iso(now),
          },
          options.scalingLimited
            ? {
                type: 'ScalingLimited',
                status: 'True',
                reason: 'TooManyReplicas',
                message: 'the desired replica count is more than the maximum replica count',
                lastTransitionTime: iso(now),
              }
            : {
                type: 'ScalingLimited',
                status: 'False',
                reason: 'DesiredWithinRange',
                message: 'the desired count is within the acceptable range',
                lastTransitionTime: iso(now),
              },
        ],
      },
    });
  }

  // ---------------------------------------------------------------- test hooks

  deployment(name: string, namespace = this.namespace): Deployment {
    const d = this.store.get<Deployment>('deployments', namespace, name);
    if (!d) throw new Error(`stand-in: no deployment ${namespace}/${name}`);
    return d;
  }

  replicaSets(deployment: string, namespace = this.namespace): ReplicaSet[] {
    const d = this.deployment(deployment, namespace);
    return this.store
      .list<ReplicaSet>('replicasets', namespace)
      .filter((rs) => rs.metadata.ownerReferences?.some((o) => o.uid === d.metadata.uid));
  }

  /** Pods in the namespace, optionally by label selector text; sorted by name. */
  pods(selector?: string, namespace = this.namespace): Pod[] {
    const req = parseSelector(selector);
    return this.store
      .list<Pod>('pods', namespace)
      .filter((p) => matches(req, p.metadata.labels))
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  pod(name: string, namespace = this.namespace): Pod {
    const p = this.store.get<Pod>('pods', namespace, name);
    if (!p) throw new Error(`stand-in: no pod ${namespace}/${name}`);
    return p;
  }

  /** Resolves once `predicate` holds (checked every 5 ms), or rejects after `timeoutMs`. */
  async waitFor(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > until) throw new Error(`stand-in: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Waits until the Deployment's rollout is complete (what `kubectl rollout status` waits for) and, unless
   * `terminating: 'ignore'`, until no pod of it is terminating any more (stricter than kubectl).
   */
  async waitForRollout(
    name: string,
    timeoutMs = 5000,
    options: { terminating?: 'wait' | 'ignore' } = {},
  ): Promise<void> {
    await this.waitFor(
      `rollout of ${name}`,
      () => {
        const d = this.deployment(name);
        const s = d.status;
        const pods = this.pods(matchLabelsToString(d.spec.selector.matchLabels)).filter(
          (p) => options.terminating !== 'ignore' || p.metadata.deletionTimestamp === undefined,
        );
        return (
          (s.observedGeneration ?? 0) >= (d.metadata.generation ?? 1) &&
          (s.updatedReplicas ?? 0) === d.spec.replicas &&
          (s.replicas ?? 0) === d.spec.replicas &&
          (s.availableReplicas ?? 0) === d.spec.replicas &&
          pods.filter((p) => p.status.phase !== 'Failed' && p.status.phase !== 'Succeeded').length ===
            d.spec.replicas &&
          pods.every((p) => p.metadata.deletionTimestamp === undefined)
        );
      },
      timeoutMs,
    );
  }

  #containerOf(pod: Pod, container?: string): string {
    return container ?? pod.spec.containers[0]!.name;
  }

  /** Appends lines to a container's log (written now, or at `at` for since-window tests). */
  appendLogs(podName: string, lines: string[], options: { container?: string; at?: Date } = {}): void {
    const pod = this.pod(podName);
    this.logs.appendLines(
      logKey(pod.metadata.uid, this.#containerOf(pod, options.container)),
      lines,
      options.at?.getTime() ?? Date.now(),
    );
  }

  /** Appends `count` JSON lines with level ERROR. */
  appendErrorLines(
    podName: string,
    count: number,
    options: { container?: string; at?: Date; message?: string } = {},
  ): void {
    const pod = this.pod(podName);
    const at = options.at?.getTime() ?? Date.now();
    const msg = options.message ?? 'simulated failure';
    this.logs.append(logKey(pod.metadata.uid, this.#containerOf(pod, options.container)), {
      at,
      count,
      line: (i) => jsonLine(at, 'ERROR', `${msg} ${i + 1}/${count}`, { pod: podName }),
    });
  }

  /** Appends `count` lines made on demand by `make(i)`: a large log that the stand-in never holds. */
  appendGeneratedLines(
    podName: string,
    count: number,
    make: (i: number) => string,
    options: { container?: string; at?: Date } = {},
  ): void {
    const pod = this.pod(podName);
    const segment: LogSegment = { at: options.at?.getTime() ?? Date.now(), count, line: make };
    this.logs.append(logKey(pod.metadata.uid, this.#containerOf(pod, options.container)), segment);
  }

  /** The next log stream(s) of `pod` are cut (connection dropped) after `afterBytes` bytes of body. */
  cutLogStream(cut: LogCut): void {
    this.#cuts.push({ ...cut });
  }

  /**
   * The next log stream(s) of `pod` stall after `afterBytes` bytes of body: nothing more is sent and the
   * connection stays open (a hung kubelet, a half-dead connection), until the client gives up.
   */
  stallLogStream(stall: LogCut): void {
    this.#stalls.push({ ...stall });
  }

  /** Makes matching requests hang, drop the connection, fail with 500, wait, or answer a given Status. */
  injectFault(fault: Fault): () => void {
    const f = { ...fault };
    this.#faults.push(f);
    return () => {
      const i = this.#faults.indexOf(f);
      if (i >= 0) this.#faults.splice(i, 1);
    };
  }

  clearFaults(): void {
    this.#faults.length = 0;
    this.#cuts.length = 0;
    this.#stalls.length = 0;
    this.#interference.clear();
  }

  /**
   * Another writer changes `resource/name` just before each of the next `times` writes to it: a client
   * that sent the resourceVersion it read gets a real 409 Conflict.
   */
  interfere(resource: 'configmaps' | 'deployments', name: string, times: number): void {
    this.#interference.set(`${resource}/${name}`, times);
  }

  /** The game container of `podName` exits and restarts (restartCount + 1). */
  crashContainer(podName: string, container?: string): void {
    const pod = this.pod(podName);
    this.controller.crash(pod, this.#containerOf(pod, container), Date.now());
  }

  /** The kubelet evicts the pod: phase Failed, reason Evicted, kept in the list; a replacement starts. */
  evictPod(podName: string): void {
    this.controller.evict(this.pod(podName), Date.now());
  }

  /**
   * Makes the pod stay Terminating once deleted, until {@link releasePod}:
   * - `finalizer` (default): a finalizer (as a storage or service-mesh controller adds); after the grace
   *   period its containers are stopped and its phase is terminal, but the object stays listed;
   * - `grace`: a one-hour terminationGracePeriodSeconds (a game server finishing its matches); its
   *   containers keep running, phase Running, for the whole grace period.
   */
  holdPod(podName: string, how: 'finalizer' | 'grace' = 'finalizer'): void {
    const pod = this.pod(podName);
    if (how === 'finalizer') {
      pod.metadata.finalizers = [...new Set([...(pod.metadata.finalizers ?? []), 'standin.example/hold'])];
    } else {
      pod.spec.terminationGracePeriodSeconds = 3600;
    }
    this.store.update('pods', pod);
  }

  /** Removes the pod's finalizers and ends its grace period: a deleted pod is gone at the kubelet's next look. */
  releasePod(podName: string): void {
    const pod = this.pod(podName);
    delete pod.metadata.finalizers;
    this.controller.endGrace(pod);
    this.store.update('pods', pod);
  }

  /**
   * The kubelet of `nodeName` becomes unreachable (a lost node): its pods turn not ready and never
   * change again (a deleted one stays Terminating), no pod is scheduled there, and their logs cannot be
   * read (500, as the API server's dial to the kubelet fails).
   */
  loseNode(nodeName: string): void {
    this.controller.loseNode(nodeName, Date.now());
  }

  setPodUsage(podName: string, usage: PodMetricsSample): void {
    this.controller.usage.set(podName, usage);
  }

  /** Recorded requests of the adapter's identity, as `verb group/resource` keys. */
  usedPermissions(): Set<string> {
    return new Set(
      this.requests
        .filter((r) => r.user === this.user)
        .map(
          (r) =>
            `${r.verb} ${r.apiGroup === '' ? 'core' : r.apiGroup}/${r.subresource ? `${r.resource}/${r.subresource}` : r.resource}`,
        ),
    );
  }

  // ---------------------------------------------------------------- HTTP

  #send(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'audit-id': randomBytes(8).toString('hex'),
    });
    res.end(text);
  }

  async #readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY)
        throw new HttpStatus(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  async #jsonBody(req: IncomingMessage): Promise<Json> {
    const body = await this.#readBody(req);
    try {
      return JSON.parse(body.toString('utf8')) as Json;
    } catch (err) {
      throw new HttpStatus(
        400,
        'BadRequest',
        `the body of the request could not be decoded: ${(err as Error).message}`,
      );
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://standin');
    const method = req.method ?? 'GET';
    const auth = req.headers.authorization;
    if (auth !== `Bearer ${this.token}`) {
      await this.#readBody(req).catch(() => Buffer.alloc(0));
      this.#send(res, 401, new HttpStatus(401, 'Unauthorized', 'Unauthorized').body);
      return;
    }
    const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (url.pathname === '/version') {
      this.#send(res, 200, {
        major: '1',
        minor: '31',
        gitVersion: 'v1.31.0-standin',
        platform: 'linux/amd64',
      });
      return;
    }
    let group: string;
    let version: string;
    let rest: string[];
    if (segments[0] === 'api' && segments[1] === 'v1') {
      group = '';
      version = 'v1';
      rest = segments.slice(2);
    } else if (segments[0] === 'apis' && segments.length >= 3) {
      group = segments[1]!;
      version = segments[2]!;
      rest = segments.slice(3);
    } else {
      this.#send(
        res,
        404,
        new HttpStatus(404, 'NotFound', 'the server could not find the requested resource').body,
      );
      return;
    }
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [resource = '', name, subresource, ...extra] = rest;
    const verb =
      method === 'GET'
        ? name === undefined
          ? url.searchParams.get('watch') === 'true'
            ? 'watch'
            : 'list'
          : 'get'
        : method === 'PUT'
          ? 'update'
          : method === 'PATCH'
            ? 'patch'
            : method === 'POST'
              ? 'create'
              : method === 'DELETE'
                ? name === undefined
                  ? 'deletecollection'
                  : 'delete'
                : method.toLowerCase();
    const attrs: RequestAttributes = {
      user: this.user,
      verb,
      apiGroup: group,
      resource,
      ...(subresource !== undefined ? { subresource } : {}),
      ...(namespace !== undefined ? { namespace } : {}),
      ...(name !== undefined ? { name } : {}),
    };
    const record: RecordedRequest = { ...attrs, method, path: url.pathname, code: 0 };
    this.requests.push(record);
    res.on('finish', () => (record.code = res.statusCode));
    res.on('close', () => (record.code ||= res.statusCode));

    const faultKey = `${group === '' || group === 'apps' || group === 'autoscaling' ? '' : `${group}/`}${resource}${subresource ? `/${subresource}` : ''}`;
    const fault = this.#faults.find(
      (f) =>
        (f.resource === undefined || f.resource === faultKey) &&
        (f.verb === undefined || f.verb === verb) &&
        (f.name === undefined || f.name === name),
    );
    if (fault) {
      if (fault.times !== undefined && --fault.times <= 0)
        this.#faults.splice(this.#faults.indexOf(fault), 1);
      const action = fault.action;
      if (action === 'hang') return; // accepted, never answered; close() destroys the socket
      if (action === 'drop') {
        req.socket.destroy();
        return;
      }
      if (action === 'error500') {
        this.#send(
          res,
          500,
          new HttpStatus(500, 'InternalError', 'Internal error occurred: stand-in fault injected').body,
        );
        return;
      }
      if ('delayMs' in action) await new Promise((r) => setTimeout(r, action.delayMs));
      else {
        this.#send(res, action.status, new HttpStatus(action.status, action.reason, action.message).body);
        return;
      }
    }

    if (this.#policy && !authorize(this.#policy, attrs)) {
      const what = subresource ? `${resource}/${subresource}` : resource;
      const scope = namespace === undefined ? 'at the cluster scope' : `in the namespace "${namespace}"`;
      const subject = name === undefined ? what : `${what} "${name}"`;
      this.#send(
        res,
        403,
        new HttpStatus(
          403,
          'Forbidden',
          `${subject}${group ? '' : ''} is forbidden: User "${this.user}" cannot ${verb} resource "${what}" in API group "${group}" ${scope}`,
          {
            ...(name !== undefined ? { name } : {}),
            ...(group ? { group } : {}),
            kind: resource,
          },
        ).body,
      );
      return;
    }

    const type = TYPES.find((t) => t.group === group && t.version === version && t.resource === resource);
    if (
      !type ||
      extra.length > 0 ||
      (type.namespaced && namespace === undefined && name !== undefined) ||
      (!type.namespaced && namespace !== undefined)
    ) {
      this.#send(
        res,
        404,
        new HttpStatus(404, 'NotFound', 'the server could not find the requested resource').body,
      );
      return;
    }
    const allowed = type.verbs[subresource ?? ''];
    if (!allowed) {
      this.#send(
        res,
        404,
        new HttpStatus(404, 'NotFound', 'the server could not find the requested resource').body,
      );
      return;
    }
    if (!allowed.includes(verb)) {
      this.#send(
        res,
        405,
        new HttpStatus(
          405,
          'MethodNotAllowed',
          `the server does not allow this method on the requested resource`,
        ).body,
      );
      return;
    }
    try {
      await this.#route(req, res, url, type, verb, namespace, name, subresource);
    } catch (err) {
      if (err instanceof HttpStatus) this.#send(res, err.code, err.body);
      else if (err instanceof SelectorError)
        this.#send(res, 400, new HttpStatus(400, 'BadRequest', err.message).body);
      else if (err instanceof PatchError) {
        const reason =
          err.status === 415 ? 'UnsupportedMediaType' : err.status === 422 ? 'Invalid' : 'BadRequest';
        this.#send(res, err.status, new HttpStatus(err.status, reason, err.message).body);
      } else throw err;
    }
  }

  async #route(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    type: TypeInfo,
    verb: string,
    namespace: string | undefined,
    name: string | undefined,
    subresource: string | undefined,
  ): Promise<void> {
    if (type.group === 'metrics.k8s.io') {
      this.#metrics(res, url, type, namespace, name);
      return;
    }
    const resource = type.store!;
    if (verb === 'list') {
      const selector = parseSelector(url.searchParams.get('labelSelector'));
      const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
      const items = this.store
        .list(resource, namespace)
        .filter((o) => matches(selector, o.metadata.labels) && fields(o))
        .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
        .map((o) => {
          const item = clone(o) as unknown as JsonObject;
          delete item['apiVersion'];
          delete item['kind'];
          return item;
        });
      this.#send(res, 200, {
        apiVersion: type.group ? `${type.group}/${type.version}` : type.version,
        kind: `${type.kind}List`,
        metadata: { resourceVersion: this.store.resourceVersion },
        items,
      });
      return;
    }
    if (verb === 'create') {
      this.#send(res, 201, this.#create(type, namespace!, await this.#jsonBody(req)));
      return;
    }
    const current = this.store.get(resource, namespace, name!);
    if (!current) {
      await this.#readBody(req);
      throw notFound(type, name!);
    }
    if (subresource === 'log') return this.#log(req, res, url, current as Pod);
    if (subresource === 'scale') return this.#scale(req, res, verb, type, current as Deployment);
    if (verb === 'get') {
      this.#send(res, 200, current);
      return;
    }
    if (verb === 'delete' && resource !== 'pods') {
      await this.#readBody(req);
      this.store.delete(resource, namespace, current.metadata.name);
      this.#send(res, 200, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Success',
        details: { name: current.metadata.name, kind: type.resource, uid: current.metadata.uid },
      });
      return;
    }
    if (verb === 'delete') return this.#deletePod(req, res, type, current as Pod);
    // patch / update
    this.#interfereWith(resource, current);
    const body = await this.#jsonBody(req);
    let next: JsonObject;
    if (verb === 'patch') {
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (!(PATCH_TYPES as readonly string[]).includes(contentType)) {
        throw new PatchError(
          415,
          `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.join(', ')}, application/apply-patch+yaml`,
        );
      }
      next = applyPatch(clone(current) as unknown as JsonObject, body, contentType as PatchType);
    } else {
      if (!isObject(body))
        throw new HttpStatus(400, 'BadRequest', 'the body of the request must be an object');
      next = body;
      const meta = isObject(next['metadata']) ? next['metadata'] : {};
      if (meta['resourceVersion'] === undefined || meta['resourceVersion'] === '') {
        next['metadata'] = { ...meta, resourceVersion: current.metadata.resourceVersion };
      }
      if (next['kind'] !== undefined && next['kind'] !== type.kind) {
        throw new HttpStatus(
          400,
          'BadRequest',
          `${type.kind} in version "${type.version}" cannot be handled as a ${text(next['kind'])}`,
        );
      }
    }
    const written = this.#write(type, current, next);
    this.#send(res, 200, written);
  }

  /** POST to a collection (configmaps, secrets): a new object, or 409 AlreadyExists. */
  #create(type: TypeInfo, namespace: string, body: Json): KObject {
    const resource = type.store!;
    if (!isObject(body)) throw new HttpStatus(400, 'BadRequest', 'the body of the request must be an object');
    if (body['kind'] !== undefined && body['kind'] !== type.kind) {
      throw new HttpStatus(
        400,
        'BadRequest',
        `${type.kind} in version "${type.version}" cannot be handled as a ${text(body['kind'])}`,
      );
    }
    const meta = body['metadata'];
    if (!isObject(meta) || typeof meta['name'] !== 'string' || meta['name'] === '')
      throw invalid(type.kind, '', '', 'metadata.name', null, 'name or generateName is required');
    const name = meta['name'];
    if (name.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name))
      throw invalid(
        type.kind,
        '',
        name,
        'metadata.name',
        name,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
      );
    if (meta['namespace'] !== undefined && meta['namespace'] !== namespace) {
      throw new HttpStatus(
        400,
        'BadRequest',
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    }
    if (meta['resourceVersion'] !== undefined && meta['resourceVersion'] !== '')
      throw new HttpStatus(
        500,
        'InternalError',
        'resourceVersion should not be set on objects to be created',
      );
    if (this.store.get(resource, namespace, name)) {
      throw new HttpStatus(409, 'AlreadyExists', `${qualified(type)} "${name}" already exists`, {
        name,
        kind: type.resource,
      });
    }
    const next: JsonObject = {
      ...body,
      apiVersion: 'v1',
      kind: type.kind,
      metadata: {
        name,
        namespace,
        ...(isStringMap(meta['labels']) ? { labels: meta['labels'] } : {}),
        ...(isStringMap(meta['annotations']) ? { annotations: meta['annotations'] } : {}),
        uid: '',
        resourceVersion: '',
        creationTimestamp: '',
      },
    };
    let obj: KObject;
    if (resource === 'configmaps') obj = validateConfigMap(next, undefined);
    else if (resource === 'secrets') obj = validateSecret(next, undefined);
    else
      throw new HttpStatus(
        405,
        'MethodNotAllowed',
        'the server does not allow this method on the requested resource',
      );
    return this.store.create(resource, obj);
  }

  #interfereWith(resource: Resource, current: KObject): void {
    const key = `${resource}/${current.metadata.name}`;
    const left = this.#interference.get(key);
    if (left === undefined || left <= 0) return;
    this.#interference.set(key, left - 1);
    if (resource === 'configmaps') {
      const cm = current as ConfigMap;
      cm.data = { ...cm.data, 'concurrent-writer': String(left) };
    } else {
      current.metadata.annotations = {
        ...current.metadata.annotations,
        'standin/concurrent-writer': String(left),
      };
    }
    this.store.update(resource, current);
  }

  /** The common end of PATCH and PUT: identity, precondition, validation, server-owned fields. */
  #write(type: TypeInfo, current: KObject, next: JsonObject): KObject {
    const resource = type.store!;
    const meta = next['metadata'];
    if (!isObject(meta)) throw new HttpStatus(400, 'BadRequest', 'metadata is required');
    if (meta['name'] !== current.metadata.name) {
      throw new HttpStatus(
        400,
        'BadRequest',
        `the name of the object (${text(meta['name'])}) does not match the name on the URL (${current.metadata.name})`,
      );
    }
    if (meta['uid'] !== undefined && meta['uid'] !== current.metadata.uid) {
      throw new HttpStatus(
        409,
        'Conflict',
        `Precondition failed: UID in precondition: ${text(meta['uid'])}, UID in object meta: ${current.metadata.uid}`,
      );
    }
    if (meta['resourceVersion'] !== current.metadata.resourceVersion)
      throw conflict(type, current.metadata.name);
    // Server-owned metadata stays as it was.
    next['metadata'] = {
      ...meta,
      name: current.metadata.name,
      ...(current.metadata.namespace !== undefined ? { namespace: current.metadata.namespace } : {}),
      uid: current.metadata.uid,
      creationTimestamp: current.metadata.creationTimestamp,
      ...(current.metadata.generation !== undefined ? { generation: current.metadata.generation } : {}),
    };
    next['apiVersion'] = current.apiVersion;
    next['kind'] = current.kind;
    const previousSpec = clone((current as unknown as { spec?: unknown }).spec);
    let obj: KObject;
    if (resource === 'deployments') {
      obj = validateDeployment(next, current as Deployment);
      (obj as Deployment).status = (current as Deployment).status;
    } else if (resource === 'configmaps') {
      obj = validateConfigMap(next, current);
    } else if (resource === 'secrets') {
      obj = validateSecret(next, current);
    } else if (resource === 'services') {
      obj = next as unknown as Service;
      (obj as Service).status = (current as Service).status;
    } else {
      throw new HttpStatus(
        405,
        'MethodNotAllowed',
        'the server does not allow this method on the requested resource',
      );
    }
    return this.store.update(resource, obj, previousSpec);
  }

  #scaleOf(d: Deployment): JsonObject {
    return {
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: {
        name: d.metadata.name,
        namespace: d.metadata.namespace ?? '',
        uid: d.metadata.uid,
        resourceVersion: d.metadata.resourceVersion,
        creationTimestamp: d.metadata.creationTimestamp,
      },
      spec: { replicas: d.spec.replicas },
      status: {
        replicas: d.status.replicas ?? 0,
        selector: matchLabelsToString(d.spec.selector.matchLabels),
      },
    };
  }

  async #scale(
    req: IncomingMessage,
    res: ServerResponse,
    verb: string,
    type: TypeInfo,
    d: Deployment,
  ): Promise<void> {
    if (verb === 'get') {
      this.#send(res, 200, this.#scaleOf(d));
      return;
    }
    this.#interfereWith('deployments', d);
    const body = await this.#jsonBody(req);
    let scale: JsonObject;
    if (verb === 'patch') {
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (!(PATCH_TYPES as readonly string[]).includes(contentType)) {
        throw new PatchError(
          415,
          `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.join(', ')}`,
        );
      }
      scale = applyPatch(this.#scaleOf(d), body, contentType as PatchType);
    } else {
      if (!isObject(body)) throw new HttpStatus(400, 'BadRequest', 'the body of the request must be a Scale');
      scale = body;
    }
    const meta = isObject(scale['metadata']) ? scale['metadata'] : {};
    const rv = meta['resourceVersion'];
    if (rv !== undefined && rv !== '' && rv !== d.metadata.resourceVersion)
      throw conflict(type, d.metadata.name);
    const replicas = isObject(scale['spec']) ? scale['spec']['replicas'] : undefined;
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
      throw invalid(
        'Scale',
        'autoscaling',
        d.metadata.name,
        'spec.replicas',
        replicas ?? null,
        'must be greater than or equal to 0',
      );
    }
    if (replicas !== d.spec.replicas) {
      const previous = clone(d.spec);
      d.spec.replicas = replicas;
      this.store.update('deployments', d, previous);
    }
    this.#send(res, 200, this.#scaleOf(d));
  }

  async #deletePod(req: IncomingMessage, res: ServerResponse, type: TypeInfo, pod: Pod): Promise<void> {
    const body = await this.#readBody(req);
    let grace: number | undefined;
    if (body.length > 0) {
      let options: Json;
      try {
        options = JSON.parse(body.toString('utf8')) as Json;
      } catch {
        throw new HttpStatus(
          400,
          'BadRequest',
          'the body of the request could not be decoded as DeleteOptions',
        );
      }
      if (isObject(options)) {
        const pre = options['preconditions'];
        if (isObject(pre)) {
          if (pre['uid'] !== undefined && pre['uid'] !== pod.metadata.uid) {
            throw new HttpStatus(
              409,
              'Conflict',
              `Precondition failed: UID in precondition: ${text(pre['uid'])}, UID in object meta: ${pod.metadata.uid}`,
            );
          }
          if (pre['resourceVersion'] !== undefined && pre['resourceVersion'] !== pod.metadata.resourceVersion)
            throw conflict(type, pod.metadata.name);
        }
        if (typeof options['gracePeriodSeconds'] === 'number') grace = options['gracePeriodSeconds'];
      }
    }
    this.controller.deletePod(pod);
    if (grace === 0) {
      // Immediate: the kubelet's next tick removes it.
      const rt = this.controller.runtime(pod.metadata.uid);
      if (rt) rt.deleteAt = Date.now();
    }
    this.#send(res, 200, pod);
  }

  #metrics(
    res: ServerResponse,
    url: URL,
    type: TypeInfo,
    namespace: string | undefined,
    name: string | undefined,
  ): void {
    const now = Date.now();
    if (type.resource === 'pods') {
      const selector = parseSelector(url.searchParams.get('labelSelector'));
      const items = this.store
        .list<Pod>('pods', namespace)
        .filter(
          (p) =>
            p.status.phase === 'Running' &&
            p.metadata.deletionTimestamp === undefined &&
            matches(selector, p.metadata.labels),
        )
        .filter((p) => name === undefined || p.metadata.name === name)
        .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
        .map((p) => this.#podMetrics(p, now));
      if (name !== undefined) {
        if (items.length === 0) throw notFound(type, name);
        this.#send(res, 200, { kind: 'PodMetrics', apiVersion: 'metrics.k8s.io/v1beta1', ...items[0]! });
        return;
      }
      this.#send(res, 200, {
        kind: 'PodMetricsList',
        apiVersion: 'metrics.k8s.io/v1beta1',
        metadata: {},
        items,
      });
      return;
    }
    const nodes = this.store
      .list<NodeObject>('nodes')
      .filter((n) => name === undefined || n.metadata.name === name);
    const items = nodes.map((n) => {
      const pods = this.store
        .list<Pod>('pods')
        .filter((p) => p.spec.nodeName === n.metadata.name && p.status.phase === 'Running');
      let cpu = 150e6; // the node's own daemons, in nanocores
      let memory = 900 * 1024 * 1024;
      for (const p of pods) {
        for (const c of this.#podMetrics(p, now).containers) {
          cpu += quantity(c.usage.cpu) * 1e9;
          memory += quantity(c.usage.memory);
        }
      }
      return {
        metadata: { name: n.metadata.name, creationTimestamp: iso(now), labels: n.metadata.labels ?? {} },
        timestamp: iso(now - 4000),
        window: '20.028s',
        usage: { cpu: `${Math.round(cpu)}n`, memory: `${Math.round(memory / 1024)}Ki` },
      };
    });
    if (name !== undefined) {
      if (items.length === 0) throw notFound(type, name);
      this.#send(res, 200, { kind: 'NodeMetrics', apiVersion: 'metrics.k8s.io/v1beta1', ...items[0]! });
      return;
    }
    this.#send(res, 200, {
      kind: 'NodeMetricsList',
      apiVersion: 'metrics.k8s.io/v1beta1',
      metadata: {},
      items,
    });
  }

  #podMetrics(
    p: Pod,
    now: number,
  ): {
    metadata: JsonObject;
    timestamp: string;
    window: string;
    containers: Array<{ name: string; usage: { cpu: string; memory: string } }>;
  } {
    const override = this.controller.usage.get(p.metadata.name);
    const h = fnv32a(p.metadata.name);
    return {
      metadata: {
        name: p.metadata.name,
        namespace: p.metadata.namespace ?? '',
        creationTimestamp: iso(now),
        labels: p.metadata.labels ?? {},
      },
      timestamp: iso(now - 5000),
      window: '15.024s',
      containers: p.spec.containers.map((c, i) => ({
        name: c.name,
        usage:
          override && i === 0
            ? override
            : i === 0
              ? { cpu: `${(h % 400) * 1_000_000 + 20_000_000}n`, memory: `${(h % 100_000) + 60_000}Ki` }
              : { cpu: '1m', memory: '8Mi' },
      })),
    };
  }

  async #log(req: IncomingMessage, res: ServerResponse, url: URL, pod: Pod): Promise<void> {
    const q = url.searchParams;
    const name = pod.metadata.name;
    const bad = (field: string, value: string, detail: string): HttpStatus =>
      invalid('PodLogOptions', '', name, field, value, detail);
    const intParam = (field: string, min: number): number | undefined => {
      const raw = q.get(field);
      if (raw === null) return undefined;
      const n = Number(raw);
      if (!/^-?\d+$/.test(raw) || n < min)
        throw bad(field, raw, `must be greater than ${min === 0 ? 'or equal to 0' : '0'}`);
      return n;
    };
    const boolParam = (field: string): boolean => {
      const raw = q.get(field);
      if (raw === null || raw === 'false' || raw === '') return false;
      if (raw === 'true') return true;
      throw new HttpStatus(400, 'BadRequest', `invalid value for ${field}: ${raw}`);
    };
    const sinceSeconds = intParam('sinceSeconds', 1);
    const tailLines = intParam('tailLines', 0);
    const limitBytes = intParam('limitBytes', 1);
    const follow = boolParam('follow');
    const timestamps = boolParam('timestamps');
    const previous = boolParam('previous');
    const sinceTime = q.get('sinceTime');
    if (sinceTime !== null && sinceSeconds !== undefined)
      throw bad(
        'sinceSeconds',
        String(sinceSeconds),
        'at most one of `sinceTime` or `sinceSeconds` may be specified',
      );
    let container = q.get('container') ?? '';
    const names = pod.spec.containers.map((c) => c.name);
    if (container === '') {
      if (names.length !== 1) {
        throw new HttpStatus(
          400,
          'BadRequest',
          `a container name must be specified for pod ${name}, choose one of: [${names.join(' ')}]`,
        );
      }
      container = names[0]!;
    }
    if (!names.includes(container))
      throw new HttpStatus(400, 'BadRequest', `container ${container} is not valid for pod ${name}`);
    // The API server asks the pod's kubelet for the log: a lost node cannot be dialled (the error has
    // no Status reason: 500, reason omitted), and the kubelet of an evicted pod no longer has its
    // containers (it answers as kubelet's validateContainerLogStatus does).
    const node = pod.spec.nodeName;
    if (node !== undefined && this.controller.lostNodes.has(node)) {
      const host = this.store.get<NodeObject>('nodes', undefined, node)?.status.addresses[0]?.address ?? node;
      throw new HttpStatus(
        500,
        '',
        `Get "https://${host}:10250/containerLogs/${pod.metadata.namespace ?? ''}/${name}/${container}": dial tcp ${host}:10250: connect: no route to host`,
      );
    }
    if (pod.status.phase === 'Failed' && pod.status.reason === 'Evicted') {
      throw new HttpStatus(400, 'BadRequest', `container "${container}" in pod "${name}" is not available`);
    }
    const status = pod.status.containerStatuses?.find((s) => s.name === container);
    if (previous && (status?.restartCount ?? 0) === 0) {
      throw new HttpStatus(
        400,
        'BadRequest',
        `previous terminated container "${container}" in pod "${name}" not found`,
      );
    }
    const waiting = status?.state.waiting;
    if (waiting && (status?.restartCount ?? 0) === 0 && !status?.started) {
      throw new HttpStatus(
        400,
        'BadRequest',
        `container "${container}" in pod "${name}" is waiting to start: ${waiting.reason}`,
      );
    }
    const key = logKey(pod.metadata.uid, container);
    const sinceMs =
      sinceSeconds !== undefined
        ? Date.now() - sinceSeconds * 1000
        : sinceTime !== null
          ? Date.parse(sinceTime)
          : undefined;
    const cutIndex = this.#cuts.findIndex((c) => c.pod === name);
    const cut = cutIndex >= 0 ? this.#cuts[cutIndex] : undefined;
    if (cut && (cut.times === undefined || --cut.times <= 0)) this.#cuts.splice(cutIndex, 1);
    const stallIndex = this.#stalls.findIndex((c) => c.pod === name);
    const stall = stallIndex >= 0 ? this.#stalls[stallIndex] : undefined;
    if (stall && (stall.times === undefined || --stall.times <= 0)) this.#stalls.splice(stallIndex, 1);

    res.writeHead(200, {
      'content-type': 'text/plain',
      'transfer-encoding': 'chunked',
      'cache-control': 'no-cache, private',
    });
    // The API server sends the head at once, before any log line (a followed log may be quiet).
    res.flushHeaders();
    let sent = 0;
    let closed = false;
    res.on('close', () => (closed = true));
    const write = async (text: string): Promise<boolean> => {
      if (closed) return false;
      let buf = Buffer.from(text, 'utf8');
      if (limitBytes !== undefined && sent + buf.length > limitBytes)
        buf = buf.subarray(0, limitBytes - sent);
      if (stall && sent + buf.length >= stall.afterBytes) {
        const part = buf.subarray(0, stall.afterBytes - sent);
        if (part.length > 0) res.write(part);
        sent += part.length;
        // Silence, with the connection open, until the client closes it.
        await new Promise<void>((resolve) => res.once('close', resolve));
        closed = true;
        return false;
      }
      if (cut && sent + buf.length >= cut.afterBytes) {
        const part = buf.subarray(0, cut.afterBytes - sent);
        if (part.length > 0) res.write(part);
        sent += part.length;
        // Give the piece a moment to leave, then drop the connection without the final chunk.
        await new Promise((r) => setTimeout(r, 5));
        res.socket?.destroy();
        closed = true;
        return false;
      }
      sent += buf.length;
      if (!res.write(buf)) {
        await new Promise<void>((resolve) => {
          res.once('drain', resolve);
          res.once('close', resolve);
        });
      }
      return !closed && (limitBytes === undefined || sent < limitBytes);
    };
    const format = (at: number, line: string): string =>
      timestamps ? `${new Date(at).toISOString().replace('Z', '000000Z')} ${line}\n` : `${line}\n`;
    const pumpSegment = async (segment: LogSegment): Promise<boolean> => {
      let piece = '';
      for (let i = 0; i < segment.count; i++) {
        piece += format(segment.at, segment.line(i));
        if (piece.length >= this.#chunkBytes) {
          if (!(await write(piece))) return false;
          piece = '';
        }
      }
      return piece === '' || (await write(piece));
    };
    for (const segment of this.logs.select(key, sinceMs, tailLines)) {
      if (!(await pumpSegment(segment))) return;
    }
    if (!follow || closed) {
      if (!closed) res.end();
      return;
    }
    const queue: Array<LogSegment | null> = [];
    let wake: (() => void) | undefined;
    const stop = this.logs.follow(key, (segment: LogSegment | null) => {
      queue.push(segment);
      wake?.();
    });
    res.on('close', () => wake?.());
    try {
      for (;;) {
        while (queue.length === 0 && !closed) await new Promise<void>((resolve) => (wake = resolve));
        if (closed) return;
        const segment = queue.shift()!;
        if (segment === null) break;
        if (!(await pumpSegment(segment))) return;
      }
      res.end();
    } finally {
      stop();
    }
  }
}

function parseFieldSelector(text: string | null): (o: KObject) => boolean {
  if (text === null || text === '') return () => true;
  const reqs = text.split(',').map((part) => {
    const m = /^([a-zA-Z.]+)(==|=|!=)(.*)$/.exec(part.trim());
    if (!m) throw new HttpStatus(400, 'BadRequest', `invalid field selector: ${part}`);
    return { field: m[1]!, neg: m[2] === '!=', value: m[3]! };
  });
  const get = (o: KObject, field: string): string | undefined => {
    if (field === 'metadata.name') return o.metadata.name;
    if (field === 'metadata.namespace') return o.metadata.namespace;
    if (field === 'spec.nodeName') return (o as Pod).spec.nodeName ?? '';
    if (field === 'status.phase') return (o as Pod).status.phase;
    throw new HttpStatus(400, 'BadRequest', `field label not supported: ${field}`);
  };
  return (o) => reqs.every((r) => (get(o, r.field) === r.value) !== r.neg);
}

export async function startStandIn(options: StandInOptions = {}): Promise<StandIn> {
  return new StandIn(options).listen();
}

export { isBroken, podReady, rollingParams };
