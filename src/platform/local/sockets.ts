/**
 * Who listens on a port, from Linux's /proc: the listening TCP sockets of a port (`/proc/<pid>/net/tcp`
 * and `tcp6`, in the network namespace of that process) and whether a process group holds one of them
 * (`/proc/<pid>/fd/*` links read `socket:[<inode>]`). Used so that a readiness probe answered on an
 * instance's port counts only when the instance's own processes hold the listening socket, not a
 * previous process still draining there, nor a stranger that took the port.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import { groupMembers } from './process.ts';

const LISTEN = '0A';

/** Listening TCP sockets (IPv4 and IPv6) by port: the inodes of each, as seen by process `pid`. */
export type Listeners = Map<number, Set<string>>;

/**
 * The listening TCP sockets of the network namespace of `pid` (`/proc/<pid>/net/tcp` and `tcp6`). One
 * read serves every instance of a poll round: the tables hold every socket of the namespace.
 */
export async function listeningSockets(pid: number | 'self' = 'self'): Promise<Listeners> {
  const listeners: Listeners = new Map();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = await readFile(`/proc/${pid}/net/${table}`, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const local = fields[1];
      const inode = fields[9];
      if (fields[3] !== LISTEN || local === undefined || inode === undefined || inode === '0') continue;
      const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
      let inodes = listeners.get(port);
      if (!inodes) listeners.set(port, (inodes = new Set()));
      inodes.add(inode);
    }
  }
  return listeners;
}

/** What a look at the sockets said. */
export type Ownership =
  | { owned: true }
  | { owned: false; reason: string }
  /** /proc could not tell (a descriptor table not readable by this user). */
  | { owned: undefined };

/**
 * Whether the process group led by `pid` (started at `startTime`) holds a socket listening on `port`
 * (among `listeners`, read by {@link listeningSockets}).
 * The leader is looked at first (no wrapper: the common case), the rest of the group only then.
 */
export async function listenerOwnership(
  pid: number,
  startTime: string,
  port: number,
  listeners: Listeners,
): Promise<Ownership> {
  const inodes = listeners.get(port);
  if (!inodes || inodes.size === 0) return { owned: false, reason: `nothing listens on port ${port}` };
  let unreadable = false;
  const holds = async (member: number): Promise<boolean> => {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${member}/fd`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EACCES') unreadable = true;
      return false;
    }
    for (const fd of fds) {
      const target = await readlink(`/proc/${member}/fd/${fd}`).catch(() => '');
      if (target.startsWith('socket:[') && inodes.has(target.slice(8, -1))) return true;
    }
    return false;
  };
  if (await holds(pid)) return { owned: true };
  for (const member of await groupMembers(pid, startTime)) {
    if (member !== pid && (await holds(member))) return { owned: true };
  }
  if (unreadable) return { owned: undefined };
  return {
    owned: false,
    reason: `port ${port} is held by a process outside the instance's process group (a previous process still draining, or another program)`,
  };
}
