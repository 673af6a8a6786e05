/**
 * Helpers for the database-maintenance tests on the harness's MariaDB: statements on the config's server,
 * row counts and partitions read from it, the archive storage of the config's backups, and the files an
 * object store wrote.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadIdentities } from '../../backups/keys.ts';
import { openObjectStore } from '../../backups/storage/index.ts';
import type { GameopsConfig } from '../../config/index.ts';
import { withMysql } from '../../connectors/mysql.ts';
import type { ArchiveStorage } from './archive.ts';

/** Runs one statement on `config.mysql` (a connection of its own). */
export async function sqlOn<T = Record<string, unknown>>(
  config: GameopsConfig,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return withMysql(config.mysql!, undefined, (c) => c.query(text, params, { timeoutMs: 60_000 })) as Promise<
    T[]
  >;
}

/** Rows of `table` (of the config's database), or of one of its partitions. */
export async function countRows(config: GameopsConfig, table: string, partition?: string): Promise<number> {
  const rows = await sqlOn(
    config,
    `SELECT COUNT(*) AS n FROM \`${table}\`${partition ? ` PARTITION (${partition})` : ''}`,
  );
  return Number(rows[0]!['n']);
}

/** The partitions of `database`.`table`, in order. */
export async function partitionNames(
  config: GameopsConfig,
  database: string,
  table: string,
): Promise<string[]> {
  const rows = await sqlOn(
    config,
    'SELECT PARTITION_NAME AS p FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY PARTITION_ORDINAL_POSITION',
    [database, table],
  );
  return rows.map((r) => String(r['p']));
}

/** Archive storage on the config's backups (store, age keys), archives under `prefix`. */
export async function archiveStorageOf(config: GameopsConfig, prefix: string): Promise<ArchiveStorage> {
  const backups = config.backups!;
  return {
    store: openObjectStore(backups.storage),
    recipients: backups.encryption.recipients,
    identities: await loadIdentities(backups.encryption.identity),
    level: 3,
    prefix,
  };
}

/** Every file below `root` (full paths); none when it does not exist. */
export function filesUnder(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(root);
  return out;
}
