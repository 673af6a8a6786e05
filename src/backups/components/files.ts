/**
 * The `files` component of a backup set: a tar of the configured paths (`backups.files.paths`).
 *
 * Backup: two objects, both streamed (never a temporary file), both encrypted by the pipeline:
 * - `files.tar`: each configured absolute path is stored under a stable entry prefix (`path-0`,
 *   `path-1`… in the configured order), so the archive holds no absolute path. Regular files, directories
 *   and symbolic links (kept as links, never followed); sockets, FIFOs and devices are left out with a
 *   note. A configured path that is itself a symbolic link is resolved once, at the top (the data it points
 *   to is backed up, and the manifest says the path was a link to that target); links below stay links.
 *   Headers are written with the `tar` package's encoders (ustar, PAX for long or non-ASCII names), no
 *   owner (portable). Each file is read once: its bytes go to the archive and through a SHA-256 in the
 *   same pass. A file that changed size while it was read is noted.
 * - `files-index.ndjson`: one JSON line per entry (path, type, size, mode, salted SHA-256, link target),
 *   written while the tar is, in the same order. The plaintext manifest keeps only the roots, the counts,
 *   the salt and the index's name: no file name is readable without the key, and the manifest stays small
 *   whatever the number of files.
 *
 * Restore and drill parse the archive with the `tar` package's parser and handle every entry themselves,
 * refusing (naming the entry) anything that could escape its destination: an unknown prefix, `..`, `.`,
 * an empty or absolute path, a hard link, a device, a duplicate, or an entry below a symbolic link or a
 * file. Each entry is compared with the index as it is read (both are in the same order, so memory does
 * not grow with the index). A drill writes nothing: it hashes each file's stream. A restore extracts every
 * path into a fresh directory next to its destination (owner-writable while it is written, the recorded
 * modes applied at the end, directories deepest first), checks everything, and only then swaps: every
 * destination is moved aside first, then every new copy is put in place; on a failure the ones already
 * moved are put back. A destination that is a mount point is refused before anything is written (a rename
 * cannot replace it). Before writing next to a destination, its parent and every ancestor must be owned by
 * root or the running user and not writable by anyone else (unless sticky), as ssh's StrictModes: nobody
 * else can swap a path component for a symbolic link under gameops. Modes are kept without setuid, setgid
 * or sticky bits; files belong to the user running gameops.
 *
 * Hashes are salted with a random per-set salt (kept in the manifest): no plain hash of a file's content
 * to test guesses against.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import {
  chmod,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  symlink,
  utimes,
} from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { Header, Parser, Pax, type ReadEntry } from 'tar';
import { z } from 'zod';
import { GameopsError, InputError, UnavailableError, errorMessage } from '../../core/index.ts';
import type {
  ComponentBackup,
  ComponentDrill,
  ComponentReadContext,
  ComponentWriteContext,
  DrillCheck,
  ManifestComponent,
  ObjectWriter,
} from '../types.ts';

export const FILES_OBJECT = 'files.tar';
/** The per-entry list (NDJSON), encrypted like every object; the manifest only names it. */
export const FILES_INDEX_OBJECT = 'files-index.ndjson';
const FORMAT = 'gameops-files/2';
const BLOCK = 512;
const READ_CHUNK = 256 * 1024;
/** Index lines are written in batches of about this many bytes. */
const INDEX_BATCH = 64 * 1024;
/** Failing per-file checks listed in a drill report (the count says how many there were). */
const MAX_LISTED_FAILURES = 50;
const PREFIX = /^path-(0|[1-9]\d{0,5})$/;

type EntryType = 'file' | 'directory' | 'symlink';

const entrySchema = z.object({
  path: z.string(),
  type: z.enum(['file', 'directory', 'symlink']),
  size: z.number().int().min(0),
  mode: z.number().int().min(0).max(0o777),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  linkpath: z.string().optional(),
  changed: z.literal(true).optional(),
});
type EntryRecord = z.infer<typeof entrySchema>;

const totalsSchema = z.object({
  files: z.number().int().min(0),
  directories: z.number().int().min(0),
  symlinks: z.number().int().min(0),
  bytes: z.number().int().min(0),
});
type Totals = z.infer<typeof totalsSchema>;

const verificationSchema = z.object({
  format: z.literal(FORMAT),
  salt: z.string().regex(/^[0-9a-f]{32}$/),
  roots: z.array(
    z.object({
      prefix: z.string().regex(PREFIX),
      /** The configured path. */
      path: z.string(),
      /** What was backed up (of the link's target, when `linkTarget` is set). */
      type: z.enum(['file', 'directory']),
      /** Set when the configured path was a symbolic link: the real path whose data was backed up. */
      linkTarget: z.string().optional(),
      totals: totalsSchema,
    }),
  ),
  /** The name of the object holding the per-entry list. */
  index: z.literal(FILES_INDEX_OBJECT),
  totals: totalsSchema,
});
export type FilesVerification = z.infer<typeof verificationSchema>;

