/**
 * The local platform: game servers as processes on this machine (docs/adr/0004-local-platform.md).
 *
 * - Instance `game-<i>` listens on `basePort + i`; it is spawned detached, its output appended to
 *   `<dataDir>/fleet/logs/game-<i>.log` by file descriptor, so it outlives any gameops process.
 * - `<dataDir>/fleet/state.json` records each instance's pid and process start time; every gameops
 *   process adopts the live ones (same pid AND same start time) instead of restarting them.
 * - State-changing operations hold the fleet lock (an SQLite `BEGIN EXCLUSIVE`, released by the kernel
 *   when the holder dies); a second one gets a ConflictError naming the holder. Short read-modify-writes
 *   of the state file hold a second lock, shared with the supervisor.
 * - The supervisor (`supervise`) restarts crashed instances with exponential backoff, watches adopted
 *   processes through /proc, rotates logs, and leaves alone the instances an operation owns.
 */
import { createServer } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { LocalPlatformConfig } from '../../config/index.ts';
import {
  type Clock,
  type Secret,
  ConflictError,
  GameopsError,
  InputError,
  NotFoundError,
  UnavailableError,
  errorMessage,
  mapLimit,
} from '../../core/index.ts';
import { linePattern, splitLines } from '../lines.ts';
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
  Platform,
  ResourceUsage,
  RestartOptions,
  RolloutProgress,
  RolloutResult,
  UsageReport,
  WaitOptions,
} from '../port.ts';
import { configFileBytes, exportConfigFile, writeConfigFile } from './config-objects.ts';
import { FileProblem, ensurePrivateDir, readBoundedFile, writeFileAtomic } from './files.ts';
import { FileLock, type HeldLock, ownStartTime } from './lock.ts';
import {
  countRanges,
  followChunks,
  listLogFiles,
  logFileOf,
  merge,
  rangeLines,
  recoverDeletedLog,
  rotateIfNeeded,
  selectRanges,
} from './logs.ts';
import {
  type ExitInfo,
  type Started,
  childExits,
  describeExit,
  exitStatus,
  findLeadersByEnv,
  spawnDetached,
  stopProcess,
} from './process.ts';
import { probeReady } from './probe.ts';
import { type Listeners, listenerOwnership, listeningSockets } from './sockets.ts';
import {
  CLK_TCK,
  isSameProcess,
  machineCpuTicks,
  machineMemory,
  procStat,
  procStatSync,
  residentBytes,
  startTimeToIso,
  type ProcStat,
} from './proc.ts';
import {
  type FleetState,
  type InstanceState,
  MAX_REPLICAS,
  STATE_FILE,
  initialState,
  readState,
  writeState,
} from './state.ts';

/** The subset of a pino logger the adapter uses. */
export interface LocalLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const silent: LocalLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

export interface SupervisorOptions {
  /** Between two rounds when nothing happens. @default 1000 */
  intervalMs?: number;
  /** First backoff after a crash; doubles with each consecutive crash. @default 1000 */
  backoffBaseMs?: number;
  /** @default 60 000 */
  backoffMaxMs?: number;
  /** An instance up this long (by the clock) has its crash count reset. @default 60 000 */
  stableAfterMs?: number;
}

export interface LocalPlatformOptions {
  config: LocalPlatformConfig;
  /** gameops's data directory; the fleet lives in `<dataDir>/fleet`. */
  dataDir: string;
  /** Given to every instance as GAME_OPS_TOKEN and sent by the readiness probe. */
  opsToken?: Secret;
  /** Backoff, ages and timestamps. Waits (readiness, rollouts) use a monotonic timer. */
  clock: Clock;
  log?: LocalLogger;
  /** One readiness probe (`GET /ops/status`). @default min(2000, readinessTimeout) */
  probeTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL when stopping an instance. @default 10 000 */
  stopGraceMs?: number;
  /** How long an operation waits for the fleet lock before the ConflictError. @default 250 */
  lockWaitMs?: number;
  /**
   * Stability window of `restart` and `setVersion`/`rollback` (like Kubernetes' minReadySeconds): a new
   * instance must stay alive and ready this long after its first good probe before the next one is
   * replaced; dying within it fails the rollout. 0 turns it off. @default 3000
   */
  minReadyMs?: number;
  /** Probes and stops run at most this many at once. @default 64 */
  concurrency?: number;
  /** CPU sampling window of `usage`. @default 200 */
  usageWindowMs?: number;
  supervisor?: SupervisorOptions;
  /**
   * Writes the state file (default: atomically, {@link writeState}). A seam for fault injection in
   * tests (a full disk, an I/O error); production code leaves it alone.
   */
  stateWriter?: (fleetDir: string, state: FleetState) => Promise<void>;
}

/** What one supervisor round did (instance names). */
export interface SupervisorRound {
  started: string[];
  backingOff: string[];
  stopped: string[];
  rotated: string[];
  /** Left alone: an operation owns them. */
  skipped: string[];
}

export interface LocalPlatform extends Platform {
  readonly fleetDir: string;
  /** Runs supervisor rounds until `signal` aborts (or `close`); never throws for a failed round. */
  supervise(options: { signal: AbortSignal }): Promise<void>;
  /** One supervisor round, now. */
  superviseOnce(): Promise<SupervisorRound>;
}

export function createLocalPlatform(options: LocalPlatformOptions): LocalPlatform {
  return new LocalFleet(options);
}

const NAME = /^game-(0|[1-9]\d{0,3})$/;
const STATE_LOCK_WAIT_MS = 15_000;
/** How long `rotateLogs` waits for a supervisor round that is rotating. */
const ROTATE_LOCK_WAIT_MS = 5000;
const POLL_MS = 150;
/** Instances whose logs countLines reads at once. */
const COUNT_CONCURRENCY = 16;
/** After a failed replacement, how long past the operation's deadline the put-back waits for readiness. */
const PUT_BACK_GRACE_MS = 5000;
const CONFIG_FILE = 'game-config.json';
const MAX_CONFIG_BYTES = 1024 * 1024;
const MAX_CONFIG_KEYS = 1000;
const MAX_VALUE_BYTES = 64 * 1024;
/** From the parent's environment, only these reach a game server (no gameops secret leaks into it). */
const INHERITED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR'];

const gameConfigSchema = z.record(z.string(), z.string());

interface View {
  index: number;
  name: string;
  entry: InstanceState | undefined;
  stat: ProcStat | undefined;
  alive: boolean;
}

/** One running operation: its deadline, signal and progress reporting. */
interface Op {
  name: string;
  started: number;
  deadline: number;
  signal: AbortSignal | undefined;
  /** Aborts with `signal` or at the deadline: a stop in progress then goes straight to SIGKILL. */
  stopSignal: AbortSignal;
  /**
   * Set once the operation changed something (the state, a process). A failure before that is a refusal
   * (the port is taken, the state file cannot be written…) and is thrown as it is, without progress.
   */
  changed: boolean;
  emit(progress: Omit<RolloutProgress, 'operation'>): RolloutProgress;
  last: RolloutProgress;
}

class LocalFleet implements LocalPlatform {
  readonly kind = 'local';
  readonly fleetDir: string;
  readonly #logDir: string;
  readonly #config: LocalPlatformConfig;
  readonly #token: Secret | undefined;
  readonly #clock: Clock;
  readonly #log: LocalLogger;
  readonly #probeTimeoutMs: number;
  readonly #stopGraceMs: number;
  readonly #minReadyMs: number;
  readonly #lockWaitMs: number;
  readonly #concurrency: number;
  readonly #usageWindowMs: number;
  readonly #supervisor: Required<SupervisorOptions>;
  readonly #writeState: (fleetDir: string, state: FleetState) => Promise<void>;
  readonly #opLock: FileLock;
  readonly #stateLock: FileLock;
  readonly #rotateLock: FileLock;
  readonly #node = hostname();
  readonly #closed = new AbortController();
  #dirs: Promise<void> | undefined;

