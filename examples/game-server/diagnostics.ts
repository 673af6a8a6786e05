/**
 * On-demand diagnostics of this process: a CPU profile, a heap snapshot, a diagnostic report. One at a
 * time (the caller holds the slot until the file has been sent).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';

export type DiagnosticKind = 'cpu-profile' | 'heap-snapshot' | 'stack-dump';

export const DIAGNOSTIC_FILES: Readonly<Record<DiagnosticKind, { extension: string; contentType: string }>> =
  {
    'cpu-profile': { extension: 'cpuprofile', contentType: 'application/json' },
    'heap-snapshot': { extension: 'heapsnapshot', contentType: 'application/octet-stream' },
    'stack-dump': { extension: 'report.json', contentType: 'application/json' },
  };

/** Environment variables whose values a report must not show. */
const SECRET_NAME = /TOKEN|PASSWORD|SECRET|KEY|CREDENTIAL/i;

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

export interface Slot {
  readonly kind: DiagnosticKind;
  release(): void;
}

export class Diagnostics {
  readonly #instance: string;
  readonly #now: () => Date;
  #current: { kind: DiagnosticKind; startedAt: Date } | undefined;

  constructor(instance: string, now: () => Date = () => new Date()) {
    this.#instance = instance;
    this.#now = now;
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
   * Takes a heap snapshot, writing V8's chunks to a private temporary file as they come (the process does
   * not hold the whole snapshot in memory). Returns the file and a clean-up that removes it.
   */
  async heapSnapshot(): Promise<{ file: string; bytes: number; cleanup: () => Promise<void> }> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'game-heap-'));
    const file = path.join(dir, 'snapshot.heapsnapshot');
    const cleanup = (): Promise<void> => fsp.rm(dir, { recursive: true, force: true });
    const fd = fs.openSync(file, 'wx', 0o600);
    let bytes = 0;
    const session = new Session();
    session.connect();
    try {
      session.on('HeapProfiler.addHeapSnapshotChunk', (message) => {
        const chunk = Buffer.from(message.params.chunk, 'utf8');
        fs.writeSync(fd, chunk);
        bytes += chunk.length;
      });
      await session.post('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
      return { file, bytes, cleanup };
    } catch (err) {
      await cleanup();
      throw err;
    } finally {
      fs.closeSync(fd);
      session.disconnect();
    }
  }

  /** `process.report.getReport()` as JSON text, with secret-looking environment values masked. */
  stackDump(): string {
    const report = process.report.getReport() as { environmentVariables?: Record<string, string> };
    const env = report.environmentVariables;
    if (env) {
      for (const name of Object.keys(env)) if (SECRET_NAME.test(name)) env[name] = '********';
    }
    return JSON.stringify(report);
  }
}
