import { readFile, realpath, statfs } from 'node:fs/promises';
import { InputError, UnavailableError } from '../core/index.ts';
import { describeError, errorCode } from './failures.ts';

/**
 * Kernel and pseudo filesystems that hold no user data (squashfs: read-only images such as snaps, always
 * 100 % full). `overlay` and `tmpfs` are kept: containers write to overlay, and a full tmpfs (/dev/shm, /run)
 * breaks services as surely as a full disk.
 */
const PSEUDO_FS_TYPES = new Set([
  'proc',
  'sysfs',
  'devpts',
  'mqueue',
  'debugfs',
  'tracefs',
  'securityfs',
  'pstore',
  'bpf',
  'configfs',
  'fusectl',
  'autofs',
  'binfmt_misc',
  'hugetlbfs',
  'nsfs',
  'squashfs',
  'ramfs',
  'rpc_pipefs',
  'nfsd',
  'efivarfs',
  'selinuxfs',
  'fuse.gvfsd-fuse',
  'fuse.portal',
]);

/** A mounted filesystem as `/proc/self/mountinfo` describes it. */
export interface Mount {
  /** `major:minor`: the same device mounted twice (bind mounts) has the same id. */
  deviceId: string;
  /** The directory inside the filesystem that is mounted (`/` unless a bind mount of a subdirectory). */
  root: string;
  mountPoint: string;
  fsType: string;
  /** What was mounted, e.g. `/dev/vda1` or `tmpfs`. */
  source: string;
}

export interface FilesystemUsage {
  /** The configured path, or the mount point when discovered. */
  path: string;
  mountPoint: string | undefined;
  fsType: string | undefined;
  source: string | undefined;
  sizeBytes: number;
  usedBytes: number;
  /** Available to unprivileged users (reserved blocks excluded), as `df` shows. */
  availableBytes: number;
  /** `used / (used + available)` as `df` computes it, 0-100 with one decimal, rounded up. */
  usedPercent: number;
  inodesTotal: number | null;
  inodesUsed: number | null;
  /** Null when the filesystem has no inode limit (reports 0 inodes, e.g. btrfs). */
  inodesUsedPercent: number | null;
}

export function isPseudoFilesystem(fsType: string): boolean {
  return PSEUDO_FS_TYPES.has(fsType) || fsType.startsWith('cgroup');
}

/** Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash). */
export function decodeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Parses `/proc/self/mountinfo` (proc(5)): `id parent major:minor root mountpoint options [optional...] - fstype
 * source superoptions`. Pure.
 */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (separator < 0 || fields.length < separator + 3) continue;
    mounts.push({
      deviceId: fields[2] ?? '',
      root: decodeMountField(fields[3] ?? ''),
      mountPoint: decodeMountField(fields[4] ?? ''),
      fsType: fields[separator + 1] ?? '',
      source: decodeMountField(fields[separator + 2] ?? ''),
    });
  }
  return mounts;
}

/**
 * The filesystems worth checking: pseudo filesystems dropped; where several mounts share a mount point only
 * the last (the visible one) counts; then one entry per device (its first visible mount, preferring a mount of
 * the filesystem's root over a bind mount of a subdirectory). Pure.
 */
export function realFilesystems(mounts: readonly Mount[]): Mount[] {
  const visible = new Map<string, Mount>();
  for (const mount of mounts) {
    // Re-inserting moves the key to the end; a later mount over the same point hides the earlier one.
    visible.delete(mount.mountPoint);
    visible.set(mount.mountPoint, mount);
  }
  const byDevice = new Map<string, Mount>();
  for (const mount of visible.values()) {
    if (isPseudoFilesystem(mount.fsType)) continue;
    const seen = byDevice.get(mount.deviceId);
    if (!seen || (seen.root !== '/' && mount.root === '/')) byDevice.set(mount.deviceId, mount);
  }
  return [...byDevice.values()];
}

/** The mount that holds `path` (an absolute, resolved path): the longest matching mount point. Pure. */
export function mountFor(path: string, mounts: readonly Mount[]): Mount | undefined {
  let best: Mount | undefined;
  for (const mount of mounts) {
    const mp = mount.mountPoint;
    const inside = mp === '/' || path === mp || path.startsWith(`${mp}/`);
    // Later mounts over the same point hide earlier ones, hence >=.
    if (inside && (!best || mp.length >= best.mountPoint.length)) best = mount;
  }
  return best;
}

