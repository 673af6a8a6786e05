/**
 * The contract every ObjectStore keeps (see ObjectStore in ../types.ts), as one vitest suite that
 * filesystem.test.ts and s3.test.ts run against their store. Sizes are chosen so that the S3 store (with
 * a 5 MiB part size) goes through both of its paths: a single PUT and a multipart upload.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { setImmediate as nextTick } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GameopsError, InputError, NotFoundError } from '../../core/index.ts';
import type { ObjectInfo, ObjectStore } from '../types.ts';

const MiB = 1024 * 1024;
/** Larger than two 5 MiB parts: a multipart upload with three parts on S3. */
export const MULTIPART_SIZE = 12 * MiB;

/** Yields `data` in `chunkSize` pieces, as a dump stream would. */
export async function* chunksOf(data: Uint8Array, chunkSize = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    yield data.subarray(offset, Math.min(offset + chunkSize, data.length));
  }
}

/** Reads a stream to the end. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream)
    parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(parts);
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function listAll(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const found: ObjectInfo[] = [];
  for await (const info of store.list(prefix)) found.push(info);
  return found;
}

let sets = 0;
/** A fresh set id per test, so tests never see each other's objects. */
function newSet(): string {
  sets += 1;
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `bk-${stamp}-${randomBytes(3).toString('hex')}${sets.toString(16)}`;
}

/** A body that yields `before` bytes and then fails, like a dump whose database went away. */
async function* failingAfter(before: number): AsyncGenerator<Uint8Array> {
  yield* chunksOf(randomBytes(before));
  await nextTick();
  throw new Error('the database went away mid-dump');
}

/** A body that yields `before` bytes, aborts `controller`, then keeps yielding slowly until stopped. */
async function* abortingAfter(before: number, controller: AbortController): AsyncGenerator<Uint8Array> {
  yield* chunksOf(randomBytes(before));
  controller.abort(new Error('operator cancelled the backup'));
  for (;;) {
    await nextTick();
    yield randomBytes(64 * 1024);
  }
}

/**
 * Runs the ObjectStore contract against the store that `make` opens (once for the suite); `cleanup`
 * runs at the end.
 */