  constructor(options: LocalPlatformOptions) {
    this.fleetDir = join(options.dataDir, 'fleet');
    this.#logDir = join(this.fleetDir, 'logs');
    this.#config = options.config;
    this.#token = options.opsToken;
    this.#clock = options.clock;
    this.#log = options.log ?? silent;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? Math.min(2000, options.config.readinessTimeout);
    this.#stopGraceMs = options.stopGraceMs ?? 10_000;
    this.#writeState = options.stateWriter ?? writeState;
    const minReadyMs = options.minReadyMs ?? 3000;
    this.#minReadyMs = Number.isFinite(minReadyMs) && minReadyMs > 0 ? minReadyMs : 0;
    this.#lockWaitMs = options.lockWaitMs ?? 250;
    this.#concurrency = options.concurrency ?? 64;
    this.#usageWindowMs = options.usageWindowMs ?? 200;
    this.#supervisor = {
      intervalMs: options.supervisor?.intervalMs ?? 1000,
      backoffBaseMs: options.supervisor?.backoffBaseMs ?? 1000,
      backoffMaxMs: options.supervisor?.backoffMaxMs ?? 60_000,
      stableAfterMs: options.supervisor?.stableAfterMs ?? 60_000,
    };
    const what = `the local fleet in ${this.fleetDir}`;
    this.#opLock = new FileLock(join(this.fleetDir, 'operation.lock'), what, this.#clock);
    this.#stateLock = new FileLock(
      join(this.fleetDir, 'state.lock'),
      `the state of ${what}`,
      this.#clock,
      false,
    );
    this.#rotateLock = new FileLock(
      join(this.fleetDir, 'rotate.lock'),
      `log rotation of ${what}`,
      this.#clock,
      false,
    );
  }

  describe(): string {
    return `local fleet in ${this.fleetDir}`;
  }

  // -------------------------------------------------------------------------------------------------
  // Reading

  async instances(filter?: InstanceFilter): Promise<Instance[]> {
    const state = await this.#state();
    const views = await this.#select(state, filter);
    const probes = await mapLimit(views, this.#concurrency, async (v) =>
      v.alive ? probeReady(this.#opsUrl(v.index), this.#token, this.#probeTimeoutMs) : undefined,
    );
    const exits = await Promise.all(
      views.map(async (v) =>
        !v.alive && v.entry?.pid !== undefined ? exitStatus(v.entry.pid, v.entry.startTime) : undefined,
      ),
    );
    const now = this.#clock.now().getTime();
    return views.map((v, i) => this.#instance(state, v, probes[i], exits[i], now));
  }

  #instance(
    state: FleetState,
    v: View,
    probe: { ready: boolean; reason?: string } | undefined,
    exitInfo: ExitInfo | undefined,
    now: number,
  ): Instance {
    const entry = v.entry;
    const version = entry?.version ?? state.version;
    const base = {
      name: v.name,
      restarts: entry?.restarts ?? 0,
      version,
      node: this.#node,
      opsUrl: this.#opsUrl(v.index),
      labels: this.#labels(v.name, version),
    };
    if (v.alive && v.index >= state.replicas) {
      const owner =
        entry?.owner && isSameProcess(procStatSync(entry.owner.pid), entry.owner.startTime)
          ? entry.owner
          : undefined;
      return {
        ...base,
        phase: 'pending',
        ready: probe?.ready === true,
        startedAt: startTimeToIso(v.stat!.startTime),
        reason:
          `left over from an interrupted scale-down (replicas: ${state.replicas}), still running as pid ${entry?.pid}; ` +
          (owner ? `being stopped by ${owner.operation} of gameops pid ${owner.pid}, or else ` : '') +
          'the supervisor or the next scale, restart or rollout stops it',
      };
    }
    if (v.alive) {
      const ready = probe?.ready === true;
      const age = entry?.spawnedAt ? now - Date.parse(entry.spawnedAt) : Number.POSITIVE_INFINITY;
      const starting = !ready && age < this.#config.readinessTimeout;
      return {
        ...base,
        phase: starting ? 'pending' : 'running',
        ready,
        startedAt: startTimeToIso(v.stat!.startTime),
        ...(ready ? {} : { reason: probe?.reason ?? 'not answering GET /ops/status' }),
      };
    }
    if (entry?.starting) {
      return {
        ...base,
        phase: 'pending',
        ready: false,
        startedAt: undefined,
        reason:
          `a start by gameops pid ${entry.starting.by.pid} at ${entry.starting.at} was interrupted; ` +
          'the supervisor or the next operation adopts the process it left, if any, or starts it',
      };
    }
    const next = entry?.nextAttemptAt ? Date.parse(entry.nextAttemptAt) : undefined;
    const exit = entry?.pid !== undefined ? describeExit(exitInfo) : entry?.lastExit?.reason;
    if (next !== undefined && next > now) {
      const why = entry?.problem ?? exit ?? 'crashed';
      return {
        ...base,
        phase: 'crashloop',
        ready: false,
        startedAt: undefined,
        reason: `${why}; restarting in ${Math.ceil((next - now) / 1000)} s`,
      };
    }
    if (entry?.pid !== undefined || entry?.lastExit || entry?.problem) {
      return { ...base, phase: 'failed', ready: false, startedAt: undefined, reason: entry?.problem ?? exit };
    }
    return {
      ...base,
      phase: 'stopped',
      ready: false,
      startedAt: undefined,
      reason: 'not started yet (the supervisor of `gameops serve` or a scale starts it)',
    };
  }

  async usage(filter?: InstanceFilter): Promise<UsageReport> {
    const state = await this.#state();
    const views = (await this.#select(state, filter)).filter((v) => v.alive);
    const at = this.#clock.now().toISOString();
    const began = performance.now();
    const cpuBefore = await Promise.all(views.map(async (v) => (await procStat(v.entry!.pid!))?.cpuTicks));
    const nodeBefore = await machineCpuTicks();
    await sleep(this.#usageWindowMs);
    const cpuAfter = await Promise.all(views.map(async (v) => (await procStat(v.entry!.pid!))?.cpuTicks));
    const nodeAfter = await machineCpuTicks();
    const seconds = (performance.now() - began) / 1000;
    const memory = await Promise.all(views.map((v) => residentBytes(v.entry!.pid!)));
    const instances: ResourceUsage[] = [];
    views.forEach((v, i) => {
      const before = cpuBefore[i];
      const after = cpuAfter[i];
      const rss = memory[i];
      if (before === undefined || after === undefined || rss === undefined) return; // exited meanwhile
      instances.push({
        name: v.name,
        cpuMillicores: Math.round(((after - before) / CLK_TCK / seconds) * 1000),
        memoryBytes: rss,
      });
    });
    const cpus = availableParallelism();
    const total = nodeAfter.total - nodeBefore.total;
    const busy = total > 0 ? (nodeAfter.busy - nodeBefore.busy) / total : 0;
    const mem = await machineMemory();
    return {
      at,
      windowMs: Math.round(seconds * 1000),
      instances,
      nodes: [
        {
          name: this.#node,
          cpuMillicores: Math.round(busy * cpus * 1000),
          memoryBytes: mem.total - mem.available,
          cpuCapacityMillicores: cpus * 1000,
          memoryCapacityBytes: mem.total,
        },
      ],
    };
  }

  async *logs(query: LogQuery): AsyncGenerator<LogLine> {
    const { cutMs, tail } = this.#logWindow(query);
    const state = await this.#state();
    const views = await this.#select(state, query);
    const signal = query.signal;
    if (!query.follow) {
      for (const v of views) {
        const files = await listLogFiles(logFileOf(this.#logDir, v.name));
        const ranges = await selectRanges(files, { cutMs, tail });
        for await (const line of rangeLines(ranges, { ...(signal ? { signal } : {}) })) {
          yield { instance: v.name, line };
        }
      }
      return;
    }
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) return;
    try {
      yield* merge(views.map((v) => this.#follow(v.name, cutMs, tail, stop.signal)));
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stop.abort();
    }
  }

  async *#follow(name: string, cutMs: number | undefined, tail: number | undefined, signal: AbortSignal) {
    const live = logFileOf(this.#logDir, name);
    const files = await listLogFiles(live);
    const ranges = await selectRanges(files, { cutMs, tail });
    const backlog = ranges.filter((r) => r.file.path !== live);
    const liveFile = files.find((f) => f.path === live);
    const liveStart = ranges.find((r) => r.file.path === live)?.start ?? liveFile?.size ?? 0;
    for await (const line of rangeLines(backlog, { signal })) yield { instance: name, line };
    for await (const line of splitLines(followChunks(live, liveStart, signal))) {
      if (signal.aborted) return;
      yield { instance: name, line };
    }
  }

  async countLines(query: Omit<LogQuery, 'follow' | 'tail'> & { pattern: string }): Promise<LineCount> {
    if (typeof query.pattern !== 'string') throw new InputError('pattern: a string');
    linePattern(query.pattern);
    const { cutMs } = this.#logWindow(query);
    const state = await this.#state();
    const views = await this.#select(state, query);
    // Bounded: each reader holds a descriptor and a 1 MiB buffer (1000 instances at once: 1 GiB).
    const counts = await mapLimit(views, COUNT_CONCURRENCY, async (v) => {
      const files = await listLogFiles(logFileOf(this.#logDir, v.name));
      const ranges = await selectRanges(files, { cutMs });
      return countRanges(ranges, query.pattern, query.signal);
    });
    const perInstance: Record<string, number> = {};
    let total = 0;
    let bytesScanned = 0;
    views.forEach((v, i) => {
      perInstance[v.name] = counts[i]!.count;
      total += counts[i]!.count;
      bytesScanned += counts[i]!.bytes;
    });
    return { perInstance, total, bytesScanned };
  }

  #logWindow(query: { sinceMs?: number; tail?: number }): { cutMs?: number; tail?: number } {
    const { sinceMs, tail } = query;
    if (sinceMs !== undefined && !(typeof sinceMs === 'number' && Number.isFinite(sinceMs) && sinceMs > 0))
      throw new InputError(`sinceMs must be a positive number of milliseconds (got ${String(sinceMs)})`);
    if (tail !== undefined && !(Number.isSafeInteger(tail) && tail >= 0))
      throw new InputError(`tail must be a non-negative integer (got ${String(tail)})`);
    return {
      ...(sinceMs !== undefined ? { cutMs: this.#clock.now().getTime() - sinceMs } : {}),
      ...(tail !== undefined ? { tail } : {}),
    };
  }

  /** @throws UnavailableError when the file is unreadable or invalid (gameops's own file, not input) */
  async readConfig(): Promise<GameConfig> {
    await this.#ensureDirs();
    const file = join(this.fleetDir, CONFIG_FILE);
    let text: string | undefined;
    try {
      text = await readBoundedFile(file, MAX_CONFIG_BYTES);
    } catch (err) {
      throw new UnavailableError(
        `the game config ${file} ${err instanceof FileProblem ? err.message : errorMessage(err)}`,
        {
          details: { file },
        },
      );
    }
    if (text === undefined) return {};
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new UnavailableError(`the game config ${file} is not JSON`, { details: { file } });
    }
    const parsed = gameConfigSchema.safeParse(value);
    if (!parsed.success) {
      throw new UnavailableError(`the game config ${file} must be a JSON object of string values`, {
        details: { file },
      });
    }
    return parsed.data;
  }

  async patchConfig(patch: Record<string, string | null>): Promise<GameConfig> {
    validatePatch(patch);
    return this.#withLock('patch-config', undefined, async () => {
      const config = await this.readConfig();
      for (const [key, value] of Object.entries(patch)) {
        if (value === null) delete config[key];
        else config[key] = value;
      }
      if (Object.keys(config).length > MAX_CONFIG_KEYS)
        throw new InputError(`the game config would hold more than ${MAX_CONFIG_KEYS} keys`);
      await writeFileAtomic(join(this.fleetDir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
      return config;
    });
  }

  /** The game config file as one `File` object (none when it does not exist yet). */
  async exportConfigObjects(): Promise<ConfigObject[]> {
    await this.#ensureDirs();
    return exportConfigFile(join(this.fleetDir, CONFIG_FILE), MAX_CONFIG_BYTES);
  }

  /**
   * Writes the game config file back from its `File` object, atomically, keeping its mode; under the
   * fleet lock, like patchConfig. The content must be a game config (a JSON object of strings).
   * @throws InputError for another kind or name, data that is not base64 or not a game config
   */
  async applyConfigObjects(objects: readonly ConfigObject[]): Promise<ConfigApplyResult> {
    const file = join(this.fleetDir, CONFIG_FILE);
    const bytes = configFileBytes(file, objects);
    if (bytes === undefined) return { created: 0, replaced: 0 };
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new InputError(`config object File ${CONFIG_FILE}: not JSON`);
    }
    if (!gameConfigSchema.safeParse(value).success)
      throw new InputError(`config object File ${CONFIG_FILE}: not a JSON object of string values`);
    return this.#withLock('apply-config', undefined, () => writeConfigFile(file, bytes, MAX_CONFIG_BYTES));
  }

  async autoscaler(): Promise<AutoscalerStatus> {
    const state = await this.#state();
    const views = await this.#views(state, state.replicas, true);
    return {
      enabled: false,
      currentReplicas: views.filter((v) => v.alive).length,
      desiredReplicas: state.replicas,
      metrics: [],
      conditions: [],
    };
  }

  // -------------------------------------------------------------------------------------------------
  // Operations

  async scale(replicas: number, options: WaitOptions = {}): Promise<RolloutResult> {
    if (
      typeof replicas !== 'number' ||
      !Number.isSafeInteger(replicas) ||
      replicas < 0 ||
      replicas > MAX_REPLICAS
    )
      throw new InputError(`replicas must be an integer from 0 to ${MAX_REPLICAS} (got ${String(replicas)})`);
    return this.#operation('scale', options, async (op) => {
      const state = await this.#state();
      this.#versionSpec(state.version);
      const views = await this.#views(state, Math.max(replicas, state.replicas));
      const toStart = views.filter((v) => v.index < replicas && !v.alive).map((v) => v.index);
      const toStop = state.instances.filter((e) => e.index >= replicas).map((e) => e.index);
      await this.#checkPorts(toStart);
      await this.#mutate((s) => {
        s.replicas = replicas;
        for (const index of [...toStart, ...toStop]) this.#own(s, index, op.name);
      });
      op.changed = true;
      const all = range(replicas);
      const readyNow = countTrue(await this.#readiness(range(Math.min(replicas, state.replicas))));
      op.emit({
        desired: replicas,
        updated: replicas - toStart.length,
        ready: readyNow,
        available: readyNow,
        message: `scaling from ${state.replicas} to ${replicas}`,
      });
      await this.#stopMany(toStop, true, op.stopSignal);
      await this.#startMany(toStart, (e) => e?.version ?? state.version, op.name);
      await this.#waitReady(op, all, {
        desired: replicas,
        updated: () => replicas,
        what: `scale to ${replicas}`,
      });
      return this.#result(op);
    });
  }

  async restart(options: RestartOptions = {}): Promise<RolloutResult> {
    const maxUnavailable = options.maxUnavailable ?? 1;
    if (!Number.isSafeInteger(maxUnavailable) || maxUnavailable < 1)
      throw new InputError(`maxUnavailable must be a positive integer (got ${String(maxUnavailable)})`);
    // Unknown names are refused before anything else.
    await this.#select(await this.#state(), options.filter);
    return this.#operation('restart', options, async (op) => {
      await this.#stopLeftovers(op);
      const state = await this.#state();
      const targets = (await this.#select(state, options.filter))
        .map((v) => v.index)
        .filter((index) => index < state.replicas);
      const ready = await this.#readiness(range(state.replicas));
      let updated = 0;
      const progress = (message: string): void => {
        op.emit({
          desired: state.replicas,
          updated,
          ready: countTrue(ready),
          available: countTrue(ready),
          message,
        });
      };
      progress(`restarting ${targets.length} instance(s), ${maxUnavailable} at a time`);
      for (let i = 0; i < targets.length; i += maxUnavailable) {
        const batch = targets.slice(i, i + maxUnavailable);
        const names = batch.map((b) => instanceName(b)).join(', ');
        this.#checkpoint(op, `stopping ${names}`);
        await this.#mutate((s) => batch.forEach((b) => this.#own(s, b, op.name)));
        op.changed = true;
        for (const b of batch) ready.set(b, false);
        await this.#stopMany(batch, false, op.stopSignal);
        progress(`${updated}/${targets.length} restarted; stopped ${names}`);
        const current = await this.#state();
        await this.#startMany(batch, (e) => e?.version ?? current.version, op.name);
        await this.#waitReady(op, batch, {
          desired: state.replicas,
          updated: () => updated,
          readyOthers: () => countTrue(ready),
          what: `restart of ${names}`,
          stable: true,
        });
        for (const b of batch) ready.set(b, true);
        updated += batch.length;
        // The others may have changed meanwhile: the count reported must be what is true now.
        const others = range(state.replicas).filter((x) => !batch.includes(x));
        for (const [index, isReady] of await this.#readiness(others)) ready.set(index, isReady);
        progress(`${updated}/${targets.length} restarted`);
      }
      return this.#result(op);
    });
  }

  async setVersion(version: string, options: WaitOptions = {}): Promise<RolloutResult> {
    this.#versionSpec(version, true);
    return this.#operation('set-version', options, (op) => this.#rollTo(version, op));
  }

  async rollback(options: WaitOptions = {}): Promise<RolloutResult> {
    const state = await this.#state();
    if (state.previousVersion === undefined)
      throw new InputError('nothing to roll back to: no earlier version of this fleet is recorded');
    this.#versionSpec(state.previousVersion, true);
    return this.#operation('rollback', options, async (op) => {
      const current = await this.#state();
      if (current.previousVersion === undefined) throw new InputError('nothing to roll back to');
      return this.#rollTo(current.previousVersion, op);
    });
  }

  /**
   * Replaces the instances one by one with `target`, each waiting for readiness. An instance that does
   * not become ready in time is put back on the version it ran, the rollout stops, and the fleet's
   * version goes back to the one it had (so later starts use a version known to work); the error carries
   * the progress and what each instance runs.
   */
  async #rollTo(target: string, op: Op): Promise<RolloutResult> {
    await this.#stopLeftovers(op);
    const state = await this.#state();
    const from = state.version;
    // Restored with `from` when the rollout fails: a failed rollout is undone, and so is its mark on the
    // rollback target (else a failed v2 → broken would leave `previousVersion: v2` and lose v1).
    const fromPrevious = state.previousVersion;
    const replicas = state.replicas;
    await this.#mutate((s) => {
      if (s.version !== target) s.previousVersion = s.version;
      s.version = target;
    });
    op.changed = true;
    const all = range(replicas);
    const ready = await this.#readiness(all);
    const views = await this.#views(state);
    const onTarget = new Set(views.filter((v) => v.alive && v.entry?.version === target).map((v) => v.index));
    const progress = (message: string): void => {
      op.emit({
        desired: replicas,
        updated: onTarget.size,
        ready: countTrue(ready),
        available: countTrue(ready),
        message,
      });
    };
    progress(`rolling ${replicas} instance(s) to ${target}`);
    for (const index of all) {
      if (onTarget.has(index) && ready.get(index)) continue;
      const name = instanceName(index);
      const before = (await this.#state()).instances.find((e) => e.index === index);
      const old = before?.version ?? from;
      this.#checkpoint(op, `stopping ${name}`);
      await this.#mutate((s) => this.#own(s, index, op.name));
      ready.set(index, false);
      await this.#stopMany([index], false, op.stopSignal);
      progress(`${onTarget.size}/${replicas} updated; replacing ${name}`);
      try {
        await this.#startMany([index], () => target, op.name);
        await this.#waitReady(op, [index], {
          desired: replicas,
          updated: () => onTarget.size,
          readyOthers: () => countTrue(ready),
          what: `${name} on ${target}`,
          stable: true,
        });
      } catch (err) {
        throw await this.#putBack(
          op,
          index,
          old,
          { version: from, previousVersion: fromPrevious },
          target,
          err,
          () => {
            progress(`${onTarget.size}/${replicas} updated; ${name} failed on ${target}, back on ${old}`);
            return op.last;
          },
          ready,
        );
      }
      onTarget.add(index);
      ready.set(index, true);
      progress(`${onTarget.size}/${replicas} updated`);
    }
    return this.#result(op);
  }

  /**
   * After a failed replacement: the instance goes back to `old`, the fleet's version and previous version
   * to what they were before the rollout.
   */
  async #putBack(
    op: Op,
    index: number,
    old: string,
    before: { version: string; previousVersion: string | undefined },
    target: string,
    cause: unknown,
    report: () => RolloutProgress,
    ready: Map<number, boolean>,
  ): Promise<Error> {
    const name = instanceName(index);
    let back: string;
    try {
      // The failed instance serves nobody: past the deadline (or cancelled) it is killed at once.
      await this.#stopMany([index], false, op.stopSignal);
      await this.#startMany([index], () => old, op.name);
      if (op.signal?.aborted) back = `restarted on ${old}`;
      else {
        // Up to the deadline, or a short grace past it: never a whole readinessTimeout after it.
        const now = performance.now();
        const wait = Math.min(this.#config.readinessTimeout, Math.max(op.deadline - now, PUT_BACK_GRACE_MS));
        const readyAgain = (await this.#waitUntil([index], now + wait, undefined)).pending;
        ready.set(index, readyAgain.size === 0);
        back = readyAgain.size === 0 ? `ready again on ${old}` : `restarted on ${old}, not ready yet`;
      }
    } catch (err) {
      back = `could not be restarted on ${old}: ${errorMessage(err)}`;
    }
    const from = before.version;
    await this.#mutate((s) => {
      s.version = from;
      if (before.previousVersion === undefined) delete s.previousVersion;
      else s.previousVersion = before.previousVersion;
    });
    const progress = report();
    const fleet = (await this.#state()).instances
      .filter((e) => e.index < progress.desired)
      .map((e) => ({ name: instanceName(e.index), version: e.version }));
    const why = errorMessage(cause);
    return new UnavailableError(
      `rollout to ${target} stopped at ${name}: ${why}. ${name} is ${back}; ` +
        `${progress.updated}/${progress.desired} instance(s) run ${target}, the fleet's version is ${from} again`,
      {
        cause,
        details: { progress, failedInstance: name, version: target, fleetVersion: from, instances: fleet },
      },
    );
  }

  // -------------------------------------------------------------------------------------------------
  // Supervisor

  async supervise(options: { signal: AbortSignal }): Promise<void> {
    const { signal } = options;
    let wake: (() => void) | undefined;
    const poke = (): void => wake?.();
    childExits.on('exit', poke);
    signal.addEventListener('abort', poke, { once: true });
    this.#closed.signal.addEventListener('abort', poke, { once: true });
    try {
      while (!signal.aborted && !this.#closed.signal.aborted) {
        try {
          await this.superviseOnce();
        } catch (err) {
          this.#log.error({ err: errorMessage(err), fleet: this.fleetDir }, 'supervisor round failed');
        }
        if (signal.aborted || this.#closed.signal.aborted) break;
        const pause = new AbortController();
        await Promise.race([
          new Promise<void>((resolve) => (wake = resolve)),
          sleep(this.#supervisor.intervalMs, undefined, { signal: pause.signal }).catch(() => undefined),
        ]);
        pause.abort();
        wake = undefined;
      }
    } finally {
      childExits.off('exit', poke);
      signal.removeEventListener('abort', poke);
      this.#closed.signal.removeEventListener('abort', poke);
    }
  }

  async superviseOnce(): Promise<SupervisorRound> {
    const round: SupervisorRound = { started: [], backingOff: [], stopped: [], rotated: [], skipped: [] };
    await this.#ensureDirs();
    const strays: number[] = [];
    await this.#mutate(async (state, spawned) => {
      const now = this.#clock.now();
      for (const index of range(state.replicas)) {
        if (!state.instances.some((e) => e.index === index)) {
          state.instances.push({ index, version: state.version, restarts: 0, failures: 0 });
        }
      }
      const toStart: InstanceState[] = [];
      for (const entry of state.instances) {
        const name = instanceName(entry.index);
        if (entry.owner && (await ownerAlive(entry.owner))) {
          round.skipped.push(name);
          continue;
        }
        delete entry.owner;
        if (entry.index >= state.replicas) {
          strays.push(entry.index);
          continue;
        }
        const alive =
          entry.pid !== undefined &&
          entry.startTime !== undefined &&
          isSameProcess(await procStat(entry.pid), entry.startTime);
        if (alive) {
          const up = entry.spawnedAt ? now.getTime() - Date.parse(entry.spawnedAt) : 0;
          if (entry.failures > 0 && up >= this.#supervisor.stableAfterMs) {
            entry.failures = 0;
            delete entry.nextAttemptAt;
          }
          continue;
        }
        if (entry.pid !== undefined) {
          // A child of this process that just died: its exit event may not have been handled yet.
          const exit = await exitStatus(entry.pid, entry.startTime);
          entry.lastExit = {
            pid: entry.pid,
            at: (exit?.at ?? now).toISOString(),
            code: exit ? exit.code : null,
            signal: exit ? exit.signal : null,
            reason: describeExit(exit),
          };
          delete entry.pid;
          delete entry.startTime;
          this.#backoff(entry, now);
          this.#log.warn(
            {
              instance: name,
              reason: entry.lastExit.reason,
              retryAt: entry.nextAttemptAt,
              failures: entry.failures,
            },
            'game server exited; restarting after backoff',
          );
        }
        if (entry.nextAttemptAt && Date.parse(entry.nextAttemptAt) > now.getTime()) {
          round.backingOff.push(name);
          continue;
        }
        toStart.push(entry);
      }
      const adopted = await this.#recoverInterrupted(
        state,
        toStart.map((e) => ({ index: e.index, version: e.version })),
      );
      for (const index of adopted) round.started.push(instanceName(index));
      const spawning = toStart.filter((e) => !adopted.has(e.index));
      await this.#recordStarts(
        state,
        spawning.map((e) => e.index),
      );
      for (const entry of spawning) {
        const name = instanceName(entry.index);
        try {
          this.#versionSpec(entry.version);
          if (await this.#portInUse(this.#port(entry.index))) throw this.#portError(entry.index);
          await this.#spawnInto(state, entry.index, entry.version, undefined, spawned);
          if (entry.lastExit) entry.restarts++;
          round.started.push(name);
          this.#log.info({ instance: name, version: entry.version, pid: entry.pid }, 'game server started');
        } catch (err) {
          delete entry.starting;
          entry.problem = errorMessage(err).slice(0, 500);
          this.#backoff(entry, now);
          round.backingOff.push(name);
          this.#log.error(
            { instance: name, problem: entry.problem, retryAt: entry.nextAttemptAt },
            'cannot start game server',
          );
        }
      }
    });
    if (strays.length > 0) {
      await this.#stopMany(strays, true, undefined);
      round.stopped.push(...strays.map(instanceName));
    }
    round.rotated.push(...(await this.#rotateLogs()));
    return round;
  }

  #backoff(entry: InstanceState, now: Date): void {
    entry.failures++;
    const { backoffBaseMs, backoffMaxMs } = this.#supervisor;
    const delay = Math.min(backoffBaseMs * 2 ** Math.min(entry.failures - 1, 30), backoffMaxMs);
    entry.nextAttemptAt = new Date(now.getTime() + delay).toISOString();
  }

  /**
   * Rotates every instance's non-empty log now (maintenance), under the rotate lock the supervisor
   * shares: a supervisor round rotating at the same moment is waited for (up to 5 s).
   */
  async rotateLogs(): Promise<LogRotation> {
    const lock = await this.#rotateLock.acquire('rotate', ROTATE_LOCK_WAIT_MS);
    try {
      return { rotated: await this.#rotateHeld(1) };
    } finally {
      await lock.release();
    }
  }

  async #rotateLogs(): Promise<string[]> {
    let lock: HeldLock;
    try {
      lock = await this.#rotateLock.acquire('rotate', 0);
    } catch {
      return [];
    }
    try {
      return await this.#rotateHeld(this.#config.logs.maxBytes);
    } finally {
      await lock.release();
    }
  }

  /** Rotates the logs that reached `maxBytes` (1: every non-empty one); the rotate lock is held. */
  async #rotateHeld(maxBytes: number): Promise<string[]> {
    const state = await this.#state();
    const rotated: string[] = [];
    const byIndex = new Map(state.instances.map((e) => [e.index, e]));
    for (const index of range(Math.max(state.replicas, ...state.instances.map((e) => e.index + 1)))) {
      const name = instanceName(index);
      const file = logFileOf(this.#logDir, name);
      const entry = byIndex.get(index);
      if (
        entry?.pid !== undefined &&
        entry.startTime !== undefined &&
        isSameProcess(procStatSync(entry.pid), entry.startTime)
      )
        await this.#checkLogFile(name, file, entry.pid);
      if (await rotateIfNeeded(file, maxBytes, this.#config.logs.keep)) rotated.push(name);
    }
    return rotated;
  }

  /** Pids already warned about writing to a log file that is not the one at its path (renamed away). */
  readonly #warnedElsewhere = new Set<number>();

  /** A live instance whose log file was deleted under it gets a new one (see recoverDeletedLog). */
  async #checkLogFile(name: string, file: string, pid: number): Promise<void> {
    try {
      const check = await recoverDeletedLog(file, pid);
      if (check.state === 'recovered') {
        this.#log.warn(
          { instance: name, file, bytes: check.bytes },
          'the log file was deleted while the game server ran: recreated it with what the server wrote since',
        );
      } else if (check.state === 'elsewhere' && !this.#warnedElsewhere.has(pid)) {
        this.#warnedElsewhere.add(pid);
        this.#log.warn(
          { instance: name, file, pid },
          'the game server writes to another file than its log file (renamed away?); its output reaches the log again after a restart',
        );
      }
    } catch (err) {
      this.#log.error({ instance: name, file, err: errorMessage(err) }, 'cannot check the log file');
    }
  }

  async close(): Promise<void> {
    this.#closed.abort();
  }

  // -------------------------------------------------------------------------------------------------
  // Internals

  async #ensureDirs(): Promise<void> {
    this.#dirs ??= (async () => {
      await ensurePrivateDir(this.fleetDir);
      await ensurePrivateDir(this.#logDir);
    })();
    try {
      await this.#dirs;
    } catch (err) {
      this.#dirs = undefined;
      throw new UnavailableError(`cannot use the fleet directory ${this.fleetDir}: ${errorMessage(err)}`, {
        details: { dir: this.fleetDir },
      });
    }
  }

  async #state(): Promise<FleetState> {
    await this.#ensureDirs();
    return (
      (await readState(this.fleetDir)) ??
      initialState(this.#config.version, this.#config.replicas, this.#clock.now())
    );
  }

  /**
   * Read-modify-write of the state file under the state lock. What `fn` spawns goes into `spawned`: when
   * the state naming those processes cannot be written (a full disk), they are stopped again, so that no
   * game server runs that the state does not name.
   */
  async #mutate<T>(fn: (state: FleetState, spawned: Started[]) => T | Promise<T>): Promise<T> {
    await this.#ensureDirs();
    const lock = await this.#stateLock.acquire('state', STATE_LOCK_WAIT_MS);
    const spawned: Started[] = [];
    try {
      const state = await this.#state();
      const out = await fn(state, spawned);
      state.updatedAt = this.#clock.now().toISOString();
      await this.#write(state);
      return out;
    } catch (err) {
      if (spawned.length === 0) throw err;
      await mapLimit(spawned, this.#concurrency, (p) =>
        stopProcess(p.pid, p.startTime, { graceMs: 1000 }).catch(() => false),
      );
      this.#log.error(
        { err: errorMessage(err), pids: spawned.map((p) => p.pid) },
        'game servers just started were stopped again: their state could not be recorded',
      );
      throw new UnavailableError(
        `${errorMessage(err)}; the ${spawned.length} game server(s) just started were stopped again`,
        { cause: err, details: err instanceof GameopsError ? err.details : undefined },
      );
    } finally {
      await lock.release();
    }
  }

  /** Writes the state file (the state lock is held); a failure names the file. */
  async #write(state: FleetState): Promise<void> {
    const file = join(this.fleetDir, STATE_FILE);
    try {
      await this.#writeState(this.fleetDir, state);
    } catch (err) {
      throw new UnavailableError(`cannot write the fleet state file ${file}: ${errorMessage(err)}`, {
        cause: err,
        details: { file },
      });
    }
  }

  /**
   * Records (written at once) that `indexes` are about to be started: if this process dies between the
   * spawn and the state write that names the process, whoever takes the state lock next knows to look
   * for it ({@link #recoverInterrupted}).
   */
  async #recordStarts(state: FleetState, indexes: number[]): Promise<void> {
    if (indexes.length === 0) return;
    const at = this.#clock.now().toISOString();
    const by = { pid: process.pid, startTime: ownStartTime() };
    for (const index of indexes) this.#entry(state, index, state.version).starting = { at, by };
    state.updatedAt = at;
    await this.#write(state);
  }

  /**
   * Instances with a start on record that was interrupted (seen under the state lock, an intent is never
   * one in progress): a game server it left running (found by its environment: this fleet's config file
   * and the instance name) is adopted when it runs the wanted version, else stopped. Returns the
   * instances adopted.
   */
  async #recoverInterrupted(
    state: FleetState,
    wants: Array<{ index: number; version: string }>,
  ): Promise<Set<number>> {
    const adopted = new Set<number>();
    for (const { index, version } of wants) {
      const entry = state.instances.find((e) => e.index === index);
      if (!entry?.starting) continue;
      const interrupted = entry.starting;
      delete entry.starting;
      if (
        entry.pid !== undefined &&
        entry.startTime !== undefined &&
        isSameProcess(procStatSync(entry.pid), entry.startTime)
      )
        continue;
      const name = instanceName(index);
      const found = await findLeadersByEnv({
        GAME_CONFIG_FILE: join(this.fleetDir, CONFIG_FILE),
        GAME_INSTANCE: name,
      });
      const keep = [...found].reverse().find((f) => f.environ.includes(`GAME_VERSION=${version}`));
      for (const f of found) {
        if (f === keep) continue;
        await stopProcess(f.pid, f.startTime, { graceMs: 2000 }).catch(() => false);
      }
      this.#log.warn(
        {
          instance: name,
          by: interrupted.by.pid,
          at: interrupted.at,
          found: found.map((f) => f.pid),
          adopted: keep?.pid,
        },
        'a start of this game server was interrupted before its pid was recorded',
      );
      if (!keep) continue;
      entry.version = version;
      entry.pid = keep.pid;
      entry.startTime = keep.startTime;
      entry.spawnedAt = this.#clock.now().toISOString();
      delete entry.nextAttemptAt;
      delete entry.problem;
      adopted.add(index);
    }
    return adopted;
  }

  #entry(state: FleetState, index: number, version: string): InstanceState {
    let entry = state.instances.find((e) => e.index === index);
    if (!entry) {
      entry = { index, version, restarts: 0, failures: 0 };
      state.instances.push(entry);
    }
    return entry;
  }

  async #withLock<T>(operation: string, signal: AbortSignal | undefined, body: () => Promise<T>): Promise<T> {
    await this.#ensureDirs();
    const lock = await this.#opLock.acquire(operation, this.#lockWaitMs, signal);
    try {
      return await body();
    } finally {
      await lock.release();
    }
  }

  async #operation(
    name: string,
    options: WaitOptions,
    body: (op: Op) => Promise<RolloutResult>,
  ): Promise<RolloutResult> {
    const timeoutMs = options.timeoutMs ?? this.#config.rolloutTimeout;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0)
      throw new InputError(
        `timeoutMs must be a positive number of milliseconds (got ${String(options.timeoutMs)})`,
      );
    options.signal?.throwIfAborted();
    return this.#withLock(name, options.signal, async () => {
      const started = performance.now();
      const deadlineSignal = AbortSignal.timeout(Math.ceil(Math.min(timeoutMs, 2 ** 31 - 1)));
      const op: Op = {
        name,
        started,
        deadline: started + timeoutMs,
        signal: options.signal,
        stopSignal: options.signal ? AbortSignal.any([options.signal, deadlineSignal]) : deadlineSignal,
        changed: false,
        last: { operation: name, desired: 0, updated: 0, ready: 0, available: 0, message: 'starting' },
        emit: (progress) => {
          const full = { operation: name, ...progress };
          op.last = full;
          try {
            options.onProgress?.(full);
          } catch (err) {
            this.#log.warn({ err: errorMessage(err) }, 'onProgress callback threw');
          }
          return full;
        },
      };
      try {
        return await body(op);
      } catch (err) {
        throw withProgress(err, op);
      } finally {
        await this.#mutate((s) => {
          const me = process.pid;
          for (const e of s.instances) if (e.owner?.pid === me && e.owner.operation === name) delete e.owner;
        }).catch((err: unknown) =>
          this.#log.error({ err: errorMessage(err) }, 'cannot clear operation marks'),
        );
      }
    });
  }

  /** Stops what runs above the replicas (an interrupted scale-down left it), before the operation's work. */
  async #stopLeftovers(op: Op): Promise<void> {
    const state = await this.#state();
    const extra = state.instances.filter((e) => e.index >= state.replicas).map((e) => e.index);
    if (extra.length === 0) return;
    await this.#mutate((s) => extra.forEach((index) => this.#own(s, index, op.name)));
    op.changed = true;
    await this.#stopMany(extra, true, op.stopSignal);
  }

  /** Before stopping anything more: a cancelled or timed-out operation stops here. */
  #checkpoint(op: Op, what: string): void {
    op.signal?.throwIfAborted();
    if (performance.now() >= op.deadline)
      throw new UnavailableError(`${op.name}: the operation timed out before ${what}`, {
        details: { progress: op.last },
      });
  }

  async #result(op: Op): Promise<RolloutResult> {
    const state = await this.#state();
    return {
      operation: op.name,
      version: state.version,
      previousVersion: state.previousVersion,
      replicas: op.last.desired,
      durationMs: Math.round(performance.now() - op.started),
      progress: op.last,
    };
  }

  #own(state: FleetState, index: number, operation: string): void {
    const entry = this.#entry(state, index, state.version);
    entry.owner = { pid: process.pid, startTime: ownStartTime(), operation };
  }

  /** Starts instances (that have no live process) in one state update. */
  async #startMany(
    indexes: number[],
    versionOf: (entry: InstanceState | undefined) => string,
    operation: string,
  ): Promise<void> {
    if (indexes.length === 0) return;
    const problems: string[] = [];
    await this.#mutate(async (state, spawned) => {
      const wants = indexes.map((index) => ({
        index,
        version: versionOf(state.instances.find((e) => e.index === index)),
      }));
      const adopted = await this.#recoverInterrupted(state, wants);
      const rest = wants.filter((w) => !adopted.has(w.index));
      await this.#recordStarts(
        state,
        rest.map((w) => w.index),
      );
      for (const index of adopted) this.#markStarted(state, index, operation);
      for (const { index, version } of rest) {
        try {
          await this.#spawnInto(state, index, version, operation, spawned);
        } catch (err) {
          problems.push(`${instanceName(index)}: ${errorMessage(err)}`);
        }
      }
    });
    if (problems.length > 0) throw new UnavailableError(`cannot start ${problems.join('; ')}`);
  }

  /** Spawns `index` on `version` (its intent recorded before), into the state and into `spawned`. */
  async #spawnInto(
    state: FleetState,
    index: number,
    version: string,
    operation: string | undefined,
    spawned: Started[],
  ): Promise<void> {
    const entry = this.#entry(state, index, version);
    try {
      const spec = this.#versionSpec(version);
      const name = instanceName(index);
      const cwd = resolve(spec.cwd ?? process.cwd());
      const [program, ...args] = spec.command;
      // A relative program path is the version's cwd joined with it, said in so many words (not left to
      // how the child resolves it after its chdir), so errors name the file that was looked for.
      const command =
        program !== undefined && program.includes('/') && !isAbsolute(program)
          ? [resolve(cwd, program), ...args]
          : spec.command;
      const started = await spawnDetached({
        command,
        cwd,
        env: this.#env(index, version, spec.env),
        logFile: logFileOf(this.#logDir, name),
      });
      spawned.push(started);
      entry.version = version;
      entry.pid = started.pid;
      entry.startTime = started.startTime;
      entry.spawnedAt = this.#clock.now().toISOString();
      delete entry.nextAttemptAt;
      delete entry.problem;
      this.#markStarted(state, index, operation);
    } finally {
      delete entry.starting;
    }
  }

  /** A deliberate start is a fresh instance (no crash history to back off from), owned by the operation. */
  #markStarted(state: FleetState, index: number, operation: string | undefined): void {
    if (operation === undefined) return;
    const entry = this.#entry(state, index, state.version);
    entry.failures = 0;
    entry.owner = { pid: process.pid, startTime: ownStartTime(), operation };
  }

  /**
   * Stops instances (their whole process groups), at most `concurrency` at once; `remove` drops them from
   * the state. When `signal` aborts (an operation cancelled or past its deadline) the grace ends: SIGKILL.
   */
  async #stopMany(indexes: number[], remove: boolean, signal: AbortSignal | undefined): Promise<void> {
    if (indexes.length === 0) return;
    const state = await this.#state();
    await mapLimit(indexes, this.#concurrency, async (index) => {
      const entry = state.instances.find((e) => e.index === index);
      if (entry?.pid !== undefined && entry.startTime !== undefined)
        await stopProcess(entry.pid, entry.startTime, { graceMs: this.#stopGraceMs, signal });
    });
    await this.#mutate((s) => {
      if (remove) {
        s.instances = s.instances.filter((e) => !indexes.includes(e.index));
        return;
      }
      for (const e of s.instances) {
        if (!indexes.includes(e.index)) continue;
        delete e.pid;
        delete e.startTime;
      }
    });
  }

  /** Waits until `indexes` answer their readiness probe, reporting progress; throws UnavailableError otherwise. */
  async #waitReady(
    op: Op,
    indexes: number[],
    how: {
      desired: number;
      updated: () => number;
      readyOthers?: () => number;
      what: string;
      /** Hold each instance for the stability window once it is ready (rollouts and restarts). */
      stable?: boolean;
    },
  ): Promise<void> {
    const holdMs = how.stable ? this.#minReadyMs : 0;
    const deadline = Math.min(op.deadline, performance.now() + this.#config.readinessTimeout + holdMs);
    const report = (pending: Set<number>, reason: string | undefined, holding: number): void => {
      const readyHere = indexes.length - pending.size + holding;
      const ready = how.readyOthers ? how.readyOthers() + readyHere : readyHere;
      const waiting = [...pending].map(instanceName);
      op.emit({
        desired: how.desired,
        updated: how.updated(),
        ready,
        available: ready,
        message:
          pending.size === 0
            ? `${how.what}: ready`
            : `${how.updated()}/${how.desired} updated, ${ready} ready; waiting for ${waiting.slice(0, 5).join(', ')}${waiting.length > 5 ? ` and ${waiting.length - 5} more` : ''}${reason ? ` (${reason})` : ''}`,
      });
    };
    const { pending, dead } = await this.#waitUntil(indexes, deadline, op.signal, report, holdMs);
    if (pending.size === 0) return;
    const first = [...dead, ...pending][0]!;
    const reason = this.#lastReasons.get(first);
    const probe = this.#probeReasons.get(first);
    const what = dead.has(first)
      ? `died${reason ? ` (${reason})` : ''}${probe ? `; its last readiness probe: ${probe}` : ''}`
      : `${
          performance.now() >= op.deadline
            ? 'the operation timed out'
            : `not ready within ${this.#config.readinessTimeout} ms`
        }${reason ? ` (${reason})` : ''}`;
    throw new UnavailableError(`${how.what}: ${instanceName(first)} ${what}`, {
      details: { progress: op.last },
    });
  }

  /** Last readiness failure per instance, for messages. */
  readonly #lastReasons = new Map<number, string>();
  /** Last failed probe of a live process per instance (kept when it then dies). */
  readonly #probeReasons = new Map<number, string>();

  /**
   * Polls until every instance of `indexes` is ready (and, with `holdMs`, has stayed alive and ready
   * that long since its first good probe; a failed probe starts the window again), one dies, the deadline
   * passes or the signal aborts (which throws its reason). Returns the ones still not ready, and those
   * seen dead.
   */
  async #waitUntil(
    indexes: number[],
    deadline: number,
    signal: AbortSignal | undefined,
    report?: (pending: Set<number>, reason: string | undefined, holding: number) => void,
    holdMs = 0,
  ): Promise<{ pending: Set<number>; dead: Set<number> }> {
    const pending = new Set(indexes);
    const dead = new Set<number>();
    const readySince = new Map<number, number>();
    for (const index of indexes) this.#probeReasons.delete(index);
    for (;;) {
      signal?.throwIfAborted();
      const state = await this.#state();
      const list = [...pending];
      // Read once per round, and only when some probe succeeded.
      let listeners: Promise<Listeners> | undefined;
      const results = await mapLimit(list, this.#concurrency, async (index) => {
        const entry = state.instances.find((e) => e.index === index);
        const alive =
          entry?.pid !== undefined &&
          entry.startTime !== undefined &&
          isSameProcess(await procStat(entry.pid), entry.startTime);
        if (!alive) {
          return {
            ready: false,
            dead: true,
            reason:
              entry?.pid !== undefined
                ? describeExit(await exitStatus(entry.pid, entry.startTime))
                : 'not running',
          };
        }
        const probe = await probeReady(this.#opsUrl(index), this.#token, this.#probeTimeoutMs);
        if (!probe.ready) return { ...probe, dead: false };
        // Only the new instance's own answer counts: not a previous process still draining on the port,
        // nor another program that took it.
        listeners ??= listeningSockets(entry.pid);
        const owner = await listenerOwnership(
          entry.pid!,
          entry.startTime!,
          this.#port(index),
          await listeners,
        );
        if (owner.owned === false) return { ready: false, reason: owner.reason, dead: false };
        return { ...probe, dead: false };
      });
      let reason: string | undefined;
      const now = performance.now();
      list.forEach((index, i) => {
        const r = results[i]!;
        if (r.ready) {
          this.#lastReasons.delete(index);
          const since = readySince.get(index) ?? now;
          readySince.set(index, since);
          if (now - since >= holdMs) {
            pending.delete(index);
            readySince.delete(index);
          } else {
            reason ??= `ready, staying up ${Math.ceil((holdMs - (now - since)) / 1000)} s more before going on`;
          }
        } else {
          readySince.delete(index);
          reason ??= r.reason;
          if (r.reason) this.#lastReasons.set(index, r.reason);
          if (r.dead) dead.add(index);
          else if (r.reason) this.#probeReasons.set(index, r.reason);
        }
      });
      report?.(pending, reason, readySince.size);
      if (pending.size === 0 || dead.size > 0 || performance.now() >= deadline) return { pending, dead };
      const nextHold = Math.min(
        ...[...readySince.values()].map((since) => since + holdMs - performance.now()),
      );
      await sleep(
        Math.min(POLL_MS, Math.max(1, nextHold), Math.max(1, deadline - performance.now())),
        undefined,
        signal ? { signal } : {},
      );
    }
  }

  /** Readiness of instances now (one probe each; a dead one is not ready). */
  async #readiness(indexes: number[]): Promise<Map<number, boolean>> {
    const state = await this.#state();
    const views = await this.#views(state, state.replicas);
    const byIndex = new Map(views.map((v) => [v.index, v]));
    const results = await mapLimit(indexes, this.#concurrency, async (index) =>
      byIndex.get(index)?.alive
        ? (await probeReady(this.#opsUrl(index), this.#token, this.#probeTimeoutMs)).ready
        : false,
    );
    return new Map(indexes.map((index, i) => [index, results[i]!]));
  }

  /**
   * Instances 0 … count-1 with their state entry and whether their process is alive; with `leftovers`,
   * then the entries at `count` or above whose process is still alive (a scale-down that was interrupted,
   * or one in progress), so that nothing running is ever invisible.
   */
  async #views(state: FleetState, count = state.replicas, leftovers = false): Promise<View[]> {
    const byIndex = new Map(state.instances.map((e) => [e.index, e]));
    // Synchronous reads: a /proc stat file is read in microseconds, far less than a thread-pool round trip.
    const view = (index: number): View => {
      const entry = byIndex.get(index);
      const stat = entry?.pid !== undefined ? procStatSync(entry.pid) : undefined;
      const alive = entry?.startTime !== undefined && isSameProcess(stat, entry.startTime);
      return { index, name: instanceName(index), entry, stat, alive };
    };
    const views = range(count).map(view);
    if (leftovers) {
      const above = state.instances.filter((e) => e.index >= count && e.pid !== undefined);
      for (const e of above.sort((a, b) => a.index - b.index)) {
        const v = view(e.index);
        if (v.alive) views.push(v);
      }
    }
    return views;
  }

  /** The fleet's instances matching `filter`; an unknown name is a NotFoundError. */
  async #select(state: FleetState, filter: InstanceFilter | undefined): Promise<View[]> {
    const names = filter?.names;
    const labels = filter?.labels;
    if (names !== undefined && !(Array.isArray(names) && names.every((n) => typeof n === 'string')))
      throw new InputError('names: a list of instance names');
    if (labels !== undefined && (typeof labels !== 'object' || labels === null || Array.isArray(labels)))
      throw new InputError('labels: an object of key=value pairs');
    const views = await this.#views(state, state.replicas, true);
    let indexes = views.map((v) => v.index);
    if (names !== undefined) {
      const unknown = names.filter((n) => {
        const index = indexOfName(n);
        return index === undefined || !indexes.includes(index);
      });
      if (unknown.length > 0) {
        const have = state.replicas === 0 ? 'none' : `game-0 … game-${state.replicas - 1}`;
        throw new NotFoundError(
          `no instance named ${unknown.map((n) => JSON.stringify(n).slice(0, 80)).join(', ')} in the local fleet (instances: ${have})`,
          { details: { names: unknown.slice(0, 20) } },
        );
      }
      const wanted = new Set(names.map((n) => indexOfName(n)!));
      indexes = indexes.filter((i) => wanted.has(i));
    }
    const chosen = new Set(indexes);
    return views.filter((v) => {
      if (!chosen.has(v.index)) return false;
      if (!labels) return true;
      const own = this.#labels(v.name, v.entry?.version ?? state.version);
      return Object.entries(labels).every(([k, value]) => own[k] === value);
    });
  }

  #labels(name: string, version: string): Record<string, string> {
    return { app: 'game-server', instance: name, version };
  }

  /**
   * The config of `version`.
   * @param input whether `version` comes from the caller (InputError) or from the state (UnavailableError)
   */
  #versionSpec(version: string, input = false): LocalPlatformConfig['versions'][string] {
    const spec =
      typeof version === 'string'
        ? Object.hasOwn(this.#config.versions, version)
          ? this.#config.versions[version]
          : undefined
        : undefined;
    if (spec) return spec;
    const known = Object.keys(this.#config.versions).join(', ');
    const message = `unknown version ${JSON.stringify(String(version)).slice(0, 140)}: platform.versions lists ${known}`;
    throw input ? new InputError(message) : new UnavailableError(`${message} (the fleet state names it)`);
  }

  #port(index: number): number {
    return this.#config.basePort + index;
  }

  #opsUrl(index: number): string {
    const host = this.#config.host;
    const reach = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
    return `http://${reach.includes(':') ? `[${reach}]` : reach}:${this.#port(index)}`;
  }

  #env(index: number, version: string, versionEnv: Record<string, string>): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of INHERITED_ENV) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    Object.assign(env, this.#config.env, versionEnv);
    for (const [name, value] of Object.entries(this.#config.secretEnv)) env[name] = value.reveal();
    env.GAME_PORT = String(this.#port(index));
    env.GAME_HOST = this.#config.host;
    env.GAME_INSTANCE = instanceName(index);
    env.GAME_VERSION = version;
    env.GAME_CONFIG_FILE = join(this.fleetDir, CONFIG_FILE);
    if (this.#token) env.GAME_OPS_TOKEN = this.#token.reveal();
    return env;
  }

  /** Refuses to start anything when one of the ports is taken by a process that is not ours. */
  async #checkPorts(indexes: number[]): Promise<void> {
    for (const index of indexes) {
      if (await this.#portInUse(this.#port(index))) throw this.#portError(index);
    }
  }

  #portError(index: number): UnavailableError {
    const port = this.#port(index);
    return new UnavailableError(
      `port ${this.#config.host}:${port} (for ${instanceName(index)}) is already in use by another process; ` +
        'free it or change platform.basePort. Nothing was started.',
      { details: { port, instance: instanceName(index) } },
    );
  }

  async #portInUse(port: number): Promise<boolean> {
    const server = createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port, host: this.#config.host, exclusive: true }, resolve);
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') return true;
      throw new UnavailableError(`cannot check port ${this.#config.host}:${port}: ${errorMessage(err)}`, {
        details: { port },
      });
    }
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return false;
  }
}

