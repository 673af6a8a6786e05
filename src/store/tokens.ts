import type { Kysely, Selectable } from 'kysely';
import { z } from 'zod';
import { type Clock, ConflictError, InputError, NotFoundError } from '../core/index.ts';
import {
  LOCAL_ADMIN_TOKEN_NAME,
  generateToken,
  hashToken,
  tokenId,
  tokenMatches,
} from '../identity/tokens.ts';
import { ROLES, type Actor, type Role } from '../runbooks/model.ts';
import { appendAudit } from './audit.ts';
import type { StoreCall } from './check-runs.ts';
import type { ApiTokensTable, StoreDatabase } from './schema.ts';

/**
 * API tokens: `gops_<id>_<secret>`, shown once at creation; only their sha256 is stored. Creation and
 * revocation are audited in the same transaction. A token acts as `token:<id>` with its name and role.
 */
export interface TokenRepo {
  /**
   * Creates a token. The returned `token` is the only time its secret exists outside the caller.
   * Names are unique (case-insensitively) among active tokens, so a name is one person or one system,
   * as four-eyes approvals compare them; `local-admin` is reserved for the token serve issues.
   * @throws InputError naming the field (name, role, expiresAt in the past, the reserved name).
   * @throws ConflictError when an active (not revoked, not expired) token has that name.
   */
  create(input: CreateTokenInput): Promise<{ token: string; record: TokenRecord }>;
  /** Every token, revoked and expired ones included, newest first. */
  list(): Promise<TokenRecord[]>;
  /**
   * Revokes a token at once; revoking a revoked token changes nothing (and is not audited again).
   * @throws NotFoundError when there is no token with that id.
   */
  revoke(id: string, by: Actor): Promise<TokenRecord>;
  /**
   * The actor a presented token acts as; undefined for anything malformed, unknown, revoked or expired.
   * Notes the use (`lastUsedAt`) at most once a minute.
   */
  resolve(token: string): Promise<Actor | undefined>;
}

export interface CreateTokenInput {
  /** Who or what uses it, e.g. `alice` or `ci-deploy`. */
  name: string;
  role: Role;
  /** Never, when absent. */
  expiresAt?: Date;
  createdBy: Actor;
  /**
   * The token `gameops serve` issues to CLI processes of the OS user running it (name `local-admin`,
   * exempt from the unique-name check). It acts under the name of that OS user (from `createdBy`, a
   * `local:<user>` actor), so four-eyes sees the person, not the token.
   */
  localAdmin?: boolean;
}

/** A token as listed: everything but its secret. */
export interface TokenRecord {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
  /** The actor id that created it. */
  createdBy: string;
  expiresAt?: string;
  revokedAt?: string;
  lastUsedAt?: string;
}

/** How often a token's `lastUsedAt` is written at most (one write per request would be one per request). */
const LAST_USED_RESOLUTION_MS = 60_000;

/** Token names: what people call them in lists and audit records. */
export const tokenNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,99}$/,
    'must be 1-100 letters, digits, spaces or . _ @ + - (starting with a letter or digit)',
  );

const roleSchema = z.enum(ROLES, { error: `must be one of ${ROLES.join(', ')}` });

type Row = Selectable<ApiTokensTable>;

