/**
 * The filesystem object store: one file per object under a root directory, the key's segments as
 * subdirectories (`<root>/bk-.../mysql/tables/gamedb.players.0001.sql.zst.age`).
 *
 * A put writes a temporary file `.tmp-<random>` next to the final one, fsyncs it, renames it over the
 * key and fsyncs the directory, so an object is either absent or complete, also after a crash. Size and
 * SHA-256 are computed as the bytes go to disk. Directories are 0700, files 0600.
 */
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ConflictError,
  errorMessage,
  GameopsError,
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
} from '../../core/index.ts';
import type { ObjectInfo, ObjectStore, PutOptions, StoredObject } from '../types.ts';
import { checkObjectKey, checkObjectPrefix, MeasuredBody, putFailure, TEMP_PREFIX } from './index.ts';

/**
 * An object store in a local directory. Safe for concurrent puts of different keys; two concurrent puts
 * of the same key end with one of the two complete objects.
 */
export class FilesystemObjectStore implements ObjectStore {
  readonly #root: string;
  #rootReady: Promise<string> | undefined;

  /** `root` must be absolute (the config loader makes storage paths absolute). */
  constructor(root: string) {
    if (!path.isAbsolute(root)) {
      throw new InputError(`backups.storage.path must be an absolute directory, got ${JSON.stringify(root)}`);
    }
    this.#root = path.resolve(root);
  }

  describe(): string {
    return `filesystem ${this.#root}`;
  }

  /**
   * Streams `body` into `<root>/<key>` through a temporary file, fsync and rename. On any failure (a full
   * disk, an aborted signal, an error of `body`) the temporary file is removed and nothing is left under
   * `key`, not even an object that was there before.
   *
   * @throws InputError for a bad key; UnavailableError saying "storage full" on ENOSPC/EDQUOT;
   *   NotAllowedError when the directory is not writable; the abort reason or body error, wrapped so that
   *   it names the storage and key.
   */
  async put(
    key: string,
    body: Readable | AsyncIterable<Uint8Array>,
    options: PutOptions = {},
  ): Promise<StoredObject> {
    checkObjectKey(key);
    const signal = options.signal;
    const target = this.#pathOf(key);
    const dir = path.dirname(target);
    let temp: string | undefined;
    const measured = new MeasuredBody(body);
    try {
      signal?.throwIfAborted();
      const root = await this.#ensureRoot();
      const firstCreated = await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      await this.#assertInside(dir, root, key);
      temp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      const handle = await fsp.open(temp, 'wx', 0o600);
      // The write stream owns the handle: it fsyncs (flush) and closes it when done, and closes it
      // when the pipeline fails.
      await pipeline(
        measured.chunks(),
        handle.createWriteStream({ flush: true }),
        signal === undefined ? {} : { signal },
      );
      signal?.throwIfAborted();
      await fsp.rename(temp, target);
      temp = undefined;
      await syncDirs(dir, firstCreated === undefined ? dir : path.dirname(firstCreated));
      return { key, size: measured.size, sha256: measured.sha256() };
    } catch (error) {
      if (temp !== undefined) await fsp.rm(temp, { force: true }).catch(() => {});
      await measured.discard().catch(() => {});
      // The contract: a failed put leaves nothing under the key.
      await fsp.rm(target, { force: true }).catch(() => {});
      throw putFailure(`${this.describe()}: writing ${key}`, measured, signal, () =>
        error instanceof GameopsError ? error : this.#fsError(`writing ${key}`, error),
      );
    }
  }

  /**
   * A stream of the object's bytes.
   *
   * @throws InputError for a bad key; NotFoundError naming the key when there is no such object.
   */
  async get(key: string, options: { signal?: AbortSignal | undefined } = {}): Promise<Readable> {
    checkObjectKey(key);
    const file = this.#pathOf(key);
    let handle: fsp.FileHandle;
    try {
      options.signal?.throwIfAborted();
      handle = await fsp.open(file, 'r');
    } catch (error) {
      if (isMissing(error)) throw this.#notFound(key);
      throw this.#fsError(`reading ${key}`, error);
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw this.#notFound(key);
    } catch (error) {
      await handle.close();
      throw error instanceof GameopsError ? error : this.#fsError(`reading ${key}`, error);
    }
    return handle.createReadStream(options.signal === undefined ? {} : { signal: options.signal });
  }

  /** The object's size, or undefined when it does not exist. @throws InputError for a bad key. */
  async head(key: string): Promise<ObjectInfo | undefined> {
    checkObjectKey(key);
    try {
      const stat = await fsp.stat(this.#pathOf(key));
      return stat.isFile() ? { key, size: stat.size } : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw this.#fsError(`reading ${key}`, error);
    }
  }

  /**
   * Every object whose key starts with `prefix`, in key order (byte order, as S3 lists), walking the
   * directories under the root; temporary files of puts in progress are not objects.
   *
   * @throws InputError for a bad prefix.
   */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkObjectPrefix(prefix);
    const base = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    yield* this.#walk(base, prefix);
  }

