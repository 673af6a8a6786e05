import { discoverFilesystems, measurePath, readMounts, type FilesystemUsage } from '../connectors/index.ts';
import { errorMessage, toGameopsError } from '../core/index.ts';
import { CheckStatus, worst, worstOf } from './statuses.ts';
import { formatBytes, levelFor } from './thresholds.ts';
import type { Check, Finding } from './types.ts';

/**
 * Runbook §1.1 step 4: space and inode usage of every real filesystem (or of the configured paths) against
 * the thresholds. Replaces `df -h | grep -E '(8[0-9]|9[0-9]|100)%'`, which misses inodes and reads the
 * percentages of every column.
 */
export const diskCheck: Check = {
  name: 'disk',
  // Local filesystems always exist; there is nothing to configure.
  configured: () => true,
  target: (config) => {
    const paths = config.checks.thresholds.disk.paths;
    return paths.length > 0 ? `filesystems ${paths.join(', ')}` : 'local filesystems';
  },
  async run(ctx) {
    const t = ctx.config.checks.thresholds.disk;
    // Configured paths can be measured without the mount table (it only names their mount point).
    const mounts = t.paths.length === 0 ? await readMounts() : await readMounts().catch(() => []);
    const measured: Array<FilesystemUsage | { path: string; error: string; code: string }> =
      t.paths.length === 0
        ? await discoverFilesystems(mounts)
        : await Promise.all(
            t.paths.map((path) =>
              measurePath(path, mounts).catch((err: unknown) => ({
                path,
                error: errorMessage(err),
                code: toGameopsError(err).code,
              })),
            ),
          );
    ctx.signal.throwIfAborted();

    const findings: Finding[] = [];
    const filesystems = [];
    const errors = [];
    for (const fs of measured) {
      if ('error' in fs) {
        errors.push(fs);
        findings.push({ status: CheckStatus.error, subject: fs.path, message: fs.error });
        continue;
      }
      const space = levelFor(fs.usedPercent, t.warnPercent, t.failPercent);
      const inodes =
        fs.inodesUsedPercent === null
          ? CheckStatus.ok
          : levelFor(fs.inodesUsedPercent, t.inodeWarnPercent, t.inodeFailPercent);
      if (space !== CheckStatus.ok)
        findings.push({
          status: space,
          subject: fs.path,
          message: `${fs.usedPercent} % used, ${formatBytes(fs.availableBytes)} free of ${formatBytes(fs.sizeBytes)}${where(fs)}`,
          value: fs.usedPercent,
          threshold: space === CheckStatus.fail ? t.failPercent : t.warnPercent,
        });
      if (inodes !== CheckStatus.ok && fs.inodesUsedPercent !== null)
        findings.push({
          status: inodes,
          subject: fs.path,
          message: `${fs.inodesUsedPercent} % of inodes used (${fs.inodesUsed}/${fs.inodesTotal})${where(fs)}`,
          value: fs.inodesUsedPercent,
          threshold: inodes === CheckStatus.fail ? t.inodeFailPercent : t.inodeWarnPercent,
        });
      filesystems.push({ ...fs, status: worst(space, inodes) });
    }

    const status = worstOf([CheckStatus.ok, ...findings.map((f) => f.status)]);
    return {
      status,
      summary: summarize(filesystems, errors.length),
      values: { filesystems, errors, configuredPaths: t.paths },
      findings,
      ...(errors[0]
        ? { error: { code: errors[0].code, message: errors.map((e) => e.error).join('; ') } }
        : {}),
    };
  },
};

function where(fs: FilesystemUsage): string {
  return fs.mountPoint && fs.mountPoint !== fs.path ? ` (on ${fs.mountPoint})` : '';
}

function summarize(filesystems: FilesystemUsage[], errors: number): string {
  const failed = errors > 0 ? `, ${errors} not measurable` : '';
  if (filesystems.length === 0) return `no filesystem measured${failed}`;
  const fullest = filesystems.reduce((a, b) => (b.usedPercent > a.usedPercent ? b : a));
  const inodeFullest = filesystems.reduce<FilesystemUsage | undefined>(
    (a, b) =>
      b.inodesUsedPercent !== null && (a === undefined || b.inodesUsedPercent > (a.inodesUsedPercent ?? -1))
        ? b
        : a,
    undefined,
  );
  const count = `${filesystems.length} filesystem${filesystems.length === 1 ? '' : 's'}`;
  const inodes = inodeFullest
    ? `; inodes max ${inodeFullest.inodesUsedPercent} % (${inodeFullest.path})`
    : '';
  return `${count}; fullest ${fullest.path} ${fullest.usedPercent} % (${formatBytes(fullest.availableBytes)} free)${inodes}${failed}`;
}
