/**
 * Starting and stopping game-server processes. A game server is spawned **detached** (its own session
 * and process group) with stdout and stderr going straight to its log file by file descriptor (opened
 * O_APPEND), never through a pipe: it does not depend on the gameops process that started it, so
 * restarting gameops never kicks players. No shell is involved; the command is an argument array.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, constants, fchmodSync, fstatSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnavailableError, errorMessage } from '../../core/index.ts';
import { isSameProcess, procStat, procStatSync } from './proc.ts';

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  at: Date;
  /** The process's start time: with the pid, which process this was. */
  startTime: string;
}

/**
 * Exit statuses of the game servers this process started (only a parent learns them), by pid, and an
 * event per exit so a supervisor can react at once. Shared by every adapter in the process.
 */
const exits = new Map<number, ExitInfo>();
export const childExits = new EventEmitter<{ exit: [pid: number, info: ExitInfo] }>();
childExits.setMaxListeners(100);
const MAX_REMEMBERED_EXITS = 10_000;

/** Children of this process whose exit has not been handled yet: pid → start time. */
const children = new Map<number, string>();

/**
 * How a process this gameops started (pid and start time) ended, if that is known now. Right after the
 * process is seen dead in /proc it may not be: Node handles a child's exit on a later turn of the event
 * loop. Use {@link exitStatus} where the status matters.
 */
export function exitOf(pid: number, startTime: string | undefined): ExitInfo | undefined {
  const exit = exits.get(pid);
  return exit && exit.startTime === startTime ? exit : undefined;
}

/**
 * How a process that was seen dead ended: for a child of this process whose exit event has not been
 * handled yet, waits for it (up to `waitMs`) rather than calling the status unknown.
 */
export async function exitStatus(
  pid: number,
  startTime: string | undefined,
  waitMs = 2000,
): Promise<ExitInfo | undefined> {
  const known = exitOf(pid, startTime);
  if (known || startTime === undefined || children.get(pid) !== startTime) return known;
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      childExits.off('exit', onExit);
      resolve(exitOf(pid, startTime));
    };
    const onExit = (exited: number, info: ExitInfo): void => {
      if (exited === pid && info.startTime === startTime) done();
    };
    const timer = setTimeout(done, waitMs);
    childExits.on('exit', onExit);
  });
}

/** "exited with code 1", "killed by SIGKILL"; for a process we did not start, the status is unknown. */
export function describeExit(info: ExitInfo | undefined): string {
  if (!info) return 'process gone (exit status unknown: not started by this gameops process)';
  if (info.signal) return `killed by ${info.signal}`;
  return `exited with code ${info.code}`;
}

export interface SpawnSpec {
  /** Program and arguments. */
  command: string[];
  cwd: string;
  /** The complete environment of the child (nothing is inherited implicitly). */
  env: Record<string, string>;
  /** Receives stdout and stderr, appended. */
  logFile: string;
}

export interface Started {
  pid: number;
  /** /proc/<pid>/stat field 22. */
  startTime: string;
}

/**
 * Starts a detached process with its output appended to `logFile`.
 * @throws UnavailableError when it cannot be started (program not found, not executable, bad cwd).
 */
export async function spawnDetached(spec: SpawnSpec): Promise<Started> {
  const [program, ...args] = spec.command;
  if (program === undefined) throw new UnavailableError('empty command');
  const fd = openLogFile(spec.logFile);
  const stdio: Array<'ignore' | number> = ['ignore', fd, fd];
  // Descriptors gameops inherited without close-on-exec would reach the game server (and keep whatever
  // they hold open for as long as it runs): in the child, each is replaced by /dev/null.
  const leaks = leakingFds().filter((n) => n <= MAX_MASKED_FD);
  const devNull = leaks.length > 0 ? openSync('/dev/null', 'r') : undefined;
  if (devNull !== undefined) {
    const masked = new Set(leaks);
    for (let n = 3; n <= leaks.at(-1)!; n++) stdio.push(masked.has(n) ? devNull : 'ignore');
  }
  let child;
  try {
    child = spawn(program, args, {
      cwd: spec.cwd,
      env: spec.env,
      detached: true,
      stdio,
      shell: false,
    });
  } finally {
    // The child has its own copies of the descriptors.
    closeSync(fd);
    if (devNull !== undefined) closeSync(devNull);
  }
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new UnavailableError(`cannot start ${program}: ${errorMessage(err)}`, {
      details: { program, cwd: spec.cwd },
    });
  }
  // Read now: the child cannot have been reaped yet (that happens on a later turn of the event loop).
  const stat = procStatSync(pid);
  const startTime = stat?.startTime ?? '';
  child.on('error', () => undefined);
  if (stat) children.set(pid, startTime);
  child.once('exit', (code, signal) => {
    const info = { code, signal, at: new Date(), startTime };
    if (exits.size >= MAX_REMEMBERED_EXITS) exits.delete(exits.keys().next().value!);
    exits.set(pid, info);
    if (children.get(pid) === startTime) children.delete(pid);
    childExits.emit('exit', pid, info);
  });
  // Neither the handle nor its exit keeps gameops running.
  child.unref();
  if (!stat) throw new UnavailableError(`${program} exited at once`, { details: { program } });
  return { pid, startTime };
}

