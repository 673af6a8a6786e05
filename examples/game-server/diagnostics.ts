/**
 * On-demand diagnostics of this process: a CPU profile, a heap snapshot, a diagnostic report. One at a
 * time (the caller holds the slot until the file has been sent).
 *
 * A heap snapshot holds every secret in the process's memory. Its temporary file is unlinked as soon as it
 * is created: only the open descriptor keeps the data, so nothing is left on disk whatever happens to the
 * process (even a SIGKILL), and the directory it was made in is private (0700, the file 0600).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';

export type DiagnosticKind = 'cpu-profile' | 'heap-snapshot' | 'stack-dump';

export const DIAGNOSTIC_FILES: Readonly<Record<DiagnosticKind, { extension: string; contentType: string }>> =
  {
    'cpu-profile': { extension: 'cpuprofile', contentType: 'application/json' },
    'heap-snapshot': { extension: 'heapsnapshot', contentType: 'application/octet-stream' },
    'stack-dump': { extension: 'report.json', contentType: 'application/json' },
  };

/**
 * The only environment variables a report shows: names known to hold no secret. Everything else is left
 * out, whatever its name (DATABASE_URL, REDIS_URL, DB_PASS, STRIPE_API… all carry secrets without saying so).
 */
export const REPORT_ENVIRONMENT = [
  'PATH',
  'NODE_ENV',
  'TZ',
  'LANG',
  'HOSTNAME',
  'GAME_INSTANCE',
  'GAME_VERSION',
  'GAME_HOST',
  'GAME_PORT',
  'GAME_TICK_RATE',
  'GAME_SNAPSHOT_RATE',
  'GAME_MAX_PLAYERS',
  'GAME_MAX_INPUTS_PER_SECOND',
  'GAME_INPUT_BUDGET_MS',
  'GAME_INPUT_BATCH_SIZE',
  'GAME_SHUTDOWN_DRAIN_SECONDS',
  'GAME_STATS_WINDOW_SECONDS',
  'GAME_LOG_LEVEL',
] as const;

/** Temporary snapshot directories are named so; stale ones (a process killed at the wrong moment) are swept. */
const HEAP_DIR_PREFIX = 'game-heap-';
/** A snapshot needs about this many times the heap in use, free on disk. */
const SPACE_FACTOR = 2;
const MIB = 1024 * 1024;

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const aborted = (): void => {
      clearTimeout(timer);
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    if (signal.aborted) aborted();
    else signal.addEventListener('abort', aborted, { once: true });
  });
}

export class BusyError extends Error {
  override readonly name = 'BusyError';
}

/**
 * The diagnostic cannot be produced here and now (not enough disk space, a write failed). Nothing was sent:
 * the request fails with 503. `failed` tells a failure along the way from a refusal up front.
 */
export class DiagnosticUnavailableError extends Error {
  override readonly name = 'DiagnosticUnavailableError';
  readonly failed: boolean;
  constructor(message: string, failed: boolean) {
    super(message);
    this.failed = failed;
  }
}

export interface Slot {
  readonly kind: DiagnosticKind;
  release(): void;
}

export interface HeapSnapshotFile {
  /** Size of the snapshot. */
  bytes: number;
  /** The snapshot, from its start; closes the (already unlinked) file when it ends or is destroyed. */
  stream: fs.ReadStream;
}

export interface DiagnosticsOptions {
  instance: string;
  /** Where heap snapshots are written while taken. @default os.tmpdir() */
  dir?: string;
  now?: () => Date;
  /** Writes one chunk of a snapshot (tests inject failures). @default fs.writeSync until all is written */
  writeChunk?: (fd: number, chunk: Buffer) => void;
  /** Bytes free for us on the filesystem of `dir`. @default from statfs */
  freeBytes?: (dir: string) => number;
  /** Bytes of heap in use. @default v8.getHeapStatistics().used_heap_size */
  heapUsed?: () => number;
}

function writeAll(fd: number, chunk: Buffer): void {
  let written = 0;
  while (written < chunk.length) written += fs.writeSync(fd, chunk, written, chunk.length - written);
}

function freeBytesOf(dir: string): number {
  const stats = fs.statfsSync(dir);
  return stats.bavail * stats.bsize;
}

const describe = (err: unknown): string => {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
};

export class Diagnostics {
  readonly #instance: string;
  readonly #dir: string;
  readonly #now: () => Date;
  readonly #writeChunk: (fd: number, chunk: Buffer) => void;
  readonly #freeBytes: (dir: string) => number;
  readonly #heapUsed: () => number;
  #current: { kind: DiagnosticKind; startedAt: Date } | undefined;

  constructor(options: DiagnosticsOptions) {
    this.#instance = options.instance;
    this.#dir = options.dir ?? os.tmpdir();
    this.#now = options.now ?? (() => new Date());
    this.#writeChunk = options.writeChunk ?? writeAll;
    this.#freeBytes = options.freeBytes ?? freeBytesOf;
    this.#heapUsed = options.heapUsed ?? (() => v8.getHeapStatistics().used_heap_size);
  }

  /** Where heap snapshots are written. */
  get dir(): string {
    return this.#dir;
  }

