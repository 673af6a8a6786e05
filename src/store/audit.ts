import { createHash } from 'node:crypto';
import { type Kysely, PostgresAdapter, type Selectable, type Transaction, sql } from 'kysely';
import { z } from 'zod';
import { type Clock, ConflictError, InputError } from '../core/index.ts';
import { TOKEN_LIKE_RE } from '../identity/tokens.ts';
import { ROLES, type Actor } from '../runbooks/model.ts';
import type { StoreCall } from './check-runs.ts';
import type { AuditLogTable, StoreDatabase } from './schema.ts';

/**
 * The audit log: append-only and hash-chained. Each record's hash covers the previous record's hash and
 * its own canonical content, and the head row (`audit_head`, id 1) holds the newest seq and hash, written
 * in the same transaction as the record; so an edited, removed, reordered or cut-off record shows up in
 * `verify`. The log proves tampering after the fact; it cannot stop someone who can write the database.
 */
export interface AuditRepo {
  /** Appends one record in its own transaction. @default at the store clock's now */
  append(entry: AuditEntry, at?: Date): Promise<AuditRecord>;
  /**
   * Records matching every filter given, in ascending seq. With `afterSeq`, the first `limit` records
   * after it (paging forward); without, the newest `limit` records (like `tail`).
   */
  list(options?: ListAuditOptions): Promise<AuditRecord[]>;
  /**
   * Walks the whole chain (in pages) and reports every problem found, naming the record. With `expect`
   * (a head kept elsewhere, e.g. printed by an earlier verify), it also checks the chain still holds that
   * record with that hash and the head is at or after it: deleting the newest records and rewriting the
   * head is otherwise undetectable from inside the database.
   */
  verify(options?: { expect?: AuditExpectation }): Promise<AuditVerification>;
}

/** What happened, by whom, to what. `data` must already have its secrets masked. */
export interface AuditEntry {
  actor: Actor;
  /** `<domain>.<verb>`, e.g. `run.start`, `step.succeeded`, `approval.approve`, `token.create`. */
  action: string;
  /** What was acted on, e.g. `run:<id>/step:<id>`, `token:<id>`, `config:<path>`. */
  target: string;
  data?: Record<string, unknown>;
}

export interface AuditRecord {
  /** 1, 2, 3… without gaps. */
  seq: number;
  /** ISO-8601 UTC. */
  at: string;
  actor: Actor;
  action: string;
  target: string;
  data: Record<string, unknown>;
  /** The previous record's hash (64 zeros for the first). */
  prevHash: string;
  /** sha256 hex of `prevHash` + canonical JSON of `{ seq, at, actor, action, target, data }`. */
  hash: string;
}

export interface ListAuditOptions {
  /** Records at or after this instant. */
  since?: Date;
  /** Records before this instant. */
  until?: Date;
  /** Records of this actor id (`token:<id>`, `local:<user>`, …). */
  actorId?: string;
  /** This action; `run.*` matches every action starting with `run.`. */
  action?: string;
  /** This target; `run:abc*` matches every target starting with `run:abc`. */
  target?: string;
  /** At most this many; capped at 1000. @default 100 */
  limit?: number;
  /** Only records with a larger seq (paging forward). */
  afterSeq?: number;
}

export interface AuditVerification {
  ok: boolean;
  /** How many records were read. */
  records: number;
  /** The head row as stored, when there is one. */
  head?: { seq: number; hash: string };
  /** The record checked for with `expect`, when one was given. */
  expected?: AuditExpectation;
  problems: AuditProblem[];
}

/** A record a verification must still find: `<seq>:<hash>` as `audit verify` prints the head. */
export interface AuditExpectation {
  seq: number;
  hash: string;
}

/**
 * Parses `<seq>:<hash>` (as `gameops audit verify` prints the head).
 * @throws InputError naming `field`.
 */
export function parseAuditExpectation(text: string, field = 'expect'): AuditExpectation {
  const match = /^(\d{1,15}):([0-9a-f]{64})$/i.exec(text.trim());
  if (!match || Number(match[1]) < 1)
    throw new InputError(
      `${field}: "${text.slice(0, 90)}" is not <seq>:<hash> (a record number of 1 or more and its 64-hex-digit hash, as audit verify prints the head)`,
      { details: { field } },
    );
  return { seq: Number(match[1]), hash: match[2]!.toLowerCase() };
}

export interface AuditProblem {
  /** The record the problem is about (for a missing head, 0). */
  seq: number;
  problem: string;
}

/** The prevHash of record 1. */
export const AUDIT_GENESIS_HASH = '0'.repeat(64);
const HEAD_ID = 1;
const LIST_LIMIT_DEFAULT = 100;
const LIST_LIMIT_MAX = 1000;
const VERIFY_PAGE = 1000;
/** Problems listed by verify before it only counts them (a wiped table should not make a huge report). */
const MAX_PROBLEMS = 1000;

