/**
 * The platform port: what gameops needs from wherever the game servers run. One interface, two adapters
 * (`kubernetes/` and `local/`), one contract test suite (`contract.test-suite.ts`) that both pass.
 *
 * Conventions every adapter follows:
 * - Instances are named by the platform (a pod name, or `game-0`…`game-N` locally); names are stable for
 *   the life of an instance and unknown names give a NotFoundError naming the instance.
 * - Waits (`scale`, `restart`, `setVersion`, `rollback`) honour `signal` and `timeoutMs`, report progress
 *   through `onProgress`, and never throw away what they learnt: a rollout that does not finish in time
 *   stops, leaves the fleet in a reported state and rejects with an UnavailableError whose `details`
 *   hold the last {@link RolloutProgress}.
 * - Bad input (a negative or absurd replica count, an unknown version) is an InputError raised before
 *   anything is changed.
 * - Two state-changing operations at once on one fleet give a ConflictError (Kubernetes: a
 *   resourceVersion conflict that a retry cannot resolve; local: the fleet lock is held).
 * - Nothing here reads the whole of a log into memory: `logs` streams, `countLines` counts as it reads.
 */

/** Where an instance is in its life. `crashloop`: it keeps exiting and is being restarted with backoff. */
export const InstancePhase = {
  pending: 'pending',
  running: 'running',
  crashloop: 'crashloop',
  failed: 'failed',
  stopped: 'stopped',
  unknown: 'unknown',
} as const;
export type InstancePhase = (typeof InstancePhase)[keyof typeof InstancePhase];

/** One game-server instance (a pod, or a local process). */
export interface Instance {
  name: string;
  phase: InstancePhase;
  /** Passed its readiness check (Kubernetes: the Ready condition; local: `GET /ops/status` answers). */
  ready: boolean;
  /** Restarts since the instance was created (Kubernetes: sum of container restartCount). */
  restarts: number;
  /** When the current process/container started (ISO 8601), if it is running. */
  startedAt: string | undefined;
  /** The game-server version it runs: the image tag on Kubernetes, the configured version locally. */
  version: string;
  /** The node (machine) it runs on: the pod's nodeName, or this host's name locally. */
  node: string | undefined;
  /** Base URL of its game-server contract endpoints (`/ops/*`, `/metrics`), e.g. `http://10.1.2.3:7001`. */
  opsUrl: string | undefined;
  labels: Record<string, string>;
  /** Why it is not ready, when known (e.g. `ImagePullBackOff`, `exited with code 1`). */
  reason?: string;
}

/** Filter for {@link Platform.instances} and {@link Platform.logs}: a label selector, like kubectl's `-l`. */
export interface InstanceFilter {
  /** `key=value` pairs, all of which must match. */
  labels?: Record<string, string>;
  /** Only these instance names. */
  names?: string[];
}

export interface ResourceUsage {
  name: string;
  /** CPU in millicores (1000 = one core busy). */
  cpuMillicores: number;
  memoryBytes: number;
}

export interface NodeUsage extends ResourceUsage {
  /** Allocatable/total capacity, when the platform knows it. */
  cpuCapacityMillicores?: number;
  memoryCapacityBytes?: number;
}

export interface UsageReport {
  /** When the figures were sampled (ISO 8601). */
  at: string;
  /** The window the CPU figure averages over, in milliseconds. */
  windowMs: number;
  instances: ResourceUsage[];
  nodes: NodeUsage[];
}

export interface LogQuery extends InstanceFilter {
  /** Only lines written in the last `sinceMs` milliseconds. */
  sinceMs?: number;
  /** Only the last N lines of each instance (applied after `sinceMs`). */
  tail?: number;
  /** Keep streaming new lines until `signal` aborts. */
  follow?: boolean;
  signal?: AbortSignal;
}

export interface LogLine {
  instance: string;
  line: string;
}

export interface LineCount {
  /**
   * Lines that matched, per instance name: every selected instance whose log could be read appears (with 0
   * if none matched). Instances that ended (evicted, completed) are left out.
   */
  perInstance: Record<string, number>;
  /** Instances whose log could not be read, with why (a lost node, a cut stream); not in `perInstance`. */
  unreadable?: Record<string, string>;
  total: number;
  /** Bytes read to count them. */
  bytesScanned: number;
}

/** What {@link Platform.rotateLogs} did. */
export interface LogRotation {
  /** Instances whose log was rotated, in the order of `instances`. */
  rotated: string[];
  /** Why nothing was (or could be) rotated from here, e.g. the kubelet rotates container logs. */
  note?: string;
}

/** What a wait is doing now; given to `onProgress` and kept in errors' `details`. */
export interface RolloutProgress {
  /** e.g. `scale`, `restart`, `set-version`, `rollback`. */
  operation: string;
  desired: number;
  /** Instances that run the target version (or, for restart, have been restarted). */
  updated: number;
  ready: number;
  available: number;
  /** One line for people: "3/5 updated, 2 ready; waiting for game-3". */
  message: string;
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** Give up waiting after this long. @default the adapter's configured rollout timeout */
  timeoutMs?: number;
  onProgress?: (progress: RolloutProgress) => void;
}

export interface RestartOptions extends WaitOptions {
  /** How many instances may be down at once. @default the platform's own (local: 1; Kubernetes: the Deployment's) */
  maxUnavailable?: number;
  filter?: InstanceFilter;
}

export interface RolloutResult {
  operation: string;
  /** The version running when the operation ended. */
  version: string;
  previousVersion: string | undefined;
  replicas: number;
  durationMs: number;
  progress: RolloutProgress;
}

