import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import type { Resources } from '../../src/app/index.ts';
import type { Role } from '../../src/runbooks/model.ts';
import { buildServer, type GameopsServer } from '../../src/server/index.ts';
import { createToken } from './auth.ts';
import { runProcess, type ProcessResult } from './process.ts';

/*
 * For tests that run the gameops CLI as its own process: a config in a temp dir, the process itself, and
 * a real API server the CLI talks to (GAMEOPS_URL / GAMEOPS_TOKEN).
 */

const MAIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

export type CliResult = ProcessResult;

/** Runs `gameops <args>` (src/cli/main.ts) as a process with only PATH, HOME and `env` (no shell). */
export function gameops(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runProcess(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
  });
}

/**
 * Writes a gameops.yaml in a fresh temp dir (named `prefix…`, removed after the test file): `yaml(dir)`
 * gives its text, with the dir for paths such as `database.dataDir`.
 */
export function cliConfig(prefix: string, yaml: (dir: string) => string): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  const path = join(dir, 'gameops.yaml');
  writeFileSync(path, yaml(dir));
  return { dir, path };
}

/**
 * Starts the API server on `resources` at a free local port. `env` points the CLI at it with a new token
 * of `role` (named `name`); `close` stops the server (the resources stay the caller's).
 */
export async function serveForCli(
  resources: Resources,
  role: Role,
  name?: string,
): Promise<{ server: GameopsServer; env: Record<string, string>; close: () => Promise<void> }> {
  const server = await buildServer(resources);
  const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  let token: string;
  try {
    token = await createToken(resources.store!, role, name);
  } catch (err) {
    await server.close();
    throw err;
  }
  const env = { GAMEOPS_URL: url, GAMEOPS_TOKEN: token };
  return { server, env, close: () => server.close() };
}
