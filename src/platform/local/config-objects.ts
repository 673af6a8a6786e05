/**
 * The local platform's config for backups: the game config file as one `File` object (its name and its
 * bytes, base64), and its atomic replacement on restore (temp file in the same directory, fsync,
 * rename, fsync of the directory), keeping the mode of the file it replaces.
 */
import { randomBytes } from 'node:crypto';
import { type Stats, constants } from 'node:fs';
import { lstat, open, rename, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { InputError, UnavailableError, errorMessage } from '../../core/index.ts';
import type { ConfigApplyResult, ConfigObject } from '../port.ts';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The file's bytes and mode, or undefined when it does not exist. Refuses a symlink or a non-regular file. */
async function readFileBytes(
  path: string,
  maxBytes: number,
): Promise<{ bytes: Buffer; mode: number } | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new UnavailableError(`the game config ${path} is a symbolic link`);
    throw new UnavailableError(`cannot read the game config ${path}: ${errorMessage(err)}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new UnavailableError(`the game config ${path} is not a regular file`);
    if (info.size > maxBytes)
      throw new UnavailableError(`the game config ${path} is larger than ${maxBytes} bytes`);
    const bytes = await handle.readFile();
    if (bytes.length > maxBytes)
      throw new UnavailableError(`the game config ${path} is larger than ${maxBytes} bytes`);
    return { bytes, mode: info.mode & 0o777 };
  } finally {
    await handle.close();
  }
}

/** The game config file as a `File` object; none when the file does not exist yet. */
export async function exportConfigFile(path: string, maxBytes: number): Promise<ConfigObject[]> {
  const found = await readFileBytes(path, maxBytes);
  if (!found) return [];
  const name = basename(path);
  return [{ kind: 'File', name, data: { [name]: found.bytes.toString('base64') } }];
}

/**
 * Checks that `objects` are what {@link exportConfigFile} gives for `path` (at most one `File` of its
 * name, with one value of that name, base64) and returns the bytes to write, if any.
 * @throws InputError naming the object
 */
export function configFileBytes(path: string, objects: readonly ConfigObject[]): Buffer | undefined {
  const list: unknown = objects;
  if (!Array.isArray(list)) throw new InputError('config objects: a list of objects');
  const name = basename(path);
  if (objects.length > 1)
    throw new InputError(`the local platform holds one config object (File ${name}), not ${objects.length}`);
  const object = objects[0];
  if (object === undefined) return undefined;
  const what = `config object ${String(object.kind)} ${JSON.stringify(String(object.name)).slice(0, 120)}`;
  if (object.kind !== 'File' || object.name !== name)
    throw new InputError(`${what}: the local platform holds only File ${name} (the game config)`);
  const data = object.data as unknown;
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw new InputError(`${what}: data must be an object`);
  const keys = Object.keys(data);
  const value = (data as Record<string, unknown>)[name];
  if (keys.length !== 1 || typeof value !== 'string')
    throw new InputError(`${what}: data must hold exactly one value, named ${name}`);
  if (!BASE64.test(value)) throw new InputError(`${what}: the value of ${name} is not base64`);
  return Buffer.from(value, 'base64');
}

/**
 * Replaces `path` with `bytes` atomically, keeping the current file's mode (0600 for a new file).
 * @returns whether a file was replaced (false: created)
 */
export async function writeConfigFile(
  path: string,
  bytes: Buffer,
  maxBytes: number,
): Promise<ConfigApplyResult> {
  let current: Stats | undefined;
  try {
    current = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new UnavailableError(`cannot read the game config ${path}: ${errorMessage(err)}`);
  }
  if (current && !current.isFile())
    throw new UnavailableError(`the game config ${path} is not a regular file: refusing to replace it`);
  if (bytes.length > maxBytes)
    throw new InputError(`config object File ${basename(path)}: larger than ${maxBytes} bytes`);
  const mode = current ? current.mode & 0o777 : 0o600;
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const handle = await open(tmp, 'wx', mode);
    try {
      await handle.writeFile(bytes);
      // open() applies the umask: set the mode the file had.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new UnavailableError(`cannot write the game config ${path}: ${errorMessage(err)}`, {
      details: { file: path },
    });
  }
  const dir = await open(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return current ? { created: 0, replaced: 1 } : { created: 1, replaced: 0 };
}
