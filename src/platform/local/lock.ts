/**
 * Locks across gameops processes, that die with their holder even on SIGKILL: an SQLite database file
 * held with `BEGIN EXCLUSIVE` (node:sqlite). SQLite takes an fcntl lock on the file, which the kernel
 * releases when the process ends, however it ends; there is no pid file to go stale. Two connections in
 * one process exclude each other too (SQLite tracks its locks per file, not per connection), so two
 * adapters in one process behave like two processes.
 *
 * Two rules keep the fcntl lock honest:
 * - **Nothing but SQLite ever opens the lock file.** POSIX drops all of a process's fcntl locks on a file
 *   when the process closes *any* descriptor of it, so a stray `open`+`close` (say, to create the file
 *   with mode 0600) by a second adapter in the process would silently release the first one's lock, and
 *   another process could take it. SQLite creates the file; its mode is then set by path (`chmod`).
 * - **One holder per process and file, queued in memory.** Acquisitions of the same lock within the
 *   process wait in a FIFO queue before touching SQLite, so they are served in order without polling,
 *   and a refusal inside the process names the holder without reading anything.
 *
 * Who holds a lock is written next to it (`<name>.holder.json`) once it is taken, and removed before it
 * is released; it is only read to word the ConflictError, never trusted as the lock itself.
 */
import { rm } from 'node:fs/promises';
import { chmodSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { type Clock, ConflictError, UnavailableError, errorMessage } from '../../core/index.ts';
import { readBoundedFile, writeFileAtomic } from './files.ts';
import { procStat, procStatSync } from './proc.ts';

const SQLITE_BUSY = 5;
const RETRY_MS = 20;

const holderSchema = z.strictObject({
  pid: z.number().int().min(1),
  startTime: z.string().max(20),
  operation: z.string().max(50),
  since: z.string().max(40),
});
export type LockHolder = z.infer<typeof holderSchema>;

/** A held lock; `release` is idempotent. */
export interface HeldLock {
  readonly holder: LockHolder;
  release(): Promise<void>;
}

/** This process's own start time (pid + start time identify it even after pid reuse). */
export function ownStartTime(): string {
  return procStatSync(process.pid)?.startTime ?? '0';
}

/** The holders and waiters of one lock file within this process. */
class ProcessQueue {
  holder: LockHolder | undefined;
  busy = false;
  readonly waiters: Array<() => void> = [];

  /** Waits (FIFO) until the lock is free in this process; false when `deadline` passed first. */
  async enter(deadline: number, signal: AbortSignal | undefined): Promise<boolean> {
    if (!this.busy) {
      this.busy = true;
      return true;
    }
    const remaining = deadline - performance.now();
    if (remaining <= 0) return false;
    return new Promise<boolean>((done, fail) => {
      const onAbort = (): void => {
        settle();
        const reason: unknown = signal!.reason;
        fail(reason instanceof Error ? reason : new Error(String(reason)));
      };
      const timer = setTimeout(() => {
        settle();
        done(false);
      }, remaining);
      const turn = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        done(true);
      };
      const settle = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const at = this.waiters.indexOf(turn);
        if (at >= 0) this.waiters.splice(at, 1);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(turn);
    });
  }

  /** Hands the lock to the next waiter, if any. */
  leave(): void {
    this.holder = undefined;
    const next = this.waiters.shift();
    if (next) next();
    else this.busy = false;
  }
}

/** By absolute path of the lock file; shared by every FileLock of the process. */
const queues = new Map<string, ProcessQueue>();

function queueOf(file: string): ProcessQueue {
  let queue = queues.get(file);
  if (!queue) {
    queue = new ProcessQueue();
    queues.set(file, queue);
  }
  return queue;
}

export class FileLock {
  readonly #file: string;
  readonly #holderFile: string;
  readonly #what: string;
  readonly #clock: Clock;
  readonly #recordHolder: boolean;

