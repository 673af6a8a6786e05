/**
 * Shared by the local adapter's process-level tests (vitest only; benchmarks use test-support.ts): a
 * fleet in a fresh data directory with clean-ups run after each test, state-file reading, polling, and
 * fleet.fixture.ts as a second gameops process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach } from 'vitest';
import { systemClock, type Clock } from '../../core/index.ts';
import type { LocalPlatformConfig } from '../../config/index.ts';
import { createLocalPlatform, type LocalPlatform, type LocalPlatformOptions } from './index.ts';
import { isSameProcess, procStat } from './proc.ts';
import { stateSchema, type FleetState } from './state.ts';
import {
  REPO,
  destroyFleet,
  freePortBlock,
  localConfig,
  randomToken,
  tempDataDir,
  type LocalConfigInput,
} from './test-support.ts';

export const FIXTURE = join(REPO, 'src/platform/local/fleet.fixture.ts');

export interface Setup {
  dataDir: string;
  basePort: number;
  token: ReturnType<typeof randomToken>;
  config: LocalPlatformConfig;
  platform: LocalPlatform;
  open: (clock?: Clock, extra?: Partial<LocalPlatformOptions>) => LocalPlatform;
}

/** Run after each test, last registered first. */
export const cleanups: Array<() => Promise<void>> = [];

/** Registers the afterEach hook running {@link cleanups}; call once per test file. */
export function useCleanups(): void {
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });
}

export async function setup(
  input: Partial<LocalConfigInput> = {},
  clock: Clock = systemClock,
  extra: Partial<LocalPlatformOptions> = {},
): Promise<Setup> {
  const dataDir = await tempDataDir();
  const basePort = await freePortBlock(4);
  const token = randomToken();
  const config = localConfig({ basePort, replicas: 1, readinessTimeout: '5s', ...input });
  const open = (c: Clock = clock, more: Partial<LocalPlatformOptions> = {}): LocalPlatform => {
    const platform = createLocalPlatform({
      config,
      dataDir,
      opsToken: token,
      clock: c,
      stopGraceMs: 2000,
      // No stability window unless a test asks for one: most tests are not about it.
      minReadyMs: 0,
      ...extra,
      ...more,
    });
    cleanups.push(() => platform.close());
    return platform;
  };
  cleanups.push(() => destroyFleet(dataDir));
  return { dataDir, basePort, token, config, platform: open(), open };
}

export async function readStateFile(dataDir: string): Promise<FleetState> {
  return stateSchema.parse(JSON.parse(await readFile(join(dataDir, 'fleet', 'state.json'), 'utf8')));
}

export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export async function alive(pid: number, startTime: string): Promise<boolean> {
  return isSameProcess(await procStat(pid), startTime);
}

/** Starts fleet.fixture.ts as another gameops process; resolves once it printed `ready`. */
export async function startFixture(
  args: string[],
  env: Record<string, string> = {},
  /** A descriptor the fixture inherits at `at` (not close-on-exec there), as from a careless parent. */
  inherit?: { at: number; fd: number },
): Promise<ChildProcess> {
  const extra: Array<'ignore' | number> = [];
  if (inherit) for (let i = 3; i <= inherit.at; i++) extra.push(i === inherit.at ? inherit.fd : 'ignore');
  const child = spawn(process.execPath, [FIXTURE, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', ...extra],
  });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`fixture exited with ${code}`)));
    lines.on('line', (line) => {
      if (line.startsWith('ready ')) resolve();
    });
  });
  return child;
}

/** Starts fleet.fixture.ts without waiting for anything (killed after the test). */
export function spawnFixture(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [FIXTURE, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Runs fleet.fixture.ts to its end; resolves with what it printed on stdout. */
export async function runFixture(args: string[], env: Record<string, string> = {}): Promise<string> {
  const child = spawn(process.execPath, [FIXTURE, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => child.once('exit', resolve));
  return out.trim();
}

export async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}