type AuditDb = Kysely<StoreDatabase> | Transaction<StoreDatabase>;
type Row = Selectable<AuditLogTable>;

const actorSchema = z.object({
  id: z.string().min(1).max(300),
  name: z.string().max(300),
  role: z.enum(ROLES),
  kind: z.enum(['token', 'local', 'schedule', 'system']),
});
const entrySchema = z.object({
  actor: actorSchema,
  action: z
    .string()
    .max(100)
    .regex(/^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$/, 'must look like `domain.verb` (lowercase, dotted)'),
  target: z.string().min(1).max(1000),
  data: z.record(z.string(), z.unknown()).optional(),
});

/**
 * Appends one audit record. Given a Transaction, it joins it (the record commits or rolls back with the
 * caller's change); given a Kysely instance, it opens its own. On PostgreSQL the head row is locked
 * (`SELECT … FOR UPDATE`) so concurrent appends from several processes queue up and never fork the chain;
 * SQLite serialises writers by itself.
 * @throws InputError when the entry is malformed, its data is not JSON, or a value looks like an API token.
 * @throws ConflictError when the head row is missing while records exist (see `verify`).
 */
export async function appendAudit(db: AuditDb, entry: AuditEntry, at: Date): Promise<AuditRecord> {
  const content = normaliseEntry(entry, at);
  const work = (tx: AuditDb) => appendIn(tx, content);
  return db.isTransaction ? work(db) : db.transaction().execute(work);
}

interface Content {
  at: string;
  actor: Actor;
  action: string;
  target: string;
  data: Record<string, unknown>;
}

async function appendIn(tx: AuditDb, content: Content): Promise<AuditRecord> {
  await tx
    .insertInto('audit_head')
    .values({ id: HEAD_ID, seq: 0, hash: AUDIT_GENESIS_HASH })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  let headQuery = tx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', HEAD_ID);
  if (isPostgres(tx)) headQuery = headQuery.forUpdate();
  const head = await headQuery.executeTakeFirstOrThrow();
  const headSeq = Number(head.seq);
  if (headSeq === 0) {
    const existing = await tx.selectFrom('audit_log').select('seq').limit(1).executeTakeFirst();
    if (existing) {
      throw new ConflictError(
        'the audit head row is missing while the audit log has records: refusing to append ' +
          '(run `gameops audit verify`; the log may have been tampered with)',
      );
    }
  }
  const seq = headSeq + 1;
  const record = sealRecord(seq, head.hash, content);
  await tx
    .insertInto('audit_log')
    .values({
      seq,
      at: record.at,
      actor: canonicalJson(record.actor),
      action: record.action,
      target: record.target,
      data: canonicalJson(record.data),
      prev_hash: record.prevHash,
      hash: record.hash,
    })
    .execute();
  await tx.updateTable('audit_head').set({ seq, hash: record.hash }).where('id', '=', HEAD_ID).execute();
  return record;
}

/** The audit repository of a store. */
export function createAuditRepo(db: Kysely<StoreDatabase>, call: StoreCall, clock: Clock): AuditRepo {
  return {
    append: (entry, at) => {
      const when = at ?? clock.now();
      return call(`appending audit record ${entry.action}`, () => appendAudit(db, entry, when));
    },

    async list(options = {}) {
      const query = listQuery(db, options);
      const rows = await call('listing audit records', () => query.execute());
      const records = rows.map((row) => fromRow(row));
      return options.afterSeq === undefined ? records.reverse() : records;
    },

    verify: (options = {}) => call('verifying the audit log', () => verifyChain(db, options.expect)),
  };
}

function listQuery(db: Kysely<StoreDatabase>, options: ListAuditOptions) {
  const limit = listLimit(options.limit);
  let query = db.selectFrom('audit_log').selectAll();
  if (options.since) query = query.where('at', '>=', isoInstant(options.since, 'since'));
  if (options.until) query = query.where('at', '<', isoInstant(options.until, 'until'));
  if (options.actorId !== undefined) {
    // The stored actor is canonical JSON, so it starts with its id: an exact prefix match, no JSON
    // functions (which differ between SQLite and PostgreSQL).
    query = query.where(prefixIs('actor', `{"id":${JSON.stringify(options.actorId)},`));
  }
  if (options.action !== undefined) query = query.where(matches('action', options.action));
  if (options.target !== undefined) query = query.where(matches('target', options.target));
  if (options.afterSeq !== undefined) {
    if (!Number.isInteger(options.afterSeq) || options.afterSeq < 0) {
      throw new InputError(`afterSeq must be a whole number of 0 or more (got ${options.afterSeq})`, {
        details: { field: 'afterSeq' },
      });
    }
    return query.where('seq', '>', options.afterSeq).orderBy('seq', 'asc').limit(limit);
  }
  return query.orderBy('seq', 'desc').limit(limit);
}

