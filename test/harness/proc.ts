/**
 * Process plumbing shared by the server starters: free ports, spawning a server with its output going to
 * a log file, bounded readiness polling, stopping by pid, and the last-resort clean-up that runs when the
 * Node process exits. Internal to the harness (index.ts re-exports `freePort` and `randomSecret`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a server gets to answer before its start counts as failed. */
export const START_DEADLINE_MS = 60_000;
/** How long a server gets between SIGTERM and SIGKILL. */
export const STOP_GRACE_MS = 5_000;

/**
 * Returns a TCP port that is free on 127.0.0.1 right now: the kernel picks one for a listener on port 0,
 * which we then close. Another process could take it before our server binds it, so the starters retry
 * with a new port when the server reports "address already in use" (see {@link withPortRetry}).
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not allocate a free port');
  return address.port;
}

/**
 * Throws a clear error when a fixed port is already taken. Without this check, a readiness probe could be
 * answered by whatever else listens there (say, a stack left running) while our own server dies.
 */
export async function assertPortFree(port: number, what: string): Promise<void> {
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  } catch (error) {
    throw new Error(`${what}: port 127.0.0.1:${port} is not free (${(error as Error).message})`, {
      cause: error,
    });
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Runs `attempt` with an explicit port once, or with up to three fresh free ports when none was given,
 * retrying only when the failure looks like losing the race for the port.
 */
export async function withPortRetry<T>(
  fixedPort: number | undefined,
  what: string,
  attempt: (port: number) => Promise<T>,
): Promise<T> {
  if (fixedPort !== undefined) {
    await assertPortFree(fixedPort, what);
    return attempt(fixedPort);
  }
  for (let tries = 1; ; tries++) {
    try {
      return await attempt(await freePort());
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      // Every server here reports a lost port race with this phrase in its log.
      if (tries >= 3 || !/address already in use|EADDRINUSE/i.test(message)) throw error;
    }
  }
}

/** A random hex secret (default 32 hex characters). */
export function randomSecret(bytes = 16): string {
  return randomBytes(bytes).toString('hex');
}

// ---------------------------------------------------------------------------------------------------------
// Temporary directories. Each records its owner (pid and process start time) so that a later run can
// delete the ones left behind by a process that was SIGKILLed (no exit hook runs then).

const OWNER_FILE = '.gameops-owner';
const TEMP_DIR_PATTERN = /^gameops-(mariadb|redis|postgres|alertmanager|prometheus|smallfs|sock|s3rver)-/;

/** A process's start time (clock ticks since boot, /proc/<pid>/stat field 22): pid plus this is unique. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Creates a fresh private (0700) directory, e.g. `/tmp/gameops-mariadb-XXXXXX`, under os.tmpdir() or
 * `base`, stamped with its owner for {@link sweepStaleTempDirs}.
 */
export async function makeTempDir(name: string, base = os.tmpdir()): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(base, `gameops-${name}-`));
  await fsp.writeFile(path.join(dir, OWNER_FILE), `${process.pid} ${processStartTime(process.pid) ?? '?'}\n`);
  return dir;
}

/**
 * Deletes harness temp dirs whose owning process no longer exists (a run that was SIGKILLed), unmounting
 * a leftover small filesystem first. Dirs of live processes, including other concurrent runs, are left
 * alone. Returns the removed paths.
 */
