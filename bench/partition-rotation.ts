/**
 * Benchmark of partition rotation (issue #7, "Performance"): a `game_logs` partition of
 * GAMEOPS_BENCH_PARTITION_ROWS rows (default 100,000) on a MariaDB started by the test harness, rotated
 * by gameops (export in one snapshot to filesystem storage with zstd + age + SHA-256, read back and
 * compared, re-counted, dropped), beside baselines on the same partition in the same run:
 *   - `SELECT COUNT(*)` of the partition;
 *   - a plain streaming `SELECT *` of the partition through the same driver, NDJSON to nowhere (no
 *     checksum, no compression, no encryption);
 *   - `mariadb-dump --where` of the partition's range to a file (credentials in a 0600 option file).
 * Figures only: nothing here passes or fails a build.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import mysql from 'mysql2';
import { loadIdentities } from '../src/backups/keys.ts';
import { openObjectStore } from '../src/backups/storage/index.ts';
import { parseConfigText, readEnv } from '../src/config/index.ts';
import { connectMysql } from '../src/connectors/mysql.ts';
import { secret, systemClock } from '../src/core/index.ts';
import { rotatePartition } from '../src/maintenance/db/archive.ts';
import { liveTable } from '../src/maintenance/db/execute.ts';

const MIB = 1024 * 1024;

function which(...names: string[]): string {
  for (const name of names) {
    const found = spawnSync('bash', ['-c', 'command -v "$1"', 'which', name], { encoding: 'utf8' });
    if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  }
  throw new Error(`none of ${names.join(', ')} is installed (the MariaDB client package provides them)`);
}

const ms = (t: number): string => `${t.toFixed(0)} ms`;
const rate = (rows: number, t: number): string =>
  `${Math.round(rows / (t / 1000)).toLocaleString('en')} rows/s`;
const mib = (b: number): string => `${(b / MIB).toFixed(2)} MiB`;

async function main(): Promise<void> {
  const rowsWanted = Number(process.env.GAMEOPS_BENCH_PARTITION_ROWS ?? 100_000);
  if (!(rowsWanted > 0)) throw new Error('GAMEOPS_BENCH_PARTITION_ROWS must be a positive number');
  const { ensurePackages } = await import('../test/harness/packages.ts');
  const { startMariaDB } = await import('../test/harness/servers.ts');
  await ensurePackages();
  const dump = which('mariadb-dump', 'mysqldump');
  const dir = mkdtempSync(join(tmpdir(), 'gameops-bench-rotation-'));
  const server = await startMariaDB({
    extraArgs: ['--innodb-buffer-pool-size=256M', '--innodb-flush-log-at-trx-commit=0'],
  });
  try {
    const config = parseConfigText(
      JSON.stringify({
        service: { name: 'bench', environment: 'bench' },
        mysql: {
          host: server.host,
          port: server.port,
          user: server.user,
          password: 'env:P',
          database: 'gamedb',
        },
      }),
      'bench.yaml',
      readEnv({ P: server.password }),
    ).config.mysql!;
    const client = await connectMysql(config, { queryTimeoutMs: 600_000 });
    try {
      console.log(`partition rotation benchmark: ${rowsWanted.toLocaleString('en')} rows in one partition`);
      console.log(
        `  ${cpus().length} CPU(s), load ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}; MariaDB ${(await client.serverVersion()).version}`,
      );
      await client.query(
        `CREATE TABLE game_logs (
           id BIGINT NOT NULL AUTO_INCREMENT, created_at DATETIME NOT NULL, player_id INT NOT NULL,
           event VARCHAR(32) NOT NULL, detail VARCHAR(255) NULL, amount DECIMAL(12,2) NULL,
           PRIMARY KEY (id, created_at), KEY (player_id)
         ) ENGINE=InnoDB PARTITION BY RANGE (TO_DAYS(created_at)) (
           PARTITION p_2025_01 VALUES LESS THAN (TO_DAYS('2025-02-01')),
           PARTITION p_2025_02 VALUES LESS THAN (TO_DAYS('2025-03-01')),
           PARTITION pmax VALUES LESS THAN MAXVALUE)`,
      );
      const loadStart = performance.now();
      for (let done = 0; done < rowsWanted; done += 50_000) {
        const n = Math.min(50_000, rowsWanted - done);
        await client.query(
          `INSERT INTO game_logs (created_at, player_id, event, detail, amount)
           SELECT '2025-01-01' + INTERVAL (seq % 2678400) SECOND, seq % 5000,
                  ELT(1 + seq % 4, 'login', 'logout', 'trade', 'quest_complete'),
                  CONCAT('{"zone":"zone-', seq % 40, '","item":', seq % 977, ',"session":"', MD5(seq), '"}'),
                  IF(seq % 3 = 0, NULL, (seq % 100000) / 100)
             FROM seq_1_to_${n}`,
        );
      }
      await client.query(
        `INSERT INTO game_logs (created_at, player_id, event) VALUES ('2025-02-10', 1, 'login')`,
      );
      console.log(`  loaded in ${ms(performance.now() - loadStart)}`);

      // Baselines on the same partition.
      let t = performance.now();
      const counted = Number(
        (await client.query('SELECT COUNT(*) AS n FROM game_logs PARTITION (p_2025_01)'))[0]!['n'],
      );
      const countMs = performance.now() - t;

      t = performance.now();
      const raw = mysql.createConnection({
        host: server.host,
        port: server.port,
        user: server.user,
        password: server.password,
        database: 'gamedb',
        dateStrings: true,
        supportBigNumbers: true,
        bigNumberStrings: true,
      });
      let plainBytes = 0;
      let streamed = 0;
      await pipeline(
        raw.query('SELECT * FROM game_logs PARTITION (p_2025_01)').stream(),
        new Writable({
          objectMode: true,
          write(row: unknown, _e, cb) {
            streamed += 1;
            plainBytes += Buffer.byteLength(`${JSON.stringify(row)}\n`);
            cb();
          },
        }),
      );
      raw.end();
      const selectMs = performance.now() - t;

      const cnf = join(dir, 'client.cnf');
      writeFileSync(
        cnf,
        `[client]\nhost=${server.host}\nport=${server.port}\nuser=${server.user}\npassword="${server.password}"\n`,
        {
          mode: 0o600,
        },
      );
      const dumpFile = join(dir, 'p_2025_01.sql');
      t = performance.now();
      const child = spawn(
        dump,
        [
          `--defaults-extra-file=${cnf}`,
          '--single-transaction',
          '--no-create-info',
          "--where=created_at < '2025-02-01'",
          'gamedb',
          'game_logs',
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const out = createWriteStream(dumpFile);
      child.stdout.pipe(out);
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      await finished(out);
      const dumpMs = performance.now() - t;
      if (code !== 0) throw new Error(`${dump} exited with ${code}`);

      // gameops: archive → verify → drop.
      const identity = await generateIdentity();
      const keyFile = join(dir, 'key.txt');
      writeFileSync(keyFile, `${identity}\n`, { mode: 0o600 });
      const storage = {
        store: openObjectStore({ kind: 'filesystem', path: join(dir, 'store') }),
        recipients: [await identityToRecipient(identity)],
        identities: await loadIdentities(secret(identity, `file:${keyFile}`)),
        level: 3,
        prefix: 'archives/bench/bench',
      };
      const info = await liveTable(
        client,
        { database: 'gamedb', table: 'game_logs' },
        AbortSignal.timeout(60_000),
      );
      t = performance.now();
      const result = await rotatePartition(
        client,
        info,
        { partition: 'p_2025_01' },
        {
          storage,
          clock: systemClock,
          signal: AbortSignal.timeout(3_600_000),
          log: () => undefined,
        },
      );
      const totalMs = performance.now() - t;
      const a = result.archive;
      const after = await client.query(
        "SELECT COUNT(*) AS n FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = 'gamedb' AND TABLE_NAME = 'game_logs' AND PARTITION_NAME = 'p_2025_01'",
      );

      console.log('');
      console.log('  baselines (same partition, same run)');
      console.log(
        `    SELECT COUNT(*)                    ${ms(countMs).padStart(9)}   ${counted.toLocaleString('en')} rows`,
      );
      console.log(
        `    streaming SELECT * → NDJSON, no crypto ${ms(selectMs).padStart(5)}   ${rate(streamed, selectMs)}, ${mib(plainBytes)} NDJSON`,
      );
      console.log(
        `    ${dump.split('/').pop()} --where (to a file)  ${ms(dumpMs).padStart(9)}   ${mib(statSync(dumpFile).size)} SQL`,
      );
      console.log('  gameops rotation (archive → verify → drop)');
      console.log(
        `    export (swap out, count+checksum, pages, zstd+age)  ${ms(a.exportMs).padStart(7)}   ${rate(a.rows, a.exportMs)}; ${mib(a.plainBytes)} plain → ${mib(a.storedBytes)} stored (${((100 * a.storedBytes) / a.plainBytes).toFixed(1)} %)`,
      );
      console.log(
        `    verify (read back, decrypt, count, checksum)        ${ms(result.verifyMs).padStart(7)}   ${rate(a.rows, result.verifyMs)}`,
      );
      console.log(`    drop (lock, still empty, DROP PARTITION, staging)   ${ms(result.dropMs).padStart(7)}`);
      console.log(
        `    total                                               ${ms(totalMs).padStart(7)}   ${a.rows.toLocaleString('en')} rows; dropped: ${Number(after[0]!['n']) === 0}`,
      );
      if (a.rows !== counted) {
        console.log(`  MISMATCH: ${a.rows} archived, ${counted} counted`);
        process.exitCode = 1;
      }
      await storage.store.close();
    } finally {
      await client.close();
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