  /**
   * Removes snapshot directories left by an earlier process of ours (killed while one was being taken;
   * older versions also left the file itself). Only our own, and only those older than a minute, so a
   * neighbour instance sharing the directory is not disturbed. Returns how many were removed.
   */
  async sweepStale(olderThanMs = 60_000): Promise<number> {
    let removed = 0;
    const uid = process.getuid?.();
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(this.#dir, { withFileTypes: true });
    } catch {
      return 0;
    }
    for (const entry of entries) {
      if (!entry.isDirectory() || !entry.name.startsWith(HEAP_DIR_PREFIX)) continue;
      const full = path.join(this.#dir, entry.name);
      try {
        const stat = await fsp.lstat(full);
        if (uid !== undefined && stat.uid !== uid) continue;
        if (Date.now() - stat.mtimeMs < olderThanMs) continue;
        await fsp.rm(full, { recursive: true, force: true });
        removed += 1;
      } catch {
        // Gone meanwhile, or not ours to remove.
      }
    }
    return removed;
  }

  /** Takes the one slot. @throws BusyError naming the diagnostic in progress. */
  acquire(kind: DiagnosticKind): Slot {
    const current = this.#current;
    if (current)
      throw new BusyError(
        `a ${current.kind} is already running (started ${current.startedAt.toISOString()}); one diagnostic at a time`,
      );
    const taken = { kind, startedAt: this.#now() };
    this.#current = taken;
    return {
      kind,
      release: () => {
        if (this.#current === taken) this.#current = undefined;
      },
    };
  }

  filename(kind: DiagnosticKind): string {
    const stamp = this.#now().toISOString().replace(/[:.]/g, '-');
    return `${this.#instance}-${stamp}.${DIAGNOSTIC_FILES[kind].extension}`;
  }

  /**
   * Profiles the CPU for `seconds` and returns the `.cpuprofile` JSON text. Aborting `signal` stops the
   * profiler early and rejects with the signal's reason.
   */
  async cpuProfile(seconds: number, signal: AbortSignal): Promise<string> {
    const session = new Session();
    session.connect();
    try {
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      let interrupted: unknown;
      try {
        await sleep(seconds * 1000, signal);
      } catch (err) {
        interrupted = err;
      }
      // Always stop, so an aborted request does not leave the profiler running.
      const { profile } = await session.post('Profiler.stop');
      if (interrupted !== undefined)
        throw interrupted instanceof Error ? interrupted : new Error('interrupted');
      return JSON.stringify(profile);
    } finally {
      await session.post('Profiler.disable').catch(() => undefined);
      session.disconnect();
    }
  }

  /**
   * Takes a heap snapshot, writing V8's chunks to a temporary file as they come (the process does not hold
   * the whole snapshot in memory). The file is unlinked right after it is created, so it never outlives
   * the stream (or the process). Refuses up front when the directory has less free space than about twice
   * the heap in use; a write that fails along the way (ENOSPC…) fails the whole snapshot.
   * @throws DiagnosticUnavailableError
   */
  async heapSnapshot(): Promise<HeapSnapshotFile> {
    const dir = this.#dir;
    const needed = this.#heapUsed() * SPACE_FACTOR;
    let free: number;
    try {
      free = this.#freeBytes(dir);
    } catch (err) {
      throw new DiagnosticUnavailableError(`cannot use ${dir} for a heap snapshot: ${describe(err)}`, true);
    }
    if (free < needed)
      throw new DiagnosticUnavailableError(
        `not enough free space in ${dir} for a heap snapshot: ${(free / MIB).toFixed(1)} MiB free, about ` +
          `${(needed / MIB).toFixed(1)} MiB needed (twice the heap in use); set GAME_DIAGNOSTICS_DIR elsewhere`,
        false,
      );
    let handle: fsp.FileHandle;
    try {
      const tmp = await fsp.mkdtemp(path.join(dir, HEAP_DIR_PREFIX)); // mode 0700
      try {
        handle = await fsp.open(path.join(tmp, 'snapshot.heapsnapshot'), 'wx+', 0o600);
      } finally {
        // From here on only the descriptor holds the data.
        await fsp.rm(tmp, { recursive: true, force: true });
      }
    } catch (err) {
      throw new DiagnosticUnavailableError(
        `cannot create a heap snapshot file in ${dir}: ${describe(err)}`,
        true,
      );
    }
    let bytes = 0;
    let writeError: unknown;
    const session = new Session();
    session.connect();
    try {
      session.on('HeapProfiler.addHeapSnapshotChunk', (message) => {
        if (writeError !== undefined) return; // V8 goes on producing chunks; they are dropped
        const chunk = Buffer.from(message.params.chunk, 'utf8');
        try {
          this.#writeChunk(handle.fd, chunk);
          bytes += chunk.length;
        } catch (err) {
          writeError = err;
        }
      });
      await session.post('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    } catch (err) {
      await handle.close();
      throw err;
    } finally {
      session.disconnect();
    }
    if (writeError !== undefined) {
      await handle.close();
      throw new DiagnosticUnavailableError(
        `could not write the heap snapshot to ${dir} after ${(bytes / MIB).toFixed(1)} MiB: ${describe(writeError)}`,
        true,
      );
    }
    return { bytes, stream: handle.createReadStream({ start: 0 }) };
  }

  /**
   * `process.report.getReport()` as JSON text. The environment is never read into it: its
   * `environmentVariables` holds only the {@link REPORT_ENVIRONMENT} names that are set.
   */
  stackDump(): string {
    const previous = process.report.excludeEnv;
    let report: Record<string, unknown>;
    try {
      process.report.excludeEnv = true;
      report = process.report.getReport() as unknown as Record<string, unknown>;
    } finally {
      process.report.excludeEnv = previous;
    }
    const environmentVariables: Record<string, string> = {};
    for (const name of REPORT_ENVIRONMENT) {
      const value = process.env[name];
      if (value !== undefined) environmentVariables[name] = value;
    }
    return JSON.stringify({ ...report, environmentVariables });
  }
}
