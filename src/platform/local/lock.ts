/**
 * Locks across gameops processes, that die with their holder even on SIGKILL: an SQLite database file
 * held with `BEGIN EXCLUSIVE` (node:sqlite). SQLite takes an fcntl lock on the file, which the kernel
 * releases when the process ends, however it ends; there is no pid file to go stale. Two connections in
 * one process exclude each other too (SQLite tracks its locks per file, not per connection), so two
 * adapters in one process behave like two processes.
 *
 * Who holds a lock is written next to it (`<name>.holder.json`) once it is taken, and removed before it
 * is released; it is only read to word the ConflictError, never trusted as the lock itself.
 */
import { rm } from 'node:fs/promises';
import { closeSync, openSync } from 'node:fs';
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
    this.#file = file;
    this.#holderFile = `${file}.holder.json`;
    this.#what = what;
    this.#clock = clock;
    this.#recordHolder = recordHolder;
  }

  /**
   * Takes the lock for `operation`, waiting up to `waitMs` for a holder that is about to release it.
   * @throws ConflictError naming the holder (pid, operation, since) when it is still held after that.
   */
  async acquire(operation: string, waitMs: number, signal?: AbortSignal): Promise<HeldLock> {
    // Created 0600 before SQLite opens it (SQLite would create it with the umask's mode).
    closeSync(openSync(this.#file, 'a', 0o600));
    const deadline = performance.now() + waitMs;
    for (;;) {
      signal?.throwIfAborted();
      const db = new DatabaseSync(this.#file, { timeout: 0 });
      try {
        db.exec('BEGIN EXCLUSIVE');
      } catch (err) {
        db.close();
        if ((err as { errcode?: number }).errcode !== SQLITE_BUSY) {
          throw new UnavailableError(`cannot take the lock ${this.#file}: ${errorMessage(err)}`);
        }
        if (performance.now() >= deadline) throw await this.#conflict();
        await sleep(RETRY_MS);
        continue;
      }
      return this.#held(db, operation);
    }
  }

  async #held(db: DatabaseSync, operation: string): Promise<HeldLock> {
    const holder: LockHolder = {
      pid: process.pid,
      startTime: ownStartTime(),
      operation,
      since: this.#clock.now().toISOString(),
    };
    let released = false;
    const release = async (): Promise<void> => {
      if (released) return;
      released = true;
      // Removed while still held, so the holder file of whoever takes the lock next is never removed.
      if (this.#recordHolder) await rm(this.#holderFile, { force: true }).catch(() => undefined);
      try {
        db.exec('COMMIT');
      } finally {
        db.close();
      }
    };
    if (!this.#recordHolder) return { holder, release };
    try {
      await writeFileAtomic(this.#holderFile, `${JSON.stringify(holder)}\n`);
    } catch (err) {
      await release();
      throw new UnavailableError(`cannot record the holder of ${this.#file}: ${errorMessage(err)}`);
    }
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

  async #conflict(): Promise<ConflictError> {
    const holder = await this.holder();
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