export interface StopOptions {
  /** Between SIGTERM and SIGKILL. */
  graceMs: number;
  /** Aborting it ends the grace at once: SIGKILL to the group. */
  signal?: AbortSignal | undefined;
  /** How long the group may take to vanish after SIGKILL. @default 5000 */
  killWaitMs?: number;
}

const O_CLOEXEC = 0o2000000;
/** Inherited descriptors above this number are left as they are (a stdio array that long is absurd). */
const MAX_MASKED_FD = 4096;

/**
 * Descriptors of this process above 2 that are not close-on-exec (`flags` of /proc/self/fdinfo), i.e.
 * that a program it starts would inherit. Node and libuv open their own descriptors close-on-exec; what
 * is left came from whatever started gameops (a shell, a CI runner, a service manager: with Node 24,
 * inherited descriptors from about 20 up were seen left as they were) and is none of a game server's
 * business.
 */
export function inheritableFds(): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isSafeInteger(fd) || fd <= 2) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile (the directory listing itself)
    }
    const flags = /^flags:\s+([0-7]+)/m.exec(info)?.[1];
    if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0) found.push(fd);
  }
  return found.sort((a, b) => a - b);
}

let leakScan: { at: number; fds: number[] } | undefined;

/** {@link inheritableFds}, read again at most once a second (a scale of 500 spawns in a burst). */
function leakingFds(): number[] {
  const now = performance.now();
  if (!leakScan || now - leakScan.at > 1000) leakScan = { at: now, fds: inheritableFds() };
  return leakScan.fds;
}

/**
 * Opens an instance log for appending (created 0600), never through a symlink (O_NOFOLLOW), and only a
 * regular file of this user with one link (a hard link would send game output into another file).
 * @throws UnavailableError saying what is wrong with it.
 */
