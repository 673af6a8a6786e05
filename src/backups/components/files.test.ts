/**
 * The `files` backup component on real files: a tree with nested and empty directories, unicode and
 * long names, symbolic links (relative, absolute, dangling), private modes; restore to the original
 * paths and under another root; drill; and hostile archives crafted by hand. Objects go to plain files
 * (test-support.ts): compression and encryption are the codec's.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  symlink,
  truncate,
  writeFile,
  chmod,
} from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { chown, realpath, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Header, Parser, Pax, type ReadEntry } from 'tar';
import { afterEach, describe, expect, it } from 'vitest';
import { smallFilesystem } from '../../../test/harness/index.ts';
import { InputError, UnavailableError } from '../../core/index.ts';
import type { ComponentBackup, ManifestComponent } from '../types.ts';
import {
  FILES_INDEX_OBJECT,
  FILES_OBJECT,
  backupFiles,
  drillFiles,
  restoreFiles,
  type FilesVerification,
} from './files.ts';
import { TestObjectStore } from './test-support.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gameops-files-test-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function store(): Promise<TestObjectStore> {
  const s = await TestObjectStore.create({ component: 'files' });
  cleanups.push(() => s.cleanup());
  return s;
}

function entryOf(s: TestObjectStore, backup: ComponentBackup): ManifestComponent {
  return {
    ...backup,
    kind: 'files',
    startedAt: '2026-01-01T00:00:00Z',
    completedAt: '2026-01-01T00:00:01Z',
    objects: [...s.records],
  };
}

interface IndexEntry {
  path: string;
  type: string;
  size: number;
  mode: number;
  sha256?: string;
  linkpath?: string;
  changed?: true;
}

/** The per-entry index object (NDJSON), as the backup wrote it. */
async function indexOf(s: TestObjectStore): Promise<IndexEntry[]> {
  const text = (await s.bytes(FILES_INDEX_OBJECT)).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as IndexEntry);
}

/** Rewrites the index object (and its record, as a writer with the key could). */
async function rewriteIndex(s: TestObjectStore, change: (list: IndexEntry[]) => IndexEntry[]): Promise<void> {
  const list = change(await indexOf(s));
  const bytes = Buffer.from(list.map((e) => `${JSON.stringify(e)}\n`).join(''));
  await writeFile(s.file(FILES_INDEX_OBJECT), bytes);
  const record = s.records.find((r) => r.name === FILES_INDEX_OBJECT)!;
  const sha = createHash('sha256').update(bytes).digest('hex');
  Object.assign(record, { size: bytes.length, plainSize: bytes.length, sha256: sha, plainSha256: sha });
}

const UNICODE = 'héllo wörld ✓ 日本.txt';
const LONG = `${'a-very-long-directory-name-'.repeat(5)}x`;

/** A game server's files as they might look. */
async function makeTree(root: string): Promise<{ config: string; single: string; big: Buffer }> {
  const config = join(root, 'srv', 'game', 'config');
  await mkdir(join(config, 'maps', 'empty'), { recursive: true });
  await mkdir(join(config, LONG, 'deeper'), { recursive: true });
  await writeFile(join(config, 'game.yaml'), 'motd: hello\nmax_players: 64\n');
  await writeFile(join(config, 'secret.key'), 'private-key-material', { mode: 0o600 });
  await chmod(join(config, 'secret.key'), 0o600);
  await writeFile(join(config, UNICODE), 'ünïcödé ✓\n');
  await writeFile(join(config, LONG, 'deeper', `${'f'.repeat(120)}.json`), '{}');
  await writeFile(join(config, 'maps', 'empty.bin'), '');
  const big = randomBytes(1024 * 1024 + 77);
  await writeFile(join(config, 'maps', 'world.bin'), big);
  await symlink('game.yaml', join(config, 'current.yaml'));
  await symlink('/nonexistent/elsewhere', join(config, 'dangling'));
  await symlink('../config/maps', join(config, 'maps-link'));
  await chmod(join(config, 'maps'), 0o750);
  const single = join(root, 'etc', 'game.env');
  await mkdir(join(root, 'etc'));
  await writeFile(single, 'GAME_MODE=ranked\n', { mode: 0o640 });
  await chmod(single, 0o640);
  return { config, single, big };
}