export function objectStoreContract(
  name: string,
  make: () => Promise<{ store: ObjectStore; cleanup(): Promise<void> }>,
): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let store: ObjectStore;
    let cleanup: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      const made = await make();
      store = made.store;
      cleanup = () => made.cleanup();
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    it('describes itself', () => {
      expect(store.describe()).toMatch(/^(filesystem \/|s3:\/\/)/);
    });

    it.each([
      ['an empty object', 0],
      ['a small object', 100 * 1024 + 7],
      ['a multipart-sized object (12 MiB)', MULTIPART_SIZE],
    ])('round-trips %s with the size and SHA-256 of node:crypto', async (_what, size) => {
      const set = newSet();
      const key = `${set}/mysql/tables/gamedb.players.0001.sql.zst.age`;
      const data = randomBytes(size);
      const stored = await store.put(key, chunksOf(data));
      expect(stored).toEqual({ key, size, sha256: sha256(data) });
      expect(await store.head(key)).toEqual({ key, size });
      const back = await readAll(await store.get(key));
      expect(back.length).toBe(size);
      expect(sha256(back)).toBe(sha256(data));
      expect(await listAll(store, `${set}/`)).toEqual([{ key, size }]);
    });

    it('accepts a Node Readable body as well as an async iterable', async () => {
      const { Readable } = await import('node:stream');
      const key = `${newSet()}/manifest.json`;
      const text = JSON.stringify({ format: 'gameops-backup/1', components: [] });
      const stored = await store.put(key, Readable.from([Buffer.from(text)]));
      expect(stored.size).toBe(Buffer.byteLength(text));
      expect((await readAll(await store.get(key))).toString()).toBe(text);
    });

    it('overwrites an object', async () => {
      const key = `${newSet()}/redis/dump.rdb.zst.age`;
      await store.put(key, chunksOf(randomBytes(300 * 1024)));
      const second = randomBytes(1000);
      const stored = await store.put(key, chunksOf(second));
      expect(stored).toEqual({ key, size: 1000, sha256: sha256(second) });
      expect(await store.head(key)).toEqual({ key, size: 1000 });
      expect(sha256(await readAll(await store.get(key)))).toBe(sha256(second));
    });

    it('head of a missing object is undefined; get of one is a NotFoundError naming the key', async () => {
      const key = `${newSet()}/files/missing.tar.zst.age`;
      expect(await store.head(key)).toBeUndefined();
      const error = await store.get(key).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(NotFoundError);
      expect((error as Error).message).toContain(key);
    });

    it('lists by prefix in key order, with sizes', async () => {
      const set = newSet();
      const keys = [
        `${set}/mysql/tables/gamedb.players.0002.sql.zst.age`,
        `${set}/manifest.json`,
        `${set}/mysql/tables/gamedb.players.0001.sql.zst.age`,
        `${set}/mysql/schema.sql.zst.age`,
        // `.` sorts before `/`: a.x comes before a/... in key order.
        `${set}/mysql/tables.x`,
        `${set}/redis/dump.rdb.zst.age`,
        `${set}-other/manifest.json`,
      ];
      for (const [i, key] of keys.entries()) await store.put(key, chunksOf(randomBytes(10 + i)));
      const sizeOf = (key: string): number => 10 + keys.indexOf(key);
      const expected = (prefix: string): ObjectInfo[] =>
        keys
          .filter((k) => k.startsWith(prefix))
          .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
          .map((key) => ({ key, size: sizeOf(key) }));

      expect(await listAll(store, `${set}/`)).toEqual(expected(`${set}/`));
      expect((await listAll(store, `${set}/`)).map((o) => o.key)).toEqual([
        `${set}/manifest.json`,
        `${set}/mysql/schema.sql.zst.age`,
        `${set}/mysql/tables.x`,
        `${set}/mysql/tables/gamedb.players.0001.sql.zst.age`,
        `${set}/mysql/tables/gamedb.players.0002.sql.zst.age`,
        `${set}/redis/dump.rdb.zst.age`,
      ]);
      expect(await listAll(store, `${set}/mysql/`)).toEqual(expected(`${set}/mysql/`));
      // A prefix that ends inside a segment.
      expect(await listAll(store, `${set}/mysql/tab`)).toEqual(expected(`${set}/mysql/tab`));
      expect(await listAll(store, set)).toEqual(expected(set));
      expect(await listAll(store, `${set}/nothing/`)).toEqual([]);
      const everything = await listAll(store, '');
      expect(everything.map((o) => o.key)).toEqual(expect.arrayContaining(keys));
      const all = everything.map((o) => o.key);
      expect(all).toEqual([...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    });

    it('deletes, and deleting a missing object is not an error', async () => {
      const set = newSet();
      const key = `${set}/files/srv.tar.zst.age`;
      await store.delete(key);
      await store.put(key, chunksOf(randomBytes(2048)));
      await store.delete(key);
      expect(await store.head(key)).toBeUndefined();
      await store.delete(key);
      expect(await listAll(store, `${set}/`)).toEqual([]);
      await expect(store.get(key)).rejects.toThrow(NotFoundError);
    });

    it.each([
      '../x',
      '/abs',
      'a//b',
      'a/./b',
      'a/../b',
      '',
      'a/',
      'a b',
      'a\\b',
      '.tmp-123',
      `${'x'.repeat(901)}`,
    ])('refuses the bad key %j in every method, naming it', async (key) => {
      const named = JSON.stringify(key).slice(0, 60);
      for (const attempt of [
        () => store.put(key, chunksOf(Buffer.from('x'))),
        () => store.get(key),
        () => store.head(key),
        () => store.delete(key),
      ]) {
        const error = await attempt().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(InputError);
        expect((error as Error).message).toContain(named);
      }
    });

    it('refuses a listing prefix that could leave the store', async () => {
      for (const prefix of ['../', '/etc/', 'a//', 'a/../']) {
        await expect(listAll(store, prefix)).rejects.toThrow(InputError);
      }
    });

    it.each([
      ['before the first part is full', 200 * 1024],
      ['after more than one part', 6 * MiB],
    ])(
      'a body that fails %s: put rejects naming the key, nothing is left under it',
      async (_when, before) => {
        const set = newSet();
        const key = `${set}/mysql/tables/gamedb.events.0001.sql.zst.age`;
        const error = await store.put(key, failingAfter(before)).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(GameopsError);
        expect((error as Error).message).toContain(key);
        expect((error as Error).message).toContain('the database went away mid-dump');
        expect(await store.head(key)).toBeUndefined();
        expect(await listAll(store, `${set}/`)).toEqual([]);
      },
    );

    it.each([
      ['before the first part is full', 200 * 1024],
      ['after more than one part', 6 * MiB],
    ])('an abort signal %s: put rejects, nothing is left under the key', async (_when, before) => {
      const set = newSet();
      const key = `${set}/redis/dump.rdb.zst.age`;
      const controller = new AbortController();
      const error = await store
        .put(key, abortingAfter(before, controller), { signal: controller.signal })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(GameopsError);
      expect((error as Error).message).toContain(key);
      expect((error as Error).message).toContain('operator cancelled the backup');
      expect(await store.head(key)).toBeUndefined();
      expect(await listAll(store, `${set}/`)).toEqual([]);
    });

    it('a signal aborted before the put starts: rejects, writes nothing, releases the body', async () => {
      const { Readable } = await import('node:stream');
      const set = newSet();
      const key = `${set}/manifest.json`;
      const controller = new AbortController();
      controller.abort(new Error('shutting down'));
      const body = Readable.from(chunksOf(randomBytes(1024 * 1024)));
      await expect(store.put(key, body, { signal: controller.signal })).rejects.toThrow('shutting down');
      expect(body.destroyed).toBe(true);
      expect(await listAll(store, `${set}/`)).toEqual([]);
    });

    it('a failed overwrite leaves nothing under the key (no stale object looks complete)', async () => {
      const key = `${newSet()}/manifest.json`;
      await store.put(key, chunksOf(Buffer.from('{"old":true}')));
      await expect(store.put(key, failingAfter(1000))).rejects.toThrow(key);
      expect(await store.head(key)).toBeUndefined();
    });

    it('two puts of different keys at the same time both complete intact', async () => {
      const set = newSet();
      const a = randomBytes(6 * MiB + 123);
      const b = randomBytes(7 * MiB + 321);
      const [sa, sb] = await Promise.all([
        store.put(`${set}/mysql/a`, chunksOf(a)),
        store.put(`${set}/mysql/b`, chunksOf(b)),
      ]);
      expect(sa).toEqual({ key: `${set}/mysql/a`, size: a.length, sha256: sha256(a) });
      expect(sb).toEqual({ key: `${set}/mysql/b`, size: b.length, sha256: sha256(b) });
      expect(sha256(await readAll(await store.get(`${set}/mysql/a`)))).toBe(sha256(a));
      expect(sha256(await readAll(await store.get(`${set}/mysql/b`)))).toBe(sha256(b));
      expect(await listAll(store, `${set}/`)).toEqual([
        { key: `${set}/mysql/a`, size: a.length },
        { key: `${set}/mysql/b`, size: b.length },
      ]);
    });
  });
}