/**
 * An operation's failure as the port wants it: bad input and conflicts as they are; a refusal before the
 * operation changed anything (a port taken, a state file that cannot be read or written) as it is too,
 * without progress (the CLI says "could not run", not "rollout failed"); anything else that stopped a
 * wait (a timeout, a cancellation, a start that failed) as an UnavailableError carrying the last
 * progress, so what was learnt is not lost.
 */
function withProgress(err: unknown, op: Op): unknown {
  if (err instanceof InputError || err instanceof NotFoundError || err instanceof ConflictError) return err;
  if (err instanceof GameopsError && err.details?.progress !== undefined) return err;
  const cancelled = op.signal?.aborted === true;
  if (!op.changed && !cancelled) {
    return err instanceof GameopsError
      ? err
      : new UnavailableError(`${op.name} could not start: ${errorMessage(err)}`, { cause: err });
  }
  const message = cancelled
    ? `${op.name} cancelled: ${op.last.message}`
    : `${op.name} stopped: ${errorMessage(err)}`;
  const details = err instanceof GameopsError ? err.details : undefined;
  return new UnavailableError(message, { cause: err, details: { ...details, progress: op.last } });
}

async function ownerAlive(owner: { pid: number; startTime: string }): Promise<boolean> {
  return isSameProcess(await procStat(owner.pid), owner.startTime);
}

