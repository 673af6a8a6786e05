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
  return {
    backend: 'sqlite',
    target,
    dialect: new SqliteDialect({ database: kyselySqliteDatabase(db) }),
    // While the lock is still held, so the info file of a process that opens next is never removed.
    beforeClose: () => rmSync(pidFile, { force: true }),
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
    if (typeof pid !== 'number' || typeof startedAt !== 'string') return undefined;
    return { pid, startedAt, hostname: typeof host === 'string' ? host : '' };
  } catch {
    // Missing (the holder has not written it yet) or unreadable: the message says "pid unknown".
    return undefined;
  }
}

function inUse(dir: string): ConflictError {
  const holder = readHolder(join(dir, PID_FILE));
  let message: string;
  if (!holder) {
    message = `data directory ${dir} is in use by another gameops process (pid unknown)`;
  } else if (holder.pid === process.pid && holder.hostname === hostname()) {
    message = `data directory ${dir} is already open in this process (opened at ${holder.startedAt})`;
  } else {
    const where = holder.hostname && holder.hostname !== hostname() ? ` on ${holder.hostname}` : '';
    message = `data directory ${dir} is in use by another gameops process (pid ${holder.pid}${where}, started at ${holder.startedAt})`;
  }
  return new ConflictError(message, { details: { dataDir: dir, ...holder } });
}