/** `df`'s arithmetic on statfs figures. Pure. */
export function usageFromStatfs(stats: {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}): Pick<
  FilesystemUsage,
  | 'sizeBytes'
  | 'usedBytes'
  | 'availableBytes'
  | 'usedPercent'
  | 'inodesTotal'
  | 'inodesUsed'
  | 'inodesUsedPercent'
> {
  const sizeBytes = stats.blocks * stats.bsize;
  const usedBytes = Math.max(0, stats.blocks - stats.bfree) * stats.bsize;
  const availableBytes = stats.bavail * stats.bsize;
  const denominator = usedBytes + availableBytes;
  const inodesTotal = stats.files > 0 ? stats.files : null;
  const inodesUsed = inodesTotal === null ? null : Math.max(0, stats.files - stats.ffree);
  return {
    sizeBytes,
    usedBytes,
    availableBytes,
    usedPercent: denominator > 0 ? ceilTenth((usedBytes / denominator) * 100) : 0,
    inodesTotal,
    inodesUsed,
    inodesUsedPercent:
      inodesTotal === null || inodesUsed === null ? null : ceilTenth((inodesUsed / inodesTotal) * 100),
  };
}

/** Rounds up to one decimal like df rounds up to an integer, so 89.91 % never shows as 89.9 when df says 90. */
function ceilTenth(percent: number): number {
  // The epsilon keeps exact values (e.g. 50) from becoming 50.1 through floating-point noise.
  return Math.min(100, Math.max(0, Math.ceil(percent * 10 - 1e-9) / 10));
}

/** Reads and parses the mount table of this process's mount namespace. */
export async function readMounts(file = '/proc/self/mountinfo'): Promise<Mount[]> {
  try {
    return parseMountinfo(await readFile(file, 'utf8'));
  } catch (err) {
    throw new UnavailableError(`cannot read the mount table ${file}: ${describeError(err)}`);
  }
}

/** Space and inode usage of every real mounted filesystem (what `df` would list, minus pseudo filesystems). */
export async function discoverFilesystems(mounts?: readonly Mount[]): Promise<FilesystemUsage[]> {
  const table = mounts ?? (await readMounts());
  const usages = await Promise.all(
    realFilesystems(table).map(async (mount) => {
      try {
        return await statPath(mount.mountPoint, mount.mountPoint, mount);
      } catch {
        // A mount that vanished or is not accessible (e.g. a stale network mount) is not ours to report.
        return undefined;
      }
    }),
  );
  // Like df, leave out filesystems with no blocks at all (they hold nothing).
  return usages.filter((u): u is FilesystemUsage => u !== undefined && u.sizeBytes > 0);
}

/**
 * Space and inode usage of the filesystem holding `path` (symlinks resolved).
 * @throws InputError when the path does not exist, UnavailableError when it cannot be measured.
 */
export async function measurePath(path: string, mounts?: readonly Mount[]): Promise<FilesystemUsage> {
  let resolved: string;
  try {
    resolved = await realpath(path);
  } catch (err) {
    throw pathError(path, err);
  }
  const table = mounts ?? (await readMounts().catch(() => []));
  return statPath(path, resolved, mountFor(resolved, table));
}

async function statPath(path: string, resolved: string, mount: Mount | undefined): Promise<FilesystemUsage> {
  let stats: Awaited<ReturnType<typeof statfs>>;
  try {
    stats = await statfs(resolved);
  } catch (err) {
    throw pathError(path, err);
  }
  return {
    path,
    mountPoint: mount?.mountPoint,
    fsType: mount?.fsType,
    source: mount?.source,
    ...usageFromStatfs(stats),
  };
}

function pathError(path: string, err: unknown): Error {
  const code = errorCode(err);
  if (code === 'ENOENT' || code === 'ENOTDIR') return new InputError(`disk path ${path} does not exist`);
  return new UnavailableError(`cannot measure ${path}: ${describeError(err)}`);
}
