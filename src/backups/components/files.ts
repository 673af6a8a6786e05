/**
 * The `files` component of a backup set: a tar of the configured paths (`backups.files.paths`).
 *
 * Backup: one object, `files.tar`, streamed (never a temporary file): each configured absolute path is
 * stored under a stable entry prefix (`path-0`, `path-1`… in the configured order), so the archive holds
 * no absolute path and the manifest maps each prefix back to its path. Regular files, directories and
 * symbolic links (kept as links, never followed); sockets, FIFOs and devices are left out with a note.
 * Headers are written with the `tar` package's encoders (ustar, PAX for long or non-ASCII names), no
 * owner (portable). Each file is read once: its bytes go to the archive and through a SHA-256 in the
 * same pass. A file that changed size while it was read is noted (the archive keeps the size its header
 * announced: truncated, or padded with zeros).
 *
 * Restore and drill parse the archive with the `tar` package's parser and write every entry themselves,
 * refusing (naming the entry) anything that could escape its destination: an unknown prefix, `..`, `.`,
 * an empty or absolute path, a hard link, a device, a duplicate, or an entry below a symbolic link or a
 * file. Everything is extracted into a fresh directory next to each destination, checked against the
 * manifest (size, mode, hash), and only then renamed into place; the old content is removed after the
 * swap. Modes are kept without setuid, setgid or sticky bits; files belong to the user running gameops.
 *
 * Hashes in the manifest (which is not encrypted) are salted with a random per-set salt: no plain hash of
 * a file's content to test guesses against.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, rename, rm, symlink, chmod, utimes } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
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
} from '../types.ts';

export const FILES_OBJECT = 'files.tar';
const FORMAT = 'gameops-files/1';
const BLOCK = 512;
const READ_CHUNK = 256 * 1024;
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

const verificationSchema = z.object({
  format: z.literal(FORMAT),
  salt: z.string().regex(/^[0-9a-f]{32}$/),
  roots: z.array(
    z.object({
      prefix: z.string().regex(PREFIX),
      path: z.string(),
      type: z.enum(['file', 'directory', 'symlink']),
    }),
  ),
  entries: z.array(entrySchema),
  totals: z.object({
    files: z.number().int().min(0),
    directories: z.number().int().min(0),
    symlinks: z.number().int().min(0),
    bytes: z.number().int().min(0),
  }),
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

interface WalkState {
  ctx: ComponentWriteContext;
  salt: string;
  entries: EntryRecord[];
  notes: string[];
  totals: FilesVerification['totals'];
  setuidDropped: number;
}

function unreadable(what: string, err: unknown): GameopsError {
  if (err instanceof GameopsError) return err;
  return new UnavailableError(`cannot read ${what}: ${errorMessage(err)}`, { cause: err });
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
    state.entries.push({ path: entry, type, size: 0, mode, linkpath });
    state.totals.symlinks++;
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
    state.entries.push({ path: entry, type, size: 0, mode });
    state.totals.directories++;
    for (const name of names) yield* walk(join(abs, name), `${entry}/${name}`, state, false);
    return;
  }
  yield* fileBlocks(abs, entry, mode, state);
}

/** A regular file: header, then its bytes read once (hashed in the same pass), then padding. */
async function* fileBlocks(
  abs: string,
  entry: string,
  mode: number,
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
    if (!info.isFile()) {
      state.notes.push(`${abs} changed into something other than a regular file during the backup: left out`);
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
    state.entries.push({
      path: entry,
      type: 'file',
      size,
      mode,
      sha256: hash.digest('hex'),
      ...(changed ? { changed: true as const } : {}),
    });
    state.totals.files++;
    state.totals.bytes += size;
  } finally {
    await handle.close();
  }
}

/**
 * Backs up `paths` as one tar object, `files.tar`.
 * @throws InputError naming a configured path that is missing, not absolute, or overlaps another
 * @throws UnavailableError naming a file or directory that cannot be read
 */
