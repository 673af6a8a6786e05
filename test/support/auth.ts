import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Resources } from '../../src/app/index.ts';
import type { Actor, Role } from '../../src/runbooks/model.ts';
import { openStore, type Store } from '../../src/store/index.ts';

/** Who creates tokens in tests (recorded as `createdBy` and in the audit log). */
export const TEST_ADMIN: Actor = { id: 'local:test', name: 'test', role: 'admin', kind: 'local' };

/**
 * Creates an API token of `role` in `store` and returns it. Token names are unique among active tokens:
 * without an explicit `name`, a second token of a role gets `test-<role>-2` and so on.
 */
export async function createToken(store: Store, role: Role = 'admin', name?: string): Promise<string> {
  if (name !== undefined) return (await store.tokens.create({ name, role, createdBy: TEST_ADMIN })).token;
  const taken = new Set(
    (await store.tokens.list()).filter((t) => t.revokedAt === undefined).map((t) => t.name),
  );
  let candidate = `test-${role}`;
  for (let n = 2; taken.has(candidate); n += 1) candidate = `test-${role}-${n}`;
  return (await store.tokens.create({ name: candidate, role, createdBy: TEST_ADMIN })).token;
}

/** `{ authorization: 'Bearer <token>' }`. */
export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}

/**
 * An Authorization header for a server built over `resources`: a token of `role` in its store. A server
 * bootstrapped without a store (`store: 'none'`) gets a private one in a fresh temp dir first (closed by
 * `shutdown(resources)` like any other), since every API route but probes and /metrics needs a token.
 */
export async function authHeaders(
  resources: Resources,
  role: Role = 'admin',
): Promise<{ authorization: string }> {
  resources.store ??= await openStore({
    dataDir: join(mkdtempSync(join(tmpdir(), 'gameops-auth-')), 'data'),
    clock: resources.clock,
  });
  return bearer(await createToken(resources.store, role));
}

/** The local admin token a running `gameops serve` wrote into its data directory. */
export function serveToken(dataDir: string): string {
  return readFileSync(join(dataDir, 'local-admin.token'), 'utf8').trim();
}
