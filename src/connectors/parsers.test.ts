import { describe, expect, it } from 'vitest';
import {
  decodeMountField,
  isPseudoFilesystem,
  mountFor,
  parseMountinfo,
  realFilesystems,
  usageFromStatfs,
} from './filesystems.ts';
import { describeError } from './failures.ts';
import { grantsIncludeProcess, mysqlFlavour } from './mysql.ts';
import { parseRedisInfo, parseRedisInfoSections } from './redis.ts';

// Pure parsers of the connectors, fed with text captured from real servers and kernels.

const INFO = [
  '# Server',
  'redis_version:7.0.15',
  'redis_mode:standalone',
  'run_id:3188b98abab6812d5d4e040e7c729c36f5ee97f2',
  'uptime_in_seconds:3600',
  '',
  '# Clients',
  'connected_clients:7',
  '',
  '# Memory',
  'used_memory:991232',
  'used_memory_human:968.00K',
  'used_memory_rss:6692864',
  'maxmemory:8388608',
  'maxmemory_policy:noeviction',
  'mem_fragmentation_ratio:7.64',
  '',
  '# Persistence',
  'loading:0',
  'rdb_changes_since_last_save:12',
  'rdb_last_save_time:1795677546',
  'rdb_last_bgsave_status:err',
  'aof_enabled:1',
  'aof_last_bgrewrite_status:ok',
  'aof_last_write_status:err',
  '',
  '# Keyspace',
  'db0:keys=1,expires=0,avg_ttl=0',
  '',
].join('\r\n');

describe('parseRedisInfo', () => {
  it('types the fields gameops uses', () => {
    const info = parseRedisInfo(INFO);
    expect(info.server).toEqual({
      redisVersion: '7.0.15',
      uptimeSeconds: 3600,
      runId: '3188b98abab6812d5d4e040e7c729c36f5ee97f2',
      mode: 'standalone',
    });
    expect(info.memory).toEqual({
      usedMemory: 991232,
      maxmemory: 8388608,
      maxmemoryPolicy: 'noeviction',
      memFragmentationRatio: 7.64,
      usedMemoryRss: 6692864,
    });
    expect(info.persistence).toEqual({
      loading: false,
      rdbLastBgsaveStatus: 'err',
      rdbLastSaveTime: 1795677546,
      rdbChangesSinceLastSave: 12,
      aofEnabled: true,
      aofLastWriteStatus: 'err',
      aofLastBgrewriteStatus: 'ok',
    });
    expect(info.clients.connectedClients).toBe(7);
    expect(info.raw['keyspace']?.['db0']).toBe('keys=1,expires=0,avg_ttl=0');
  });

  it('leaves missing fields undefined (a Redis-compatible server may not report them)', () => {
    const info = parseRedisInfo('# Server\nredis_version:7.2.4\n');
    expect(info.server.redisVersion).toBe('7.2.4');
    expect(info.server.uptimeSeconds).toBeUndefined();
    expect(info.memory.maxmemory).toBeUndefined();
    expect(info.persistence.aofEnabled).toBeUndefined();
  });

  it('reads a single-section reply and values that contain colons', () => {
    const sections = parseRedisInfoSections(
      '# Replication\nrole:master\nmaster_replid:abc\nslave0:ip=10.0.0.2,port=6379\n',
    );
    expect(sections).toEqual({
      replication: { role: 'master', master_replid: 'abc', slave0: 'ip=10.0.0.2,port=6379' },
    });
    expect(parseRedisInfoSections('a:b:c\n')).toEqual({ default: { a: 'b:c' } });
  });
});

const MOUNTINFO = [
  '22 27 0:21 / /proc rw,relatime - proc proc rw',
  '23 27 0:22 / /sys rw,relatime - sysfs sysfs rw',
  '24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k',
  '25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw',
  '26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600',
  '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
  '30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw',
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  '50 27 254:0 /srv/data /mnt/bind rw,relatime shared:1 - ext4 /dev/vda rw',
  '51 27 259:2 / /var/lib/My\\040Games rw,relatime shared:7 master:2 - xfs /dev/nvme0n1p2 rw',
  '52 27 7:1 / /snap/core/123 ro,relatime - squashfs /dev/loop1 ro',
  '53 27 0:50 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a',
  '54 27 0:51 / /mnt/n rw - nfs4 fileserver:/export rw',
  '',
].join('\n');

