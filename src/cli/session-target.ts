import type { Command } from 'commander';
import type { Resources } from '../app/index.ts';
import type { GameopsEnv } from '../config/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { globalOptions } from './context.ts';

/** A server's API, as the CLI reaches it: its URL and the token to present. */
export interface ServerTarget {
  url: string;
  token?: string | undefined;
}

/**
 * Runs `work` with resources bootstrapped for a session command (no store yet: the session decides) and
 * the environment read once, and always releases them.
 */
export async function withSessionResources<T>(
  command: Command,
  work: (resources: Resources, env: GameopsEnv) => Promise<T>,
): Promise<T> {
  const opts = globalOptions(command);
  const { bootstrap, shutdown } = await import('../app/index.ts');
  const { readEnv } = await import('../config/index.ts');
  const env = readEnv();
  const resources = await bootstrap({
    store: 'none',
    env,
    ...(opts.config ? { configPath: opts.config } : {}),
    logLevel: opts.logLevel ?? 'warn',
  });
  try {
    return await work(resources, env);
  } finally {
    await shutdown(resources);
  }
}

/**
 * Where a session's commands go. While `gameops serve` holds the store (its discovery file in the data
 * directory names a live process), or when GAMEOPS_URL is set: that server, with its local admin token or
 * GAMEOPS_TOKEN. Otherwise this process opens the store itself (into `resources.store`) and acts as the
 * local admin or GAMEOPS_TOKEN's actor.
 * @throws InputError when GAMEOPS_TOKEN is malformed.
 * @throws ConflictError when another process holds the embedded store and no server can be reached.
 */
export async function sessionTarget(
  resources: Resources,
  env: GameopsEnv,
): Promise<{ server: ServerTarget } | { actor: Actor }> {
  const identity = await import('../identity/index.ts');
  if (env.GAMEOPS_TOKEN !== undefined) identity.checkTokenFormat(env.GAMEOPS_TOKEN);
  const server =
    env.GAMEOPS_URL !== undefined
      ? { url: env.GAMEOPS_URL, token: env.GAMEOPS_TOKEN }
      : identity.readServeDiscovery(resources.config.database.dataDir, env);
  if (server) return { server };
  const { openStore } = await import('../store/index.ts');
  const { ConflictError } = await import('../core/index.ts');
  const { config, clock } = resources;
  try {
    resources.store = await openStore({
      ...(config.database.url ? { url: config.database.url.reveal() } : { dataDir: config.database.dataDir }),
      clock,
    });
  } catch (err) {
    if (err instanceof ConflictError) throw identity.storeBusyError(err, config.database.dataDir);
    throw err;
  }
  return { actor: await identity.cliActor(resources.store, env) };
}

/** The actor placeholder of a remote session: the server decides who the token is; this is never sent. */
export const REMOTE_ACTOR: Actor = { id: 'token:remote', name: 'token', role: 'viewer', kind: 'token' };