  /**
   * @param file the SQLite file used as the lock (created 0600)
   * @param what how the error names the locked thing, e.g. `the fleet in /var/lib/gameops/fleet`
   * @param recordHolder write the holder file (for locks held long enough for people to ask who)
   */
  constructor(file: string, what: string, clock: Clock, recordHolder = true) {
    this.#file = resolve(file);
    this.#holderFile = `${this.#file}.holder.json`;
    this.#what = what;
    this.#clock = clock;
    this.#recordHolder = recordHolder;
  }

  /**
   * Takes the lock for `operation`, waiting up to `waitMs` for a holder that is about to release it.
   * @throws ConflictError naming the holder (pid, operation, since) when it is still held after that.
   */
  async acquire(operation: string, waitMs: number, signal?: AbortSignal): Promise<HeldLock> {
    signal?.throwIfAborted();
    const deadline = performance.now() + waitMs;
    const queue = queueOf(this.#file);
    if (!(await queue.enter(deadline, signal))) throw await this.#conflict(queue.holder);
    try {
      for (;;) {
        signal?.throwIfAborted();
        // SQLite creates the file when it is missing (never open it any other way: see the module comment).
        const db = new DatabaseSync(this.#file, { timeout: 0 });
        try {
          this.#privateMode();
          // DatabaseSync.exec runs SQL in-process; nothing here starts a shell.
          db.exec('BEGIN EXCLUSIVE');
        } catch (err) {
          db.close();
          if ((err as { errcode?: number }).errcode !== SQLITE_BUSY) {
            throw new UnavailableError(`cannot take the lock ${this.#file}: ${errorMessage(err)}`);
          }
          if (performance.now() >= deadline) throw await this.#conflict(undefined);
          await sleep(RETRY_MS);
          continue;
        }
        return await this.#held(db, operation, queue);
      }
    } catch (err) {
      queue.leave();
      throw err;
    }
  }

  /** The lock file is made 0600 by path (chmod opens no descriptor). */
  #privateMode(): void {
    if ((statSync(this.#file).mode & 0o777) !== 0o600) chmodSync(this.#file, 0o600);
  }

  async #held(db: DatabaseSync, operation: string, queue: ProcessQueue): Promise<HeldLock> {
    const holder: LockHolder = {
      pid: process.pid,
      startTime: ownStartTime(),
      operation,
      since: this.#clock.now().toISOString(),
    };
    const unlock = (): void => {
      try {
        db.exec('COMMIT');
      } finally {
        db.close();
      }
    };
    queue.holder = holder;
    if (this.#recordHolder) {
      try {
        await writeFileAtomic(this.#holderFile, `${JSON.stringify(holder)}\n`);
      } catch (err) {
        unlock(); // the caller leaves the queue
        throw new UnavailableError(`cannot record the holder of ${this.#file}: ${errorMessage(err)}`);
      }
    }
    let released = false;
    const release = async (): Promise<void> => {
      if (released) return;
      released = true;
      try {
        // Removed while still held, so the holder file of whoever takes the lock next is never removed.
        if (this.#recordHolder) await rm(this.#holderFile, { force: true }).catch(() => undefined);
        unlock();
      } finally {
        queue.leave();
      }
    };
    return { holder, release };
  }

  /** Who holds the lock now, when that can be told (the holder file names a live process). */
  async holder(): Promise<LockHolder | undefined> {
    try {
      const text = await readBoundedFile(this.#holderFile, 4096);
      if (text === undefined) return undefined;
      const parsed = holderSchema.safeParse(JSON.parse(text));
      if (!parsed.success) return undefined;
      const stat = await procStat(parsed.data.pid);
      return stat?.startTime === parsed.data.startTime ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** @param here the holder within this process, when it is one */
  async #conflict(here: LockHolder | undefined): Promise<ConflictError> {
    const holder = here ?? (await this.holder());
    if (!holder) {
      return new ConflictError(`${this.#what} is busy: another process holds its lock (${this.#file})`, {
        details: { lock: this.#file },
      });
    }
    const who = holder.pid === process.pid ? 'this gameops process' : `gameops pid ${holder.pid}`;
    return new ConflictError(
      `${this.#what} is busy: ${holder.operation} by ${who} since ${holder.since}; try again when it has finished`,
      { details: { lock: this.#file, pid: holder.pid, operation: holder.operation, since: holder.since } },
    );
  }
}
