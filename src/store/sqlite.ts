import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { SqliteDialect } from 'kysely';
import { type Clock, ConflictError, InputError, UnavailableError, errorMessage } from '../core/index.ts';
import { storeError, type StoreTarget } from './errors.ts';
import { kyselySqliteDatabase } from './sqlite-driver.ts';
import type { BackendConnection } from './backend.ts';

const DB_FILE = 'gameops.db';
const PID_FILE = 'gameops.pid';
/** How long to wait for a data directory whose holder is just closing it. */
const LOCK_WAIT_MS = 250;
const BUSY_TIMEOUT_MS = 5_000;
const SQLITE_BUSY = 5;

/**
 * Data directories this process has open. The recorded pid cannot tell: after a restart (a container's
 * pid 1, say) a stale `gameops.pid` may name this very pid.
 */
const openHere = new Set<string>();

interface Holder {
  pid: number;
  startedAt: string;
  hostname: string;
}

/**
 * Opens `<dataDir>/gameops.db` for this process alone. The exclusion is SQLite's own lock on the
 * database file (`locking_mode=EXCLUSIVE`, taken at once by a write transaction and held until close):
 * an OS lock, so it dies with the process, even on SIGKILL, and a crash never leaves a stale lock.
 * `gameops.pid` only says who holds the lock, for the error message; it is never trusted as a lock.
 * @throws ConflictError when another process (or another store in this one) holds the directory.
 * @throws InputError when `dataDir` exists and is not a directory.
 */
export function openSqlite(dataDir: string, clock: Clock): BackendConnection {
  const dir = resolve(dataDir);
  ensureDataDir(dir);
  const file = join(dir, DB_FILE);
  const target: StoreTarget = { label: 'SQLite', location: file, mask: (text) => text };
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file, { timeout: LOCK_WAIT_MS, enableForeignKeyConstraints: true });
  } catch (err) {
    throw storeError(target, err, 'opening');
  }
  try {
    // EXCLUSIVE before WAL: the WAL index then lives in this process's memory (no -shm file that
    // other processes would map), and the write transaction takes the lock now rather than on the
    // first write, so a second process is refused at open instead of failing mid-run.
    // (DatabaseSync.exec runs SQL in-process; nothing here starts a shell.)
    db.exec('PRAGMA locking_mode = EXCLUSIVE');
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('BEGIN IMMEDIATE; COMMIT');
    db.exec(
      `PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON`,
    );
  } catch (err) {
    db.close();
    if ((err as { errcode?: number }).errcode === SQLITE_BUSY) throw inUse(dir);
    throw storeError(target, err, 'opening');
  }
  const pidFile = join(dir, PID_FILE);
  try {
    writeHolder(pidFile, { pid: process.pid, startedAt: clock.now().toISOString(), hostname: hostname() });
  } catch (err) {
    db.close();
    throw new UnavailableError(`cannot write ${pidFile}: ${errorMessage(err)}`, {
      details: { dataDir: dir },
    });
  }
  openHere.add(dir);
  return {
    backend: 'sqlite',
    target,
    dialect: new SqliteDialect({ database: kyselySqliteDatabase(db) }),
    // While the lock is still held, so the info file of a process that opens next is never removed.
    beforeClose: () => {
      openHere.delete(dir);
      rmSync(pidFile, { force: true });
    },
  };
}

function ensureDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new InputError(`data directory ${dir} is not a directory`, { details: { dataDir: dir } });
    }
    throw new UnavailableError(`cannot create data directory ${dir}: ${errorMessage(err)}`, {
      details: { dataDir: dir },
    });
  }
  if (!statSync(dir).isDirectory()) {
    throw new InputError(`data directory ${dir} is not a directory`, { details: { dataDir: dir } });
  }
}

function writeHolder(pidFile: string, holder: Holder): void {
  const tmp = `${pidFile}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(holder)}\n`, { mode: 0o600 });
  renameSync(tmp, pidFile);
}

function readHolder(pidFile: string): Holder | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(pidFile, 'utf8'));
    const { pid, startedAt, hostname: host } = (value ?? {}) as Partial<Holder>;
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 1 || typeof startedAt !== 'string') {
      return undefined;
    }
    return { pid, startedAt, hostname: typeof host === 'string' ? host : '' };
  } catch {
    // Missing (the holder has not written it yet) or unreadable: the message says "pid unknown".
    return undefined;
  }
}

/**
 * Why the directory is locked. `gameops.pid` is only a hint: after a gameops was killed (SIGKILL leaves
 * it behind) another program, such as an sqlite3 shell or a backup tool, may hold the lock, so a
 * recorded pid that is no longer running is not named as the holder.
 */
function inUse(dir: string): ConflictError {
  const holder = readHolder(join(dir, PID_FILE));
  const here = hostname();
  let message: string;
  let running: boolean | undefined;
  if (openHere.has(dir)) {
    message = `data directory ${dir} is already open in this process${holder ? ` (opened at ${holder.startedAt})` : ''}`;
  } else if (!holder) {
    message = `data directory ${dir} is locked by another process (pid unknown: no gameops pid is recorded)`;
  } else if (holder.hostname && holder.hostname !== here) {
    // Another machine's pid cannot be checked.
    message = `data directory ${dir} is in use by another gameops process (pid ${holder.pid} on ${holder.hostname}, started at ${holder.startedAt})`;
  } else if ((running = holder.pid !== process.pid && isRunning(holder.pid))) {
    message = `data directory ${dir} is in use by another gameops process (pid ${holder.pid}, started at ${holder.startedAt})`;
  } else {
    message = `data directory ${dir} is locked by another process (not gameops pid ${holder.pid}, which is no longer running)`;
  }
  return new ConflictError(message, {
    details: { dataDir: dir, ...holder, ...(running === undefined ? {} : { running }) },
  });
}

/** Whether a process with this pid exists on this machine (a zombie counts as gone). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
  try {
    // Linux: field 3 of /proc/<pid>/stat is the state; Z is a zombie, dead but not yet reaped.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}