  /** Deletes the object; a missing one is fine. @throws InputError for a bad key. */
  async delete(key: string): Promise<void> {
    checkObjectKey(key);
    const file = this.#pathOf(key);
    try {
      const stat = await fsp.lstat(file);
      if (!stat.isFile()) return;
      await fsp.unlink(file);
      await syncDirs(path.dirname(file), path.dirname(file));
    } catch (error) {
      if (isMissing(error)) return;
      throw this.#fsError(`deleting ${key}`, error);
    }
  }

  async discardIncomplete(prefix: string): Promise<number> {
    checkObjectPrefix(prefix);
    if (!prefix.endsWith('/'))
      throw new InputError(`discardIncomplete needs a directory prefix, got ${prefix}`);
    const top = this.#pathOf(prefix.slice(0, -1));
    let removed = 0;
    // Depth first: temp files go, then directories left empty (a pruned set leaves no directory behind).
    const sweep = async (dir: string): Promise<boolean> => {
      let entries: Dirent[];
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isMissing(error)) return true;
        throw this.#fsError(`cleaning ${prefix}`, error);
      }
      let empty = true;
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          if (await sweep(full)) {
            await fsp.rmdir(full).catch(() => undefined);
          } else empty = false;
        } else if (entry.isFile() && entry.name.startsWith(TEMP_PREFIX)) {
          await fsp.unlink(full).catch(() => undefined);
          removed++;
        } else empty = false;
      }
      return empty;
    };
    if (await sweep(top)) await fsp.rmdir(top).catch(() => undefined);
    return removed;
  }

  async close(): Promise<void> {}

  // -------------------------------------------------------------------------------------------------

  /** `<root>/<key>`, double-checked to be inside the root (keys are checked before this). */
  #pathOf(key: string): string {
    const file = path.resolve(this.#root, ...key.split('/'));
    if (!file.startsWith(this.#root + path.sep)) {
      throw new InputError(`backup object key ${JSON.stringify(key)} resolves outside ${this.#root}`);
    }
    return file;
  }

  /** The real directory must be inside the root's real path too (no symlink pointing out). */
  async #assertInside(dir: string, realRoot: string, key: string): Promise<void> {
    const real = await fsp.realpath(dir);
    if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
      throw new InputError(
        `backup object key ${JSON.stringify(key)} leads outside ${this.#root} (through a symlink)`,
      );
    }
  }

  /** Creates the root (0700) once; resolves with its real path. */
  #ensureRoot(): Promise<string> {
    this.#rootReady ??= (async () => {
      await fsp.mkdir(this.#root, { recursive: true, mode: 0o700 });
      return fsp.realpath(this.#root);
    })();
    const ready = this.#rootReady;
    // A failure (e.g. a full disk) is not cached: the next put tries again.
    ready.catch(() => {
      if (this.#rootReady === ready) this.#rootReady = undefined;
    });
    return ready;
  }

  async *#walk(relDir: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const dir = relDir === '' ? this.#root : this.#pathOf(relDir.slice(0, -1));
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw this.#fsError(`listing ${prefix === '' ? 'every object' : `prefix ${prefix}`}`, error);
    }
    // Sort as the keys sort: a directory's keys all start with `<name>/`.
    const named = entries
      .filter((e) => !e.name.startsWith(TEMP_PREFIX) && (e.isFile() || e.isDirectory()))
      .map((e) => ({ entry: e, sortKey: e.isDirectory() ? `${e.name}/` : e.name }))
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const { entry, sortKey } of named) {
      const key = relDir + sortKey;
      if (entry.isDirectory()) {
        // Descend only where keys can start with the prefix.
        if (key.startsWith(prefix) || prefix.startsWith(key)) yield* this.#walk(key, prefix);
      } else if (key.startsWith(prefix)) {
        try {
          const stat = await fsp.stat(path.join(dir, entry.name));
          yield { key, size: stat.size };
        } catch (error) {
          if (!isMissing(error)) throw this.#fsError(`listing ${key}`, error);
          // Deleted while we were listing: not an object any more.
        }
      }
    }
  }

  #notFound(key: string): NotFoundError {
    return new NotFoundError(`backup object ${key} not found in ${this.describe()}`);
  }

  #fsError(what: string, error: unknown): GameopsError {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const where = `${this.describe()}: ${what}`;
    switch (code) {
      case 'ENOSPC':
      case 'EDQUOT':
        return new UnavailableError(`${where} failed: storage full (${code})`, { cause: error });
      case 'EACCES':
      case 'EPERM':
        return new NotAllowedError(`${where} failed: permission denied (${code})`, { cause: error });
      case 'ENOTDIR':
      case 'EISDIR':
      case 'EEXIST':
        return new ConflictError(`${where} failed: a file and a directory clash (${code})`, { cause: error });
      case 'EROFS':
      case 'EIO':
        return new UnavailableError(`${where} failed: ${errorMessage(error)}`, { cause: error });
      case undefined:
      default:
        return new GameopsError('internal', `${where} failed: ${errorMessage(error)}`, { cause: error });
    }
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** fsyncs `from` and each parent up to and including `upTo`, so new entries survive a crash. */
async function syncDirs(from: string, upTo: string): Promise<void> {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const handle = await fsp.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (dir === upTo || path.dirname(dir) === dir) return;
  }
}