export async function sweepStaleTempDirs(): Promise<string[]> {
  const removed: string[] = [];
  const mounts = await fsp.readFile('/proc/mounts', 'utf8').catch(() => '');
  for (const base of new Set([os.tmpdir(), '/tmp'])) {
    const names = await fsp.readdir(base).catch(() => [] as string[]);
    for (const name of names.filter((n) => TEMP_DIR_PATTERN.test(n))) {
      const dir = path.join(base, name);
      const owner = await fsp.readFile(path.join(dir, OWNER_FILE), 'utf8').catch(() => undefined);
      if (owner === undefined) continue; // Not ours, or still being created.
      const [pid, startTime] = owner.trim().split(' ');
      if (startTime === undefined || startTime === '?') continue; // Cannot tell: keep it.
      if (processStartTime(Number(pid)) === startTime) continue; // Owner still running.
      for (const line of mounts.split('\n')) {
        const mountPoint = line.split(' ')[1];
        if (mountPoint?.startsWith(dir + '/')) await run('umount', ['-l', mountPoint]);
      }
      await fsp.rm(dir, { recursive: true, force: true });
      removed.push(dir);
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------------------
// Last-resort clean-up. Every child we spawn and every temp dir or mount we create is recorded here, and a
// process 'exit' handler (synchronous by necessity) SIGKILLs / unmounts / removes whatever is still
// registered, so servers do not outlive a test run that crashed or forgot to call stop().

const liveChildren = new Set<ChildProcess>();
const exitCleanups = new Set<() => void>();
let exitHandlerInstalled = false;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.once('exit', () => {
    for (const child of liveChildren) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    // Last registered first, like a stack of `finally` blocks (an unmount must precede removing its dir).
    for (const cleanup of [...exitCleanups].reverse()) {
      try {
        cleanup();
      } catch {
        // Best effort: we are exiting anyway.
      }
    }
  });
}

/**
 * Registers a synchronous clean-up for process exit; returns a function that unregisters it (call that
 * once the orderly stop has done the job).
 */
export function onExit(cleanup: () => void): () => void {
  installExitHandler();
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

/** Registers removal of `dir` at process exit; returns the unregister function. */
export function removeDirOnExit(dir: string): () => void {
  return onExit(() => fs.rmSync(dir, { recursive: true, force: true }));
}

/** Options for {@link spawnServer}. */
export interface SpawnServerOptions {
  /** Short name used in messages, e.g. `mariadb`. */
  name: string;
  command: string;
  args: string[];
  /** File that receives the server's stdout and stderr (appended). */
  logFile: string;
  cwd?: string;
  /** Written to the child's stdin, which is then closed (redis-server reads its config from there). */
  stdin?: string;
  /** Run as this user/group (postgres refuses to run as root). */
  uid?: number;
  gid?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * Signal the kernel sends the server when this Node process dies, however it dies (default SIGKILL).
   * See {@link parentDeathWrapper}.
   */
  parentDeathSignal?: NodeJS.Signals;
}

let setpriv: string | null | undefined;

/**
 * `setpriv --pdeathsig` (util-linux, present on every Debian/Ubuntu) sets PR_SET_PDEATHSIG and then execs
 * the server, so the kernel signals the server when the process that spawned it dies, even by SIGKILL
 * when no exit hook can run (e.g. vitest killing a worker). exec keeps the same pid and the server's own
 * command line. The signal fires when the spawning *thread* exits, which is why the harness expects
 * vitest's `forks` pool (with `threads`, a server would die with its worker thread). Without setpriv we
 * spawn directly and rely on the exit hook alone.
 */
function parentDeathWrapper(): string | null {
  if (setpriv === undefined) {
    const probe = spawnSync('setpriv', ['--help'], { encoding: 'utf8', timeout: 5_000 });
    setpriv = probe.status === 0 && probe.stdout.includes('--pdeathsig') ? 'setpriv' : null;
  }
  return setpriv;
}

/** A spawned server process whose output goes to a log file. */
export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Whether the process has exited. */
  exited(): boolean;
  /** Resolves when the process has exited. */
  readonly exit: Promise<void>;
  /** A line describing how the process exited, for error messages. */
  exitDescription(): string;
}

/**
 * Spawns a server with an argument array (never a shell). Its stdout/stderr go straight to `logFile`
 * through a file descriptor, so the parent's event loop is not involved and the log survives the parent.
 */
export async function spawnServer(
  options: SpawnServerOptions,
): Promise<ServerProcess & { child: ChildProcess }> {
  installExitHandler();
  const logFd = fs.openSync(options.logFile, 'a', 0o600);
  const wrapper = parentDeathWrapper();
  const [command, args] =
    wrapper === null
      ? [options.command, options.args]
      : [
          wrapper,
          ['--pdeathsig', options.parentDeathSignal ?? 'SIGKILL', '--', options.command, ...options.args],
        ];
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.stdin === undefined ? 'ignore' : 'pipe', logFd, logFd],
      uid: options.uid,
      gid: options.gid,
    });
  } finally {
    fs.closeSync(logFd);
  }
  let exitInfo: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`;
      liveChildren.delete(child);
      resolve();
    });
  });
  const spawned = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', (error) => resolve(error));
  });
  if (spawned !== undefined || child.pid === undefined) {
    throw new Error(`${options.name}: could not start ${options.command}: ${spawned?.message ?? 'no pid'}`, {
      cause: spawned,
    });
  }
  liveChildren.add(child);
  if (options.stdin !== undefined && child.stdin !== null) {
    child.stdin.on('error', () => {
      // The child may exit before reading everything; its log explains why.
    });
    child.stdin.end(options.stdin);
  }
  const pid = child.pid;
  return {
    name: options.name,
    pid,
    logFile: options.logFile,
    child,
    exit,
    exited: () => exitInfo !== undefined,
    exitDescription: () => exitInfo ?? 'still running',
  };
}

/**
 * Stops a server by pid: `signal` (SIGTERM unless the server wants another one), then SIGKILL when it has
 * not exited after {@link STOP_GRACE_MS}. Resolves once the process is gone.
 */
export async function stopServer(server: ServerProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (server.exited()) return;
  try {
    process.kill(server.pid, signal);
  } catch {
    // Exited between the check and the kill.
  }
  // Unref'd: a pending grace timer must not keep Node alive for 5 s after the server has exited.
  const graceful = await Promise.race([
    server.exit.then(() => true),
    sleep(STOP_GRACE_MS, false, { ref: false }),
  ]);
  if (graceful || server.exited()) return;
  try {
    process.kill(server.pid, 'SIGKILL');
  } catch {
    // Gone.
  }
  await server.exit;
}

/** The last `lines` lines of a log file, or a note when it cannot be read. */
export function logTail(logFile: string, lines = 30): string {
  try {
    const text = fs.readFileSync(logFile, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n') || '(log is empty)';
  } catch (error) {
    return `(could not read ${logFile}: ${(error as Error).message})`;
  }
}

/**
 * Polls `probe` until it returns true, the server exits, or the deadline passes; the last two throw an
 * error carrying the probe's last error and the tail of the server's log.
 */
export async function waitUntilReady(
  server: ServerProcess,
  probe: () => Promise<boolean>,
  deadlineMs = START_DEADLINE_MS,
): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let lastError = 'no answer yet';
  for (let delay = 25; ; delay = Math.min(delay * 2, 250)) {
    if (server.exited()) {
      throw new Error(
        `${server.name} (pid ${server.pid}) ${server.exitDescription()} before it was ready; ` +
          `last probe error: ${lastError}\n--- last lines of ${server.logFile} ---\n${logTail(server.logFile)}`,
      );
    }
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${server.name} (pid ${server.pid}) did not answer within ${deadlineMs} ms; last probe error: ` +
          `${lastError}\n--- last lines of ${server.logFile} ---\n${logTail(server.logFile)}`,
      );
    }
    await sleep(delay);
  }
}