function typeOf(info: Stats): EntryType | undefined {
  if (info.isFile()) return 'file';
  if (info.isDirectory()) return 'directory';
  if (info.isSymbolicLink()) return 'symlink';
  return undefined;
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The order in which the walk writes entries (and so the archive and the index hold them): roots in
 * configured order, then depth first with each directory's names sorted by code unit.
 */
function compareEntryPaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  const ia = Number(pa[0]!.slice('path-'.length));
  const ib = Number(pb[0]!.slice('path-'.length));
  if (ia !== ib) return ia - ib;
  for (let i = 1; i < Math.min(pa.length, pb.length); i++) {
    const c = byCodeUnit(pa[i]!, pb[i]!);
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

/**
 * The configured paths, checked: absolute, normalized, distinct, none inside another, not `/`.
 * @throws InputError naming the path
 */
function checkPaths(paths: readonly string[]): string[] {
  const list: unknown = paths;
  if (!Array.isArray(list) || list.length === 0)
    throw new InputError('backups.files.paths is empty: there is nothing to back up');
  const out: string[] = [];
  for (const p of list) {
    if (typeof p !== 'string' || p.includes('\0') || !isAbsolute(p))
      throw new InputError(`backups.files.paths: ${JSON.stringify(p)} is not an absolute path`);
    const normalized = resolve(p);
    if (normalized === sep) throw new InputError('backups.files.paths: / is not a path gameops backs up');
    for (const other of out) {
      if (other === normalized) throw new InputError(`backups.files.paths: ${normalized} is listed twice`);
      if (normalized.startsWith(`${other}${sep}`) || other.startsWith(`${normalized}${sep}`))
        throw new InputError(
          `backups.files.paths: ${normalized} and ${other} overlap (one is inside the other)`,
        );
    }
    out.push(normalized);
  }
  return out;
}

/** The blocks of one header: a PAX extended header first when the name or link is long or not ASCII. */
function headerBlocks(data: {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink';
  mode: number;
  size: number;
  mtime: Date;
  linkpath?: string;
}): Buffer[] {
  const header = new Header({ ...data, uid: 0, gid: 0 });
  const blocks: Buffer[] = [];
  if (header.encode()) {
    blocks.push(
      new Pax({
        path: data.path,
        ...(data.linkpath !== undefined ? { linkpath: data.linkpath } : {}),
        size: data.size,
        mtime: data.mtime,
      }).encode(),
    );
  }
  if (!header.block) throw new UnavailableError(`cannot encode the tar header of ${data.path}`);
  blocks.push(header.block);
  return blocks;
}

/** The index object, written in batches as entries are hashed (backpressure through the writer). */
class IndexWriter {
  #writer: ObjectWriter;
  #batch: string[] = [];
  #size = 0;
  constructor(writer: ObjectWriter) {
    this.#writer = writer;
  }
  async add(record: EntryRecord): Promise<void> {
    const line = `${JSON.stringify(record)}\n`;
    this.#batch.push(line);
    this.#size += line.length;
    if (this.#size >= INDEX_BATCH) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.#batch.length === 0) return;
    const chunk = Buffer.from(this.#batch.join(''), 'utf8');
    this.#batch = [];
    this.#size = 0;
    await this.#writer.write(chunk);
  }
}

interface WalkState {
  ctx: ComponentWriteContext;
  salt: string;
  index: IndexWriter;
  notes: string[];
  totals: Totals;
  /** The current root's totals. */
  root: Totals;
  setuidDropped: number;
}

function emptyTotals(): Totals {
  return { files: 0, directories: 0, symlinks: 0, bytes: 0 };
}

function unreadable(what: string, err: unknown): GameopsError {
  if (err instanceof GameopsError) return err;
  return new UnavailableError(`cannot read ${what}: ${errorMessage(err)}`, { cause: err });
}

function count(state: WalkState, type: EntryType, bytes = 0): void {
  for (const t of [state.totals, state.root]) {
    if (type === 'file') {
      t.files++;
      t.bytes += bytes;
    } else if (type === 'directory') t.directories++;
    else t.symlinks++;
  }
}

/** One path (and, for a directory, everything below it) as tar blocks. */
async function* walk(abs: string, entry: string, state: WalkState, top: boolean): AsyncGenerator<Buffer> {
  state.ctx.signal.throwIfAborted();
  let info: Stats;
  try {
    info = await lstat(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !top) {
      state.notes.push(`${abs} vanished during the backup`);
      return;
    }
    throw unreadable(abs, err);
  }
  const type = typeOf(info);
  if (type === undefined) {
    state.notes.push(`${abs} left out: not a regular file, directory or symbolic link`);
    return;
  }
  if ((info.mode & 0o7000) !== 0) state.setuidDropped++;
  const mode = info.mode & 0o777;
  const mtime = info.mtime;
  if (type === 'symlink') {
    let linkpath: string;
    try {
      linkpath = await readlink(abs);
    } catch (err) {
      throw unreadable(abs, err);
    }
    yield* headerBlocks({ path: entry, type: 'SymbolicLink', mode, size: 0, mtime, linkpath });
    await state.index.add({ path: entry, type, size: 0, mode, linkpath });
    count(state, 'symlink');
    return;
  }
  if (type === 'directory') {
    let names: string[];
    try {
      names = (await readdir(abs)).sort(byCodeUnit);
    } catch (err) {
      throw unreadable(abs, err);
    }
    yield* headerBlocks({ path: `${entry}/`, type: 'Directory', mode, size: 0, mtime });
    await state.index.add({ path: entry, type, size: 0, mode });
    count(state, 'directory');
    for (const name of names) yield* walk(join(abs, name), `${entry}/${name}`, state, false);
    return;
  }
  yield* fileBlocks(abs, entry, mode, info, state);
}

/** A regular file: header, then its bytes read once (hashed in the same pass), then padding. */
async function* fileBlocks(
  abs: string,
  entry: string,
  mode: number,
  seen: Stats,
  state: WalkState,
): AsyncGenerator<Buffer> {
  let handle;
  try {
    handle = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      state.notes.push(`${abs} vanished during the backup`);
      return;
    }
    throw unreadable(abs, err);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.dev !== seen.dev || info.ino !== seen.ino) {
      state.notes.push(`${abs} was replaced by something else during the backup: left out`);
      return;
    }
    const size = info.size;
    yield* headerBlocks({ path: entry, type: 'File', mode, size, mtime: info.mtime });
    const hash = createHash('sha256').update(state.salt, 'utf8');
    let done = 0;
    while (done < size) {
      state.ctx.signal.throwIfAborted();
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - done));
      let read: number;
      try {
        ({ bytesRead: read } = await handle.read(buffer, 0, buffer.length, done));
      } catch (err) {
        throw unreadable(abs, err);
      }
      if (read === 0) break;
      const chunk = buffer.subarray(0, read);
      hash.update(chunk);
      done += read;
      state.ctx.progress.add(read);
      yield chunk;
    }
    let changed = false;
    if (done < size) {
      // It shrank: the header announced `size` bytes, so the rest is zeros.
      changed = true;
      const zeros = Buffer.alloc(size - done);
      hash.update(zeros);
      yield zeros;
    } else {
      const after = await handle.stat().catch(() => info);
      if (after.size !== size || after.mtimeMs !== info.mtimeMs) changed = true;
    }
    if (changed) state.notes.push(`${abs} changed while it was backed up: its copy may be inconsistent`);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0) yield Buffer.alloc(pad);
    await state.index.add({
      path: entry,
      type: 'file',
      size,
      mode,
      sha256: hash.digest('hex'),
      ...(changed ? { changed: true as const } : {}),
    });
    count(state, 'file', size);
  } finally {
    await handle.close();
  }
}

