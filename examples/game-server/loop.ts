/**
 * The authoritative tick loop's scheduler and its statistics.
 *
 * Drift-free: tick k is due at `start + k * period`, computed from the loop's start time, so timer
 * jitter never accumulates the way chained `setInterval` delays do. A tick that starts late is measured
 * (its lag); when the loop falls more than `maxBehindMs` behind, the missed ticks are skipped and counted
 * rather than run back to back.
 */

export interface TickInfo {
  /** Tick number since the loop started. */
  tick: number;
  /** When the tick was due (monotonic ms). */
  scheduledAt: number;
  /** When it started (monotonic ms). */
  startedAt: number;
  /** `startedAt - scheduledAt`, never negative (timers may fire a fraction of a millisecond early). */
  lagMs: number;
}

export interface TimerApi {
  set(callback: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const nodeTimers: TimerApi = {
  set: (callback, ms) => setTimeout(callback, ms),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface TickLoopOptions {
  rate: number;
  /** The tick's work; it returns when done (the loop measures it). */
  onTick: (info: TickInfo) => void;
  /**
   * Called after each tick with its wall-clock duration and the CPU time the process used meanwhile, in
   * ms. The difference is time the tick waited for a CPU (another process had it): a busy machine, not
   * a slow tick.
   */
  onTickDone?: (info: TickInfo, durationMs: number, cpuMs: number) => void;
  /** Called with the number of ticks skipped when the loop fell behind. */
  onSkip?: (skipped: number) => void;
  /** Monotonic milliseconds. @default performance.now */
  now?: () => number;
  timers?: TimerApi;
  /** @default 1000 */
  maxBehindMs?: number;
  /** CPU time used by this process so far, in ms. @default process.cpuUsage() */
  cpuNow?: () => number;
}

const processCpuMs = (): number => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
};

export class TickLoop {
  readonly periodMs: number;
  readonly #options: TickLoopOptions;
  readonly #now: () => number;
  readonly #timers: TimerApi;
  readonly #maxBehindMs: number;
  readonly #cpuNow: () => number;
  #startAt = 0;
  #next = 0;
  #handle: unknown;
  #running = false;

  constructor(options: TickLoopOptions) {
    this.#options = options;
    this.periodMs = 1000 / options.rate;
    this.#now = options.now ?? (() => performance.now());
    this.#timers = options.timers ?? nodeTimers;
    this.#maxBehindMs = options.maxBehindMs ?? 1000;
    this.#cpuNow = options.cpuNow ?? processCpuMs;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Starts ticking; tick 0 runs at once. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#startAt = this.#now();
    this.#next = 0;
    this.#run();
  }

  stop(): void {
    this.#running = false;
    if (this.#handle !== undefined) this.#timers.clear(this.#handle);
    this.#handle = undefined;
  }

  #run = (): void => {
    this.#handle = undefined;
    if (!this.#running) return;
    const startedAt = this.#now();
    const cpuAtStart = this.#cpuNow();
    let scheduledAt = this.#startAt + this.#next * this.periodMs;
    if (startedAt - scheduledAt > this.#maxBehindMs) {
      const skipped = Math.floor((startedAt - scheduledAt) / this.periodMs);
      this.#next += skipped;
      scheduledAt = this.#startAt + this.#next * this.periodMs;
      this.#options.onSkip?.(skipped);
    }
    const info: TickInfo = {
      tick: this.#next,
      scheduledAt,
      startedAt,
      lagMs: Math.max(0, startedAt - scheduledAt),
    };
    try {
      this.#options.onTick(info);
    } finally {
      this.#options.onTickDone?.(info, this.#now() - startedAt, this.#cpuNow() - cpuAtStart);
      this.#next += 1;
      if (this.#running) {
        const delay = this.#startAt + this.#next * this.periodMs - this.#now();
        // Timers have millisecond resolution: round up so a tick is not due after it ran.
        this.#handle = this.#timers.set(this.#run, Math.max(0, Math.ceil(delay)));
      }
    }
  };
}

export interface Percentiles {
  p50: number;
  p99: number;
  max: number;
}

/** A ring of the last N ticks' lag and duration, for `/ops/status` (percentiles over a recent window). */
export class TickWindow {
  readonly #capacity: number;
  readonly #lag: Float64Array;
  readonly #duration: Float64Array;
  readonly #cpu: Float64Array;
  readonly #startedAt: Float64Array;
  #size = 0;
  #head = 0;

  constructor(capacity: number) {
    this.#capacity = Math.max(2, capacity);
    this.#lag = new Float64Array(this.#capacity);
    this.#duration = new Float64Array(this.#capacity);
    this.#cpu = new Float64Array(this.#capacity);
    this.#startedAt = new Float64Array(this.#capacity);
  }

  record(startedAt: number, lagMs: number, durationMs: number, cpuMs = durationMs): void {
    this.#lag[this.#head] = lagMs;
    this.#duration[this.#head] = durationMs;
    this.#cpu[this.#head] = cpuMs;
    this.#startedAt[this.#head] = startedAt;
    this.#head = (this.#head + 1) % this.#capacity;
    if (this.#size < this.#capacity) this.#size += 1;
  }

  get size(): number {
    return this.#size;
  }

  lag(): Percentiles {
    return percentiles(this.#lag.subarray(0, this.#size));
  }

  duration(): Percentiles {
    return percentiles(this.#duration.subarray(0, this.#size));
  }

  cpu(): Percentiles {
    return percentiles(this.#cpu.subarray(0, this.#size));
  }

  /** Ticks per second achieved over the window (0 with fewer than two ticks). */
  ticksPerSecond(): number {
    if (this.#size < 2) return 0;
    const newest = this.#startedAt[(this.#head - 1 + this.#capacity) % this.#capacity] ?? 0;
    const oldest = this.#startedAt[this.#size < this.#capacity ? 0 : this.#head] ?? 0;
    const spanMs = newest - oldest;
    return spanMs > 0 ? ((this.#size - 1) * 1000) / spanMs : 0;
  }
}

const round3 = (value: number): number => Math.round(value * 1000) / 1000;

/** Nearest-rank percentiles of `values` (not modified), rounded to microseconds; zeros when empty. */
export function percentiles(values: Float64Array): Percentiles {
  if (values.length === 0) return { p50: 0, p99: 0, max: 0 };
  const sorted = Float64Array.from(values).sort();
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
  return { p50: round3(at(0.5)), p99: round3(at(0.99)), max: round3(sorted[sorted.length - 1] ?? 0) };
}
