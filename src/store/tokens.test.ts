import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { postgresPlace, sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { ManualClock, type GameopsError } from '../core/index.ts';
import { hashToken } from '../identity/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore, type Store, type StoreOptions } from './index.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const admin: Actor = { id: 'local:root', name: 'root', role: 'admin', kind: 'local' };

const backends = [
  {
    backend: 'sqlite' as const,
    place: (): Promise<StoreOptions> => Promise.resolve(sqlitePlace(cleanups).options),
  },
  {
    backend: 'postgres' as const,
    place: async (): Promise<StoreOptions> => (await postgresPlace(cleanups)).options,
  },
];

describe.each(backends)('API tokens on $backend', ({ place }) => {
  let clock: ManualClock;
  async function open(): Promise<Store> {
    clock = new ManualClock('2026-03-01T10:00:00Z');
    const store = await openStore({ ...(await place()), clock });
    stores.push(store);
    return store;
  }

  it('creates a token shown once, stores only its hash, and resolves it to its actor', async () => {
    const store = await open();
    const { token, record } = await store.tokens.create({
      name: 'alice',
      role: 'operator',
      createdBy: admin,
    });
    expect(token).toMatch(/^gops_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(token.slice(5, 17)).toBe(record.id);
    expect(record).toEqual({
      id: record.id,
      name: 'alice',
      role: 'operator',
      createdAt: '2026-03-01T10:00:00.000Z',
      createdBy: 'local:root',
    });
    expect(JSON.stringify(await store.tokens.list())).not.toContain(token.slice(18));
    expect(await store.tokens.resolve(token)).toEqual({
      id: `token:${record.id}`,
      name: 'alice',
      role: 'operator',
      kind: 'token',
    });
  });

  it('resolves nothing for malformed, unknown, wrong-secret, revoked and expired tokens', async () => {
    const store = await open();
    const { token, record } = await store.tokens.create({
      name: 'ci',
      role: 'viewer',
      createdBy: admin,
      expiresAt: new Date('2026-03-02T10:00:00Z'),
    });
    const wrongSecret = `${token.slice(0, 18)}${token[18] === 'A' ? 'B' : 'A'}${token.slice(19)}`;
    for (const bad of ['', 'gops_', 'Bearer x', token.toUpperCase(), `${token}x`, wrongSecret]) {
      expect(await store.tokens.resolve(bad), bad).toBeUndefined();
    }
    expect(await store.tokens.resolve(`gops_000000000000_${token.slice(18)}`)).toBeUndefined();
    expect(await store.tokens.resolve(token)).toBeDefined();
    clock.set('2026-03-02T10:00:00Z');
    expect(await store.tokens.resolve(token), 'expired at expiresAt').toBeUndefined();
    clock.set('2026-03-01T12:00:00Z');
    expect(await store.tokens.resolve(token)).toBeDefined();
    const revoked = await store.tokens.revoke(record.id, admin);
    expect(revoked.revokedAt).toBe('2026-03-01T12:00:00.000Z');
    expect(await store.tokens.resolve(token)).toBeUndefined();
  });

  it('notes lastUsedAt at most once a minute', async () => {
    const store = await open();
    const { token, record } = await store.tokens.create({ name: 'bob', role: 'admin', createdBy: admin });
    const lastUsed = async () => (await store.tokens.list()).find((r) => r.id === record.id)?.lastUsedAt;
    expect(await lastUsed()).toBeUndefined();
    await store.tokens.resolve(token);
    expect(await lastUsed()).toBe('2026-03-01T10:00:00.000Z');
    clock.advance(59_000);
    await store.tokens.resolve(token);
    expect(await lastUsed()).toBe('2026-03-01T10:00:00.000Z');
    clock.advance(1_000);
    await store.tokens.resolve(token);
    expect(await lastUsed()).toBe('2026-03-01T10:01:00.000Z');
  });

  it('audits creation and revocation (once), never the token', async () => {
    const store = await open();
    const { token, record } = await store.tokens.create({
      name: 'alice',
      role: 'responder',
      createdBy: admin,
      expiresAt: new Date('2026-04-01T00:00:00Z'),
    });
    await store.tokens.revoke(record.id, admin);
    await store.tokens.revoke(record.id, admin);
    const records = await store.audit.list();
    expect(records.map((r) => [r.action, r.target, r.actor.id])).toEqual([
      ['token.create', `token:${record.id}`, 'local:root'],
      ['token.revoke', `token:${record.id}`, 'local:root'],
    ]);
    expect(records[0]!.data).toEqual({
      name: 'alice',
      role: 'responder',
      expiresAt: '2026-04-01T00:00:00.000Z',
    });
    expect(JSON.stringify(records)).not.toContain(token);
    expect(JSON.stringify(records)).not.toContain(hashToken(token));
    expect((await store.audit.verify()).ok).toBe(true);
  });

  it('lists newest first with revocation and expiry', async () => {
    const store = await open();
    const a = await store.tokens.create({ name: 'a', role: 'viewer', createdBy: admin });
    clock.advance(1000);
    const b = await store.tokens.create({ name: 'b', role: 'admin', createdBy: admin });
    await store.tokens.revoke(a.record.id, admin);
    const list = await store.tokens.list();
    expect(list.map((r) => r.name)).toEqual(['b', 'a']);
    expect(list[1]!.revokedAt).toBe('2026-03-01T10:00:01.000Z');
    expect(list[0]).toEqual(b.record);
  });

  it('keeps names unique among active tokens (case-insensitively); revoked or expired names are free again', async () => {
    const store = await open();
    const fails = async (work: Promise<unknown>) => (await work.catch((e: unknown) => e)) as GameopsError;
    const alice = await store.tokens.create({ name: 'alice', role: 'operator', createdBy: admin });
    const clash = await fails(store.tokens.create({ name: 'Alice', role: 'viewer', createdBy: admin }));
    expect(clash.code).toBe('conflict');
    expect(clash.message).toContain(`an active token is already named "alice" (id ${alice.record.id})`);
    expect((await store.tokens.list()).length).toBe(1);
    await store.tokens.revoke(alice.record.id, admin);
    await store.tokens.create({ name: 'alice', role: 'viewer', createdBy: admin });
    await store.tokens.create({
      name: 'ci',
      role: 'viewer',
      createdBy: admin,
      expiresAt: new Date('2026-03-01T11:00:00Z'),
    });
    clock.set('2026-03-01T11:00:00Z');
    await store.tokens.create({ name: 'ci', role: 'viewer', createdBy: admin });
    const reserved = await fails(
      store.tokens.create({ name: 'local-admin', role: 'admin', createdBy: admin }),
    );
    expect(reserved.message).toContain('token name local-admin is reserved');
  });

  it("serve's local admin tokens act as the OS user that created them and skip the unique-name check", async () => {
    const store = await open();
    const first = await store.tokens.create({
      name: 'local-admin',
      role: 'admin',
      createdBy: admin,
      localAdmin: true,
    });
    await store.tokens.create({ name: 'local-admin', role: 'admin', createdBy: admin, localAdmin: true });
    expect(await store.tokens.resolve(first.token)).toEqual({
      id: `token:${first.record.id}`,
      name: 'root',
      role: 'admin',
      kind: 'token',
    });
    const byToken = await store.tokens
      .create({
        name: 'local-admin',
        role: 'admin',
        createdBy: { id: 'token:abc', name: 'x', role: 'admin', kind: 'token' },
        localAdmin: true,
      })
      .catch((e: unknown) => e as GameopsError);
    expect((byToken as GameopsError).code).toBe('input');
  });

  it('refuses bad input naming the field, and an unknown id on revoke', async () => {
    const store = await open();
    const fails = async (work: Promise<unknown>) => (await work.catch((e: unknown) => e)) as GameopsError;
    const name = await fails(store.tokens.create({ name: '', role: 'viewer', createdBy: admin }));
    expect(name.code).toBe('input');
    expect(name.message).toMatch(/^token name must be 1-100 letters/);
    const role = await fails(store.tokens.create({ name: 'x', role: 'root' as never, createdBy: admin }));
    expect(role.message).toBe('token role must be one of viewer, responder, operator, admin');
    const past = await fails(
      store.tokens.create({
        name: 'x',
        role: 'viewer',
        createdBy: admin,
        expiresAt: new Date('2026-03-01T09:00:00Z'),
      }),
    );
    expect(past.message).toBe('expiresAt must be in the future (got 2026-03-01T09:00:00.000Z)');
    const unknown = await fails(store.tokens.revoke('0123456789ab', admin));
    expect(unknown.code).toBe('not_found');
    expect(unknown.message).toContain('no token with id 0123456789ab');
    expect(await store.tokens.list()).toEqual([]);
    expect(await store.audit.list()).toEqual([]);
  });
});