/**
 * Backs up `paths` as a tar object, `files.tar`, and its per-entry index, `files-index.ndjson`.
 * A configured path that is a symbolic link is followed once (its target is backed up, noted).
 * @throws InputError naming a configured path that is missing, not absolute, or overlaps another
 * @throws UnavailableError naming a file or directory that cannot be read
 */
export async function backupFiles(
  paths: readonly string[],
  ctx: ComponentWriteContext,
): Promise<ComponentBackup> {
  const configured = checkPaths(paths);
  const notes: string[] = [];
  const roots: Array<{ prefix: string; path: string; real: string; linkTarget?: string }> = [];
  const rootRecords: FilesVerification['roots'] = [];
  for (const [index, path] of configured.entries()) {
    let info: Stats;
    let real = path;
    let linkTarget: string | undefined;
    let isLink = false;
    try {
      info = await lstat(path);
      if (info.isSymbolicLink()) {
        isLink = true;
        real = await realpath(path);
        linkTarget = real;
        info = await lstat(real);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new InputError(
          isLink
            ? `backups.files.paths: ${path} is a symbolic link whose target does not exist`
            : `backups.files.paths: ${path} does not exist`,
        );
      throw unreadable(path, err);
    }
    const type = typeOf(info);
    if (type !== 'file' && type !== 'directory')
      throw new InputError(`backups.files.paths: ${path} is not a regular file or a directory`);
    for (const other of roots) {
      if (linkTarget === undefined && other.linkTarget === undefined) continue;
      if (
        other.real === real ||
        real.startsWith(`${other.real}${sep}`) ||
        other.real.startsWith(`${real}${sep}`)
      )
        throw new InputError(
          `backups.files.paths: ${path}${linkTarget ? ` (a symbolic link to ${linkTarget})` : ''} overlaps ${other.path}${other.linkTarget ? ` (a symbolic link to ${other.linkTarget})` : ''}`,
        );
    }
    if (linkTarget !== undefined) {
      notes.push(`${path} is a symbolic link to ${linkTarget}: the data there was backed up`);
    }
    roots.push({ prefix: `path-${index}`, path, real, ...(linkTarget ? { linkTarget } : {}) });
    rootRecords.push({
      prefix: `path-${index}`,
      path,
      type,
      ...(linkTarget !== undefined ? { linkTarget } : {}),
      totals: emptyTotals(),
    });
  }
  const indexWriter = ctx.open(FILES_INDEX_OBJECT);
  const state: WalkState = {
    ctx,
    salt: randomBytes(16).toString('hex'),
    index: new IndexWriter(indexWriter),
    notes,
    totals: emptyTotals(),
    root: emptyTotals(),
    setuidDropped: 0,
  };
  async function* archive(): AsyncGenerator<Buffer> {
    for (const [i, root] of roots.entries()) {
      state.root = rootRecords[i]!.totals;
      yield* walk(root.real, root.prefix, state, true);
      if (state.root.files === 0)
        notes.push(
          `${root.path}${root.linkTarget ? ` (a link to ${root.linkTarget})` : ''} holds no regular file: ${state.root.directories} directories, ${state.root.symlinks} symbolic links backed up`,
        );
    }
    yield Buffer.alloc(2 * BLOCK);
  }
  ctx.progress.phase('dump');
  let record;
  try {
    record = await ctx.write(FILES_OBJECT, archive());
    await state.index.flush();
  } catch (err) {
    await indexWriter.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  await indexWriter.end();
  if (state.setuidDropped > 0)
    notes.push(`${state.setuidDropped} entries had setuid, setgid or sticky bits: not kept`);
  ctx.progress.note(
    `${state.totals.files} files, ${state.totals.directories} directories, ${state.totals.symlinks} symbolic links, ${state.totals.bytes} bytes`,
  );
  ctx.log.info({ component: 'files', ...state.totals, tarBytes: record.plainSize }, 'files backed up');
  const verification: FilesVerification = {
    format: FORMAT,
    salt: state.salt,
    roots: rootRecords,
    index: FILES_INDEX_OBJECT,
    totals: state.totals,
  };
  return {
    tool: { name: 'tar (node-tar, ustar + pax)', version: FORMAT },
    source: Object.fromEntries(rootRecords.map((r) => [r.prefix, r.path])),
    verification,
    notes: [
      `per-file SHA-256 values are salted with a random per-set salt and kept in the encrypted ${FILES_INDEX_OBJECT}; owners are not kept (files are restored as the user running gameops)`,
      ...notes,
    ],
  };
}

// ---------------------------------------------------------------------------------------------------
// Extraction (restore and drill)

function verificationOf(backup: ManifestComponent): FilesVerification {
  const parsed = verificationSchema.safeParse(backup.verification);
  if (!parsed.success)
    throw new UnavailableError(`the manifest's files component has no valid ${FORMAT} verification record`);
  return parsed.data;
}

function refuse(entry: string, why: string): UnavailableError {
  return new UnavailableError(`refusing archive entry ${JSON.stringify(entry.slice(0, 300))}: ${why}`);
}

/**
 * The entry's path split into its prefix and the components below it, or a refusal naming it.
 * Only `path-N[/a/b…]` with N a root of the manifest; no `.`, `..`, empty or absolute component.
 */
function entryParts(
  raw: string,
  isDir: boolean,
  roots: ReadonlySet<string>,
): { prefix: string; rest: string[] } {
  if (raw.includes('\0')) throw refuse(raw, 'a NUL byte in its name');
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw) || raw.includes('\\'))
    throw refuse(raw, 'an absolute path (or a backslash)');
  const path = isDir && raw.endsWith('/') ? raw.slice(0, -1) : raw;
  const parts = path.split('/');
  for (const part of parts) {
    if (part === '..') throw refuse(raw, '".." in its path');
    if (part === '' || part === '.') throw refuse(raw, 'an empty or "." component in its path');
  }
  const [prefix, ...rest] = parts;
  if (prefix === undefined || !roots.has(prefix)) throw refuse(raw, 'not under a path of the manifest');
  return { prefix, rest };
}

