/**
 * Starting and stopping game-server processes. A game server is spawned **detached** (its own session
 * and process group) with stdout and stderr going straight to its log file by file descriptor (opened
 * O_APPEND), never through a pipe: it does not depend on the gameops process that started it, so
 * restarting gameops never kicks players. No shell is involved; the command is an argument array.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, openSync } from 'node:fs';
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

/** How a process this gameops started (pid and start time) ended, if it did. */
export function exitOf(pid: number, startTime: string | undefined): ExitInfo | undefined {
  const exit = exits.get(pid);
  return exit && exit.startTime === startTime ? exit : undefined;
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
  const fd = openSync(spec.logFile, 'a', 0o600);
  let child;
  try {
    child = spawn(program, args, {
      cwd: spec.cwd,
      env: spec.env,
      detached: true,
      stdio: ['ignore', fd, fd],
      shell: false,
    });
  } finally {
    // The child has its own copy of the descriptor.
    closeSync(fd);
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
  child.once('exit', (code, signal) => {
    const info = { code, signal, at: new Date(), startTime };
    if (exits.size >= MAX_REMEMBERED_EXITS) exits.delete(exits.keys().next().value!);
    exits.set(pid, info);
    childExits.emit('exit', pid, info);
  });
  // Neither the handle nor its exit keeps gameops running.
  child.unref();
  if (!stat) throw new UnavailableError(`${program} exited at once`, { details: { program } });
  return { pid, startTime };
}

/**
 * Stops a process started by {@link spawnDetached}: SIGTERM to its process group, up to `graceMs` for it
 * to exit, then SIGKILL. Does nothing when `pid` is no longer the process started at `startTime` (the
 * pid was reused by another program, which must not be signalled).
 * @returns whether a signal was sent.
 */
export async function stopProcess(pid: number, startTime: string, graceMs: number): Promise<boolean> {
  const stat = await procStat(pid);
  if (!isSameProcess(stat, startTime)) return false;
  // Detached: the process leads its own group, so the group goes too (workers it forked).
  const target = stat.pgrp === pid ? -pid : pid;
  signal(target, 'SIGTERM');
  if (await waitGone(pid, startTime, graceMs)) return true;
  signal(target, 'SIGKILL');
  await waitGone(pid, startTime, 5000);
  return true;
}

function signal(target: number, name: NodeJS.Signals): void {
  try {
    process.kill(target, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function waitGone(pid: number, startTime: string, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (let wait = 5; ; wait = Math.min(wait * 2, 50)) {
    if (!isSameProcess(await procStat(pid), startTime)) return true;
    if (performance.now() >= deadline) return false;
    await sleep(wait);
  }
}