export function openLogFile(path: string): number {
  const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = constants;
  let fd: number;
  try {
    fd = openSync(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UnavailableError(
      code === 'ELOOP'
        ? `the log file ${path} is a symbolic link: refusing to write game output through it (remove it)`
        : `cannot open the log file ${path}: ${errorMessage(err)}`,
      { details: { file: path } },
    );
  }
  try {
    const info = fstatSync(fd);
    const uid = process.getuid?.();
    const problem = !info.isFile()
      ? 'is not a regular file'
      : info.nlink > 1
        ? `has ${info.nlink} hard links (game output would reach another file)`
        : uid !== undefined && info.uid !== uid
          ? `belongs to uid ${info.uid}, not to this user`
          : undefined;
    if (problem) throw new UnavailableError(`the log file ${path} ${problem}: refusing to write to it`);
    if ((info.mode & 0o777) !== 0o600) fchmodSync(fd, 0o600);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * Stops a process started by {@link spawnDetached} **and its whole process group**: SIGTERM to the group,
 * up to `graceMs` (cut short when `signal` aborts) for every process of it to exit, then SIGKILL to the
 * group. Waiting for the leader alone is not enough: behind a wrapper (`sh -c 'node server.js'`,
 * `npm start`) the leader dies at once while the real server still drains and holds the port.
 *
 * The group is the one the leader created (`setsid`): its id is the leader's pid. A leader that is gone
 * already may have left members behind (a wrapper killed on its own); they are stopped too, but only
 * those started at or after the leader (a process older than it cannot be of its group). Nothing is
 * signalled when the pid is a different process now (reused: the start time differs) and no such member
 * is left.
 * @returns whether a signal was sent.
 * @throws UnavailableError when a process of the group is still there after SIGKILL (stuck in the kernel).
 */
export async function stopProcess(pid: number, startTime: string, options: StopOptions): Promise<boolean> {
  const stat = await procStat(pid);
  const leaderAlive = isSameProcess(stat, startTime);
  // The leader left its group (setpgid): only the process itself can be told apart as ours.
  const group = !leaderAlive || stat.pgrp === pid ? pid : undefined;
  if (!leaderAlive && !(await groupAlive(pid, startTime))) return false;
  const target = group !== undefined ? -group : pid;
  const gone = (): Promise<boolean> =>
    group !== undefined ? groupGone(group, pid, startTime) : isGone(pid, startTime);
  signal(target, 'SIGTERM');
  if (await waitFor(gone, options.graceMs, options.signal)) return true;
  signal(target, 'SIGKILL');
  const killWaitMs = options.killWaitMs ?? 5000;
  if (await waitFor(gone, killWaitMs, undefined)) return true;
  throw new UnavailableError(
    `process group ${group ?? pid} is still running ${killWaitMs} ms after SIGKILL (stuck in the kernel?)`,
    { details: { pid } },
  );
}

function signal(target: number, name: NodeJS.Signals): void {
  try {
    process.kill(target, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function isGone(pid: number, startTime: string): Promise<boolean> {
  return !isSameProcess(await procStat(pid), startTime);
}

/** Whether the group led by `pid` (started at `startTime`) is gone: no live (non-zombie) member left. */
async function groupGone(pgid: number, pid: number, startTime: string): Promise<boolean> {
  if (!(await isGone(pid, startTime))) return false;
  return !(await groupAlive(pgid, startTime));
}

/**
 * Whether process group `pgid` has a live member started at or after `startTime`. `kill(-pgid, 0)`
 * answers first (ESRCH: no member at all); zombies count there, so members are then looked up in /proc.
 */
export async function groupAlive(pgid: number, startTime: string): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  return (await groupMembers(pgid, startTime)).length > 0;
}

/** Live (non-zombie) processes of group `pgid` started at or after `startTime`, from /proc. */
export async function groupMembers(pgid: number, startTime: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  const since = Number(startTime);
  const members: number[] = [];
  await Promise.all(
    names.map(async (name) => {
      const pid = Number(name);
      if (!Number.isSafeInteger(pid) || pid <= 0) return;
      const stat = await procStat(pid);
      if (!stat || stat.pgrp !== pgid || stat.state === 'Z' || stat.state === 'X') return;
      if (Number(stat.startTime) < since) return;
      members.push(pid);
    }),
  );
  return members.sort((a, b) => a - b);
}

/** Polls `done` until it is true (true), `ms` pass or `signal` aborts (false). */
async function waitFor(
  done: () => Promise<boolean>,
  ms: number,
  abort: AbortSignal | undefined,
): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (let wait = 5; ; wait = Math.min(wait * 2, 50)) {
    if (await done()) return true;
    if (abort?.aborted || performance.now() >= deadline) return false;
    await sleep(Math.min(wait, Math.max(1, deadline - performance.now())), undefined, {
      ...(abort ? { signal: abort } : {}),
    }).catch(() => undefined);
  }
}

/**
 * Live process-group leaders whose environment holds every `NAME=value` of `env`: how a game server
 * spawned by a start that was interrupted before its pid was recorded is found again (its environment
 * names the fleet's config file and the instance). Processes this user may not read are skipped.
 */
export async function findLeadersByEnv(
  env: Record<string, string>,
): Promise<Array<Started & { environ: string[] }>> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  const wanted = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const found: Array<Started & { environ: string[] }> = [];
  await Promise.all(
    names.map(async (name) => {
      const pid = Number(name);
      if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return;
      const stat = await procStat(pid);
      if (!stat || stat.pgrp !== pid || stat.state === 'Z' || stat.state === 'X') return;
      let environ: string[];
      try {
        environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
      } catch {
        return;
      }
      if (wanted.every((w) => environ.includes(w))) found.push({ pid, startTime: stat.startTime, environ });
    }),
  );
  return found.sort((a, b) => a.pid - b.pid);
}
