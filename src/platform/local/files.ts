/**
 * Small, careful file helpers for the fleet directory: private modes, atomic replacement (temp file,
 * fsync, rename, fsync of the directory), and bounded reads that refuse symlinks and non-regular files,
 * because what is read back from disk is external input.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Creates a directory (and parents) private to the user, or makes an existing one private: mode 0700
 * when it belongs to this user (a directory created earlier with a loose mode is tightened).
 * @throws FileProblem when it is not a directory, or belongs to another user (whoever controls it could
 *   plant symlinks or read the game servers' logs; and files this user wrote there would be unreadable to
 *   its owner).
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await stat(dir);
  if (!info.isDirectory()) throw new FileProblem(`${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) {
    throw new FileProblem(
      `${dir} belongs to uid ${info.uid}, not to this user (uid ${uid}): refusing to use it; ` +
        `run gameops as uid ${info.uid}, or give the directory to this user`,
    );
  }
  if ((info.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}

/** Replaces `path` with `content` atomically: a reader sees the old file or the new one, never a mix. */
export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(content, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  // The rename itself is durable only once the directory is synced.
  const dir = await open(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Why a file could not be read, as a phrase (never the content). */
export class FileProblem extends Error {}

/**
 * Reads a regular file of at most `maxBytes` without following a symlink; undefined when it does not
 * exist.
 * @throws FileProblem when it is a symlink, not a regular file, too large or unreadable.
 */
export async function readBoundedFile(path: string, maxBytes: number): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new FileProblem('is a symbolic link');
    throw new FileProblem((err as Error).message);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new FileProblem('is not a regular file');
    if (stats.size > maxBytes) throw new FileProblem(`is larger than ${maxBytes} bytes`);
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw new FileProblem(`is larger than ${maxBytes} bytes`);
    return buffer.toString('utf8', 0, length);
  } finally {
    await handle.close();
  }
}