describe('parseMountinfo / realFilesystems', () => {
  it('parses fields, optional tags and octal escapes', () => {
    const mounts = parseMountinfo(MOUNTINFO);
    expect(mounts).toHaveLength(14);
    expect(mounts.find((m) => m.deviceId === '259:2')).toEqual({
      deviceId: '259:2',
      root: '/',
      mountPoint: '/var/lib/My Games',
      fsType: 'xfs',
      source: '/dev/nvme0n1p2',
    });
  });

  it('keeps real filesystems once per device and the visible mount of a stacked mount point', () => {
    const real = realFilesystems(parseMountinfo(MOUNTINFO));
    expect(real.map((m) => [m.mountPoint, m.fsType, m.deviceId])).toEqual([
      ['/dev', 'devtmpfs', '0:6'],
      ['/', 'ext4', '254:0'],
      ['/dev/shm', 'tmpfs', '0:27'],
      ['/var/lib/My Games', 'xfs', '259:2'],
      ['/var/lib/docker/overlay2/x/merged', 'overlay', '0:50'],
      ['/mnt/n', 'nfs4', '0:51'],
    ]);
  });

  it('prefers the mount of the filesystem root over an earlier bind mount of a subdirectory', () => {
    const real = realFilesystems(
      parseMountinfo(
        [
          '60 1 8:1 /data /srv/data rw - ext4 /dev/sda1 rw',
          '61 1 8:1 / /mnt/disk rw - ext4 /dev/sda1 rw',
        ].join('\n'),
      ),
    );
    expect(real.map((m) => m.mountPoint)).toEqual(['/mnt/disk']);
  });

  it.each([
    ['proc', true],
    ['cgroup2', true],
    ['squashfs', true],
    ['overlay', false],
    ['tmpfs', false],
    ['ext4', false],
    ['nfs4', false],
  ])('%s is pseudo: %s', (type, pseudo) => {
    expect(isPseudoFilesystem(type)).toBe(pseudo);
  });

  it.each([
    ['/mnt/My\\040Games', '/mnt/My Games'],
    ['/a\\011b', '/a\tb'],
    ['/back\\134slash', '/back\\slash'],
    ['/plain', '/plain'],
  ])('decodes %s', (raw, decoded) => {
    expect(decodeMountField(raw)).toBe(decoded);
  });

  it('finds the mount holding a path by longest mount point, not by string prefix', () => {
    const mounts = parseMountinfo(MOUNTINFO);
    expect(mountFor('/var/lib/My Games/saves', mounts)?.deviceId).toBe('259:2');
    expect(mountFor('/var/lib/My Gamesx', mounts)?.deviceId).toBe('254:0');
    expect(mountFor('/dev/shm/x', mounts)?.deviceId).toBe('0:27');
    expect(mountFor('/', mounts)?.deviceId).toBe('254:0');
  });
});

describe('usageFromStatfs (df arithmetic)', () => {
  it.each([
    {
      name: 'root filesystem with reserved blocks',
      stats: {
        bsize: 4096,
        blocks: 66053021,
        bfree: 26718330,
        bavail: 20663952,
        files: 16777216,
        ffree: 16354229,
      },
      expected: { usedPercent: 65.6, inodesUsedPercent: 2.6 },
    },
    {
      name: 'full for users while root still has reserve',
      stats: { bsize: 4096, blocks: 1000, bfree: 50, bavail: 0, files: 100, ffree: 0 },
      expected: { usedPercent: 100, inodesUsedPercent: 100 },
    },
    {
      name: 'empty',
      stats: { bsize: 1024, blocks: 1000, bfree: 1000, bavail: 1000, files: 10, ffree: 10 },
      expected: { usedPercent: 0, inodesUsedPercent: 0 },
    },
    {
      name: 'no inode limit (btrfs reports 0)',
      stats: { bsize: 4096, blocks: 100, bfree: 50, bavail: 50, files: 0, ffree: 0 },
      expected: { usedPercent: 50, inodesUsedPercent: null },
    },
    {
      name: 'rounded up like df: 89.01 % is 89.1',
      stats: { bsize: 1, blocks: 10000, bfree: 1099, bavail: 1099, files: 10, ffree: 9 },
      expected: { usedPercent: 89.1, inodesUsedPercent: 10 },
    },
  ])('$name', ({ stats, expected }) => {
    const usage = usageFromStatfs(stats);
    expect({ usedPercent: usage.usedPercent, inodesUsedPercent: usage.inodesUsedPercent }).toEqual(expected);
    expect(usage.usedBytes).toBe((stats.blocks - stats.bfree) * stats.bsize);
    expect(usage.availableBytes).toBe(stats.bavail * stats.bsize);
  });
});

