/**
 * Runs the bundled CLI (`dist/app/`, built by scripts/build.ts) with a V8 code cache of every function the
 * command ran.
 *
 * Why not Node's own compile cache (`NODE_COMPILE_CACHE`): it saves a module's code right after compiling
 * it, before it runs, and V8 compiles most functions lazily, on their first call. A cold
 * `gameops check daily` spent ~50 ms compiling such functions (drivers, zod, the checks) on every run. Here
 * the bundle's modules are CommonJS scripts compiled with `vm.Script`, and the cache of each is made with
 * `createCachedData()` when the process exits, so it holds the functions that ran too. The cache is kept
 * per command (`check`, `serve`, ...): each command's first run fills its own.
 *
 * A cache file is trusted only when its checksums match: V8 checks the source's length, not its content,
 * and does not checksum cached code in release builds. Files live in a directory only the user can
 * write; an unsafe or unwritable directory means no cache, never a failed command.
 */
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { Script } from 'node:vm';
import { crc32 } from 'node:zlib';

/** "GOC1", little-endian: the first four bytes of a cache file. */
const MAGIC = 0x3143_4f47;
/** magic, source length, source CRC-32, data CRC-32 (u32 each). */
const HEADER_BYTES = 16;
/** Caches of other builds or Node versions untouched this long are removed when a cache is written. */
const STALE_AFTER_MS = 30 * 24 * 3600 * 1000;
/** A command name as a cache directory: a lowercase word, as gameops's commands are. */
const COMMAND = /^[a-z][a-z-]{0,31}$/;

/** A cache file: `data` (V8's cached data) for exactly `source`. */
export function encodeCache(source: Buffer, data: Buffer): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(MAGIC, 0);
  header.writeUInt32LE(source.length, 4);
  header.writeUInt32LE(crc32(source), 8);
  header.writeUInt32LE(crc32(data), 12);
  return Buffer.concat([header, data]);
}

/** The cached data in `file` when it was made for `source` and is intact; otherwise undefined. */
export function decodeCache(file: Buffer, source: Buffer): Buffer | undefined {
  if (file.length <= HEADER_BYTES || file.readUInt32LE(0) !== MAGIC) return undefined;
  if (file.readUInt32LE(4) !== source.length || file.readUInt32LE(8) !== crc32(source)) return undefined;
  const data = file.subarray(HEADER_BYTES);
  return file.readUInt32LE(12) === crc32(data) ? data : undefined;
}

/**
 * The cache directory of this command line: `<root>/<node version>-<arch>-<build>/<command>`, where the
 * command is the first argument that looks like one (`check` in `--config x.yaml check daily`). Created
 * (0700) when missing. Undefined when there is no root, or when the directory is not one that only this
 * user can write (someone else's cached code would run as ours).
 */
export function commandCacheDir(
  root: string | undefined,
  build: string,
  argv: readonly string[],
): string | undefined {
  if (!root) return undefined;
  const command = argv.find((arg) => COMMAND.test(arg)) ?? 'none';
  const dir = join(resolve(root), `${process.version}-${process.arch}-${build}`, command);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stat = lstatSync(dir);
    const uid = process.getuid?.();
    if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o022) !== 0)
      return undefined;
    return dir;
  } catch {
    return undefined;
  }
}

interface Pending {
  script: Script;
  source: Buffer;
  cacheFile: string;
}

/**
 * A CommonJS module system for the bundle's own files (relative `require`s); everything else (Node's
 * built-ins, optional native drivers) goes to Node's `require`. Each file compiles with its cached data
 * from `cacheDir` when there is valid data, and `persist()` writes the data of those that had none.
 */
export class BundleLoader {
  readonly #cacheDir: string | undefined;
  readonly #modules = new Map<string, { exports: unknown }>();
  readonly #requires = new Map<string, NodeJS.Require>();
  readonly #pending: Pending[] = [];
  readonly #nodeRequire: NodeJS.Require;

  constructor(appDir: string, cacheDir: string | undefined) {
    this.#cacheDir = cacheDir;
    this.#nodeRequire = createRequire(join(appDir, 'noop.cjs'));
  }

