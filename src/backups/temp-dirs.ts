import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Private working directories of backups (a MySQL defaults file with the password, a Redis RDB copy, a
 * restore's scratch files). Each is stamped with its owner process, so one left behind by a gameops that
 * was killed (SIGKILL, OOM) is removed by the next backup, drill or restore instead of keeping a password
 * or a data copy in /tmp.
 */

const OWNER_FILE = '.gameops-owner';
const PATTERN = /^gameops-(backup|drill|restore)-/;

/** A process's start time (clock ticks since boot, /proc/<pid>/stat field 22): pid plus this is unique. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Creates `<tmpdir>/gameops-<what>-XXXXXX` (0700), stamped with this process. */
export async function makeOwnedTempDir(what: 'backup' | 'drill' | 'restore'): Promise<string> {
  const dir = await fsp.mkdtemp(join(tmpdir(), `gameops-${what}-`));
  await fsp.writeFile(join(dir, OWNER_FILE), `${process.pid} ${processStartTime(process.pid) ?? '?'}\n`, {
    mode: 0o600,
  });
  return dir;
}

/**
 * Removes backup working directories of this user whose owning process is gone. Directories of live
 * processes, of other users, and without a readable owner stamp are left alone.
 * @returns the directories removed
 */
export async function sweepStaleBackupDirs(base = tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  const names = await fsp.readdir(base).catch(() => [] as string[]);
  for (const name of names.filter((n) => PATTERN.test(n))) {
    const dir = join(base, name);
    const st = await fsp.lstat(dir).catch(() => undefined);
    if (!st?.isDirectory() || (process.getuid && st.uid !== process.getuid())) continue;
    const owner = await fsp.readFile(join(dir, OWNER_FILE), 'utf8').catch(() => undefined);
    const [pid, start] = owner?.trim().split(' ') ?? [];
    if (!pid || !start || start === '?') continue;
    if (processStartTime(Number(pid)) === start) continue;
    await fsp.rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}