interface Counts {
  files: number;
  bytes: number;
  entries: number;
}

function describeEntry(r: EntryRecord | undefined): string {
  return r === undefined
    ? 'missing'
    : r.type === 'file'
      ? `file, ${r.size} bytes, mode ${r.mode.toString(8)}, sha256 ${r.sha256?.slice(0, 16)}…`
      : r.type === 'symlink'
        ? `symlink to ${r.linkpath}`
        : `directory, mode ${r.mode.toString(8)}`;
}

/**
 * Compares what extraction finds with the index, entry by entry, both in walk order (a merge: memory
 * does not grow with the number of entries). Keeps the first failures, their count, and per-root counts.
 */
class IndexComparer {
  readonly failures: DrillCheck[] = [];
  failureCount = 0;
  readonly want = new Map<string, Counts>();
  readonly got = new Map<string, Counts>();
  #lines: AsyncIterator<string>;
  #pending: EntryRecord | undefined;
  #done = false;
  #line = 0;
  readonly #where: (entry: string) => string;
  readonly #close: () => void;

  constructor(ctx: ComponentReadContext, verification: FilesVerification) {
    if (!ctx.objects.some((o) => o.name === verification.index))
      throw new UnavailableError(
        `backup set ${ctx.setId}: the files component has no object ${verification.index}`,
      );
    const source = ctx.read(verification.index);
    const lines = createInterface({ input: source, crlfDelay: Infinity });
    this.#lines = lines[Symbol.asyncIterator]();
    this.#close = () => {
      lines.close();
      source.destroy();
    };
    const roots = new Map(verification.roots.map((r) => [r.prefix, r.linkTarget ?? r.path]));
    this.#where = (entry) => {
      const [prefix, ...rest] = entry.split('/');
      return join(roots.get(prefix!) ?? prefix!, ...rest);
    };
    for (const r of verification.roots) {
      this.want.set(r.prefix, { files: 0, bytes: 0, entries: 0 });
      this.got.set(r.prefix, { files: 0, bytes: 0, entries: 0 });
    }
  }

  close(): void {
    this.#close();
  }

  async #peek(): Promise<EntryRecord | undefined> {
    if (this.#pending !== undefined || this.#done) return this.#pending;
    let next: IteratorResult<string>;
    try {
      next = await this.#lines.next();
    } catch (err) {
      throw new UnavailableError(`cannot read ${FILES_INDEX_OBJECT}: ${errorMessage(err)}`, { cause: err });
    }
    if (next.done) {
      this.#done = true;
      return undefined;
    }
    this.#line++;
    let parsed;
    try {
      parsed = entrySchema.safeParse(JSON.parse(next.value));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success)
      throw new UnavailableError(`${FILES_INDEX_OBJECT}: line ${this.#line} is not an entry`);
    this.#pending = parsed.data;
    this.#tally(this.want, parsed.data);
    return this.#pending;
  }

  #tally(map: Map<string, Counts>, r: EntryRecord): void {
    const c = map.get(r.path.split('/')[0]!);
    if (!c) return;
    c.entries++;
    if (r.type === 'file') {
      c.files++;
      c.bytes += r.size;
    }
  }

  #fail(check: DrillCheck): void {
    this.failureCount++;
    if (this.failures.length < MAX_LISTED_FAILURES) this.failures.push(check);
  }

  #missing(want: EntryRecord): void {
    this.#fail({
      subject: `files ${this.#where(want.path)}`,
      expected: describeEntry(want),
      actual: 'missing',
      ok: false,
    });
  }

  /** One entry as extracted (in archive order). */
  async found(got: EntryRecord): Promise<void> {
    this.#tally(this.got, got);
    for (;;) {
      const want = await this.#peek();
      const order = want === undefined ? 1 : compareEntryPaths(want.path, got.path);
      if (order > 0) {
        this.#fail({
          subject: `files ${this.#where(got.path)}`,
          expected: 'absent',
          actual: 'present',
          ok: false,
          note: 'not in the index',
        });
        return;
      }
      this.#pending = undefined;
      if (order < 0) {
        this.#missing(want!);
        continue;
      }
      const same =
        got.type === want!.type &&
        got.size === want!.size &&
        (want!.type === 'symlink' ? got.linkpath === want!.linkpath : got.mode === want!.mode) &&
        got.sha256 === want!.sha256;
      if (!same)
        this.#fail({
          subject: `files ${this.#where(want!.path)}`,
          expected: describeEntry(want),
          actual: describeEntry(got),
          ok: false,
        });
      return;
    }
  }

  /** Every index entry left is missing from the archive. */
  async finish(): Promise<void> {
    for (let want = await this.#peek(); want; want = await this.#peek()) {
      this.#pending = undefined;
      this.#missing(want);
    }
  }
}

