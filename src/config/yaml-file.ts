/**
 * Reading YAML files safely and locating keys in them: shared by the config loader (src/config/load.ts)
 * and the runbook files (src/runbooks/yaml.ts).
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { isMap, isScalar, type Document } from 'yaml';

/** Why a file could not be read, as a phrase to follow its name. */
export class FileProblem extends Error {}

/**
 * Reads a file that must be a regular file of at most `maxBytes`, refusing anything else (a directory,
 * FIFO, device such as /dev/zero, socket) before reading a byte. The size is checked again while reading,
 * in case the file grew or was swapped in between.
 * @throws FileProblem
 */
export function readRegularFile(path: string, maxBytes: number, what: string): string {
  let fd: number;
  try {
    refuseIrregular(statSync(path), maxBytes, what);
    fd = openNonBlocking(path);
  } catch (err) {
    throw fileProblem(err);
  }
  try {
    return readOpenRegularFile(fd, maxBytes, what);
  } catch (err) {
    throw fileProblem(err);
  } finally {
    closeSync(fd);
  }
}

/** Opens a file for reading; O_NONBLOCK: if a FIFO was swapped in, opening it must not hang. */
export function openNonBlocking(path: string): number {
  return openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
}

/**
 * Reads an open file that must be a regular file of at most `maxBytes`, checking the size again while
 * reading. Does not close `fd`.
 * @throws FileProblem for a file that is not regular or too large; what reading throws, as it is.
 */
export function readOpenRegularFile(fd: number, maxBytes: number, what: string): string {
  refuseIrregular(fstatSync(fd), maxBytes, what);
  // One byte more than allowed: reading it means the file is too large.
  const buffer = Buffer.alloc(maxBytes + 1);
  let length = 0;
  while (length < buffer.length) {
    const n = readSync(fd, buffer, length, buffer.length - length, null);
    if (n === 0) break;
    length += n;
  }
  if (length > maxBytes) throw new FileProblem(`larger than ${formatBytes(maxBytes)}, the limit for ${what}`);
  return buffer.toString('utf8', 0, length);
}

function refuseIrregular(stats: Stats, maxBytes: number, what: string): void {
  if (!stats.isFile()) throw new FileProblem(`not a regular file (it is ${fileKind(stats)})`);
  if (stats.size > maxBytes) {
    throw new FileProblem(
      `too large (${stats.size} bytes; the limit for ${what} is ${formatBytes(maxBytes)})`,
    );
  }
}

/** `err` as a FileProblem: itself if it is one, else a phrase for its errno code or its message. */
export function fileProblem(err: unknown): FileProblem {
  if (err instanceof FileProblem) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new FileProblem('file not found');
  if (code === 'EACCES') return new FileProblem('permission denied');
  return new FileProblem((err as Error).message);
}

function fileKind(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return 'not a file';
}

/** A size in bytes, KiB or MiB (`1 MiB`, `64 KiB`). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${+(bytes / 1024).toFixed(1)} KiB`;
  return `${+(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** The offset of the key at `path` in its parent mapping, or `fallback` when there is no such key. */
export function keyOffset(doc: Document.Parsed, path: Array<string | number>, fallback: number): number {
  const parent: unknown = path.length <= 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  if (isMap(parent)) {
    const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === path[path.length - 1]);
    if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0];
  }
  return fallback;
}
