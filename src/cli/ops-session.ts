import type { Command } from 'commander';
import type { Resources } from '../app/index.ts';
import type { GameopsEnv } from '../config/index.ts';
import type { Ops } from '../app/ops.ts';
import { UnavailableError } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import type { ApiTransport } from './api-client.ts';
import { REMOTE_ACTOR, sessionTarget, withSessionResources } from './session-target.ts';

/**
 * Where incident, on-call and alert commands run. While `gameops serve` holds the store (its discovery
 * file in the data directory names a live process), or when GAMEOPS_URL is set, commands go to its API
 * (`remote`) with its local admin token or GAMEOPS_TOKEN. Otherwise the command opens the store itself and
 * uses the services in this process (`ops()`), acting as the local admin or GAMEOPS_TOKEN's actor.
 */
export interface OpsSession {
  /** The server's API, when a server does the work; `ops()` is refused then. */
  remote?: ApiTransport;
  resources: Resources;
  /** Who we act as in-process; remotely the server decides from the token (this is a placeholder). */
  actor: Actor;
  /**
   * The in-process services (opened on first call, on this process's store).
   * @throws UnavailableError when the session is remote.
   */
  ops(): Promise<Ops>;
}

/**
 * Opens the session for one command and always releases it.
 * @throws ConflictError when another process holds the embedded store and no server can be reached.
 * @throws NotAllowedError when GAMEOPS_TOKEN is malformed, unknown, revoked or expired.
 */
export async function withOpsSession<T>(
  command: Command,
  work: (session: OpsSession) => Promise<T>,
): Promise<T> {
  return withSessionResources(command, async (resources, env) => {
    const result = await work(await openOpsSession(resources, env));
    await deliverDue(resources);
    return result;
  });
}

/** How long a command in-process waits for the deliveries it caused. */
const DELIVER_DUE_BUDGET_MS = 30_000;

/**
 * In-process (no server holds the store), nobody else sends what a command just stored: pages' first
 * level, notices, "you are Incident Commander". One on-call tick sends whatever is due now, so a page
 * declared from the CLI goes out at once instead of when `gameops serve` next starts (and then with
 * every level at once). Later escalation levels and retries still need a running server; the command
 * says so when pages are left escalating. A failure here is reported, never thrown: the command's own
 * change is stored already.
 */
async function deliverDue(resources: Resources): Promise<void> {
  const ops = resources.ops;
  if (!ops) return;
  const { errorMessage } = await import('../core/index.ts');
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ops.oncall.tick(resources.clock.now()),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, DELIVER_DUE_BUDGET_MS);
      }),
    ]);
    const open = await ops.oncall.pages({ status: ['triggered'], limit: 1 });
    if (open.length > 0 && !resources.config.database.url)
      process.stderr.write(
        'gameops: note: no gameops serve is running for this data directory: what was due went out now; ' +
          'escalation to later levels and retries happen while `gameops serve` runs\n',
      );
  } catch (err) {
    process.stderr.write(
      `gameops: warning: could not send due pages and notices now: ${errorMessage(err)}\n`,
    );
  } finally {
    clearTimeout(timer);
  }
}

async function openOpsSession(resources: Resources, env: GameopsEnv): Promise<OpsSession> {
  const target = await sessionTarget(resources, env);
  if ('server' in target) {
    const { createApiTransport } = await import('./api-client.ts');
    const { url, token } = target.server;
    const remote = createApiTransport({ url, ...(token ? { token } : {}) });
    return {
      remote,
      resources,
      actor: REMOTE_ACTOR,
      ops: () =>
        Promise.reject(
          new UnavailableError(`the gameops server at ${remote.base} holds the store; use its API`),
        ),
    };
  }
  return {
    resources,
    actor: target.actor,
    ops: async () => (await import('../app/ops.ts')).openOps(resources),
  };
}