/**
 * `value` exactly, or everything starting with it when it ends with `*` (`run.*`, `run:abc*`); an action
 * ending in `.` (`token.`) is a prefix too: no action ends with a dot.
 */
function matches(column: 'action' | 'target', value: string) {
  if (value.endsWith('*')) return prefixIs(column, value.slice(0, -1));
  if (column === 'action' && value.endsWith('.')) return prefixIs(column, value);
  return sql<boolean>`${sql.ref(column)} = ${value}`;
}

/** An exact, case-sensitive prefix test (LIKE is case-insensitive on SQLite and needs escaping). */
function prefixIs(column: 'actor' | 'action' | 'target', prefix: string) {
  const length = [...prefix].length;
  return sql<boolean>`substr(${sql.ref(column)}, 1, ${length}) = ${prefix}`;
}

async function verifyChain(db: Kysely<StoreDatabase>, expect?: AuditExpectation): Promise<AuditVerification> {
  const problems: AuditProblem[] = [];
  let dropped = 0;
  const report = (seq: number, problem: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push({ seq, problem });
    else dropped += 1;
  };
  // No long transaction (it would hold up the engine's appends): the chain is walked up to the head as read
  // now; records appended meanwhile lie past it and are checked against the head as read at the end.
  const head = await readHead(db);

  let records = 0;
  let last: { seq: number; hash: string } | undefined;
  let expectedFound: string | undefined;
  for (;;) {
    let query = db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>', last?.seq ?? 0);
    if (head) query = query.where('seq', '<=', head.seq);
    const page = await query.orderBy('seq', 'asc').limit(VERIFY_PAGE).execute();
    for (const row of page) {
      records += 1;
      const seq = Number(row.seq);
      const expected = (last?.seq ?? 0) + 1;
      if (seq > expected) {
        report(expected, missingRange(expected, seq - 1, 'deleted'));
      } else if (row.prev_hash !== (last?.hash ?? AUDIT_GENESIS_HASH)) {
        report(
          seq,
          seq === 1
            ? 'record 1 does not start the chain (its prev_hash is not the genesis hash)'
            : `record ${seq} does not link to record ${seq - 1} (prev_hash differs: a record was changed, replaced or reordered)`,
        );
      }
      const problem = recordProblem(row);
      if (problem) report(seq, problem);
      if (expect && seq === expect.seq) expectedFound = row.hash;
      last = { seq, hash: row.hash };
    }
    if (page.length < VERIFY_PAGE) break;
  }

  if (!head) {
    if (records > 0) report(0, `the audit head row is missing (the log has ${records} records)`);
  } else if (!last) {
    if (head.seq > 0)
      report(1, `${missingRange(1, head.seq, 'deleted')}: the head says ${head.seq} but the log is empty`);
  } else if (head.seq > last.seq) {
    report(
      last.seq + 1,
      `${missingRange(last.seq + 1, head.seq, 'cut off')}: the head says ${head.seq} but the last record is ${last.seq}`,
    );
  } else if (head.hash !== last.hash) {
    report(last.seq, `record ${last.seq}'s hash differs from the head's: the newest record was replaced`);
  }
  if (head) {
    const beyond = await db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.max('seq').as('max'))
      .where('seq', '>', head.seq)
      .executeTakeFirst();
    const max = beyond?.max === null || beyond?.max === undefined ? undefined : Number(beyond.max);
    const headNow = max === undefined ? undefined : await readHead(db);
    if (max !== undefined && (!headNow || headNow.seq < max)) {
      report(
        max,
        `record ${max} is past the head (seq ${headNow?.seq ?? head.seq}): it was not appended by gameops`,
      );
    }
  }
  if (expect) {
    if (!head || head.seq < expect.seq) {
      report(
        expect.seq,
        `the head is at ${head?.seq ?? 0}, before the expected record ${expect.seq}: records from ${(head?.seq ?? 0) + 1} on were deleted and the head rewritten`,
      );
    } else if (expectedFound === undefined) {
      report(expect.seq, `the expected record ${expect.seq} is missing from the chain`);
    } else if (expectedFound !== expect.hash) {
      report(
        expect.seq,
        `record ${expect.seq}'s hash is not the expected ${expect.hash.slice(0, 16)}…: the chain was rewritten from there on or before`,
      );
    }
  }
  if (dropped > 0) problems.push({ seq: 0, problem: `and ${dropped} more problems not listed` });
  return {
    ok: problems.length === 0,
    records,
    ...(head ? { head } : {}),
    ...(expect ? { expected: expect } : {}),
    problems,
  };
}

