import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConflictError, NotAllowedError, UnavailableError, errorMessage } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import type { Store } from '../store/index.ts';

import { LOCAL_ADMIN_TOKEN_NAME, TOKEN_PREFIX, tokenId } from './tokens.ts';

export { LOCAL_ADMIN_TOKEN_NAME };
const SERVE_FILE = 'serve.json';
const TOKEN_FILE = 'local-admin.token';

/**
 * The actor of a CLI process that holds the embedded store itself: whoever can open the data directory
 * (mode 0700) can read and change everything in it, so it is admin. Named after the OS user.
 */
export function localActor(): Actor {
  const user = osUser();
  return { id: `local:${user}`, name: user, role: 'admin', kind: 'local' };
}

function osUser(): string {
  try {
    const { username } = userInfo();
    if (username) return username;
  } catch {
    // A uid without a passwd entry (some containers): named by its number below.
  }
  return `uid-${process.getuid?.() ?? 'unknown'}`;
}

/**
 * Who a CLI process that opened the store acts as: the actor of `GAMEOPS_TOKEN` when set (so two
 * shells can be two people, e.g. for four-eyes approvals), else the local OS user as admin.
 * @throws NotAllowedError when GAMEOPS_TOKEN is set but unknown, revoked or expired (never repeating it).
 */
export async function cliActor(store: Store, env: { GAMEOPS_TOKEN?: string | undefined }): Promise<Actor> {
  if (env.GAMEOPS_TOKEN === undefined) return localActor();
  checkTokenFormat(env.GAMEOPS_TOKEN);
  const actor = await store.tokens.resolve(env.GAMEOPS_TOKEN);
  if (!actor) {
    throw new NotAllowedError(
      'GAMEOPS_TOKEN is not a valid token here (malformed, unknown, revoked or expired); unset it to act as the local admin',
    );
  }
  return actor;
}

/**
 * Refuses a GAMEOPS_TOKEN that is not shaped like a gameops token at all (a pasted password, another
 * tool's token), without repeating it.
 * @throws NotAllowedError
 */
export function checkTokenFormat(token: string): void {
  if (tokenId(token.trim()) === undefined) {
    throw new NotAllowedError(
      `GAMEOPS_TOKEN is not a gameops token (expected ${TOKEN_PREFIX}...); unset it to act as the local admin`,
    );
  }
}

/** Where a running `gameops serve` can be reached, for CLI commands while it holds the store. */
export interface ServeDiscovery {
  url: string;
  /** GAMEOPS_TOKEN when set, else the local admin token serve wrote for this data directory. */
  token: string;
  pid: number;
}

const serveFileSchema = z.object({
  url: z.url(),
  pid: z.number().int().positive(),
  startedAt: z.string(),
});

/**
 * The running `gameops serve` of this data directory, when there is one: its `serve.json` exists, names
 * a live process, and its local admin token is readable. Undefined otherwise (no serve, a stale file left
 * by a killed one, or files of another user).
 */
export function readServeDiscovery(
  dataDir: string,
  env: { GAMEOPS_TOKEN?: string | undefined } = {},
): ServeDiscovery | undefined {
  const dir = resolve(dataDir);
  let info: z.infer<typeof serveFileSchema>;
  try {
    const parsed = serveFileSchema.safeParse(JSON.parse(readFileSync(join(dir, SERVE_FILE), 'utf8')));
    if (!parsed.success) return undefined;
    info = parsed.data;
  } catch {
    return undefined;
  }
  if (!processAlive(info.pid)) return undefined;
  let token = env.GAMEOPS_TOKEN;
  if (token === undefined) {
    try {
      token = readFileSync(join(dir, TOKEN_FILE), 'utf8').trim();
    } catch {
      return undefined;
    }
  }
  return { url: info.url, token, pid: info.pid };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it lives but is another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * What `gameops serve` does at start on an embedded store: revokes the previous local admin token, issues
 * a fresh one into `<dataDir>/local-admin.token` and writes `<dataDir>/serve.json` (both mode 0600,
 * written atomically), so CLI commands on this machine reach the API while serve holds the store.
 * The token acts as the OS user running serve (the same name localActor() gives). Returns `unpublish`
 * for a clean shutdown: it revokes that token and removes the token file and `serve.json` (when they
 * are still ours), so the token stops working when serve stops.
 */
export async function publishServe(
  store: Store,
  dataDir: string,
  url: string,
  startedAt: Date,
): Promise<{ token: string; unpublish(): Promise<void> }> {
  const dir = resolve(dataDir);
  const actor = localActor();
  for (const record of await store.tokens.list()) {
    if (record.name === LOCAL_ADMIN_TOKEN_NAME && record.revokedAt === undefined) {
      await store.tokens.revoke(record.id, actor);
    }
  }
  const { token, record } = await store.tokens.create({
    name: LOCAL_ADMIN_TOKEN_NAME,
    role: 'admin',
    createdBy: actor,
    localAdmin: true,
  });
  writeAtomically(join(dir, TOKEN_FILE), `${token}\n`);
  writeAtomically(
    join(dir, SERVE_FILE),
    `${JSON.stringify({ url, pid: process.pid, startedAt: startedAt.toISOString() }, null, 2)}\n`,
  );
  return {
    token,
    async unpublish() {
      await store.tokens.revoke(record.id, actor);
      // Only our own files: a newer serve of the same directory may have replaced them.
      try {
        if (readFileSync(join(dir, TOKEN_FILE), 'utf8').trim() === token)
          rmSync(join(dir, TOKEN_FILE), { force: true });
      } catch {
        // Already gone.
      }
      try {
        const current = serveFileSchema.safeParse(JSON.parse(readFileSync(join(dir, SERVE_FILE), 'utf8')));
        if (current.success && current.data.pid === process.pid)
          rmSync(join(dir, SERVE_FILE), { force: true });
      } catch {
        // Already gone.
      }
    },
  };
}

/**
 * The message for a data directory another process holds (the store's ConflictError carries the
 * holder's pid): while `gameops serve` holds it (its serve.json names that pid) but cannot be used
 * here, how to reach its API; when another CLI command holds it, to wait for that command.
 */
export function storeBusyError(err: ConflictError, dataDir: string): ConflictError {
  const details = (err.details ?? {}) as { pid?: unknown; running?: unknown };
  const pid = typeof details.pid === 'number' ? details.pid : undefined;
  let servePid: number | undefined;
  try {
    const parsed = serveFileSchema.safeParse(
      JSON.parse(readFileSync(join(resolve(dataDir), SERVE_FILE), 'utf8')),
    );
    if (parsed.success) servePid = parsed.data.pid;
  } catch {
    // No serve.json: not a serve (or one that has not published yet).
  }
  if (pid !== undefined && details.running === true && servePid !== pid) {
    return new ConflictError(
      `another gameops command (pid ${pid}) is using the store; try again when it finishes`,
      { cause: err, details: err.details },
    );
  }
  const hint =
    servePid !== undefined && servePid === pid
      ? `it is \`gameops serve\` (pid ${pid}) but its local admin token is not readable here: set GAMEOPS_URL and GAMEOPS_TOKEN to use its API`
      : 'if that is `gameops serve`, set GAMEOPS_URL (and GAMEOPS_TOKEN) to use its API';
  return new ConflictError(`${err.message}; ${hint}`, { cause: err, details: err.details });
}

/** Writes a 0600 file through a fresh temp file renamed over it: readers see the old or the new, whole. */
function writeAtomically(path: string, content: string): void {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(temp, content, { mode: 0o600, flag: 'wx' });
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new UnavailableError(`cannot write ${path}: ${errorMessage(err)}`);
  }
}
