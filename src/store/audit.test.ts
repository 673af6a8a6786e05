import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  postgresPlace,
  sqlitePlace,
  type Cleanups,
  type Place,
  type Row,
} from '../../test/support/store-places.ts';
import { ManualClock, type GameopsError } from '../core/index.ts';
import { generateToken } from '../identity/tokens.ts';
import type { Actor } from '../runbooks/model.ts';
import type { StoreDatabase } from './schema.ts';
import { kyselySqliteDatabase } from './sqlite-driver.ts';
import {
  AUDIT_GENESIS_HASH,
  appendAudit,
  canonicalJson,
  openStore,
  parseAuditExpectation,
  type Store,
} from './index.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const clock = new ManualClock('2026-03-01T10:00:00Z');
const alice: Actor = { id: 'token:0123456789ab', name: 'alice', role: 'operator', kind: 'token' };
const bob: Actor = { id: 'local:bob', name: 'bob', role: 'admin', kind: 'local' };

async function open(place: Place): Promise<Store> {
  const store = await openStore({ ...place.options, clock });
  stores.push(store);
  return store;
}

const backends = [
  { backend: 'sqlite' as const, place: () => Promise.resolve(sqlitePlace(cleanups)) },
  { backend: 'postgres' as const, place: () => postgresPlace(cleanups) },
];

/** Five records, seq 1..5, then the store closed so the test can tamper with the tables. */
async function fiveRecords(place: Place): Promise<void> {
  const store = await open(place);
  for (let i = 1; i <= 5; i += 1) {
    clock.advance(1000);
    await store.audit.append({
      actor: i % 2 ? alice : bob,
      action: 'run.start',
      target: `run:r${i}`,
      data: { n: i },
    });
  }
  await store.close();
}

async function verifyAfter(place: Place) {
  const store = await open(place);
  return store.audit.verify();
}

