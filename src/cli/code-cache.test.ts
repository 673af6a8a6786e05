import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { smallFilesystem } from '../../test/harness/index.ts';
import { BundleLoader, cacheRoot, commandCacheDir, decodeCache, encodeCache } from './code-cache.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-code-cache-'));
  dirs.push(dir);
  return dir;
}

/** A function whose bytecode is large enough to see in a cache, compiled only when called. */
const BIG = `function big(n) {\n  let t = 0;\n${Array.from({ length: 300 }, (_, i) => `  t += (n * ${i + 1}) % ${i + 7};`).join('\n')}\n  return t;\n}`;

/**
 * A bundle as scripts/build.ts makes it: an entry and a chunk, CommonJS, requiring each other relatively
 * and Node's built-ins by name. `MODE` in the environment picks what the entry does.
 */
function fixtureApp(): string {
  const app = join(tempDir(), 'app');
  mkdirSync(join(app, 'chunks'), { recursive: true });
  writeFileSync(
    join(app, 'chunks', 'chunk-A.cjs'),
    `"use strict";\nexports.sum = (a, b) => a + b;\nexports.big = ${BIG};\n`,
  );
  writeFileSync(
    join(app, 'gameops.cjs'),
    [
      '"use strict";',
      'const chunk = require("./chunks/chunk-A.cjs");',
      'const { basename } = require("node:path");',
      'const mode = process.env.MODE ?? "print";',
      'if (mode === "throw") throw new Error("boom in the bundle");',
      'const out = { sum: chunk.sum(2, 3), big: chunk.big(2), file: basename(__filename), same: require("./chunks/chunk-A.cjs") === chunk };',
      'process.stdout.write(JSON.stringify(out));',
      'if (mode === "exit3") process.exit(3);',
    ].join('\n'),
  );
  return app;
}

/** Runs the fixture bundle the way dist/gameops.mjs runs the real one, as a process of its own. */
function runApp(app: string, args: string[], env: Record<string, string>): ReturnType<typeof spawnSync> {
  const runner = join(app, '..', 'run.mjs');
  writeFileSync(
    runner,
    `import { runBundle } from ${JSON.stringify(join(import.meta.dirname, 'code-cache.ts'))};\nrunBundle(${JSON.stringify(app)}, 'test');\n`,
  );
  return spawnSync(process.execPath, [runner, ...args], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    encoding: 'utf8',
  });
}

const cacheFiles = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).sort() : []);
const commandDir = (root: string, command: string): string =>
  join(root, `${process.version}-${process.arch}-test`, command);

describe('cache files', () => {
  const source = Buffer.from('exports.x = 1;\n');
  const data = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);

  it('give back their data for the source they were made for', () => {
    expect(decodeCache(encodeCache(source, data), source)).toEqual(data);
  });

  it.each([
    ['another source of the same length', (f: Buffer) => f, Buffer.from('exports.y = 2;\n')],
    [
      'a flipped byte of the data',
      (f: Buffer) => Buffer.concat([f.subarray(0, -1), Buffer.from([0xff])]),
      source,
    ],
    ['a truncated file', (f: Buffer) => f.subarray(0, f.length - 3), source],
    ['a header alone', (f: Buffer) => f.subarray(0, 16), source],
    ['another format', (f: Buffer) => Buffer.concat([Buffer.from('XXXX'), f.subarray(4)]), source],
    ['an empty file', () => Buffer.alloc(0), source],
  ])('are refused for %s', (_name, damage, against) => {
    expect(decodeCache(damage(encodeCache(source, data)), against)).toBeUndefined();
  });
});