/** Result of {@link run}. */
export interface RunResult {
  code: number | null;
  output: string;
}

/**
 * Runs a short-lived command to completion (argument array, no shell), capturing stdout+stderr together.
 * Throws with the output when it cannot be spawned; a non-zero exit is returned, not thrown.
 */
export async function run(
  command: string,
  args: string[],
  options: { uid?: number; gid?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  // Wrapped like servers (see parentDeathWrapper), so e.g. an initdb dies with us too.
  const wrapper = parentDeathWrapper();
  const child =
    wrapper === null
      ? spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(wrapper, ['--pdeathsig', 'SIGKILL', '--', command, ...args], {
          ...options,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise<RunResult>((resolve, reject) => {
    child.once('error', (error) =>
      reject(new Error(`could not run ${command}: ${error.message}`, { cause: error })),
    );
    child.once('close', (code) => resolve({ code, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

/** Like {@link run}, but throws (with the command's output) on a non-zero exit. */
export async function runChecked(
  what: string,
  command: string,
  args: string[],
  options: { uid?: number; gid?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${what}: ${command} exited with code ${String(result.code)}:\n${result.output.trimEnd()}`,
    );
  }
  return result.output;
}

/** Synchronous variant used only from the process 'exit' handler (no event loop left there). */
export function runSyncQuiet(command: string, args: string[]): void {
  spawnSync(command, args, { stdio: 'ignore', timeout: 5_000 });
}
