/**
 * Helpers for tests and benchmarks of the local adapter: a config running the mini game server
 * (test/fixtures/mini-game-server.ts), a block of free ports, a fresh data directory, and a clean-up that
 * stops whatever the fleet state still names, even when the adapter itself is broken.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { localPlatformSchema } from '../../config/schema.ts';
import type { LocalPlatformConfig } from '../../config/index.ts';
import { type Secret, secret } from '../../core/index.ts';
import { stopProcess } from './process.ts';

export const REPO = resolve(import.meta.dirname, '../../..');
export const MINI_SERVER = join(REPO, 'test/fixtures/mini-game-server.ts');

/** A command running the mini game server with this Node. */
export function miniServerCommand(): string[] {
  return [process.execPath, MINI_SERVER];
}

export interface LocalConfigInput {
  basePort: number;
  replicas?: number;
  /** The version at first start. @default 'v1' */
  version?: string;
  readinessTimeout?: string | number;
  rolloutTimeout?: string | number;
  /** Extra versions (name → environment of the mini server). */
  versions?: Record<string, Record<string, string>>;
  env?: Record<string, string>;
  secretEnv?: Record<string, Secret>;
  logs?: { maxBytes?: number; keep?: number };
  command?: string[];
}

/** Versions v1 and v2 (both fine) and `broken` (never ready), plus any given. */
export function localConfig(input: LocalConfigInput): LocalPlatformConfig {
  const command = input.command ?? miniServerCommand();
  const versions: Record<string, { command: string[]; cwd: string; env: Record<string, string> }> = {};
  const all = { v1: {}, v2: {}, broken: { MINI_NEVER_READY: '1' }, ...input.versions };
  for (const [name, env] of Object.entries(all)) versions[name] = { command, cwd: REPO, env };
  const parsed = localPlatformSchema.parse({
    kind: 'local',
    basePort: input.basePort,
    replicas: input.replicas ?? 2,
    version: input.version ?? 'v1',
    versions,
    readinessTimeout: input.readinessTimeout ?? '5s',
    rolloutTimeout: input.rolloutTimeout ?? '60s',
    env: input.env ?? {},
    logs: input.logs ?? {},
  });
  return { ...parsed, secretEnv: input.secretEnv ?? {} };
}

export function randomToken(): Secret {
  return secret(randomBytes(16).toString('hex'), 'inline');
}

/**
 * A base port with `count` consecutive ports free on 127.0.0.1 right now, below Linux's ephemeral range
 * (32768 and up), so outgoing connections do not take one of them in the meantime.
 */
export async function freePortBlock(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * (22_000 - count));
    let free = true;
    for (let port = base; port < base + count && free; port++) free = await isFree(port);
    if (free) return base;
  }
  throw new Error(`no block of ${count} free ports found`);
}

async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((done) => {
    server.once('error', () => done(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => done(true)));
  });
}

export async function tempDataDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'gameops-local-'));
}

/**
 * Stops every process the fleet state in `dataDir` names (pid + start time checked, so nothing else is
 * signalled), then removes the directory.
 */
export async function destroyFleet(dataDir: string): Promise<void> {
  try {
    const state = JSON.parse(await readFile(join(dataDir, 'fleet', 'state.json'), 'utf8')) as {
      instances?: Array<{ pid?: number; startTime?: string }>;
    };
    await Promise.all(
      (state.instances ?? []).map(async (i) => {
        if (i.pid !== undefined && i.startTime !== undefined)
          await stopProcess(i.pid, i.startTime, { graceMs: 2000 }).catch(() => undefined);
      }),
    );
  } catch {
    // No state (or unreadable): nothing recorded to stop.
  }
  await rm(dataDir, { recursive: true, force: true });
}

/** Asks an instance of the mini server to write `n` ERROR lines (done when it answers). */
export async function writeErrorLines(opsUrl: string, token: Secret, n: number): Promise<void> {
  const response = await fetch(`${opsUrl}/ops/test/log-errors?n=${n}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token.reveal()}` },
    signal: AbortSignal.timeout(10_000),
  });
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`log-errors answered ${response.status}`);
}
