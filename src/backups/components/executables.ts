/**
 * Finding the external programs the backup components run (redis-server, setpriv, the MySQL client
 * tools): on PATH first, then in the usual system directories, which a non-root PATH often lacks.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** Searched after PATH, in this order. */
export const SYSTEM_BIN_DIRS: readonly string[] = ['/usr/bin', '/usr/sbin', '/usr/local/bin'];

/**
 * The full path of the first executable file `name` on PATH or in `extraDirs`, or undefined when
 * there is none (a directory that cannot be read counts as not holding it).
 */
export async function findExecutable(
  name: string,
  extraDirs: readonly string[] = SYSTEM_BIN_DIRS,
): Promise<string | undefined> {
  const dirs = [...(process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean), ...extraDirs];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      await fsp.access(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}