/** The game's own config (a ConfigMap on Kubernetes, a file locally): flat string keys and values. */
export type GameConfig = Record<string, string>;

/**
 * One object of the platform's config, as backups save and restore it (runbook §5): a ConfigMap or a
 * Secret of the namespace on Kubernetes, the game config file locally. Values are base64 whatever they
 * hold, so binary content and Secrets travel the same way; they are never logged.
 */
export interface ConfigObject {
  kind: 'ConfigMap' | 'Secret' | 'File';
  /** The object's name (Kubernetes), or the file's name (local). */
  name: string;
  /** A Secret's type, e.g. `Opaque` or `kubernetes.io/tls`. */
  type?: string;
  labels?: Record<string, string>;
  /** ConfigMap only: the keys that came from `binaryData` (the others are UTF-8 `data`). */
  binaryKeys?: string[];
  /** values base64 */
  data: Record<string, string>;
}

/** What {@link Platform.applyConfigObjects} did. */
export interface ConfigApplyResult {
  created: number;
  replaced: number;
}

export interface AutoscalerStatus {
  /** False when nothing autoscales this fleet (the local adapter, or no HPA configured). */
  enabled: boolean;
  name?: string;
  currentReplicas: number;
  desiredReplicas: number;
  minReplicas?: number;
  maxReplicas?: number;
  /** e.g. `{ name: 'cpu', current: '72%', target: '70%' }`. */
  metrics: Array<{ name: string; current: string | undefined; target: string | undefined }>;
  /** Conditions such as `ScalingLimited`, with their messages. */
  conditions: Array<{ type: string; status: string; message?: string }>;
}

/** One platform adapter. See the module comment for the conventions all methods follow. */
export interface Platform {
  /** `kubernetes` or `local`. */
  readonly kind: string;
  /** Where it acts, for messages: `deployment game/game-server` or `local fleet in /var/lib/gameops/fleet`. */
  describe(): string;

  /** The game-server instances, sorted by name. */
  instances(filter?: InstanceFilter): Promise<Instance[]>;
  /** CPU and memory per instance and per node. */
  usage(filter?: InstanceFilter): Promise<UsageReport>;

  /** Streams log lines of the selected instances; memory use does not grow with the log's size. */
  logs(query: LogQuery): AsyncIterable<LogLine>;
  /** Counts lines containing `pattern` (a plain substring, e.g. `"level":"error"` or `ERROR`). */
  countLines(query: Omit<LogQuery, 'follow' | 'tail'> & { pattern: string }): Promise<LineCount>;

  /**
   * Rotates the game servers' logs now (maintenance). Per platform:
   * - local: every instance's non-empty log is rotated (copy, then truncate: the server keeps its file
   *   descriptor), keeping the configured number of old files; `logs`/`countLines` still read rotated
   *   lines. A line written in the instant between the last copy and the truncation can be lost under a
   *   busy writer; maintenance rotates after the drain, when the servers are idle, where nothing is.
   * - Kubernetes: the kubelet rotates container logs itself: `rotated: []` and a `note` saying so, once
   *   the Deployment is known to exist (NotFoundError otherwise).
   * @throws ConflictError when a rotation of this fleet is already running and does not end soon
   */
  rotateLogs(): Promise<LogRotation>;

  /** Sets the number of instances and waits until that many are ready. */
  scale(replicas: number, options?: WaitOptions): Promise<RolloutResult>;
  /** Restarts instances a few at a time (`maxUnavailable`), each batch waiting for readiness. */
  restart(options?: RestartOptions): Promise<RolloutResult>;
  /** Rolls the fleet to `version` and waits; on timeout the rollout is left where it stopped, and reported. */
  setVersion(version: string, options?: WaitOptions): Promise<RolloutResult>;
  /** Rolls back to the version before the last `setVersion`. */
  rollback(options?: WaitOptions): Promise<RolloutResult>;

  readConfig(): Promise<GameConfig>;
  /** Sets keys (a `null` value removes one); returns the config after the patch. */
  patchConfig(patch: Record<string, string | null>): Promise<GameConfig>;

  autoscaler(): Promise<AutoscalerStatus>;

  /**
   * The platform's config for a backup: on Kubernetes every ConfigMap and Secret of the namespace
   * (service-account tokens, Helm release records and `kube-root-ca.crt` left out; labels kept; server
   * metadata dropped), locally the game config file as one `File` object. Sorted by kind, then name.
   * @throws NotAllowedError naming the verb, resource and namespace when access is refused
   */
  exportConfigObjects(): Promise<ConfigObject[]>;
  /**
   * Puts objects back as they were exported: each is created, or replaces the current one of that name
   * (its data, labels and type become the saved ones). Every object is checked before anything is
   * written; a failure names the object.
   * @throws InputError for an object this platform cannot hold (a kind, a name, a value that is not
   *   base64), before anything changed
   * @throws NotAllowedError naming the verb, resource and namespace when access is refused
   */
  applyConfigObjects(objects: readonly ConfigObject[]): Promise<ConfigApplyResult>;

  /**
   * Keeps the fleet running until `signal` aborts: restarts crashed instances with backoff, rotates logs.
   * Only platforms that run the game servers themselves have it (local); Kubernetes has its own controllers.
   */
  supervise?(options: { signal: AbortSignal }): Promise<void>;

  /** Releases clients, watchers and timers. Never stops the game servers. */
  close(): Promise<void>;
}