export async function backupFiles(
  paths: readonly string[],
  ctx: ComponentWriteContext,
): Promise<ComponentBackup> {
  const roots = checkPaths(paths);
  const rootRecords: FilesVerification['roots'] = [];
  for (const [index, path] of roots.entries()) {
    let info: Stats;
    try {
      info = await lstat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new InputError(`backups.files.paths: ${path} does not exist`);
      throw unreadable(path, err);
    }
    const type = typeOf(info);
    if (type === undefined)
      throw new InputError(`backups.files.paths: ${path} is not a regular file, directory or symbolic link`);
    rootRecords.push({ prefix: `path-${index}`, path, type });
  }
  const state: WalkState = {
    ctx,
    salt: randomBytes(16).toString('hex'),
    entries: [],
    notes: [],
    totals: { files: 0, directories: 0, symlinks: 0, bytes: 0 },
    setuidDropped: 0,
  };
  async function* archive(): AsyncGenerator<Buffer> {
    for (const root of rootRecords) yield* walk(root.path, root.prefix, state, true);
    yield Buffer.alloc(2 * BLOCK);
  }
  ctx.progress.phase('dump');
  const record = await ctx.write(FILES_OBJECT, archive());
  if (state.setuidDropped > 0)
    state.notes.push(`${state.setuidDropped} entries had setuid, setgid or sticky bits: not kept`);
  ctx.progress.note(
    `${state.totals.files} files, ${state.totals.directories} directories, ${state.totals.symlinks} symbolic links, ${state.totals.bytes} bytes`,
  );
  ctx.log.info({ component: 'files', ...state.totals, tarBytes: record.plainSize }, 'files backed up');
  const verification: FilesVerification = {
    format: FORMAT,
    salt: state.salt,
    roots: rootRecords,
    entries: state.entries,
    totals: state.totals,
  };
  return {
    tool: { name: 'tar (node-tar, ustar + pax)', version: FORMAT },
    source: Object.fromEntries(rootRecords.map((r) => [r.prefix, r.path])),
    verification,
    notes: [
      'per-file SHA-256 values are salted with a random per-set salt; owners are not kept (files are restored as the user running gameops)',
      ...state.notes,
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

/** What extraction found, per entry path (the archive's, e.g. `path-0/conf/game.yaml`). */
interface Extracted {
  entries: Map<string, EntryRecord>;
  files: number;
  bytes: number;
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

/**
 * Reads `files.tar` and writes every entry under `destinations` (prefix → a fresh directory path that
 * must not exist yet: the root entry is created there). Refuses anything unsafe (see module comment).
 */
async function extract(
  ctx: ComponentReadContext,
  verification: FilesVerification,
  destinations: ReadonlyMap<string, string>,
): Promise<Extracted> {
  if (!ctx.objects.some((o) => o.name === FILES_OBJECT))
    throw new UnavailableError(`backup set ${ctx.setId}: the files component has no object ${FILES_OBJECT}`);
  const roots = new Set(destinations.keys());
  /** What was created, by entry path: only directories may hold further entries. */
  const made = new Map<string, EntryType>();
  const result: Extracted = { entries: new Map(), files: 0, bytes: 0 };
  const dirModes: Array<{ path: string; mode: number; mtime: Date | undefined }> = [];
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
    for (let entry = await next(); entry; entry = await next()) {
      ctx.signal.throwIfAborted();
      await writeEntry(entry, { ctx, verification, destinations, roots, made, result, dirModes });
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
      {
        cause: err,
      },
    );
  }
  for (const root of roots) {
    if (!made.has(root))
      throw new UnavailableError(`${FILES_OBJECT} holds nothing for ${root} (a truncated archive?)`);
  }
  // Directory modes last, deepest first, so a read-only directory did not stop its own extraction.
  for (const d of dirModes.reverse()) {
    await chmod(d.path, d.mode);
    if (d.mtime) await utimes(d.path, d.mtime, d.mtime);
  }
  return result;
}

interface EntryContext {
  ctx: ComponentReadContext;
  verification: FilesVerification;
  destinations: ReadonlyMap<string, string>;
  roots: ReadonlySet<string>;
  made: Map<string, EntryType>;
  result: Extracted;
  dirModes: Array<{ path: string; mode: number; mtime: Date | undefined }>;
}

async function writeEntry(entry: ReadEntry, e: EntryContext): Promise<void> {
  const raw = entry.path;
  const kind = entry.type;
  if (kind !== 'File' && kind !== 'OldFile' && kind !== 'Directory' && kind !== 'SymbolicLink') {
    entry.resume();
    throw refuse(raw, `a ${kind} entry (only files, directories and symbolic links are restored)`);
  }
  const isDir = kind === 'Directory';
  const { prefix, rest } = entryParts(raw, isDir, e.roots);
  const name = [prefix, ...rest].join('/');
  if (e.made.has(name)) throw refuse(raw, 'it appears twice in the archive');
  // Every ancestor must be a directory this extraction created.
  for (let i = 0; i < rest.length; i++) {
    const ancestor = [prefix, ...rest.slice(0, i)].join('/');
    const type = e.made.get(ancestor);
    if (type === undefined) throw refuse(raw, `its parent ${ancestor} is not in the archive before it`);
    if (type !== 'directory') throw refuse(raw, `its parent ${ancestor} is a ${type}, not a directory`);
  }
  const target = join(e.destinations.get(prefix)!, ...rest);
  const mode = (entry.mode ?? (isDir ? 0o755 : 0o644)) & 0o777;
  if (isDir) {
    entry.resume();
    await mkdir(target, { mode: 0o700 });
    e.made.set(name, 'directory');
    e.dirModes.push({ path: target, mode, mtime: entry.mtime });
    e.result.entries.set(name, { path: name, type: 'directory', size: 0, mode });
    return;
  }
  if (kind === 'SymbolicLink') {
    entry.resume();
    const linkpath = entry.linkpath;
    if (typeof linkpath !== 'string' || linkpath === '' || linkpath.includes('\0'))
      throw refuse(raw, 'a symbolic link without a target');
    await symlink(linkpath, target);
    e.made.set(name, 'symlink');
    e.result.entries.set(name, { path: name, type: 'symlink', size: 0, mode: 0o777, linkpath });
    return;
  }
  // A regular file: created new (O_EXCL never follows a link), owner-only until its bytes are in.
  const handle = await open(
    target,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  const hash = createHash('sha256').update(e.verification.salt, 'utf8');
  let size = 0;
  try {
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      let off = 0;
      while (off < chunk.length) off += (await handle.write(chunk, off, chunk.length - off)).bytesWritten;
      e.ctx.progress.add(chunk.length);
    }
    await handle.chmod(mode);
    if (entry.mtime) await handle.utimes(entry.mtime, entry.mtime);
    await handle.sync();
  } finally {
    await handle.close();
  }
  e.made.set(name, 'file');
  e.result.entries.set(name, { path: name, type: 'file', size, mode, sha256: hash.digest('hex') });
  e.result.files++;
  e.result.bytes += size;
}

/** Every difference between the manifest's entries and what was extracted, as failed checks. */
function compareEntries(verification: FilesVerification, found: Extracted): DrillCheck[] {
  const roots = new Map(verification.roots.map((r) => [r.prefix, r.path]));
  const where = (entry: string): string => {
    const [prefix, ...rest] = entry.split('/');
    return join(roots.get(prefix!) ?? prefix!, ...rest);
  };
  const failures: DrillCheck[] = [];
  const seen = new Set<string>();
  for (const want of verification.entries) {
    seen.add(want.path);
    const got = found.entries.get(want.path);
    const describe = (r: EntryRecord | undefined): string =>
      r === undefined
        ? 'missing'
        : r.type === 'file'
          ? `file, ${r.size} bytes, mode ${r.mode.toString(8)}, sha256 ${r.sha256?.slice(0, 16)}…`
          : r.type === 'symlink'
            ? `symlink to ${r.linkpath}`
            : `directory, mode ${r.mode.toString(8)}`;
    const same =
      got !== undefined &&
      got.type === want.type &&
      got.size === want.size &&
      (want.type === 'symlink' ? got.linkpath === want.linkpath : got.mode === want.mode) &&
      got.sha256 === want.sha256;
    if (!same)
      failures.push({
        subject: `files ${where(want.path)}`,
        expected: describe(want),
        actual: describe(got),
        ok: false,
      });
  }
  for (const [path] of found.entries) {
    if (!seen.has(path))
      failures.push({
        subject: `files ${where(path)}`,
        expected: 'absent',
        actual: 'present',
        ok: false,
        note: 'not in the manifest',
      });
  }
  return failures;
}

function totalsOf(found: Extracted): { files: number; bytes: number } {
  return { files: found.files, bytes: found.bytes };
}

/** A fresh sibling of `path` (same filesystem, so a rename replaces it). */
function sibling(path: string, what: string): string {
  return join(dirname(path), `.${basename(path)}.gameops-${what}-${randomBytes(4).toString('hex')}`);
}

/**
 * Restores the files to their original paths, or under `target.root` (`<root>/<original absolute path>`).
 * Each path is extracted next to its destination, checked against the manifest, then renamed into
 * place (the previous content is removed after the swap). Nothing is replaced unless every path
 * extracted and matched.
 * @throws UnavailableError naming a refused archive entry, or the first file that differs from the manifest
 */
export async function restoreFiles(
  backup: ManifestComponent,
  target: { root?: string },
  ctx: ComponentReadContext,
): Promise<{ files: number; bytes: number }> {
  const verification = verificationOf(backup);
  if (target.root !== undefined && !isAbsolute(target.root))
    throw new InputError(`the restore target's filesRoot ${target.root} is not an absolute path`);
  const finals = new Map<string, string>();
  for (const root of verification.roots) {
    if (!isAbsolute(root.path) || resolve(root.path) !== root.path || root.path === sep)
      throw new UnavailableError(`the manifest's files component maps ${root.prefix} to an unusable path`);
    finals.set(root.prefix, target.root !== undefined ? join(resolve(target.root), root.path) : root.path);
  }
  const staging = new Map<string, string>();
  for (const [prefix, final] of finals) {
    await mkdir(dirname(final), { recursive: true, mode: 0o755 });
    staging.set(prefix, sibling(final, 'restore'));
  }
  ctx.progress.phase('restore', verification.totals.bytes);
  const cleanup = async (): Promise<void> => {
    for (const path of staging.values()) await rm(path, { recursive: true, force: true });
  };
  let found: Extracted;
  try {
    found = await extract(ctx, verification, staging);
    const failures = compareEntries(verification, found);
    if (failures.length > 0) {
      const f = failures[0]!;
      throw new UnavailableError(
        `${f.subject} differs from the manifest (expected ${f.expected}, found ${f.actual}); ${failures.length} difference(s), nothing was replaced`,
      );
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  // The swap: each destination in turn; the old content goes only once the new one is in place.
  for (const [prefix, final] of finals) {
    const staged = staging.get(prefix)!;
    const old = sibling(final, 'old');
    let hadOld = true;
    try {
      await rename(final, old);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        await cleanup();
        throw new UnavailableError(`cannot move ${final} aside to restore it: ${errorMessage(err)}`);
      }
      hadOld = false;
    }
    try {
      await rename(staged, final);
    } catch (err) {
      if (hadOld) await rename(old, final).catch(() => undefined);
      await cleanup();
      throw new UnavailableError(`cannot put the restored ${final} in place: ${errorMessage(err)}`);
    }
    staging.delete(prefix);
    if (hadOld) await rm(old, { recursive: true, force: true });
  }
  const totals = totalsOf(found);
  ctx.log.info({ component: 'files', ...totals, root: target.root ?? null }, 'files restored');
  return totals;
}

/**
 * Drill: extracts the archive into the context's temp dir and compares every entry (type, size, mode,
 * hash, link target) and the totals with the manifest; the copy is removed afterwards.
 */
export async function drillFiles(
  backup: ManifestComponent,
  ctx: ComponentReadContext,
): Promise<ComponentDrill> {
  const started = ctx.clock.now().getTime();
  const verification = verificationOf(backup);
  const base = join(ctx.tempDir, `files-drill-${randomBytes(4).toString('hex')}`);
  await mkdir(base, { mode: 0o700 });
  ctx.progress.phase('restore', verification.totals.bytes);
  try {
    const destinations = new Map(verification.roots.map((r) => [r.prefix, join(base, r.prefix)]));
    const found = await extract(ctx, verification, destinations);
    const failures = compareEntries(verification, found);
    const checks: DrillCheck[] = verification.roots.map((root) => {
      const mine = (p: string): boolean => p === root.prefix || p.startsWith(`${root.prefix}/`);
      const want = verification.entries.filter((x) => mine(x.path));
      const got = [...found.entries.values()].filter((x) => mine(x.path));
      const text = (list: EntryRecord[]): string =>
        `${list.filter((x) => x.type === 'file').length} files, ${list.reduce((n, x) => n + (x.type === 'file' ? x.size : 0), 0)} bytes, ${list.length} entries`;
      const bad = failures.filter(
        (f) => f.subject === `files ${root.path}` || f.subject.startsWith(`files ${root.path}/`),
      );
      return { subject: `files ${root.path}`, expected: text(want), actual: text(got), ok: bad.length === 0 };
    });
    checks.push(...failures.slice(0, MAX_LISTED_FAILURES));
    const totalsOk = found.files === verification.totals.files && found.bytes === verification.totals.bytes;
    checks.push({
      subject: 'files totals',
      expected: `${verification.totals.files} files, ${verification.totals.bytes} bytes`,
      actual: `${found.files} files, ${found.bytes} bytes`,
      ok: totalsOk,
    });
    const notes = [
      `extracted into a scratch directory and compared entry by entry (type, size, mode, salted SHA-256, link target)`,
    ];
    if (failures.length > MAX_LISTED_FAILURES)
      notes.push(`${failures.length} entries differ; the first ${MAX_LISTED_FAILURES} are listed`);
    return {
      component: 'files',
      ok: failures.length === 0 && totalsOk,
      checks,
      notes,
      bytes: found.bytes,
      durationMs: ctx.clock.now().getTime() - started,
    };
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}
