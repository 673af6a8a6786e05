/**
 * Instance logs of the local adapter: `<fleet>/logs/game-<i>.log`, written by the game server through
 * an O_APPEND descriptor, rotated by size to `game-<i>.log.1` (newest) … `.log.<keep>`.
 *
 * Reading never loads a file: lines are streamed (lines.ts), `tail` reads backwards from the end in
 * blocks, and `sinceMs` finds its cut by bisection over the file (see {@link sinceOffset}).
 *
 * The time of a line (for `sinceMs`): the `time` field of a JSON line (`"time":"<ISO 8601>"` or
 * `"time":<epoch ms>`), else a timestamp at the start of the line (`2026-11-26T09:00:00Z …`, optionally in
 * `[…]`; without a zone it is local time). Files are appended in time order, so the cut is the first line
 * whose own time is at or after the start of the window: everything after it is in the window (undated
 * lines such as stack traces go with the dated line before them; at the start of a file, with the first
 * dated line after them) and everything before it is not. A file with no dated line at all is taken whole
 * when it was modified within the window, skipped otherwise. The cut is exact when the times in a file
 * do not go backwards (true of a log written as it goes); with clock jumps it may land off by the lines
 * written out of order.
 */
import { randomBytes } from 'node:crypto';
import { constants, watch, type FSWatcher } from 'node:fs';
import { lstat, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { countLinesMatching, fileChunks, splitLines } from '../lines.ts';

const NEWLINE = 0x0a;
const BLOCK = 64 * 1024;
/** When following, how often the file is checked even without a watch event. */
const FOLLOW_POLL_MS = 250;

export function logFileOf(logDir: string, name: string): string {
  return join(logDir, `${name}.log`);
}

export interface LogFile {
  path: string;
  /** The size when it was listed: reading stops there (the live file keeps growing). */
  size: number;
  mtimeMs: number;
}

/** The files of one instance, oldest first: `.log.<n>` … `.log.1`, then `.log`. Missing ones are skipped. */
export async function listLogFiles(logFile: string): Promise<LogFile[]> {
  const dir = dirname(logFile);
  const base = basename(logFile);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const rotated = names
    .map((n) => (n.startsWith(`${base}.`) ? Number(n.slice(base.length + 1)) : Number.NaN))
    .filter((n) => Number.isSafeInteger(n) && n > 0)
    .sort((a, b) => b - a)
    .map((n) => join(dir, `${base}.${n}`));
  const files: LogFile[] = [];
  for (const path of [...rotated, logFile]) {
    try {
      // lstat: a symlink planted in place of a log is never read through (it could point anywhere).
      const s = await lstat(path);
      if (s.isFile()) files.push({ path, size: s.size, mtimeMs: s.mtimeMs });
    } catch {
      // Rotated away or never written.
    }
  }
  return files;
}

/**
 * Rotates `logFile` when it reached `maxBytes`: `.log.<keep-1>` → `.log.<keep>` (the oldest is dropped)
 * … `.log` → `.log.1`, copy-then-truncate, because the game server keeps its O_APPEND descriptor (its
 * next write lands at the new end). Lines written between the last copy and the truncation are lost;
 * the copy is topped up until the size stops moving to keep that window to microseconds, but under a fast
 * writer some lines still fall in it (measured: 1,373 of 200,000 lines over 183 rotations). Maintenance
 * rotates after the drain, when servers are idle.
 *
 * Nothing is followed through a symlink: the live file is opened O_NOFOLLOW (a symlink in its place is
 * not rotated, so not copied nor truncated), and the copy is written to a new temp file that is then
 * renamed over `.log.1` (a rename replaces a symlink there, a copy would have written through it).
 * @returns whether it rotated.
 */
export async function rotateIfNeeded(logFile: string, maxBytes: number, keep: number): Promise<boolean> {
  let live: FileHandle;
  try {
    live = await open(logFile, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch {
    return false; // missing, or not a file we write through
  }
  try {
    const info = await live.stat();
    if (!info.isFile() || info.size < maxBytes) return false;
    await rm(`${logFile}.${keep}`, { force: true });
    for (let n = keep - 1; n >= 1; n--) {
      await rename(`${logFile}.${n}`, `${logFile}.${n + 1}`).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    const target = `${logFile}.1`;
    const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const out = await open(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    try {
      let copied = 0;
      for (let round = 0; round < 6; round++) {
        const size = (await live.stat()).size;
        if (size <= copied) break;
        copied = await copyRange(live, out, copied, size);
      }
      await out.close();
      await rename(tmp, target);
    } catch (err) {
      await out.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
    await live.truncate(0);
    return true;
  } finally {
    await live.close();
  }
}

/** What {@link recoverDeletedLog} found. */
export type LogFileCheck =
  /** The process writes to the file at the path. */
  | { state: 'same' }
  /** It wrote to a deleted file: its content was moved to a new file at the path, and it was emptied. */
  | { state: 'recovered'; bytes: number }
  /** It writes to another file that still exists (renamed away): left alone. */
  | { state: 'elsewhere' }
  /** /proc could not tell (the process is gone, or its descriptors are not readable). */
  | { state: 'unknown' };

/**
 * Checks that process `pid` still writes its stdout (fd 1) to `logFile`. When the file was deleted under
 * it, the process goes on appending to the unlinked file: nothing of it can be read, the disk space is
 * never freed, and rotation (which looks at the path) never sees it. Then what the deleted file holds is
 * appended to a new file at the path (created 0600, never through a symlink) and the deleted file is
 * emptied through `/proc/<pid>/fd/1`; its O_APPEND writer goes on at the new end. Done once per round,
 * this moves the output over until the process restarts with the new file; the lines written between a
 * copy and the truncation are lost, as in a rotation.
 */
export async function recoverDeletedLog(logFile: string, pid: number): Promise<LogFileCheck> {
  const fdPath = `/proc/${pid}/fd/1`;
  let target;
  try {
    target = await stat(fdPath);
  } catch {
    return { state: 'unknown' };
  }
  const atPath = await lstat(logFile).catch(() => undefined);
  if (atPath && atPath.ino === target.ino && atPath.dev === target.dev) return { state: 'same' };
  if (!target.isFile() || target.nlink > 0) return { state: 'elsewhere' };
  let deleted: FileHandle;
  try {
    deleted = await open(fdPath, constants.O_RDWR);
  } catch {
    return { state: 'unknown' };
  }
  try {
    const out = await open(
      logFile,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o600,
    );
    let copied = 0;
    try {
      const info = await out.stat();
      if (!info.isFile() || info.nlink > 1) return { state: 'elsewhere' };
      if ((info.mode & 0o777) !== 0o600) await out.chmod(0o600);
      for (let round = 0; round < 6; round++) {
        const size = (await deleted.stat()).size;
        if (size <= copied) break;
        copied = await copyRange(deleted, out, copied, size);
      }
    } finally {
      await out.close();
    }
    await deleted.truncate(0);
    return { state: 'recovered', bytes: copied };
  } finally {
    await deleted.close();
  }
}

/** Appends `[start, end)` of `from` to `to`; returns where it stopped (`end`, or earlier at EOF). */
async function copyRange(from: FileHandle, to: FileHandle, start: number, end: number): Promise<number> {
  const buffer = Buffer.allocUnsafe(Math.min(BLOCK * 16, Math.max(1, end - start)));
  let pos = start;
  while (pos < end) {
    const { bytesRead } = await from.read(buffer, 0, Math.min(buffer.length, end - pos), pos);
    if (bytesRead === 0) break;
    let written = 0;
    while (written < bytesRead) {
      written += (await to.write(buffer, written, bytesRead - written)).bytesWritten;
    }
    pos += bytesRead;
  }
  return pos;
}

// ---------------------------------------------------------------------------------------------------
// Line times

const TIME_KEY = Buffer.from('"time":');
const LEADING = /^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)/;

/** The time of a line in ms since the epoch (see the module comment), or undefined when undated. */
export function lineTime(line: Buffer): number | undefined {
  const at = line.indexOf(TIME_KEY);
  if (at >= 0) {
    let i = at + TIME_KEY.length;
    while (line[i] === 0x20) i++;
    if (line[i] === 0x22) {
      const end = line.indexOf(0x22, i + 1);
      if (end > i && end - i < 64) {
        const ms = Date.parse(line.toString('latin1', i + 1, end));
        if (Number.isFinite(ms)) return ms;
      }
    } else {
      let j = i;
      while (j < line.length && j - i < 20 && line[j]! >= 0x30 && line[j]! <= 0x39) j++;
      if (j > i) {
        const n = Number(line.toString('latin1', i, j));
        // Epoch seconds (10 digits) or milliseconds (13 digits).
        return n < 1e11 ? n * 1000 : n;
      }
    }
  }
  const head = line.toString('latin1', 0, Math.min(line.length, 48));
  const match = LEADING.exec(head);
  if (match) {
    const ms = Date.parse(match[1]!.replace(' ', 'T').replace(',', '.'));
    if (Number.isFinite(ms)) return ms;
  }
  return undefined;
}

/** Reads `[start, end)` of an open file. */
async function readAt(handle: FileHandle, start: number, end: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(Math.max(0, end - start));
  let got = 0;
  while (got < buffer.length) {
    const { bytesRead } = await handle.read(buffer, got, buffer.length - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buffer.subarray(0, got);
}

interface DatedLine {
  /** Offset of the line's first byte. */
  start: number;
  /** Offset just after its newline (or the end of the file). */
  next: number;
  time: number;
}

/**
 * The first dated line starting at or after `from` (a line start), looking at most `window` bytes
 * ahead; undefined when there is none. A line longer than a block is judged by its first block.
 */
async function firstDatedLine(
  handle: FileHandle,
  from: number,
  size: number,
  window = 4 * BLOCK,
): Promise<DatedLine | undefined> {
  let pos = from;
  const limit = Math.min(size, from + window);
  while (pos < limit) {
    const block = await readAt(handle, pos, Math.min(size, pos + BLOCK));
    if (block.length === 0) return undefined;
    const atEnd = pos + block.length >= size;
    let at = 0;
    let longLine = false;
    while (at < block.length) {
      const nl = block.indexOf(NEWLINE, at);
      if (nl < 0 && !atEnd) {
        // The line runs past this block: read again from its start, unless it fills the block.
        longLine = at === 0;
        break;
      }
      const end = nl < 0 ? block.length : nl;
      const time = lineTime(block.subarray(at, end));
      if (time !== undefined) return { start: pos + at, next: pos + end + (nl < 0 ? 0 : 1), time };
      at = end + 1;
    }
    if (longLine) {
      const next = await nextLineStart(handle, pos + block.length, size);
      const time = lineTime(block);
      if (time !== undefined) return { start: pos, next, time };
      pos = next;
    } else if (atEnd) {
      return undefined;
    } else {
      pos += at;
    }
  }
  return undefined;
}

/** The start of the line containing `pos`'s next line: `pos` itself if 0, else after the next newline. */
async function nextLineStart(handle: FileHandle, pos: number, size: number): Promise<number> {
  if (pos === 0) return 0;
  let at = pos - 1;
  while (at < size) {
    const block = await readAt(handle, at, Math.min(size, at + BLOCK));
    const nl = block.indexOf(NEWLINE);
    if (nl >= 0) return at + nl + 1;
    at += block.length;
    if (block.length === 0) break;
  }
  return size;
}

/**
 * Where the lines of the last `sinceMs` start in `file` (its size when none are in the window): a
 * bisection on the first dated line after each probe, then a short forward scan.
 */
export async function sinceOffset(file: LogFile, cutMs: number): Promise<number> {
  if (file.size === 0) return 0;
  const handle = await open(file.path, 'r');
  try {
    const size = file.size;
    const first = await firstDatedLine(handle, 0, size);
    if (!first) return file.mtimeMs >= cutMs ? 0 : size;
    if (first.time >= cutMs) return 0;
    if (file.mtimeMs < cutMs) return size;
    // Invariant: the cut is after `lo` (a line start whose dated line is older) and at or before `hi`.
    let lo = first.next;
    let hi = size;
    while (hi - lo > BLOCK) {
      const mid = await nextLineStart(handle, Math.floor((lo + hi) / 2), size);
      if (mid >= hi) break;
      const probe = await firstDatedLine(handle, mid, hi);
      if (!probe || probe.time >= cutMs) hi = mid;
      else lo = probe.next;
    }
    for (let pos = lo; pos < size;) {
      const line = await firstDatedLine(handle, pos, size, size);
      if (!line) return size;
      if (line.time >= cutMs) return line.start;
      pos = line.next;
    }
    return size;
  } finally {
    await handle.close();
  }
}

/** Lines in `[0, size)`: newlines, plus one for a last line without newline. */
export interface TailStart {
  /** Where the last `n` lines start. */
  offset: number;
  /** How many lines there are from there (fewer than `n` when the file is shorter). */
  lines: number;
}

/** Finds where the last `n` lines of the first `size` bytes start, reading backwards in blocks. */
export async function tailOffset(path: string, size: number, n: number): Promise<TailStart> {
  if (size === 0 || n === 0) return { offset: size, lines: 0 };
  const handle = await open(path, 'r');
  try {
    const last = await readAt(handle, size - 1, size);
    // A newline ending the file ends the last line; it does not start another.
    let newlinesToSkip = last[0] === NEWLINE ? 1 : 0;
    let lines = 0;
    let end = size;
    while (end > 0) {
      const start = Math.max(0, end - BLOCK);
      const block = await readAt(handle, start, end);
      for (let i = block.length - 1; i >= 0; i--) {
        if (block[i] !== NEWLINE) continue;
        if (newlinesToSkip > 0) {
          newlinesToSkip--;
          continue;
        }
        lines++;
        if (lines === n) return { offset: start + i + 1, lines };
      }
      end = start;
    }
    // The first line of the file has no newline before it.
    return { offset: 0, lines: lines + 1 };
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Selecting and streaming

/** A byte range of one file to read. */
export interface LogRange {
  file: LogFile;
  start: number;
}

/** The ranges of an instance's files that hold the lines a query asks for, oldest first. */
export async function selectRanges(
  files: LogFile[],
  query: { cutMs?: number | undefined; tail?: number | undefined },
): Promise<LogRange[]> {
  // Positions as [file index, offset]; the later of the `since` cut and the `tail` cut wins.
  let from: [number, number] = [0, 0];
  const later = (a: [number, number], b: [number, number]): [number, number] =>
    a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]) ? a : b;
  if (query.cutMs !== undefined) {
    let cut: [number, number] = [files.length, 0];
    // Newest first: a short window is usually found in the live file alone.
    for (let i = files.length - 1; i >= 0; i--) {
      const offset = await sinceOffset(files[i]!, query.cutMs);
      if (offset >= files[i]!.size) break;
      cut = [i, offset];
      if (offset > 0) break;
    }
    from = later(from, cut);
  }
  if (query.tail !== undefined) {
    let cut: [number, number] = [files.length, 0];
    let wanted = query.tail;
    for (let i = files.length - 1; i >= 0 && wanted > 0; i--) {
      const found = await tailOffset(files[i]!.path, files[i]!.size, wanted);
      cut = [i, found.offset];
      wanted -= found.lines;
    }
    from = later(from, cut);
  }
  const ranges: LogRange[] = [];
  for (let i = from[0]; i < files.length; i++) {
    const file = files[i]!;
    const start = i === from[0] ? from[1] : 0;
    if (start < file.size) ranges.push({ file, start });
  }
  return ranges;
}

/** Streams the lines of `ranges` (each file on its own: a last line without newline stays whole). */
export async function* rangeLines(
  ranges: LogRange[],
  options: { maxLineBytes?: number; signal?: AbortSignal },
): AsyncGenerator<string> {
  for (const range of ranges) {
    yield* splitLines(
      fileChunks(range.file.path, { start: range.start, end: range.file.size, signal: options.signal }),
      options,
    );
  }
}

/** Counts the lines containing `pattern` in `ranges`. */
export async function countRanges(
  ranges: LogRange[],
  pattern: string,
  signal?: AbortSignal,
): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (const range of ranges) {
    const result = await countLinesMatching(
      fileChunks(range.file.path, { start: range.start, end: range.file.size, signal }),
      pattern,
      signal,
    );
    count += result.count;
    bytes += result.bytes;
  }
  return { count, bytes };
}

/**
 * Chunks appended to `path` from `position` on, until `signal` aborts: woken by fs.watch, and polled
 * every 250 ms in case watch events do not come (network filesystems, some containers). A file that
 * shrank was rotated (copied and truncated): reading resumes at its start.
 */
export async function* followChunks(
  path: string,
  position: number,
  signal: AbortSignal,
): AsyncGenerator<Buffer> {
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  const rewatch = (): void => {
    watcher?.close();
    watcher = undefined;
    try {
      watcher = watch(path, () => wake?.());
      watcher.on('error', () => undefined);
    } catch {
      // No watch (the file may not exist yet): polling alone.
    }
  };
  rewatch();
  /**
   * The file being read (inode and birth time: ext4 hands a freed inode number to the next new file): a
   * different one at the path means it was replaced (deleted and recreated).
   */
  let identity: string | undefined;
  const onAbort = (): void => wake?.();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    while (!signal.aborted) {
      let size = position;
      try {
        const info = await lstat(path);
        if (info.isFile()) {
          size = info.size;
          const now = `${info.dev}:${info.ino}:${info.birthtimeMs}`;
          if (identity !== undefined && now !== identity) {
            // A new file: read it from its start, and watch it rather than the old one.
            position = 0;
            rewatch();
          }
          identity = now;
        }
      } catch {
        // Not there right now (being rotated, or deleted and not recreated yet): try again.
      }
      if (size < position) position = 0;
      if (size > position) {
        for await (const chunk of fileChunks(path, { start: position, end: size })) {
          if (signal.aborted) return;
          yield chunk;
        }
        position = size;
        continue;
      }
      const pause = new AbortController();
      await Promise.race([
        new Promise<void>((resolve) => (wake = resolve)),
        sleep(FOLLOW_POLL_MS, undefined, { signal: pause.signal }).catch(() => undefined),
      ]);
      pause.abort();
      wake = undefined;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    watcher?.close();
  }
}

/** Yields the items of several async iterables as they come, in any order. */
export async function* merge<T>(sources: AsyncIterable<T>[]): AsyncGenerator<T> {
  const iterators = sources.map((s) => s[Symbol.asyncIterator]());
  const pending = new Map<number, Promise<{ i: number; result: IteratorResult<T> }>>();
  const pull = (i: number): void => {
    const next = iterators[i]!.next().then((result) => ({ i, result }));
    // A rejection is seen by the race below; this only keeps an abandoned one from going unhandled.
    next.catch(() => undefined);
    pending.set(i, next);
  };
  iterators.forEach((_, i) => pull(i));
  try {
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(i);
        continue;
      }
      pull(i);
      yield result.value;
    }
  } finally {
    await Promise.allSettled(iterators.map(async (it) => it.return?.()));
  }
}