async function readHead(db: Kysely<StoreDatabase>): Promise<{ seq: number; hash: string } | undefined> {
  const row = await db
    .selectFrom('audit_head')
    .select(['seq', 'hash'])
    .where('id', '=', HEAD_ID)
    .executeTakeFirst();
  return row && { seq: Number(row.seq), hash: row.hash };
}

function missingRange(from: number, to: number, how: string): string {
  return from === to ? `record ${from} is missing (${how})` : `records ${from} to ${to} are missing (${how})`;
}

/** Why a row's content does not match its hash, or undefined when it does. */
function recordProblem(row: Row): string | undefined {
  const seq = Number(row.seq);
  let actor: unknown;
  let data: unknown;
  try {
    actor = JSON.parse(row.actor);
    data = JSON.parse(row.data);
  } catch {
    return `record ${seq}'s actor or data is not valid JSON (its content was changed)`;
  }
  const hash = chainHash(row.prev_hash, {
    seq,
    at: row.at,
    actor,
    action: row.action,
    target: row.target,
    data,
  });
  if (hash !== row.hash) {
    return `record ${seq}'s content was changed (its hash does not match; edited, or moved from another position)`;
  }
  return undefined;
}

function sealRecord(seq: number, prevHash: string, content: Content): AuditRecord {
  const hash = chainHash(prevHash, { seq, ...content });
  return { seq, ...content, prevHash, hash };
}

function chainHash(prevHash: string, content: Record<string, unknown>): string {
  return createHash('sha256').update(prevHash).update(canonicalJson(content)).digest('hex');
}

function normaliseEntry(entry: AuditEntry, at: Date): Content {
  const parsed = entrySchema.safeParse(entry);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(entry)';
    throw new InputError(`audit entry cannot be recorded: ${field}: ${issue?.message ?? 'invalid'}`, {
      details: { field },
    });
  }
  if (!(at instanceof Date) || Number.isNaN(at.getTime())) {
    throw new InputError('audit entry cannot be recorded: at must be a valid date', {
      details: { field: 'at' },
    });
  }
  let data: Record<string, unknown>;
  try {
    // Through JSON once, so the stored and the hashed content are the same (Dates become strings,
    // undefined disappears) and verify recomputes the same hash from the stored text.
    data = JSON.parse(JSON.stringify(parsed.data.data ?? {})) as Record<string, unknown>;
  } catch (err) {
    throw new InputError(
      `audit entry ${entry.action} cannot be recorded: data is not JSON: ${(err as Error).message}`,
    );
  }
  const leaked = tokenPath(data, []) ?? tokenPath({ target: parsed.data.target }, []);
  if (leaked) {
    throw new InputError(
      `audit entry ${entry.action} cannot be recorded: ${leaked} holds what looks like an API token ` +
        '(mask secrets before auditing)',
      { details: { field: leaked } },
    );
  }
  const { id, name, role, kind } = parsed.data.actor;
  return {
    at: at.toISOString(),
    actor: { id, name, role, kind },
    action: parsed.data.action,
    target: parsed.data.target,
    data,
  };
}

/** The path of the first string (key or value) that looks like one of our tokens. */
function tokenPath(value: unknown, path: string[]): string | undefined {
  if (typeof value === 'string') return TOKEN_LIKE_RE.test(value) ? path.join('.') || '(value)' : undefined;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = tokenPath(item, [...path, String(index)]);
      if (found) return found;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (TOKEN_LIKE_RE.test(key)) return [...path, '(key)'].join('.');
      const found = tokenPath(item, [...path, key]);
      if (found) return found;
    }
  }
  return undefined;
}

function fromRow(row: Row): AuditRecord {
  return {
    seq: Number(row.seq),
    at: row.at,
    actor: JSON.parse(row.actor) as Actor,
    action: row.action,
    target: row.target,
    data: JSON.parse(row.data) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    // A null prototype: a `__proto__` key in the data stays a plain key.
    const out = Object.create(null) as Record<string, unknown>;
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

function isPostgres(db: AuditDb): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

function listLimit(limit: number | undefined): number {
  if (limit === undefined) return LIST_LIMIT_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new InputError(`limit must be a whole number from 1 to ${LIST_LIMIT_MAX} (got ${limit})`, {
      details: { field: 'limit' },
    });
  }
  return Math.min(limit, LIST_LIMIT_MAX);
}

function isoInstant(date: Date, field: string): string {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new InputError(`${field} must be a valid date`, { details: { field } });
  }
  return date.toISOString();
}