/** A write error during extraction, naming the file and the directory (a full disk says so). */
function unwritable(target: string, scratch: string, err: unknown): GameopsError {
  if (err instanceof GameopsError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new UnavailableError(`no space left on ${scratch} (while writing ${target})`, { cause: err });
  return new UnavailableError(`cannot write ${target}: ${errorMessage(err)}`, { cause: err });
}

interface Extraction {
  ctx: ComponentReadContext;
  verification: FilesVerification;
  /** prefix → a fresh path that must not exist yet (the root entry is created there); none: a drill. */
  destinations: ReadonlyMap<string, string> | undefined;
  roots: ReadonlySet<string>;
  made: Map<string, EntryType>;
  compare: IndexComparer;
  dirModes: Array<{ path: string; mode: number; mtime: Date | undefined }>;
  files: number;
  bytes: number;
}

/**
 * Reads `files.tar`, compares every entry with the index and, for a restore, writes it under
 * `destinations`. Refuses anything unsafe (see module comment). Directory modes are applied last.
 */
async function extract(
  ctx: ComponentReadContext,
  verification: FilesVerification,
  destinations: ReadonlyMap<string, string> | undefined,
): Promise<{ compare: IndexComparer; files: number; bytes: number }> {
  if (!ctx.objects.some((o) => o.name === FILES_OBJECT))
    throw new UnavailableError(`backup set ${ctx.setId}: the files component has no object ${FILES_OBJECT}`);
  const roots = new Set(verification.roots.map((r) => r.prefix));
  const compare = new IndexComparer(ctx, verification);
  const x: Extraction = {
    ctx,
    verification,
    destinations,
    roots,
    made: new Map(),
    compare,
    dirModes: [],
    files: 0,
    bytes: 0,
  };
  const parser = new Parser({ strict: true });
  const queue: ReadEntry[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  let failure: Error | undefined;
  const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));
  parser.on('entry', (entry: ReadEntry) => {
    queue.push(entry);
    wake?.();
  });
  parser.on('end', () => {
    ended = true;
    wake?.();
  });
  parser.on('error', (err: unknown) => {
    failure ??= asError(err);
    wake?.();
  });
  const source = ctx.read(FILES_OBJECT);
  const feeding = pipeline(source, parser).catch((err: unknown) => {
    failure ??= asError(err);
    ended = true;
    wake?.();
  });
  const next = async (): Promise<ReadEntry | undefined> => {
    for (;;) {
      if (failure !== undefined) throw failure;
      const entry = queue.shift();
      if (entry) return entry;
      if (ended) return undefined;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  };

  try {
    try {
      for (let entry = await next(); entry; entry = await next()) {
        ctx.signal.throwIfAborted();
        await handleEntry(entry, x);
      }
      await feeding;
      if (failure !== undefined) throw failure;
    } catch (err) {
      // Stop reading: the parser may be waiting on an entry nobody will consume now.
      source.destroy(err instanceof Error ? err : new Error(String(err)));
      await feeding;
      if (err instanceof GameopsError || ctx.signal.aborted) throw err;
      throw new UnavailableError(
        `cannot read ${FILES_OBJECT} of backup set ${ctx.setId}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    for (const root of roots) {
      if (!x.made.has(root))
        throw new UnavailableError(`${FILES_OBJECT} holds nothing for ${root} (a truncated archive?)`);
    }
    await compare.finish();
  } finally {
    compare.close();
  }
  // Directory modes last, deepest first, so a read-only directory did not stop its own extraction.
  for (const d of x.dirModes.reverse()) {
    try {
      await chmod(d.path, d.mode);
      if (d.mtime) await utimes(d.path, d.mtime, d.mtime);
    } catch (err) {
      throw unwritable(d.path, dirname(d.path), err);
    }
  }
  return { compare, files: x.files, bytes: x.bytes };
}

async function handleEntry(entry: ReadEntry, x: Extraction): Promise<void> {
  const raw = entry.path;
  const kind = entry.type;
  if (kind !== 'File' && kind !== 'OldFile' && kind !== 'Directory' && kind !== 'SymbolicLink') {
    entry.resume();
    throw refuse(raw, `a ${kind} entry (only files, directories and symbolic links are restored)`);
  }
  const isDir = kind === 'Directory';
  const { prefix, rest } = entryParts(raw, isDir, x.roots);
  const name = [prefix, ...rest].join('/');
  if (x.made.has(name)) throw refuse(raw, 'it appears twice in the archive');
  // Every ancestor must be a directory this extraction created.
  for (let i = 0; i < rest.length; i++) {
    const ancestor = [prefix, ...rest.slice(0, i)].join('/');
    const type = x.made.get(ancestor);
    if (type === undefined) throw refuse(raw, `its parent ${ancestor} is not in the archive before it`);
    if (type !== 'directory') throw refuse(raw, `its parent ${ancestor} is a ${type}, not a directory`);
  }
  const base = x.destinations?.get(prefix);
  const target = base === undefined ? undefined : join(base, ...rest);
  const scratch = base === undefined ? '' : dirname(base);
  const mode = (entry.mode ?? (isDir ? 0o755 : 0o644)) & 0o777;
  if (isDir) {
    entry.resume();
    if (target !== undefined) {
      // Owner-writable while the archive is extracted; the recorded mode is applied at the end.
      try {
        await mkdir(target, { mode: 0o700 });
      } catch (err) {
        throw unwritable(target, scratch, err);
      }
      x.dirModes.push({ path: target, mode, mtime: entry.mtime });
    }
    x.made.set(name, 'directory');
    await x.compare.found({ path: name, type: 'directory', size: 0, mode });
    return;
  }
  if (kind === 'SymbolicLink') {
    entry.resume();
    const linkpath = entry.linkpath;
    if (typeof linkpath !== 'string' || linkpath === '' || linkpath.includes('\0'))
      throw refuse(raw, 'a symbolic link without a target');
    if (target !== undefined) {
      try {
        await symlink(linkpath, target);
      } catch (err) {
        throw unwritable(target, scratch, err);
      }
    }
    x.made.set(name, 'symlink');
    await x.compare.found({ path: name, type: 'symlink', size: 0, mode: 0o777, linkpath });
    return;
  }
  // A regular file: created new (O_EXCL never follows a link), owner-only until its bytes are in.
  let handle;
  if (target !== undefined) {
    try {
      handle = await open(
        target,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
    } catch (err) {
      entry.resume();
      throw unwritable(target, scratch, err);
    }
  }
  const hash = createHash('sha256').update(x.verification.salt, 'utf8');
  let size = 0;
  try {
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      if (handle) {
        try {
          let off = 0;
          while (off < chunk.length) off += (await handle.write(chunk, off, chunk.length - off)).bytesWritten;
        } catch (err) {
          throw unwritable(target!, scratch, err);
        }
      }
      x.ctx.progress.add(chunk.length);
    }
    if (handle) {
      try {
        await handle.chmod(mode);
        if (entry.mtime) await handle.utimes(entry.mtime, entry.mtime);
        await handle.sync();
      } catch (err) {
        throw unwritable(target!, scratch, err);
      }
    }
  } finally {
    await handle?.close().catch(() => undefined);
  }
  x.made.set(name, 'file');
  x.files++;
  x.bytes += size;
  await x.compare.found({ path: name, type: 'file', size, mode, sha256: hash.digest('hex') });
}

// ---------------------------------------------------------------------------------------------------
// Restore

/** A fresh sibling of `path` (same directory, so a rename replaces it). */
function sibling(path: string, what: string): string {
  return join(dirname(path), `.${basename(path)}.gameops-${what}-${randomBytes(4).toString('hex')}`);
}

/**
 * Removes a tree gameops made (staging or an old copy), first making its directories u+rwx so that
 * read-only directories do not stop the removal of their children. Never follows a symbolic link.
 */
async function removeTree(path: string): Promise<void> {
  async function unlock(p: string): Promise<void> {
    let info: Stats;
    try {
      info = await lstat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (!info.isDirectory()) return;
    if ((info.mode & 0o700) !== 0o700) await chmod(p, (info.mode & 0o777) | 0o700);
    for (const name of await readdir(p)) await unlock(join(p, name));
  }
  await unlock(path);
  await rm(path, { recursive: true, force: true });
}

/** Removes a tree; a failure is logged (naming the path), never thrown. */
async function removeOrWarn(ctx: ComponentReadContext, path: string, what: string): Promise<void> {
  try {
    await removeTree(path);
  } catch (err) {
    ctx.log.warn({ component: 'files', path, err: errorMessage(err) }, `could not remove ${what} ${path}`);
  }
}

/**
 * The directory `dir` and each of its ancestors must be owned by root or the running user and not
 * writable by group or others unless sticky (ssh's StrictModes): nobody else can then swap a path
 * component for a link while gameops writes below it. `dir` must be a real path (no symbolic link).
 * @throws InputError naming the first directory that fails
 */
async function checkTrusted(dir: string): Promise<void> {
  const me = process.getuid?.() ?? 0;
  for (let p = dir; ; p = dirname(p)) {
    const info = await lstat(p);
    if (!info.isDirectory()) throw new InputError(`${p} is not a directory`);
    if (info.uid !== 0 && info.uid !== me)
      throw new InputError(
        `refusing to restore below ${p}: it belongs to uid ${info.uid}, who could replace what gameops writes there (owner must be root or uid ${me})`,
      );
    if ((info.mode & 0o022) !== 0 && (info.mode & 0o1000) === 0)
      throw new InputError(
        `refusing to restore below ${p}: it is writable by ${info.mode & 0o002 ? 'others' : 'its group'} and not sticky (mode ${(info.mode & 0o7777).toString(8)})`,
      );
    if (p === dirname(p)) return;
  }
}

interface Plan {
  prefix: string;
  /** Where the data goes (the configured path, or the real path it links to). */
  final: string;
  staged: string;
  old?: string;
  exists: boolean;
}

/**
 * Restores the files to their original paths, or under `target.root` (`<root>/<original absolute path>`).
 * A destination that is currently a symbolic link (restoring to the original paths) is followed once:
 * the data goes where it points, the link stays. Every path is extracted next to its destination and
 * checked against the index; then every destination is moved aside, then every new copy put in place
 * (rolled back on failure); the previous content is removed last (a failure there is only logged).
 * @throws InputError naming a destination that is a mount point, or whose parent another user can write
 * @throws UnavailableError naming a refused archive entry, the first file that differs from the index,
 *   a full disk (`no space left on <dir>`), or a swap that failed (with which paths were replaced)
 */
export async function restoreFiles(
  backup: ManifestComponent,
  target: { root?: string },
  ctx: ComponentReadContext,
): Promise<{ files: number; bytes: number }> {
  const verification = verificationOf(backup);
  if (target.root !== undefined && !isAbsolute(target.root))
    throw new InputError(`the restore target's filesRoot ${target.root} is not an absolute path`);
  const plans: Plan[] = [];
  for (const root of verification.roots) {
    if (!isAbsolute(root.path) || resolve(root.path) !== root.path || root.path === sep)
      throw new UnavailableError(`the manifest's files component maps ${root.prefix} to an unusable path`);
    let final = target.root !== undefined ? join(resolve(target.root), root.path) : root.path;
    let info: Stats | undefined = await lstat(final).catch(() => undefined);
    if (info?.isSymbolicLink() && target.root === undefined) {
      try {
        final = await realpath(final);
      } catch (err) {
        throw new InputError(`${root.path} is a symbolic link that cannot be followed: ${errorMessage(err)}`);
      }
      ctx.log.info(
        { component: 'files', path: root.path, target: final },
        'restoring through a symbolic link',
      );
      info = await lstat(final);
    }
    const parentWanted = dirname(final);
    try {
      await mkdir(parentWanted, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw unwritable(parentWanted, parentWanted, err);
    }
    const parent = await realpath(parentWanted);
    final = join(parent, basename(final));
    await checkTrusted(parent);
    if (info !== undefined && !info.isSymbolicLink()) {
      const parentInfo = await lstat(parent);
      if (info.dev !== parentInfo.dev)
        throw new InputError(
          `${final} is a mount point (another filesystem than ${parent}): gameops cannot swap it in one step; restore under a filesRoot, or unmount it and restore into the directory`,
        );
    }
    plans.push({ prefix: root.prefix, final, staged: sibling(final, 'restore'), exists: info !== undefined });
  }
  ctx.progress.phase('restore', verification.totals.bytes);
  const cleanup = async (): Promise<void> => {
    for (const p of plans) await removeOrWarn(ctx, p.staged, 'the staging copy');
  };
  let found;
  try {
    found = await extract(ctx, verification, new Map(plans.map((p) => [p.prefix, p.staged])));
    const failures = found.compare.failures;
    if (found.compare.failureCount > 0) {
      const f = failures[0]!;
      throw new UnavailableError(
        `${f.subject} differs from the backup's index (expected ${f.expected}, found ${f.actual}); ${found.compare.failureCount} difference(s), nothing was replaced`,
      );
    }
  } catch (err) {
    await cleanup();
    throw err;
  }

  // Phase 1: every existing destination moved aside; on failure, put back the ones already moved.
  const moved: Plan[] = [];
  for (const p of plans) {
    if (!p.exists) continue;
    const old = sibling(p.final, 'old');
    try {
      await rename(p.final, old);
    } catch (err) {
      const stuck = await rollback(moved, []);
      await cleanup();
      throw new UnavailableError(
        `cannot move ${p.final} aside to restore it: ${errorMessage(err)}; nothing was replaced${stuck}`,
      );
    }
    p.old = old;
    moved.push(p);
  }
  // Phase 2: every new copy put in place; on failure, take the new ones out and put the old ones back.
  const placed: Plan[] = [];
  for (const p of plans) {
    try {
      await rename(p.staged, p.final);
    } catch (err) {
      const stuck = await rollback(moved, placed);
      await cleanup();
      throw new UnavailableError(
        `cannot put the restored ${p.final} in place: ${errorMessage(err)}; the previous content was put back${stuck}`,
      );
    }
    placed.push(p);
  }
  for (const p of moved) await removeOrWarn(ctx, p.old!, 'the previous content of');
  const totals = { files: found.files, bytes: found.bytes };
  ctx.log.info({ component: 'files', ...totals, root: target.root ?? null }, 'files restored');
  return totals;
}

/**
 * Undoes a partial swap: the new copies placed go back to their staging names, the old content back to
 * its path. Returns '' or a sentence naming what could not be undone (and where the old content is).
 */
async function rollback(moved: readonly Plan[], placed: readonly Plan[]): Promise<string> {
  const problems: string[] = [];
  for (const p of placed) {
    await rename(p.final, p.staged).catch((err: unknown) => {
      problems.push(`${p.final} holds the restored copy (${errorMessage(err)})`);
    });
  }
  for (const p of moved) {
    await rename(p.old!, p.final).catch((err: unknown) => {
      problems.push(`the previous ${p.final} is at ${p.old} (${errorMessage(err)})`);
    });
  }
  return problems.length === 0 ? '' : ` EXCEPT: ${problems.join('; ')}`;
}

// ---------------------------------------------------------------------------------------------------
// Drill

/**
 * Drill: reads the archive and compares every entry (type, size, mode, salted hash, link target) with the
 * index, and the totals with the manifest. Nothing is written to disk: each file's stream is hashed.
 * @throws UnavailableError naming a refused archive entry or an object that cannot be read
 */
export async function drillFiles(
  backup: ManifestComponent,
  ctx: ComponentReadContext,
): Promise<ComponentDrill> {
  const started = ctx.clock.now().getTime();
  const verification = verificationOf(backup);
  ctx.progress.phase('restore', verification.totals.bytes);
  const found = await extract(ctx, verification, undefined);
  const { compare } = found;
  const text = (c: Counts | undefined): string =>
    `${c?.files ?? 0} files, ${c?.bytes ?? 0} bytes, ${c?.entries ?? 0} entries`;
  const checks: DrillCheck[] = verification.roots.map((root) => {
    const shown = root.linkTarget ?? root.path;
    const bad = compare.failures.some(
      (f) => f.subject === `files ${shown}` || f.subject.startsWith(`files ${shown}/`),
    );
    const want = compare.want.get(root.prefix);
    const got = compare.got.get(root.prefix);
    const same =
      want !== undefined &&
      got !== undefined &&
      want.files === got.files &&
      want.bytes === got.bytes &&
      want.entries === got.entries;
    return {
      subject: `files ${root.path}`,
      expected: text(want),
      actual: text(got),
      ok: !bad && same,
      ...(root.linkTarget !== undefined ? { note: `a symbolic link to ${root.linkTarget}` } : {}),
    };
  });
  checks.push(...compare.failures);
  const totalsOk = found.files === verification.totals.files && found.bytes === verification.totals.bytes;
  checks.push({
    subject: 'files totals',
    expected: `${verification.totals.files} files, ${verification.totals.bytes} bytes`,
    actual: `${found.files} files, ${found.bytes} bytes`,
    ok: totalsOk,
  });
  const notes = [
    `read the archive and compared it entry by entry with ${FILES_INDEX_OBJECT} (type, size, mode, salted SHA-256, link target); nothing was written to disk`,
  ];
  if (compare.failureCount > MAX_LISTED_FAILURES)
    notes.push(`${compare.failureCount} entries differ; the first ${MAX_LISTED_FAILURES} are listed`);
  return {
    component: 'files',
    ok: compare.failureCount === 0 && totalsOk,
    checks,
    notes,
    bytes: found.bytes,
    durationMs: ctx.clock.now().getTime() - started,
  };
}