function validatePatch(patch: unknown): asserts patch is Record<string, string | null> {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch))
    throw new InputError('a config patch is an object of key: string or null');
  const entries = Object.entries(patch);
  if (entries.length > MAX_CONFIG_KEYS)
    throw new InputError(`a config patch holds at most ${MAX_CONFIG_KEYS} keys`);
  for (const [key, value] of entries) {
    // eslint-disable-next-line no-control-regex
    if (key.length === 0 || key.length > 256 || /[\u0000-\u001f\u007f]/.test(key))
      throw new InputError(
        `config key ${JSON.stringify(key.slice(0, 80))}: 1 to 256 characters, no control characters`,
      );
    if (value !== null && typeof value !== 'string')
      throw new InputError(`config key ${key}: the value must be a string, or null to remove it`);
    if (typeof value === 'string' && Buffer.byteLength(value) > MAX_VALUE_BYTES)
      throw new InputError(`config key ${key}: the value is larger than ${MAX_VALUE_BYTES} bytes`);
  }
}

function instanceName(index: number): string {
  return `game-${index}`;
}

function indexOfName(name: string): number | undefined {
  const match = NAME.exec(name);
  return match ? Number(match[1]) : undefined;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function countTrue(map: Map<number, boolean>): number {
  let n = 0;
  for (const v of map.values()) if (v) n++;
  return n;
}
