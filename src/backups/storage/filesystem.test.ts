/**
 * The filesystem object store: the shared ObjectStore contract, plus what only a local directory has
 * (permissions, temporary files, a full disk, paths that must stay inside the root).
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smallFilesystem, type SmallFilesystemHandle } from '../../../test/harness/index.ts';
import { InputError, UnavailableError } from '../../core/index.ts';
import { chunksOf, listAll, objectStoreContract, readAll, sha256 } from './contract.test-suite.ts';
import { checkObjectKey, openObjectStore } from './index.ts';

async function tempRoot(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-objstore-'));
  return { dir, cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
}

/** Every file below `dir`, relative. */
async function filesBelow(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

objectStoreContract('filesystem', async () => {
  const { dir, cleanup } = await tempRoot();
  return { store: openObjectStore({ kind: 'filesystem', path: path.join(dir, 'backups') }), cleanup };
});

describe('checkObjectKey', () => {
  it('accepts the keys gameops makes', () => {
    for (const key of [
      'bk-20261126T170500Z-3f9a2c/mysql/tables/gamedb.players.0001.sql.zst.age',
      'bk-20261126T170500Z-3f9a2c/manifest.json',
      'bk-20261126T170500Z-3f9a2c/redis/dump.rdb.zst.age',
      'a',
      'x'.repeat(900),
    ]) {
      expect(checkObjectKey(key)).toBe(key);
    }
  });

  it.each(['../x', '/abs', 'a//b', 'a/./b', 'a/..', '.', '', 'a/', 'ä', 'a\nb', 'a/.tmp-x', 'x'.repeat(901)])(
    'refuses %j with an InputError naming it',
    (key) => {
      expect(() => checkObjectKey(key)).toThrow(InputError);
      expect(() => checkObjectKey(key)).toThrow(JSON.stringify(key).slice(0, 40));
    },
  );
});

describe('filesystem object store', () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    root = await tempRoot();
  });
  afterAll(async () => {
    await root.cleanup();
  });

  it('creates its root 0700 on the first put, files 0600, directories 0700, no temp file left', async () => {
    const dir = path.join(root.dir, 'fresh', 'backups');
    const store = openObjectStore({ kind: 'filesystem', path: dir });
    expect(store.describe()).toBe(`filesystem ${dir}`);
    const key = 'bk-20261126T170500Z-3f9a2c/mysql/tables/gamedb.players.0001.sql.zst.age';
    await store.put(key, chunksOf(randomBytes(5000)));
    expect((await fsp.stat(dir)).mode & 0o777).toBe(0o700);
    expect((await fsp.stat(path.join(dir, 'bk-20261126T170500Z-3f9a2c', 'mysql'))).mode & 0o777).toBe(0o700);
    expect((await fsp.stat(path.join(dir, ...key.split('/')))).mode & 0o777).toBe(0o600);
    expect(await filesBelow(dir)).toEqual([key]);
  });

  it('discardIncomplete removes what a killed put left in a set (temp files, empty dirs), never an object', async () => {
    const { dir, cleanup } = await tempRoot();
    try {
      const store = openObjectStore({ kind: 'filesystem', path: dir });
      const set = 'bk-20261126T170500Z-3f9a2c';
      await store.put(`${set}/redis/dump.rdb.zst.age`, chunksOf(Buffer.from('kept')));
      await fsp.mkdir(path.join(dir, set, 'files'), { recursive: true });
      await fsp.writeFile(path.join(dir, set, 'files', '.tmp-12d0f5bdc8b2b15b'), randomBytes(4096));
      const other = 'bk-20261126T170600Z-aaaaaa';
      await fsp.mkdir(path.join(dir, other, 'files'), { recursive: true });
      await fsp.writeFile(path.join(dir, other, 'files', '.tmp-0000'), 'x');
      expect(await store.discardIncomplete(`${set}/`)).toBe(1);
      expect((await filesBelow(dir)).sort()).toEqual(
        [path.join(other, 'files', '.tmp-0000'), path.join(set, 'redis', 'dump.rdb.zst.age')].sort(),
      );
      await expect(fsp.stat(path.join(dir, set, 'files'))).rejects.toThrow(/ENOENT/);
      // Once the objects are deleted too, nothing of the set is left, not even its directory.
      await store.delete(`${set}/redis/dump.rdb.zst.age`);
      expect(await store.discardIncomplete(`${set}/`)).toBe(0);
      await expect(fsp.stat(path.join(dir, set))).rejects.toThrow(/ENOENT/);
      await expect(store.discardIncomplete('bk-x')).rejects.toThrow(InputError);
    } finally {
      await cleanup();
    }
  });

  it('does not list temporary files of puts in progress', async () => {
    const dir = path.join(root.dir, 'temps');
    const store = openObjectStore({ kind: 'filesystem', path: dir });
    await store.put('bk-1/manifest.json', chunksOf(Buffer.from('{}')));
    await fsp.writeFile(path.join(dir, 'bk-1', '.tmp-0123456789abcdef'), 'partial');
    expect(await listAll(store, '')).toEqual([{ key: 'bk-1/manifest.json', size: 2 }]);
  });

  it('refuses a key that would lead outside the root through a symlink', async () => {
    const dir = path.join(root.dir, 'symlinked');
    const outside = path.join(root.dir, 'outside');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.mkdir(outside, { recursive: true });
    await fsp.symlink(outside, path.join(dir, 'bk-evil'));
    const store = openObjectStore({ kind: 'filesystem', path: dir });
    await expect(store.put('bk-evil/manifest.json', chunksOf(Buffer.from('{}')))).rejects.toThrow(
      /bk-evil\/manifest.json.*outside/,
    );
    expect(await fsp.readdir(outside)).toEqual([]);
  });

  it('refuses a relative root', () => {
    expect(() => openObjectStore({ kind: 'filesystem', path: 'backups' })).toThrow(InputError);
  });

  it('reads back what it wrote, byte for byte, as a stream', async () => {
    const store = openObjectStore({ kind: 'filesystem', path: path.join(root.dir, 'read') });
    const data = randomBytes(3 * 1024 * 1024 + 17);
    await store.put('bk-2/files/srv.tar.zst.age', chunksOf(data, 1000));
    expect(sha256(await readAll(await store.get('bk-2/files/srv.tar.zst.age')))).toBe(sha256(data));
  });
});

describe('filesystem object store on a full 1 MiB filesystem', () => {
  let small: SmallFilesystemHandle;
  beforeAll(async () => {
    // Throws when no small filesystem can be mounted here: this test must not pass without one.
    small = await smallFilesystem(1);
  });
  afterAll(async () => {
    await small?.stop();
  });

  it('writing 3 MiB fails with "storage full" naming the storage and key; no object, no temp file', async () => {
    const dir = path.join(small.path, 'backups');
    const store = openObjectStore({ kind: 'filesystem', path: dir });
    const key = 'bk-20261126T170500Z-3f9a2c/mysql/tables/gamedb.players.0001.sql.zst.age';
    const error = await store.put(key, chunksOf(randomBytes(3 * 1024 * 1024))).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UnavailableError);
    const message = (error as Error).message;
    expect(message).toContain('storage full');
    expect(message).toContain(key);
    expect(message).toContain(`filesystem ${dir}`);
    expect(await store.head(key)).toBeUndefined();
    expect(await listAll(store, '')).toEqual([]);
    expect(await filesBelow(dir)).toEqual([]);
    // The space is free again: a small object fits.
    const stored = await store.put('bk-20261126T170500Z-3f9a2c/manifest.json', chunksOf(Buffer.from('{}')));
    expect(stored.size).toBe(2);
  });
});