describe('mysqlFlavour', () => {
  it.each([
    ['10.11.19-MariaDB-0+deb12u1', '', 'MariaDB'],
    ['5.5.5-10.6.12-MariaDB', '', 'MariaDB'],
    ['11.4.2', 'mariadb.org binary distribution', 'MariaDB'],
    ['8.0.36', 'MySQL Community Server - GPL', 'MySQL'],
    ['8.4.0-percona', 'Percona Server (GPL)', 'MySQL'],
  ])('%s / %s is %s', (version, comment, flavour) => {
    expect(mysqlFlavour(version, comment)).toBe(flavour);
  });
});

describe('grantsIncludeProcess (SHOW GRANTS of the current user)', () => {
  it.each([
    {
      name: 'MariaDB, SELECT on the game schema only',
      grants: [
        "GRANT USAGE ON *.* TO `ro`@`%` IDENTIFIED BY PASSWORD '*D82'",
        'GRANT SELECT ON `gamedb`.* TO `ro`@`%`',
      ],
      expected: false,
    },
    {
      name: 'MariaDB, ALL PRIVILEGES',
      grants: [
        "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED BY PASSWORD '*DD' WITH GRANT OPTION",
      ],
      expected: true,
    },
    { name: 'old style, ALL', grants: ["GRANT ALL ON *.* TO 'root'@'localhost'"], expected: true },
    {
      name: 'MariaDB, PROCESS in a list',
      grants: ['GRANT SELECT, PROCESS ON *.* TO `monitor`@`%`'],
      expected: true,
    },
    {
      name: 'MySQL 8 lists global privileges one by one',
      grants: [
        'GRANT SELECT, RELOAD, PROCESS, REPLICATION CLIENT ON *.* TO `exporter`@`%`',
        'GRANT BACKUP_ADMIN,CONNECTION_ADMIN ON *.* TO `exporter`@`%`',
      ],
      expected: true,
    },
    {
      name: 'MariaDB, through the enabled role',
      grants: [
        'GRANT `monitor` TO `u`@`%`',
        'GRANT USAGE ON *.* TO `u`@`%`',
        'GRANT PROCESS ON *.* TO `monitor`',
        'SET DEFAULT ROLE `monitor` FOR `u`@`%`',
      ],
      expected: true,
    },
    {
      name: 'MySQL 8, role granted but not expanded',
      grants: ['GRANT USAGE ON *.* TO `u`@`%`', 'GRANT `monitor`@`%` TO `u`@`%`'],
      expected: false,
    },
    {
      name: 'PROCESS on one schema is not global (and is refused by servers anyway)',
      grants: ['GRANT SELECT, PROCESS ON `gamedb`.* TO `u`@`%`'],
      expected: false,
    },
    {
      name: 'ALL PRIVILEGES on one schema is not global',
      grants: ['GRANT ALL PRIVILEGES ON `gamedb`.* TO `u`@`%`'],
      expected: false,
    },
    {
      name: 'a privilege whose name contains PROCESS is not PROCESS',
      grants: ['GRANT PROCESS_ADMIN ON *.* TO `u`@`%`'],
      expected: false,
    },
    { name: 'lower case', grants: ['grant select, process on *.* to u@localhost'], expected: true },
    { name: 'nothing', grants: [], expected: false },
  ])('$name → $expected', ({ grants, expected }) => {
    expect(grantsIncludeProcess(grants)).toBe(expected);
  });
});

describe('describeError', () => {
  it('names socket errors in words', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(describeError(err)).toBe('connection refused (ECONNREFUSED)');
  });
  it('looks through fetch failed and AggregateError', () => {
    const inner = Object.assign(new Error(''), { code: 'EHOSTUNREACH' });
    expect(describeError(new TypeError('fetch failed', { cause: inner }))).toBe(
      'host unreachable (EHOSTUNREACH)',
    );
    expect(describeError(new AggregateError([new Error('first')], ''))).toBe('first');
  });
});