describe('where the cache lives', () => {
  it('is GAMEOPS_CODE_CACHE, or under XDG_CACHE_HOME or ~/.cache; empty or "off" turns it off', () => {
    expect(cacheRoot({ GAMEOPS_CODE_CACHE: '/x/cc', HOME: '/home/u' })).toBe('/x/cc');
    expect(cacheRoot({ GAMEOPS_CODE_CACHE: 'off', HOME: '/home/u' })).toBeUndefined();
    expect(cacheRoot({ GAMEOPS_CODE_CACHE: '', HOME: '/home/u' })).toBeUndefined();
    expect(cacheRoot({ XDG_CACHE_HOME: '/xdg', HOME: '/home/u' })).toBe('/xdg/gameops/code-cache');
    expect(cacheRoot({ HOME: '/home/u' })).toBe('/home/u/.cache/gameops/code-cache');
    expect(cacheRoot({})).toBeUndefined();
  });

  it('is one directory per command, created for this user only', () => {
    const root = tempDir();
    const dir = commandCacheDir(root, 'b1', ['--config', '/etc/gameops.yaml', 'check', 'daily']);
    expect(dir).toBe(commandDir(root, 'check').replace('-test', '-b1'));
    expect(statSync(dir!).mode & 0o777).toBe(0o700);
    expect(commandCacheDir(root, 'b1', ['--help'])).toMatch(/\/none$/);
    expect(commandCacheDir(undefined, 'b1', ['check'])).toBeUndefined();
  });

  it('is not used when others can write to it, or when it is a symlink', () => {
    const root = tempDir();
    const open = commandCacheDir(root, 'b1', ['check'])!;
    chmodSync(open, 0o777);
    expect(commandCacheDir(root, 'b1', ['check'])).toBeUndefined();
    const elsewhere = tempDir();
    symlinkSync(elsewhere, join(root, `${process.version}-${process.arch}-b1`, 'serve'));
    expect(commandCacheDir(root, 'b1', ['serve'])).toBeUndefined();
  });

  it.skipIf(process.getuid?.() !== 0)('is not used when it belongs to another user (as root)', () => {
    const root = tempDir();
    const dir = commandCacheDir(root, 'b1', ['check'])!;
    chownSync(dir, 65534, 65534);
    expect(commandCacheDir(root, 'b1', ['check'])).toBeUndefined();
  });
});

