/**
 * Finds the server binaries the harness runs (MariaDB, Redis, PostgreSQL, Alertmanager, Prometheus) and
 * the tools tests check interoperability with (`age`, which operators decrypt backups with), and
 * installs the missing ones on Debian/Ubuntu when running as root. Tests never skip because a server is
 * absent: either it gets installed or the run fails with the exact packages to install.
 *
 * Installing the Debian packages also starts their system services (on the default ports). That is
 * harmless: the harness never talks to them, it always starts its own instances on free loopback ports.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

/** Absolute paths of the server programs the harness starts. */
export interface ServerBinaries {
  /** `mariadbd` (or `mysqld` from a MariaDB install). */
  mariadbd: string;
  /** `mariadb-install-db`, which creates a fresh data directory. */
  mariadbInstallDb: string;
  redisServer: string;
  /** Directory holding PostgreSQL's `initdb` and `postgres` (e.g. /usr/lib/postgresql/15/bin). */
  postgresBinDir: string;
  alertmanager: string;
  prometheus: string;
  /** The standard `age` CLI (decrypts backup objects in interop tests). */
  age: string;
  /** `age-keygen`, from the same package (writes the identity files operators use). */
  ageKeygen: string;
}

/** A server program that was not found, and the Debian/Ubuntu package that provides it. */
export interface MissingServer {
  /** What was looked for, e.g. `mariadbd or mysqld`. */
  program: string;
  /** The Debian/Ubuntu package to install. */
  debianPackage: string;
}

/** Directories searched in addition to PATH (sbin is often missing from a non-root PATH). */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function which(...names: string[]): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = path.join(dir, name);
      if (isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

/** The newest /usr/lib/postgresql/<version>/bin with both initdb and postgres, else one found on PATH. */
function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(root).filter((name) => /^\d+(\.\d+)?$/.test(name));
  } catch {
    // Not a Debian-style layout.
  }
  versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  for (const version of versions) {
    const bin = path.join(root, version, 'bin');
    if (isExecutable(path.join(bin, 'initdb')) && isExecutable(path.join(bin, 'postgres'))) return bin;
  }
  const initdb = which('initdb');
  if (initdb !== undefined && isExecutable(path.join(path.dirname(initdb), 'postgres'))) {
    return path.dirname(initdb);
  }
  return undefined;
}

/** Looks up every server binary; never installs anything. */
export function findServerBinaries(): { found: Partial<ServerBinaries>; missing: MissingServer[] } {
  const found: Partial<ServerBinaries> = {
    mariadbd: which('mariadbd', 'mysqld'),
    mariadbInstallDb: which('mariadb-install-db'),
    redisServer: which('redis-server'),
    postgresBinDir: findPostgresBinDir(),
    // Debian names the upstream `alertmanager` binary prometheus-alertmanager.
    alertmanager: which('prometheus-alertmanager', 'alertmanager'),
    prometheus: which('prometheus'),
    age: which('age'),
    ageKeygen: which('age-keygen'),
  };
  const missing: MissingServer[] = [];
  if (found.mariadbd === undefined || found.mariadbInstallDb === undefined) {
    missing.push({ program: 'mariadbd (or mysqld) and mariadb-install-db', debianPackage: 'mariadb-server' });
  }
  if (found.redisServer === undefined)
    missing.push({ program: 'redis-server', debianPackage: 'redis-server' });
  if (found.postgresBinDir === undefined) {
    missing.push({ program: 'PostgreSQL initdb and postgres', debianPackage: 'postgresql' });
  }
  if (found.alertmanager === undefined) {
    missing.push({ program: 'prometheus-alertmanager', debianPackage: 'prometheus-alertmanager' });
  }
  if (found.prometheus === undefined) missing.push({ program: 'prometheus', debianPackage: 'prometheus' });
  if (found.age === undefined || found.ageKeygen === undefined) {
    missing.push({ program: 'age and age-keygen', debianPackage: 'age' });
  }
  return { found, missing };
}

function describeMissing(missing: MissingServer[]): string {
  const packages = missing.map((m) => m.debianPackage).join(' ');
  return (
    `the test harness needs real servers that are not installed: ` +
    missing.map((m) => `${m.program} (Debian/Ubuntu package ${m.debianPackage})`).join(', ') +
    `.\nInstall them with: sudo apt-get install -y --no-install-recommends ${packages}`
  );
}

/** Runs a command (argument array, no shell), streaming its output line by line to stderr with a prefix. */
async function runStreaming(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const prefix = `[harness ${path.basename(command)}] `;
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    readline
      .createInterface({ input: stream })
      .on('line', (line) => process.stderr.write(prefix + line + '\n'));
  }
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with code ${String(code)}`);
}

let cached: ServerBinaries | undefined;

/**
 * Makes sure every server binary exists and returns their paths. Missing ones are installed with apt-get
 * when we are root on Debian/Ubuntu; otherwise this throws an Error naming exactly the packages to install.
 */
export async function ensurePackages(): Promise<ServerBinaries> {
  if (cached !== undefined) return cached;
  let { found, missing } = findServerBinaries();
  if (missing.length > 0) {
    const aptGet = which('apt-get');
    const isRoot = process.getuid?.() === 0;
    if (aptGet === undefined || !isRoot || !fs.existsSync('/etc/debian_version')) {
      const why = aptGet === undefined ? 'this is not a Debian/Ubuntu machine' : 'not running as root';
      throw new Error(`${describeMissing(missing)}\n(not installing them automatically: ${why})`);
    }
    const packages = [...new Set(missing.map((m) => m.debianPackage))];
    process.stderr.write(`[harness] installing missing server packages: ${packages.join(' ')}\n`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await runStreaming(aptGet, ['update'], env);
    await runStreaming(aptGet, ['install', '-y', '--no-install-recommends', ...packages], env);
    ({ found, missing } = findServerBinaries());
    if (missing.length > 0)
      throw new Error(`after apt-get install, still missing: ${describeMissing(missing)}`);
  }
  cached = found as ServerBinaries;
  return cached;
}

/**
 * The server binaries, for code that runs after {@link ensurePackages} (or in a process where the
 * packages are known to be present, such as a test worker after the global setup). Throws when some are
 * missing; never installs.
 */
export function serverBinaries(): ServerBinaries {
  if (cached !== undefined) return cached;
  const { found, missing } = findServerBinaries();
  if (missing.length > 0) throw new Error(describeMissing(missing));
  cached = found as ServerBinaries;
  return cached;
}
