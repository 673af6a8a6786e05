import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { bootstrap, type BootstrapOptions, type Resources } from '../../src/app/index.ts';

/** An age key pair for test backups. */
export interface BackupKey {
  identity: string;
  recipient: string;
}

/** A fresh age X25519 identity and its recipient. */
export async function backupKey(): Promise<BackupKey> {
  const identity = await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

/**
 * Writes `key`'s identity to `<dir>/backup.key` (0600) and returns the `backups:` section of a
 * gameops.yaml as lines: filesystem storage at `storage`, encryption to the key (its identity as a
 * `file:` secret), the files of `files`, then `extra` (already indented under `backups:`).
 */
export function backupsSection(
  dir: string,
  key: BackupKey,
  options: { storage?: string; files?: string[]; extra?: string[] } = {},
): string[] {
  const keyFile = join(dir, 'backup.key');
  writeFileSync(keyFile, `${key.identity}\n`, { mode: 0o600 });
  return [
    'backups:',
    `  storage: { kind: filesystem, path: ${options.storage ?? join(dir, 'store')} }`,
    `  encryption: { recipients: [${key.recipient}], identity: "file:${keyFile}" }`,
    `  files: { paths: [${(options.files ?? [join(dir, 'game')]).join(', ')}] }`,
    ...(options.extra ?? []),
  ];
}

/**
 * Writes `<dir>/gameops.yaml` (service test-game/test, the store in `<dir>/data`, then `lines`) and
 * bootstraps it with the store required and logging silent (`options` add to or override that).
 */
export async function bootstrapIn(
  dir: string,
  lines: string[],
  options: Partial<Omit<BootstrapOptions, 'configPath'>> = {},
): Promise<Resources> {
  const configPath = join(dir, 'gameops.yaml');
  writeFileSync(
    configPath,
    [
      'service: { name: test-game, environment: test }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      ...lines,
      '',
    ].join('\n'),
  );
  return bootstrap({ configPath, store: 'required', logLevel: 'silent', ...options });
}
