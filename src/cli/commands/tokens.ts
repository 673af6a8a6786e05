import { Command, Option } from 'commander';
import {
  ConflictError,
  ErrorCode,
  GameopsError,
  InputError,
  NotAllowedError,
  UnavailableError,
  errorMessage,
  systemClock,
} from '../../core/index.ts';
import type { Resources } from '../../app/index.ts';
import type { Store, TokenRecord } from '../../store/index.ts';
import type { Actor, Role } from '../../runbooks/model.ts';
import { globalOptions } from '../context.ts';
import { table } from '../render.ts';

/**
 * Where an identity or audit command runs: on the store itself as the local admin (or GAMEOPS_TOKEN's
 * actor), or, while `gameops serve` holds the embedded store, through its API with its local admin token
 * (or GAMEOPS_TOKEN); the server then decides who we are.
 */
export type AdminSession =
  | { kind: 'local'; store: Store; actor: Actor; resources: Resources }
  | { kind: 'remote'; url: string; call: ApiCall };

/** One JSON request to the API; errors come back as core/errors classes with the server's message. */
export type ApiCall = (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => Promise<unknown>;

/** What a command needs: at least this role, to do `what` (for the refusal). */
export interface Needs {
  role: Role;
  what: string;
}

/**
 * Opens the session for one command, checks the role locally (the server checks remotely), runs `work`,
 * and always releases what it opened.
 * @throws NotAllowedError when GAMEOPS_TOKEN's actor is too weak.
 */
export async function withAdminSession<T>(
  command: Command,
  needs: Needs,
  work: (session: AdminSession) => Promise<T>,
): Promise<T> {
  const opts = globalOptions(command);
  const { bootstrap, shutdown } = await import('../../app/index.ts');
  const { readEnv } = await import('../../config/index.ts');
  const identity = await import('../../identity/index.ts');
  const env = readEnv();
  if (env.GAMEOPS_TOKEN !== undefined) identity.checkTokenFormat(env.GAMEOPS_TOKEN);
  const base = {
    env,
    ...(opts.config ? { configPath: opts.config } : {}),
    logLevel: opts.logLevel ?? 'warn',
  };
  const probe = await bootstrap({ ...base, store: 'none' });
  const { config } = probe;
  await shutdown(probe);
  const remote = config.database.url ? undefined : identity.readServeDiscovery(config.database.dataDir, env);
  if (remote) return work({ kind: 'remote', url: remote.url, call: apiCall(remote.url, remote.token) });

  let resources: Resources;
  try {
    resources = await bootstrap({ ...base, store: 'required' });
  } catch (err) {
    if (err instanceof ConflictError) throw identity.storeBusyError(err, config.database.dataDir);
    throw err;
  }
  try {
    const store = resources.store!;
    const actor = await identity.cliActor(store, env);
    if (!identity.roleAtLeast(actor.role, needs.role)) {
      throw new NotAllowedError(
        `${actor.name} (${actor.role}) may not ${needs.what}: needs ${identity.rolesFrom(needs.role)}`,
      );
    }
    return await work({ kind: 'local', store, actor, resources });
  } finally {
    await shutdown(resources);
  }
}

const ERRORS: Record<string, new (message: string) => GameopsError> = {
  [ErrorCode.input]: InputError,
  [ErrorCode.conflict]: ConflictError,
  [ErrorCode.notAllowed]: NotAllowedError,
  [ErrorCode.unavailable]: UnavailableError,
};

/** A small JSON client for the identity and audit routes (the run client is src/cli/api-client.ts). */
export function apiCall(url: string, token: string, fetchImpl: typeof fetch = globalThis.fetch): ApiCall {
  const base = url.replace(/\/+$/, '');
  return async (method, path, body) => {
    let response: Response;
    try {
      response = await fetchImpl(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(120_000),
      });
    } catch (err) {
      throw new UnavailableError(`gameops serve at ${base} did not answer: ${errorMessage(err)}`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new UnavailableError(
        `gameops serve at ${base} answered ${response.status} with something not JSON`,
      );
    }
    if (response.ok) return parsed;
    const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    const message = `gameops serve at ${base}: ${error?.message ?? `HTTP ${response.status}`}`;
    if (response.status === 401) throw new NotAllowedError(message);
    const Class = (error?.code && ERRORS[error.code]) || undefined;
    if (Class) throw new Class(message);
    throw new GameopsError(response.status === 404 ? ErrorCode.notFound : ErrorCode.internal, message);
  };
}

const MANAGE_TOKENS: Needs = { role: 'admin', what: 'manage API tokens' };

interface CreateOptions {
  name: string;
  role: string;
  expires?: string;
}

/** `gameops tokens create|list|revoke`. */
export function tokensCommand(): Command {
  const tokens = new Command('tokens').description(
    'API tokens (admin): every API call but probes and /metrics needs one (Authorization: Bearer gops_…).',
  );
  tokens
    .command('create')
    .description('Create a token. Prints the token alone on stdout; it is shown this once and never again.')
    .requiredOption('--name <name>', 'who or what uses it, e.g. alice or ci-deploy')
    .addOption(
      new Option('--role <role>', 'what it may do')
        .choices(['viewer', 'responder', 'operator', 'admin'])
        .makeOptionMandatory(),
    )
    .option(
      '--expires <duration>',
      'expire after this long, from 1m to 3650d, e.g. 30d or 12h (default: never)',
    )
    .action(async (options: CreateOptions, command: Command) => {
      const { tokenExpiryMs } = await import('../../identity/index.ts');
      const expiresInMs =
        options.expires === undefined ? undefined : tokenExpiryMs(options.expires, '--expires');
      const role = options.role as 'viewer';
      const created = await withAdminSession(command, MANAGE_TOKENS, async (session) => {
        if (session.kind === 'remote') {
          return (await session.call('POST', '/api/tokens', {
            name: options.name,
            role,
            ...(options.expires === undefined ? {} : { expiresIn: options.expires }),
          })) as { token: string; record: TokenRecord };
        }
        const now = session.resources.clock.now();
        return session.store.tokens.create({
          name: options.name,
          role,
          createdBy: session.actor,
          ...(expiresInMs === undefined ? {} : { expiresAt: new Date(now.getTime() + expiresInMs) }),
        });
      });
      const { record } = created;
      process.stderr.write(
        `created token ${record.id} (${record.name}, ${record.role}${record.expiresAt ? `, expires ${record.expiresAt}` : ''}); ` +
          'it is shown once, below\n',
      );
      process.stdout.write(`${created.token}\n`);
    });

  tokens
    .command('list')
    .description('Every token (never its secret): id, name, role, when created, expires, last used, revoked.')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const records = await withAdminSession(command, MANAGE_TOKENS, async (session) =>
        session.kind === 'remote'
          ? ((await session.call('GET', '/api/tokens')) as { tokens: TokenRecord[] }).tokens
          : session.store.tokens.list(),
      );
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ tokens: records }, null, 2)}\n`);
        return;
      }
      process.stdout.write(`${renderTokens(records, systemClock.now())}\n`);
    });

  tokens
    .command('revoke')
    .description('Revoke a token at once (by the id `tokens list` shows).')
    .argument('<id>', 'token id (12 hex digits)')
    .action(async (id: string, _options: unknown, command: Command) => {
      if (!/^[0-9a-f]{12}$/.test(id))
        throw new InputError(`"${id.slice(0, 40)}" is not a token id (12 hex digits; gameops tokens list)`);
      const record = await withAdminSession(command, MANAGE_TOKENS, async (session) =>
        session.kind === 'remote'
          ? ((await session.call('DELETE', `/api/tokens/${id}`)) as { token: TokenRecord }).token
          : session.store.tokens.revoke(id, session.actor),
      );
      process.stdout.write(
        `revoked token ${record.id} (${record.name}, ${record.role}) at ${record.revokedAt ?? '?'}\n`,
      );
    });
  return tokens;
}

/** The human table of `tokens list`. */
export function renderTokens(records: TokenRecord[], now: Date): string {
  if (records.length === 0) return 'no tokens (gameops tokens create --name <name> --role <role>)';
  return table(
    ['ID', 'NAME', 'ROLE', 'STATE', 'CREATED', 'EXPIRES', 'LAST USED', 'CREATED BY'],
    records.map((r) => [
      r.id,
      r.name,
      r.role,
      r.revokedAt
        ? `revoked ${r.revokedAt}`
        : r.expiresAt !== undefined && Date.parse(r.expiresAt) <= now.getTime()
          ? 'expired'
          : 'active',
      r.createdAt,
      r.expiresAt ?? 'never',
      r.lastUsedAt ?? '-',
      r.createdBy,
    ]),
  );
}
