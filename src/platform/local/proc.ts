/**
 * What the local adapter reads from Linux's /proc: whether a process is the one we started (pid plus
 * start time, so a reused pid is never mistaken for our game server), its CPU ticks and resident memory,
 * and the machine's CPU and memory.
 */
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';

/**
 * Clock ticks per second of /proc's CPU and start-time figures (`getconf CLK_TCK`). It is 100 on every
 * Linux architecture Node supports (USER_HZ is fixed by the kernel ABI), so it is not queried.
 */
export const CLK_TCK = 100;

export interface ProcStat {
  /** Field 3: R, S, D, Z (zombie), T, … */
  state: string;
  /** Field 5: the process group. */
  pgrp: number;
  /** Fields 14 + 15: user + system CPU time, in clock ticks. */
  cpuTicks: number;
  /** Field 22: when the process started, in clock ticks after boot; with the pid, unique. */
  startTime: string;
}

/** Parses /proc/<pid>/stat; the command name (field 2) is in parentheses and may hold spaces. */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields from 3 on.
  const fields = text
    .slice(close + 2)
    .trim()
    .split(' ');
  const state = fields[0];
  const pgrp = Number(fields[2]);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !Number.isFinite(utime) || !Number.isFinite(stime))
    return undefined;
  return { state, pgrp, cpuTicks: utime + stime, startTime };
}

export function procStatSync(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

export async function procStat(pid: number): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is still the process that was started at `startTime` (a zombie counts as gone: it has
 * exited and only waits to be reaped).
 */
export function isSameProcess(stat: ProcStat | undefined, startTime: string): stat is ProcStat {
  return stat !== undefined && stat.startTime === startTime && stat.state !== 'Z' && stat.state !== 'X';
}

export async function isAlive(pid: number, startTime: string): Promise<boolean> {
  return isSameProcess(await procStat(pid), startTime);
}

let bootTimeMs: number | undefined;

/** When the machine booted (`btime` of /proc/stat), in ms since the epoch. */
export function bootTime(): number {
  if (bootTimeMs === undefined) {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('btime '));
    bootTimeMs = Number(line?.slice(6)) * 1000;
  }
  return bootTimeMs;
}

/** A process start time (ticks after boot) as an ISO 8601 date (10 ms resolution). */
export function startTimeToIso(startTime: string): string | undefined {
  const ticks = Number(startTime);
  const boot = bootTime();
  if (!Number.isFinite(ticks) || !Number.isFinite(boot)) return undefined;
  return new Date(boot + (ticks * 1000) / CLK_TCK).toISOString();
}

/** Resident memory of a process in bytes (VmRSS of /proc/<pid>/status), or undefined when it is gone. */
export async function residentBytes(pid: number): Promise<number | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return undefined;
  }
}

/** The machine's CPU time from the first line of /proc/stat: busy and total ticks over all CPUs. */
export async function machineCpuTicks(): Promise<{ busy: number; total: number }> {
  const first = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const values = first.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = values.reduce((sum, v) => sum + (Number.isFinite(v) ? v : 0), 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/** MemTotal and MemAvailable of /proc/meminfo, in bytes. */
export async function machineMemory(): Promise<{ total: number; available: number }> {
  const text = await readFile('/proc/meminfo', 'utf8');
  const kb = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { total: kb('MemTotal'), available: kb('MemAvailable') };
}