describe('the bundle loader', () => {
  it('caches the functions a command ran, not only those compiled on load', () => {
    const app = fixtureApp();
    const entry = join(app, 'gameops.cjs');
    // Loaded but `big` never called: its code is not in the cache.
    const idle = tempDir();
    const loader = new BundleLoader(app, idle);
    const chunk = loader.require(join(app, 'chunks', 'chunk-A.cjs')) as {
      sum: (a: number, b: number) => number;
    };
    expect(chunk.sum(1, 2)).toBe(3);
    loader.persist();
    const withoutBig = statSync(join(idle, 'chunk-A.cjs.v8')).size;
    // The entry calls `big`; the chunk's cache, made afterwards, holds it.
    const ran = tempDir();
    const second = new BundleLoader(app, ran);
    const saved = process.stdout.write.bind(process.stdout);
    process.stdout.write = () => true;
    try {
      second.require(entry);
    } finally {
      process.stdout.write = saved;
    }
    second.persist();
    expect(statSync(join(ran, 'chunk-A.cjs.v8')).size).toBeGreaterThan(withoutBig + 1000);
    expect(cacheFiles(ran)).toEqual(['chunk-A.cjs.v8', 'gameops.cjs.v8']);
  });

  it('fills the cache on the first run and only reads it afterwards', () => {
    const app = fixtureApp();
    const root = tempDir();
    const first = runApp(app, ['check', 'daily'], { GAMEOPS_CODE_CACHE: root });
    expect(first.stderr).toBe('');
    // Relative requires give the bundle's own files, loaded once; __filename is the file's.
    expect(JSON.parse(first.stdout as string)).toMatchObject({ sum: 5, file: 'gameops.cjs', same: true });
    const dir = commandDir(root, 'check');
    expect(cacheFiles(dir)).toEqual(['chunk-A.cjs.v8', 'gameops.cjs.v8']);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'gameops.cjs.v8')).mode & 0o777).toBe(0o600);
    const before = cacheFiles(dir).map((f) => statSync(join(dir, f)).mtimeMs);

    const second = runApp(app, ['check', 'daily'], { GAMEOPS_CODE_CACHE: root });
    expect(second.stdout).toBe(first.stdout);
    expect(cacheFiles(dir).map((f) => statSync(join(dir, f)).mtimeMs)).toEqual(before);
    // Another command has a cache of its own.
    runApp(app, ['serve'], { GAMEOPS_CODE_CACHE: root });
    expect(cacheFiles(commandDir(root, 'serve'))).toEqual(['chunk-A.cjs.v8', 'gameops.cjs.v8']);
  });

  it('ignores and rewrites a damaged cache, and one made for another source', () => {
    const app = fixtureApp();
    const root = tempDir();
    const first = runApp(app, ['check'], { GAMEOPS_CODE_CACHE: root });
    const cached = join(commandDir(root, 'check'), 'chunk-A.cjs.v8');
    const good = readFileSync(cached);
    expect(decodeCache(good, readFileSync(join(app, 'chunks', 'chunk-A.cjs')))).toBeDefined();
    // A byte of the cached code changed: V8 would not notice (no checksum in release builds).
    const damaged = Buffer.from(good);
    damaged[damaged.length - 10] = damaged[damaged.length - 10]! ^ 0xff;
    writeFileSync(cached, damaged);
    const second = runApp(app, ['check'], { GAMEOPS_CODE_CACHE: root });
    expect(second.status).toBe(0);
    expect(second.stdout).toBe(first.stdout);
    expect(decodeCache(readFileSync(cached), readFileSync(join(app, 'chunks', 'chunk-A.cjs')))).toBeDefined();

    // The chunk changed, same length: its old cache must not be used for the new code.
    const chunkFile = join(app, 'chunks', 'chunk-A.cjs');
    writeFileSync(chunkFile, readFileSync(chunkFile, 'utf8').replace('a + b', 'a * b'));
    const third = runApp(app, ['check'], { GAMEOPS_CODE_CACHE: root });
    expect(JSON.parse(third.stdout as string)).toMatchObject({ sum: 6 });
    expect(decodeCache(readFileSync(cached), readFileSync(chunkFile))).toBeDefined();
  });

  it('keeps the exit code of the command, and writes the cache when it exits early', () => {
    const app = fixtureApp();
    const root = tempDir();
    const res = runApp(app, ['check'], { GAMEOPS_CODE_CACHE: root, MODE: 'exit3' });
    expect(res.status).toBe(3);
    expect(cacheFiles(commandDir(root, 'check'))).toHaveLength(2);
  });

  it('reports an error thrown while loading, with the bundle file it came from', () => {
    const app = fixtureApp();
    const res = runApp(app, ['check'], { GAMEOPS_CODE_CACHE: tempDir(), MODE: 'throw' });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('boom in the bundle');
    expect(res.stderr).toContain(join(app, 'gameops.cjs'));
  });

  it('runs without a cache when it is off, or when there is no home', () => {
    const app = fixtureApp();
    const off = runApp(app, ['check'], { GAMEOPS_CODE_CACHE: 'off' });
    expect(off.status).toBe(0);
    expect(JSON.parse(off.stdout as string)).toMatchObject({ sum: 5 });
    // No HOME, no XDG_CACHE_HOME, no GAMEOPS_CODE_CACHE.
    const homeless = runApp(app, ['check'], {});
    expect(homeless.status).toBe(0);
    expect(JSON.parse(homeless.stdout as string)).toMatchObject({ sum: 5 });
  });

  it('runs the command when the cache cannot be written: a full disk leaves no partial file', async () => {
    const app = fixtureApp();
    const small = await smallFilesystem(1);
    try {
      // Room for the directories, none for the cache files.
      mkdirSync(join(small.path, 'cc'));
      commandCacheDir(join(small.path, 'cc'), 'test', ['check']);
      await small.fill(100);
      const res = runApp(app, ['check'], { GAMEOPS_CODE_CACHE: join(small.path, 'cc') });
      expect(res.status).toBe(0);
      expect(res.stderr).toBe('');
      expect(JSON.parse(res.stdout as string)).toMatchObject({ sum: 5 });
      const dir = commandDir(join(small.path, 'cc'), 'check');
      for (const file of cacheFiles(dir))
        expect(
          decodeCache(
            readFileSync(join(dir, file)),
            readFileSync(join(app, file === 'gameops.cjs.v8' ? 'gameops.cjs' : 'chunks/chunk-A.cjs')),
          ),
        ).toBeDefined();
      expect(cacheFiles(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    } finally {
      await small.stop();
    }
  });
});