export function createTokenRepo(db: Kysely<StoreDatabase>, call: StoreCall, clock: Clock): TokenRepo {
  return {
    async create(input) {
      const name = field(tokenNameSchema, input.name, 'name');
      const role = field(roleSchema, input.role, 'role');
      const localAdmin = input.localAdmin === true;
      if (localAdmin && (name !== LOCAL_ADMIN_TOKEN_NAME || input.createdBy.kind !== 'local')) {
        throw new InputError(
          `the local admin token is named ${LOCAL_ADMIN_TOKEN_NAME} and created by a local actor`,
          { details: { field: 'name' } },
        );
      }
      if (!localAdmin && name.toLowerCase() === LOCAL_ADMIN_TOKEN_NAME) {
        throw new InputError(
          `token name ${LOCAL_ADMIN_TOKEN_NAME} is reserved for the token gameops serve issues; pick another name`,
          { details: { field: 'name' } },
        );
      }
      const now = clock.now();
      if (input.expiresAt !== undefined) {
        if (!(input.expiresAt instanceof Date) || Number.isNaN(input.expiresAt.getTime())) {
          throw new InputError('expiresAt must be a valid date', { details: { field: 'expiresAt' } });
        }
        if (input.expiresAt.getTime() <= now.getTime()) {
          throw new InputError(`expiresAt must be in the future (got ${input.expiresAt.toISOString()})`, {
            details: { field: 'expiresAt' },
          });
        }
      }
      const { id, token } = generateToken();
      const row: Row = {
        id,
        name,
        role,
        hash: hashToken(token),
        created_at: now.toISOString(),
        created_by: input.createdBy.id,
        expires_at: input.expiresAt?.toISOString() ?? null,
        revoked_at: null,
        last_used_at: null,
      };
      await call(`creating token ${name}`, () =>
        db.transaction().execute(async (tx) => {
          if (!localAdmin) {
            const active = await tx
              .selectFrom('api_tokens')
              .select(['id', 'name', 'expires_at'])
              .where('revoked_at', 'is', null)
              .execute();
            const clash = active.find(
              (t) =>
                t.name.toLowerCase() === name.toLowerCase() &&
                (t.expires_at === null || Date.parse(t.expires_at) > now.getTime()),
            );
            if (clash) {
              throw new ConflictError(
                `an active token is already named "${clash.name}" (id ${clash.id}); token names stand for one person or system ` +
                  `(four-eyes approvals compare them): revoke it first (gameops tokens revoke ${clash.id}) or pick another name`,
                { details: { field: 'name', id: clash.id } },
              );
            }
          }
          await tx.insertInto('api_tokens').values(row).execute();
          await appendAudit(
            tx,
            {
              actor: input.createdBy,
              action: 'token.create',
              target: `token:${id}`,
              data: { name, role, ...(row.expires_at ? { expiresAt: row.expires_at } : {}) },
            },
            now,
          );
        }),
      );
      return { token, record: fromRow(row) };
    },

    async list() {
      const rows = await call('listing tokens', () =>
        db.selectFrom('api_tokens').selectAll().orderBy('created_at', 'desc').orderBy('id').execute(),
      );
      return rows.map(fromRow);
    },

    async revoke(id, by) {
      const now = clock.now();
      const row = await call(`revoking token ${id}`, () =>
        db.transaction().execute(async (tx) => {
          const found = await tx.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirst();
          if (!found)
            throw new NotFoundError(`no token with id ${id} (gameops tokens list)`, { details: { id } });
          if (found.revoked_at !== null) return found;
          const revokedAt = now.toISOString();
          await tx
            .updateTable('api_tokens')
            .set({ revoked_at: revokedAt })
            .where('id', '=', id)
            .where('revoked_at', 'is', null)
            .execute();
          await appendAudit(
            tx,
            {
              actor: by,
              action: 'token.revoke',
              target: `token:${id}`,
              data: { name: found.name, role: found.role },
            },
            now,
          );
          return { ...found, revoked_at: revokedAt };
        }),
      );
      return fromRow(row);
    },

    async resolve(token) {
      if (typeof token !== 'string') return undefined;
      const id = tokenId(token);
      if (id === undefined) return undefined;
      const row = await call('checking a token', () =>
        db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirst(),
      );
      if (!row || !tokenMatches(token, row.hash)) return undefined;
      const now = clock.now();
      if (row.revoked_at !== null) return undefined;
      if (row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime()) return undefined;
      const role = roleSchema.safeParse(row.role);
      // A role edited in the database into something unknown grants nothing.
      if (!role.success) return undefined;
      const stale = new Date(now.getTime() - LAST_USED_RESOLUTION_MS).toISOString();
      if (row.last_used_at === null || row.last_used_at <= stale) {
        await call(`noting the use of token ${id}`, () =>
          db
            .updateTable('api_tokens')
            .set({ last_used_at: now.toISOString() })
            .where('id', '=', id)
            .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', stale)]))
            .execute(),
        );
      }
      return { id: `token:${id}`, name: actorName(row), role: role.data, kind: 'token' };
    },
  };
}

function field<T>(schema: z.ZodType<T>, value: unknown, name: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new InputError(`token ${name} ${parsed.error.issues[0]?.message ?? 'is invalid'}`, {
      details: { field: name },
    });
  }
  return parsed.data;
}

/**
 * The name a token acts under: its own, except serve's local admin token, which acts as the OS user that
 * ran serve (its creator, `local:<user>`), the same person a CLI holding the store is (localActor()).
 */
function actorName(row: Row): string {
  if (row.name === LOCAL_ADMIN_TOKEN_NAME && row.created_by.startsWith('local:')) {
    return row.created_by.slice('local:'.length);
  }
  return row.name;
}

function fromRow(row: Row): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    role: row.role as Role,
    createdAt: row.created_at,
    createdBy: row.created_by,
    ...(row.expires_at ? { expiresAt: row.expires_at } : {}),
    ...(row.revoked_at ? { revokedAt: row.revoked_at } : {}),
    ...(row.last_used_at ? { lastUsedAt: row.last_used_at } : {}),
  };
}