  /** Loads `file` (an absolute path) and returns its `module.exports`. */
  require(file: string): unknown {
    const loaded = this.#modules.get(file);
    if (loaded) return loaded.exports;
    const module = { exports: {} as unknown };
    this.#modules.set(file, module);
    const source = readFileSync(file);
    const cacheFile = this.#cacheDir && join(this.#cacheDir, `${basename(file)}.v8`);
    const cachedData = cacheFile ? readCache(cacheFile, source) : undefined;
    const script = new Script(
      `(function (exports, require, module, __filename, __dirname) {${source.toString('utf8')}\n})`,
      { filename: file, ...(cachedData ? { cachedData } : {}) },
    );
    if (cacheFile && (!cachedData || script.cachedDataRejected === true))
      this.#pending.push({ script, source, cacheFile });
    const wrapper = script.runInThisContext() as (
      exports: unknown,
      require: NodeJS.Require,
      module: { exports: unknown },
      filename: string,
      dirname: string,
    ) => void;
    wrapper.call(
      module.exports,
      module.exports,
      this.#requireFor(dirname(file)),
      module,
      file,
      dirname(file),
    );
    return module.exports;
  }

  /**
   * Writes the cache of every file that had none (or a rejected one), with every function compiled so
   * far. Each file is written whole under a temporary name and renamed, so a concurrent run reads either
   * nothing or a complete file. Failures (read-only or full disk) are ignored: the cache is an optimisation.
   */
  persist(): void {
    if (this.#pending.length === 0 || !this.#cacheDir) return;
    for (const { script, source, cacheFile } of this.#pending.splice(0)) {
      const temp = `${cacheFile}.${process.pid}.tmp`;
      try {
        writeFileSync(temp, encodeCache(source, script.createCachedData()), { mode: 0o600, flag: 'wx' });
        renameSync(temp, cacheFile);
      } catch {
        try {
          unlinkSync(temp);
        } catch {
          // nothing was written
        }
      }
    }
    removeStaleBuilds(dirname(dirname(this.#cacheDir)), dirname(this.#cacheDir));
  }

  #requireFor(dir: string): NodeJS.Require {
    let req = this.#requires.get(dir);
    if (!req) {
      const node = this.#nodeRequire;
      req = Object.assign(
        (specifier: string): unknown =>
          specifier.startsWith('./') || specifier.startsWith('../')
            ? this.require(resolve(dir, specifier))
            : node(specifier),
        { resolve: node.resolve, cache: node.cache, extensions: node.extensions, main: undefined },
      );
      this.#requires.set(dir, req);
    }
    return req;
  }
}

function readCache(cacheFile: string, source: Buffer): Buffer | undefined {
  try {
    return decodeCache(readFileSync(cacheFile), source);
  } catch {
    return undefined;
  }
}

/** Removes the caches of other builds and Node versions that no run has written to for a month. */
function removeStaleBuilds(root: string, current: string): void {
  try {
    const now = Date.now();
    for (const name of readdirSync(root)) {
      const dir = join(root, name);
      if (dir === current || !/^v\d/.test(name)) continue;
      if (now - statSync(dir).mtimeMs > STALE_AFTER_MS) rmSync(dir, { recursive: true, force: true });
    }
  } catch {
    // another run may be cleaning up too
  }
}

/** Where the cache lives: `GAMEOPS_CODE_CACHE` (empty or `off`: none), else the user's cache directory. */
export function cacheRoot(env: NodeJS.ProcessEnv): string | undefined {
  const configured = env['GAMEOPS_CODE_CACHE'];
  if (configured !== undefined) return configured === '' || configured === 'off' ? undefined : configured;
  const base = env['XDG_CACHE_HOME'] || (env['HOME'] ? join(env['HOME'], '.cache') : undefined);
  return base ? join(base, 'gameops', 'code-cache') : undefined;
}

/**
 * Runs the bundle's entry (`<appDir>/gameops.cjs`) for this process's command line, caching its code
 * under `cacheRoot(env)`; the cache is written when the process exits.
 */
export function runBundle(appDir: string, build: string): void {
  const loader = new BundleLoader(
    appDir,
    commandCacheDir(cacheRoot(process.env), build, process.argv.slice(2)),
  );
  process.once('exit', () => loader.persist());
  loader.require(join(appDir, 'gameops.cjs'));
}