/** Every entry under `path`: type, mode, content hash or link target. */
async function snapshot(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function visit(abs: string, rel: string): Promise<void> {
    const info = await lstat(abs);
    const mode = (info.mode & 0o7777).toString(8);
    if (info.isSymbolicLink()) out[rel] = `symlink -> ${await readlink(abs)}`;
    else if (info.isDirectory()) {
      out[rel] = `dir ${mode}`;
      for (const name of (await readdir(abs)).sort()) await visit(join(abs, name), `${rel}/${name}`);
    } else {
      const sha = createHash('sha256')
        .update(await readFile(abs))
        .digest('hex');
      out[rel] = `file ${mode} ${info.size} ${sha}`;
    }
  }
  await visit(path, '.');
  return out;
}

async function tarEntries(bytes: Buffer): Promise<string[]> {
  const names: string[] = [];
  const parser = new Parser({ strict: true });
  parser.on('entry', (e: ReadEntry) => {
    names.push(`${e.type} ${e.path}`);
    e.resume();
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    parser.end(bytes);
  });
  return names;
}

describe('files component: backup, restore, drill', () => {
  it('round trip to the original paths: files, empty dirs, unicode and long names, symlinks kept as links, modes', async () => {
    const root = await tempDir();
    const { config, single } = await makeTree(root);
    const before = { config: await snapshot(config), single: await snapshot(single) };
    const s = await store();
    const backup = await backupFiles([config, single], s.writeContext(await s.tempDir()));
    expect(s.records.map((r) => r.name).sort()).toEqual([FILES_INDEX_OBJECT, FILES_OBJECT]);
    const v = backup.verification as FilesVerification;
    expect(v.roots).toEqual([
      { prefix: 'path-0', path: config, type: 'directory', totals: expect.any(Object) as object },
      { prefix: 'path-1', path: single, type: 'file', totals: expect.any(Object) as object },
    ]);
    expect(v.totals).toEqual({ files: 7, directories: 5, symlinks: 3, bytes: expect.any(Number) as number });
    expect(v.index).toBe(FILES_INDEX_OBJECT);
    expect(backup.source).toEqual({ 'path-0': config, 'path-1': single });
    // The plaintext manifest names no file below the roots; the (encrypted) index does.
    expect(JSON.stringify(backup)).not.toContain('secret.key');
    const index = await indexOf(s);
    expect(index.find((e) => e.path === 'path-0/secret.key')).toMatchObject({
      type: 'file',
      mode: 0o600,
    });
    expect(index.find((e) => e.path === 'path-0/dangling')).toMatchObject({
      type: 'symlink',
      linkpath: '/nonexistent/elsewhere',
    });

    // Portable: no absolute path, nothing outside the prefixes, PAX for the long and unicode names.
    const names = await tarEntries(await s.bytes(FILES_OBJECT));
    for (const name of names) expect(name).toMatch(/^(File|Directory|SymbolicLink) path-[01](\/|$)/);
    expect(names).toContain(`File path-0/${UNICODE}`);
    expect(names).toContain(`File path-0/${LONG}/deeper/${'f'.repeat(120)}.json`);
    expect(names).toContain('Directory path-0/maps/empty/');

    // Disaster: files removed and changed, something new appeared.
    await rm(join(config, 'maps'), { recursive: true });
    await writeFile(join(config, 'game.yaml'), 'motd: broken\n');
    await writeFile(join(config, 'stray.txt'), 'not in the backup');
    await rm(single);
    const restored = await restoreFiles(entryOf(s, backup), {}, s.readContext(await s.tempDir()));
    expect(restored).toEqual({ files: 7, bytes: v.totals.bytes });
    expect(await snapshot(config)).toEqual(before.config);
    expect(await snapshot(single)).toEqual(before.single);
    // No staging or old copies left next to the destinations.
    expect((await readdir(join(root, 'srv', 'game'))).sort()).toEqual(['config']);
    expect((await readdir(join(root, 'etc'))).sort()).toEqual(['game.env']);

    const drill = await drillFiles(entryOf(s, backup), s.readContext(await s.tempDir()));
    expect(drill.ok, JSON.stringify(drill.checks)).toBe(true);
    expect(drill.component).toBe('files');
    expect(drill.checks.map((c) => c.subject)).toEqual([
      `files ${config}`,
      `files ${single}`,
      'files totals',
    ]);
    expect(drill.bytes).toBe(v.totals.bytes);
  });

  it('restores under another root (a restore target filesRoot), leaving the originals alone', async () => {
    const root = await tempDir();
    const { config } = await makeTree(root);
    const before = await snapshot(config);
    const s = await store();
    const backup = await backupFiles([config], s.writeContext(await s.tempDir()));
    await writeFile(join(config, 'game.yaml'), 'motd: production now\n');
    const clone = await tempDir();
    const result = await restoreFiles(entryOf(s, backup), { root: clone }, s.readContext(await s.tempDir()));
    expect(result.files).toBe(6);
    expect(await snapshot(join(clone, config))).toEqual(before);
    expect(await readFile(join(config, 'game.yaml'), 'utf8')).toBe('motd: production now\n');
  });

  it('a missing path is an InputError naming it, and nothing is written', async () => {
    const root = await tempDir();
    const s = await store();
    const missing = join(root, 'no', 'such', 'dir');
    const err = await backupFiles([missing], s.writeContext(await s.tempDir())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(missing);
    expect(await s.files()).toEqual([]);
    for (const bad of [['relative/path'], [], [root, join(root, 'inside')], [root, root]]) {
      const e = await backupFiles(bad, s.writeContext(await s.tempDir())).catch((x: unknown) => x);
      expect(e, JSON.stringify(bad)).toBeInstanceOf(InputError);
    }
  });

  it('drops setuid/setgid bits (noted at backup, never restored)', async () => {
    const root = await tempDir();
    const dir = join(root, 'bin');
    await mkdir(dir);
    await writeFile(join(dir, 'tool'), '#!/bin/sh\n');
    await chmod(join(dir, 'tool'), 0o4755);
    const s = await store();
    const backup = await backupFiles([dir], s.writeContext(await s.tempDir()));
    expect(backup.notes.join('\n')).toContain('setuid');
    await rm(dir, { recursive: true });
    await restoreFiles(entryOf(s, backup), {}, s.readContext(await s.tempDir()));
    expect((await lstat(join(dir, 'tool'))).mode & 0o7777).toBe(0o755);
  });

  it('drill names a file whose content differs from the manifest; restore then replaces nothing', async () => {
    const root = await tempDir();
    const { config } = await makeTree(root);
    const s = await store();
    const backup = await backupFiles([config], s.writeContext(await s.tempDir()));
    await rewriteIndex(s, (list) =>
      list.map((e) => (e.path === 'path-0/game.yaml' ? { ...e, sha256: '0'.repeat(64) } : e)),
    );
    const tampered = entryOf(s, backup);
    const drill = await drillFiles(tampered, s.readContext(await s.tempDir()));
    expect(drill.ok).toBe(false);
    expect(drill.checks.filter((c) => !c.ok).map((c) => c.subject)).toEqual([
      `files ${config}`,
      `files ${join(config, 'game.yaml')}`,
    ]);
    await writeFile(join(config, 'game.yaml'), 'motd: live\n');
    const err = await restoreFiles(tampered, {}, s.readContext(await s.tempDir())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain(
      `files ${join(config, 'game.yaml')} differs from the backup's index`,
    );
    expect(await readFile(join(config, 'game.yaml'), 'utf8')).toBe('motd: live\n');
    expect((await readdir(join(root, 'srv', 'game'))).sort()).toEqual(['config']);
  });
});

describe('files component: the drill compares the archive with the index entry by entry', () => {
  it('an entry missing from the archive and one absent from the index are both named', async () => {
    const root = await tempDir();
    const { config } = await makeTree(root);
    const s = await store();
    const backup = await backupFiles([config], s.writeContext(await s.tempDir()));
    await rewriteIndex(s, (list) => {
      const out = list.filter((e) => e.path !== 'path-0/maps/world.bin');
      // Inserted in walk order (after path-0/maps/empty.bin), as the backup would have written it.
      const at = out.findIndex((e) => e.path === 'path-0/maps/empty.bin') + 1;
      out.splice(at, 0, {
        path: 'path-0/maps/ghost.bin',
        type: 'file',
        size: 3,
        mode: 0o644,
        sha256: '1'.repeat(64),
      });
      return out;
    });
    const drill = await drillFiles(entryOf(s, backup), s.readContext(await s.tempDir()));
    expect(drill.ok).toBe(false);
    const failed = drill.checks.filter((c) => !c.ok);
    expect(failed.map((c) => [c.subject, c.actual])).toEqual([
      [`files ${config}`, expect.stringContaining('files') as string],
      [`files ${join(config, 'maps', 'ghost.bin')}`, 'missing'],
      [`files ${join(config, 'maps', 'world.bin')}`, 'present'],
    ]);

    // An index whose bytes differ from its record (damaged storage) is an error naming it, not a pass.
    const bytes = await readFile(s.file(FILES_INDEX_OBJECT));
    bytes[10]! ^= 1;
    await writeFile(s.file(FILES_INDEX_OBJECT), bytes);
    const err = await drillFiles(entryOf(s, backup), s.readContext(await s.tempDir())).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain(FILES_INDEX_OBJECT);
  });
});

describe('files component: files that change or a backup that is cancelled', () => {
  it('a file that shrinks while it is read is noted and padded; the archive still matches its manifest', async () => {
    const root = await tempDir();
    const dir = join(root, 'data');
    await mkdir(dir);
    await writeFile(join(dir, 'growing.log'), randomBytes(2 * 1024 * 1024));
    const s = await store();
    const ctx = s.writeContext(await s.tempDir());
    const write = ctx.write.bind(ctx);
    let seen = 0;
    let cut = false;
    ctx.write = (name, source) =>
      write(
        name,
        (async function* () {
          for await (const chunk of source as AsyncIterable<Uint8Array>) {
            seen += chunk.length;
            if (!cut && seen > 512 * 1024) {
              cut = true;
              await truncate(join(dir, 'growing.log'), 1000);
            }
            yield chunk;
          }
        })(),
      );
    const backup = await backupFiles([dir], ctx);
    expect(cut).toBe(true);
    expect(backup.notes.join('\n')).toContain(`${join(dir, 'growing.log')} changed while it was backed up`);
    expect((await indexOf(s)).find((e) => e.path === 'path-0/growing.log')).toMatchObject({
      size: 2 * 1024 * 1024,
      changed: true,
    });
    const drill = await drillFiles(entryOf(s, backup), s.readContext(await s.tempDir()));
    expect(drill.ok, JSON.stringify(drill.checks)).toBe(true);
  });

  it('a cancelled backup rejects with the reason and leaves no object', async () => {
    const root = await tempDir();
    const { config } = await makeTree(root);
    const s = await store();
    const controller = new AbortController();
    const ctx = s.writeContext(await s.tempDir(), { signal: controller.signal });
    const write = ctx.write.bind(ctx);
    ctx.write = (name, source) =>
      write(
        name,
        (async function* () {
          for await (const chunk of source as AsyncIterable<Uint8Array>) {
            controller.abort(new Error('cancelled by the operator'));
            yield chunk;
          }
        })(),
      );
    await expect(backupFiles([config], ctx)).rejects.toThrow('cancelled by the operator');
    expect(s.records).toEqual([]);
    expect(await s.files()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------
// Hostile archives

interface Crafted {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  mode?: number;
  body?: string;
  linkpath?: string;
}

/** A tar made by hand, as an attacker with write access to the storage (but not the key) could not, or a bug could. */
function craftTar(entries: Crafted[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const data = {
      path: e.path,
      type: e.type,
      mode: e.mode ?? (e.type === 'Directory' ? 0o755 : 0o644),
      size: e.type === 'File' ? body.length : 0,
      mtime: new Date('2026-01-01T00:00:00Z'),
      uid: 0,
      gid: 0,
      ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}),
    };
    const header = new Header(data);
    if (header.encode()) blocks.push(new Pax(data).encode());
    blocks.push(header.block!);
    if (body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

describe('files component: hostile archives are refused, naming the entry', () => {
  const cases: Array<{ what: string; entries: Crafted[]; names: string }> = [
    {
      what: '".." escaping the destination',
      entries: [
        { path: 'path-0/', type: 'Directory' },
        { path: 'path-0/../../escaped.txt', type: 'File', body: 'pwned' },
      ],
      names: 'path-0/../../escaped.txt',
    },
    {
      what: 'an absolute path',
      entries: [
        { path: 'path-0/', type: 'Directory' },
        { path: '/tmp/gameops-absolute-escape.txt', type: 'File', body: 'pwned' },
      ],
      names: '/tmp/gameops-absolute-escape.txt',
    },
    {
      what: 'a file written through a symlink entry',
      entries: [
        { path: 'path-0/', type: 'Directory' },
        { path: 'path-0/link', type: 'SymbolicLink', linkpath: '@OUTSIDE@' },
        { path: 'path-0/link/planted.txt', type: 'File', body: 'pwned' },
      ],
      names: 'path-0/link/planted.txt',
    },
    {
      what: 'a hard link',
      entries: [
        { path: 'path-0/', type: 'Directory' },
        { path: 'path-0/passwd', type: 'Link', linkpath: '/etc/passwd' },
      ],
      names: 'path-0/passwd',
    },
    {
      what: 'a device',
      entries: [
        { path: 'path-0/', type: 'Directory' },
        { path: 'path-0/null', type: 'CharacterDevice' },
      ],
      names: 'path-0/null',
    },
    {
      what: 'a prefix not in the manifest',
      entries: [
        { path: 'path-0/', type: 'Directory' },
        { path: 'path-7/x.txt', type: 'File', body: 'x' },
      ],
      names: 'path-7/x.txt',
    },
    {
      what: 'an entry appearing twice (a file replaced by a symlink)',
      entries: [
        { path: 'path-0/', type: 'Directory' },
        { path: 'path-0/a', type: 'File', body: 'x' },
        { path: 'path-0/a', type: 'SymbolicLink', linkpath: '/etc/shadow' },
      ],
      names: 'path-0/a',
    },
  ];

  for (const c of cases) {
    it(c.what, async () => {
      const root = await tempDir();
      const outside = join(root, 'outside');
      await mkdir(outside);
      const dest = join(root, 'dest', 'config');
      await mkdir(dest, { recursive: true });
      await writeFile(join(dest, 'live.txt'), 'live');
      const s = await store();
      const entries = c.entries.map((e) => ({ ...e, linkpath: e.linkpath?.replace('@OUTSIDE@', outside) }));
      const wctx = s.writeContext(await s.tempDir());
      await wctx.write(FILES_OBJECT, Readable.from([craftTar(entries)]));
      await wctx.write(FILES_INDEX_OBJECT, Readable.from([Buffer.alloc(0)]));
      const zero = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
      const verification: FilesVerification = {
        format: 'gameops-files/2',
        salt: '0'.repeat(32),
        roots: [{ prefix: 'path-0', path: dest, type: 'directory', totals: zero }],
        index: FILES_INDEX_OBJECT,
        totals: zero,
      };
      const backup: ManifestComponent = {
        kind: 'files',
        tool: { name: 'tar', version: 'x' },
        source: {},
        verification,
        notes: [],
        startedAt: '2026-01-01T00:00:00Z',
        completedAt: '2026-01-01T00:00:01Z',
        objects: [...s.records],
      };
      const err = await restoreFiles(backup, {}, s.readContext(await s.tempDir())).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toContain(`refusing archive entry ${JSON.stringify(c.names)}`);
      // Nothing escaped, nothing replaced, nothing left behind.
      expect(await readdir(outside)).toEqual([]);
      await expect(lstat('/tmp/gameops-absolute-escape.txt')).rejects.toThrow();
      await expect(lstat(join(root, 'escaped.txt'))).rejects.toThrow();
      expect(await readFile(join(dest, 'live.txt'), 'utf8')).toBe('live');
      expect(await readdir(join(root, 'dest'))).toEqual(['config']);

      const drillErr = await drillFiles(backup, s.readContext(await s.tempDir())).catch((e: unknown) => e);
      expect(drillErr).toBeInstanceOf(UnavailableError);
      expect((drillErr as Error).message).toContain(JSON.stringify(c.names));
      expect(await readdir(outside)).toEqual([]);
    });
  }
});

describe('files component: configured symbolic links, large trees, read-only trees', () => {
  it('a configured path that is a symbolic link backs up (and restores) what it points to, and says so', async () => {
    const root = await tempDir();
    const game = join(root, 'srv', 'game');
    const v42 = join(game, 'releases', 'v42');
    await mkdir(join(v42, 'saves'), { recursive: true });
    for (let i = 0; i < 5; i++) await writeFile(join(v42, 'saves', `slot${i}.sav`), `save ${i}`);
    const current = join(game, 'current');
    await symlink('releases/v42', current);
    const empty = join(root, 'empty');
    await mkdir(join(empty, 'sub'), { recursive: true });
    const s = await store();
    const backup = await backupFiles([current, empty], s.writeContext(await s.tempDir()));
    const v = backup.verification as FilesVerification;
    expect(v.roots[0]).toMatchObject({ path: current, linkTarget: await realpath(v42), type: 'directory' });
    expect(v.roots[0]!.totals.files).toBe(5);
    expect(v.totals.files).toBe(5);
    expect(backup.notes).toContain(
      `${current} is a symbolic link to ${await realpath(v42)}: the data there was backed up`,
    );
    expect(backup.notes.join('\n')).toContain(`${empty} holds no regular file: 2 directories`);

    const drill = await drillFiles(entryOf(s, backup), s.readContext(await s.tempDir()));
    expect(drill.ok, JSON.stringify(drill.checks)).toBe(true);
    expect(drill.checks[0]).toMatchObject({
      subject: `files ${current}`,
      expected: '5 files, 30 bytes, 7 entries',
      actual: '5 files, 30 bytes, 7 entries',
      note: `a symbolic link to ${await realpath(v42)}`,
    });

    await writeFile(join(v42, 'saves', 'slot3.sav'), 'corrupted');
    await rm(join(v42, 'saves', 'slot4.sav'));
    await restoreFiles(entryOf(s, backup), {}, s.readContext(await s.tempDir()));
    expect((await lstat(current)).isSymbolicLink()).toBe(true);
    expect(await readlink(current)).toBe('releases/v42');
    expect(await readFile(join(current, 'saves', 'slot3.sav'), 'utf8')).toBe('save 3');
    expect(await readFile(join(current, 'saves', 'slot4.sav'), 'utf8')).toBe('save 4');
    expect(await readdir(join(game, 'releases'))).toEqual(['v42']);

    // A link whose target overlaps another configured path would back the same data up twice: refused.
    const overlap = await backupFiles([v42, current], s.writeContext(await s.tempDir())).catch(
      (e: unknown) => e,
    );
    expect(overlap).toBeInstanceOf(InputError);
    expect((overlap as Error).message).toContain(
      `${current} (a symbolic link to ${await realpath(v42)}) overlaps ${v42}`,
    );
  });

  it('50,000 small files: the manifest stays small, the index object holds them, the drill passes', async () => {
    const root = await tempDir();
    const data = join(root, 'saves');
    const DIRS = 50;
    const PER = 1000;
    for (let d = 0; d < DIRS; d++) {
      const dir = join(data, `shard-${d}`);
      await mkdir(dir, { recursive: true });
      const writes: Array<Promise<void>> = [];
      for (let f = 0; f < PER; f++)
        writes.push(writeFile(join(dir, `player-${d * PER + f}.json`), `{"id":${f}}`));
      await Promise.all(writes);
    }
    const s = await store();
    const t0 = Date.now();
    const backup = await backupFiles([data], s.writeContext(await s.tempDir()));
    const backupMs = Date.now() - t0;
    const manifestBytes = JSON.stringify(backup, null, 2).length;
    const v = backup.verification as FilesVerification;
    expect(v.totals.files).toBe(DIRS * PER);
    expect(manifestBytes).toBeLessThan(2048);
    expect(JSON.stringify(backup)).not.toContain('player-');
    const indexBytes = (await s.bytes(FILES_INDEX_OBJECT)).length;
    const t1 = Date.now();
    const drill = await drillFiles(entryOf(s, backup), s.readContext(await s.tempDir()));
    const drillMs = Date.now() - t1;
    expect(drill.ok, JSON.stringify(drill.checks.slice(0, 5))).toBe(true);
    console.log(
      `files: ${DIRS * PER} files; backup ${backupMs} ms, drill ${drillMs} ms; manifest entry ${manifestBytes} B, index object ${indexBytes} B`,
    );
  }, 240_000);

  it('as an unprivileged user (uid 65534): read-only directories and files restore, drill and clean up', async () => {
    const base = await tempDir();
    await chmod(base, 0o755);
    const work = join(base, 'work');
    await mkdir(work);
    await chown(work, 65534, 65534);
    const script = join(base, 'child.mjs');
    await writeFile(
      script,
      `
import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
const [filesUrl, supportUrl, base] = process.argv.slice(2);
const files = await import(filesUrl);
const { TestObjectStore } = await import(supportUrl);
const data = join(base, 'data');
await mkdir(data);
const a = join(data, 'a');
const b = join(data, 'b');
await mkdir(join(a, 'ro', 'deeper'), { recursive: true });
await writeFile(join(a, 'ro', 'f.txt'), 'v1');
await writeFile(join(a, 'ro', 'deeper', 'g.txt'), 'v1-deep');
await chmod(join(a, 'ro', 'f.txt'), 0o444);
await chmod(join(a, 'ro', 'deeper'), 0o500);
await chmod(join(a, 'ro'), 0o555);
await mkdir(b);
await writeFile(join(b, 'g.txt'), 'b-v1');
const s = await TestObjectStore.create({ component: 'files' });
const backup = await files.backupFiles([a, b], s.writeContext(await s.tempDir()));
const entry = { ...backup, kind: 'files', startedAt: 'x', completedAt: 'y', objects: [...s.records] };
const drill = await files.drillFiles(entry, s.readContext(await s.tempDir()));
await chmod(join(a, 'ro'), 0o755);
await chmod(join(a, 'ro', 'f.txt'), 0o644);
await writeFile(join(a, 'ro', 'f.txt'), 'changed');
await chmod(join(a, 'ro'), 0o555);
await writeFile(join(b, 'g.txt'), 'changed-b');
await files.restoreFiles(entry, {}, s.readContext(await s.tempDir()));
const first = (await readdir(data)).sort();
await files.restoreFiles(entry, {}, s.readContext(await s.tempDir()));
const out = {
  uid: process.getuid(),
  drillOk: drill.ok,
  f: await readFile(join(a, 'ro', 'f.txt'), 'utf8'),
  g: await readFile(join(b, 'g.txt'), 'utf8'),
  deep: await readFile(join(a, 'ro', 'deeper', 'g.txt'), 'utf8'),
  modes: await Promise.all(
    [join(a, 'ro'), join(a, 'ro', 'deeper'), join(a, 'ro', 'f.txt')].map(async (p) => ((await stat(p)).mode & 0o777).toString(8)),
  ),
  listing: [first, (await readdir(data)).sort()],
};
await s.cleanup();
console.log(JSON.stringify(out));
`,
    );
    const here = (name: string): string => new URL(name, import.meta.url).href;
    const child = spawn(process.execPath, [script, here('./files.ts'), here('./test-support.ts'), work], {
      uid: 65534,
      gid: 65534,
      env: { ...process.env, TMPDIR: work },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code, stderr).toBe(0);
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(out).toEqual({
      uid: 65534,
      drillOk: true,
      f: 'v1',
      g: 'b-v1',
      deep: 'v1-deep',
      modes: ['555', '500', '444'],
      listing: [
        ['a', 'b'],
        ['a', 'b'],
      ],
    });
  }, 60_000);
});

describe('files component: restore refusals (mount point, untrusted parent) and a full disk', () => {
  it('a destination that is a mount point is refused up front, naming it; nothing is replaced', async () => {
    const small = await smallFilesystem(8);
    cleanups.push(() => small.stop());
    const root = await tempDir();
    const a = join(root, 'a');
    await mkdir(a);
    await writeFile(join(a, 'f'), 'a-v1');
    await writeFile(join(small.path, 'g'), 'vol-v1');
    const s = await store();
    const backup = await backupFiles([a, small.path], s.writeContext(await s.tempDir()));
    await writeFile(join(a, 'f'), 'a-v2');
    await writeFile(join(small.path, 'g'), 'vol-v2');
    const err = await restoreFiles(entryOf(s, backup), {}, s.readContext(await s.tempDir())).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(`${await realpath(small.path)} is a mount point`);
    expect(await readFile(join(a, 'f'), 'utf8')).toBe('a-v2');
    expect(await readFile(join(small.path, 'g'), 'utf8')).toBe('vol-v2');
    expect(await readdir(root)).toEqual(['a']);
    // Under a filesRoot the same set restores (the mount is not touched).
    const clone = await tempDir();
    await restoreFiles(entryOf(s, backup), { root: clone }, s.readContext(await s.tempDir()));
    expect(await readFile(join(clone, small.path, 'g'), 'utf8')).toBe('vol-v1');
    expect(await readFile(join(clone, a, 'f'), 'utf8')).toBe('a-v1');
  });

  it('a parent directory another user can write (not sticky), or owned by another user, is refused, naming it', async () => {
    const root = await tempDir();
    const shared = join(root, 'shared');
    const data = join(shared, 'saves');
    await mkdir(data, { recursive: true });
    await writeFile(join(data, 'x'), 'v1');
    const s = await store();
    const backup = await backupFiles([data], s.writeContext(await s.tempDir()));
    await writeFile(join(data, 'x'), 'v2');
    await chmod(shared, 0o777);
    let err = await restoreFiles(entryOf(s, backup), {}, s.readContext(await s.tempDir())).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(
      `refusing to restore below ${shared}: it is writable by others and not sticky`,
    );
    await chmod(shared, 0o755);
    await chown(shared, 65534, 65534);
    err = await restoreFiles(entryOf(s, backup), {}, s.readContext(await s.tempDir())).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(`refusing to restore below ${shared}: it belongs to uid 65534`);
    expect(await readFile(join(data, 'x'), 'utf8')).toBe('v2');
    expect(await readdir(shared)).toEqual(['saves']);
    // Sticky and owned by root (as /tmp): accepted.
    await chown(shared, 0, 0);
    await chmod(shared, 0o1777);
    await restoreFiles(entryOf(s, backup), {}, s.readContext(await s.tempDir()));
    expect(await readFile(join(data, 'x'), 'utf8')).toBe('v1');
  });

  it('a full disk while restoring says "no space left on <dir>", and leaves no staging copy', async () => {
    const small = await smallFilesystem(8);
    cleanups.push(() => small.stop());
    const root = await tempDir();
    const data = join(root, 'world');
    await mkdir(data);
    await writeFile(join(data, 'region.bin'), randomBytes(12 * 1024 * 1024));
    await chmod(small.path, 0o755); // the harness's mount is 0777: gameops would refuse to write below it
    const s = await store();
    const backup = await backupFiles([data], s.writeContext(await s.tempDir()));
    const err = await restoreFiles(
      entryOf(s, backup),
      { root: small.path },
      s.readContext(await s.tempDir()),
    ).catch((e: unknown) => e);
    expect(err, String(err)).toBeInstanceOf(UnavailableError);
    const scratch = join(await realpath(small.path), root);
    expect((err as Error).message).toMatch(/^no space left on /);
    expect((err as Error).message).toContain(
      `no space left on ${scratch} (while writing ${scratch}/.world.gameops-restore-`,
    );
    expect((err as Error).message).not.toContain('cannot read');
    expect(await readdir(scratch)).toEqual([]);
    expect((await stat(small.path)).isDirectory()).toBe(true);
  });
});