describe.each(backends)('audit log on $backend', ({ place: makePlace }) => {
  it('appends records chained from the genesis hash, and verifies them', async () => {
    const store = await open(await makePlace());
    const first = await store.audit.append(
      { actor: alice, action: 'run.start', target: 'run:r1', data: { b: 1, a: [1, { d: 2, c: 3 }] } },
      new Date('2026-03-01T11:00:00+01:00'),
    );
    expect(first).toMatchObject({ seq: 1, at: '2026-03-01T10:00:00.000Z', prevHash: AUDIT_GENESIS_HASH });
    expect(first.hash).toMatch(/^[0-9a-f]{64}$/);
    const second = await store.audit.append({ actor: bob, action: 'token.create', target: 'token:x' });
    expect(second).toMatchObject({ seq: 2, prevHash: first.hash, data: {}, at: clock.now().toISOString() });
    const { createHash } = await import('node:crypto');
    const expected = createHash('sha256')
      .update(first.hash)
      .update(
        canonicalJson({
          seq: 2,
          at: second.at,
          actor: bob,
          action: 'token.create',
          target: 'token:x',
          data: {},
        }),
      )
      .digest('hex');
    expect(second.hash).toBe(expected);
    expect(await store.audit.verify()).toEqual({
      ok: true,
      records: 2,
      head: { seq: 2, hash: second.hash },
      problems: [],
    });
  });

  it('verifies an empty log as ok', async () => {
    const store = await open(await makePlace());
    expect(await store.audit.verify()).toEqual({ ok: true, records: 0, problems: [] });
  });

  it('joins a caller transaction: a rolled-back change takes its audit record with it', async () => {
    const place = await makePlace();
    const store = await open(place);
    await store.audit.append({ actor: alice, action: 'run.start', target: 'run:r1' });
    await store.close();
    // The engine holds a Kysely of its own over the same database; here one made from the same options.
    let db: Kysely<StoreDatabase>;
    if (place.options.url) {
      db = new Kysely({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: String(place.options.url) }) }),
      });
    } else {
      const sqlite = new DatabaseSync(join(place.options.dataDir!, 'gameops.db'));
      db = new Kysely({ dialect: new SqliteDialect({ database: kyselySqliteDatabase(sqlite) }) });
    }
    try {
      await expect(
        db.transaction().execute(async (tx) => {
          await appendAudit(
            tx,
            { actor: alice, action: 'step.succeeded', target: 'run:r1/step:a' },
            clock.now(),
          );
          throw new Error('the transition failed');
        }),
      ).rejects.toThrow('the transition failed');
      const inside = await db.transaction().execute(async (tx) => {
        const record = await appendAudit(
          tx,
          { actor: alice, action: 'step.failed', target: 'run:r1/step:a' },
          clock.now(),
        );
        await tx.insertInto('counters').values({ name: 'fence', value: 7 }).execute();
        return record;
      });
      expect(inside.seq).toBe(2);
    } finally {
      await db.destroy();
    }
    const reopened = await open(place);
    expect((await reopened.audit.list()).map((r) => r.action)).toEqual(['run.start', 'step.failed']);
    expect((await reopened.audit.verify()).ok).toBe(true);
  });

  it('serialises concurrent appends into one unbroken chain', async () => {
    const store = await open(await makePlace());
    const appended = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.audit.append({ actor: alice, action: 'run.start', target: `run:c${i}` }),
      ),
    );
    expect(appended.map((r) => r.seq).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    const verification = await store.audit.verify();
    expect(verification).toMatchObject({ ok: true, records: 20, head: { seq: 20 } });
  });

  it('lists newest first-page as a tail in ascending order, pages forward, and filters', async () => {
    const place = await makePlace();
    await fiveRecords(place);
    const store = await open(place);
    await store.audit.append({ actor: bob, action: 'token.create', target: 'token:abc' });
    expect((await store.audit.list({ limit: 2 })).map((r) => r.seq)).toEqual([5, 6]);
    expect((await store.audit.list({ afterSeq: 2, limit: 2 })).map((r) => r.seq)).toEqual([3, 4]);
    expect((await store.audit.list({ actorId: bob.id })).map((r) => r.seq)).toEqual([2, 4, 6]);
    expect((await store.audit.list({ actorId: 'token:0123456789' })).map((r) => r.seq)).toEqual([]);
    expect((await store.audit.list({ action: 'run.*' })).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect((await store.audit.list({ action: 'RUN.*' })).map((r) => r.seq)).toEqual([]);
    expect((await store.audit.list({ action: 'token.create' })).map((r) => r.target)).toEqual(['token:abc']);
    // A trailing dot is a prefix too (no action ends with one).
    expect((await store.audit.list({ action: 'token.' })).map((r) => r.seq)).toEqual([6]);
    expect((await store.audit.list({ target: 'run:r3' })).map((r) => r.seq)).toEqual([3]);
    expect((await store.audit.list({ target: 'run:r*', limit: 1 })).map((r) => r.seq)).toEqual([5]);
    const since = new Date('2026-03-01T10:00:00Z');
    const records = await store.audit.list();
    const third = records[2]!;
    expect((await store.audit.list({ since: new Date(third.at) })).map((r) => r.seq)).toEqual([3, 4, 5, 6]);
    expect((await store.audit.list({ since, until: new Date(third.at) })).every((r) => r.seq < 3)).toBe(true);
    expect(records[0]!.actor).toEqual(alice);
    expect(records[0]!.data).toEqual({ n: 1 });
    await expect(store.audit.list({ limit: 0 })).rejects.toThrow(
      'limit must be a whole number from 1 to 1000',
    );
    await expect(store.audit.list({ afterSeq: -1 })).rejects.toThrow('afterSeq must be a whole number');
  });

  it('refuses malformed entries and values that look like API tokens, naming the field', async () => {
    const store = await open(await makePlace());
    const { token } = generateToken();
    const leak = (await store.audit
      .append({
        actor: alice,
        action: 'token.create',
        target: 'token:x',
        data: { args: { header: `Bearer ${token}` } },
      })
      .catch((e: unknown) => e)) as GameopsError;
    expect(leak.code).toBe('input');
    expect(leak.message).toContain('args.header holds what looks like an API token');
    expect(leak.message).not.toContain(token);
    await expect(
      store.audit.append({ actor: alice, action: 'run.start', target: `run:${token}` }),
    ).rejects.toThrow('target holds what looks like an API token');
    await expect(store.audit.append({ actor: alice, action: 'Run Start', target: 'x' })).rejects.toThrow(
      'action: must look like `domain.verb`',
    );
    await expect(
      store.audit.append({ actor: { ...alice, role: 'root' as never }, action: 'run.start', target: 'x' }),
    ).rejects.toThrow('actor.role');
    await expect(store.audit.append({ actor: alice, action: 'run.start', target: '' })).rejects.toThrow(
      'target',
    );
    await expect(
      store.audit.append({ actor: alice, action: 'run.start', target: 'x', data: { n: 1n } }),
    ).rejects.toThrow('data is not JSON');
    expect(await store.audit.verify()).toMatchObject({ ok: true, records: 0 });
  });

  describe('tampering', () => {
    it('an edited data field names the record', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query(`UPDATE audit_log SET data = '{"n":33}' WHERE seq = 3`);
      const result = await verifyAfter(place);
      expect(result.ok).toBe(false);
      expect(result.problems).toEqual([
        { seq: 3, problem: expect.stringContaining("record 3's content was changed") as string },
      ]);
    });

    it('an edited actor names the record', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query(`UPDATE audit_log SET actor = '${JSON.stringify(bob)}' WHERE seq = 1`);
      const result = await verifyAfter(place);
      expect(result.ok).toBe(false);
      expect(result.problems.map((p) => p.seq)).toEqual([1]);
      expect(result.problems[0]!.problem).toContain('content was changed');
    });

    it('an edit with the hash recomputed breaks the next link', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query(`UPDATE audit_log SET hash = '${'a'.repeat(64)}' WHERE seq = 2`);
      const result = await verifyAfter(place);
      expect(result.problems.map((p) => p.seq)).toEqual([2, 3]);
      expect(result.problems[1]!.problem).toBe(
        'record 3 does not link to record 2 (prev_hash differs: a record was changed, replaced or reordered)',
      );
    });

    it('a deleted middle record is named as missing', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query('DELETE FROM audit_log WHERE seq = 3');
      const result = await verifyAfter(place);
      expect(result).toMatchObject({ ok: false, records: 4 });
      expect(result.problems).toEqual([{ seq: 3, problem: 'record 3 is missing (deleted)' }]);
    });

    it('a deleted last record is named as cut off (the head remembers it)', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query('DELETE FROM audit_log WHERE seq = 5');
      const result = await verifyAfter(place);
      expect(result.ok).toBe(false);
      expect(result.problems).toEqual([
        { seq: 5, problem: 'record 5 is missing (cut off): the head says 5 but the last record is 4' },
      ]);
    });

    it('the newest records deleted with the head rewritten: only --expect (a head kept elsewhere) catches it', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      const first = await openStore({ ...place.options, clock });
      const kept = (await first.audit.verify()).head!;
      await first.close();
      expect(kept.seq).toBe(5);
      const fourth = (await place.query('SELECT hash FROM audit_log WHERE seq = 4'))[0]!['hash'] as string;
      await place.query('DELETE FROM audit_log WHERE seq = 5');
      await place.query(`UPDATE audit_head SET seq = 4, hash = '${fourth}' WHERE id = 1`);
      const store = await open(place);
      expect((await store.audit.verify()).ok, 'undetectable from inside the database').toBe(true);
      const caught = await store.audit.verify({ expect: kept });
      expect(caught.ok).toBe(false);
      expect(caught.expected).toEqual(kept);
      expect(caught.problems).toEqual([
        {
          seq: 5,
          problem:
            'the head is at 4, before the expected record 5: records from 5 on were deleted and the head rewritten',
        },
      ]);
      const older = await store.audit.verify({ expect: { seq: 4, hash: fourth } });
      expect(older.ok).toBe(true);
      const wrong = await store.audit.verify({ expect: { seq: 3, hash: 'f'.repeat(64) } });
      expect(wrong.problems[0]?.problem).toContain("record 3's hash is not the expected ffffffffffffffff");
      expect(parseAuditExpectation(`5:${kept.hash.toUpperCase()}`)).toEqual(kept);
      expect(() => parseAuditExpectation('5:abc', '--expect')).toThrow(
        /^--expect: "5:abc" is not <seq>:<hash>/,
      );
    });

    it('a wiped log with its head kept is reported', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query('DELETE FROM audit_log');
      const result = await verifyAfter(place);
      expect(result.problems).toEqual([
        { seq: 1, problem: 'records 1 to 5 are missing (deleted): the head says 5 but the log is empty' },
      ]);
    });

    it('two records with their content swapped are both named', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      const cols = ['at', 'actor', 'action', 'target', 'data', 'prev_hash', 'hash'];
      const [two, four] = [
        (await place.query('SELECT * FROM audit_log WHERE seq = 2'))[0]!,
        (await place.query('SELECT * FROM audit_log WHERE seq = 4'))[0]!,
      ];
      const set = (row: Row) => cols.map((c) => `${c} = '${String(row[c])}'`).join(', ');
      await place.query(`UPDATE audit_log SET ${set(four)} WHERE seq = 2`);
      await place.query(`UPDATE audit_log SET ${set(two)} WHERE seq = 4`);
      const result = await verifyAfter(place);
      expect(result.ok).toBe(false);
      const named = new Set(result.problems.map((p) => p.seq));
      expect(named.has(2) && named.has(4)).toBe(true);
      expect(
        result.problems.filter((p) => p.problem.includes('content was changed')).map((p) => p.seq),
      ).toEqual([2, 4]);
    });

    it('a record inserted past the head is named', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      const [five] = await place.query('SELECT * FROM audit_log WHERE seq = 5');
      const cols = ['at', 'actor', 'action', 'target', 'data', 'prev_hash', 'hash'];
      await place.query(
        `INSERT INTO audit_log (seq, ${cols.join(', ')}) VALUES (6, ${cols.map((c) => `'${String(five![c])}'`).join(', ')})`,
      );
      const result = await verifyAfter(place);
      expect(result.problems).toEqual([
        { seq: 6, problem: 'record 6 is past the head (seq 5): it was not appended by gameops' },
      ]);
    });

    it('a replaced newest record is caught by the head', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query(`UPDATE audit_head SET hash = '${'b'.repeat(64)}'`);
      const result = await verifyAfter(place);
      expect(result.problems).toEqual([
        { seq: 5, problem: "record 5's hash differs from the head's: the newest record was replaced" },
      ]);
    });

    it('a deleted head row is reported, and appending is refused rather than restarting the chain', async () => {
      const place = await makePlace();
      await fiveRecords(place);
      await place.query('DELETE FROM audit_head');
      const store = await open(place);
      expect((await store.audit.verify()).problems).toEqual([
        { seq: 0, problem: 'the audit head row is missing (the log has 5 records)' },
      ]);
      const err = (await store.audit
        .append({ actor: alice, action: 'run.start', target: 'run:x' })
        .catch((e: unknown) => e)) as GameopsError;
      expect(err.code).toBe('conflict');
      expect(err.message).toContain('the audit head row is missing while the audit log has records');
    });
  });

  it('verifies a chain longer than one page, also while appends go on', async () => {
    const store = await open(await makePlace());
    for (let i = 0; i < 1005; i += 1) {
      await store.audit.append({ actor: alice, action: 'step.succeeded', target: `run:r/step:s${i}` });
    }
    expect(await store.audit.verify()).toMatchObject({ ok: true, records: 1005, head: { seq: 1005 } });
    const appending = (async () => {
      for (let i = 0; i < 30; i += 1) {
        await store.audit.append({ actor: bob, action: 'step.failed', target: `run:r/step:t${i}` });
      }
    })();
    const during = await store.audit.verify();
    await appending;
    expect(during).toMatchObject({ ok: true, problems: [] });
    expect(await store.audit.verify()).toMatchObject({ ok: true, records: 1035 });
  });
});
