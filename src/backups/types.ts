/**
 * The contracts of backups (runbook §5). A backup set is one id across components (MySQL, Redis, the
 * platform's config, files). Each component streams its objects through one pipeline
 * (dump → zstd → age → SHA-256 → storage); the set's manifest is written last. See ARCHITECTURE.md.
 *
 * Modules:
 * - storage/: where objects live (filesystem, S3-compatible), one contract for both.
 * - codec.ts: the object pipeline (compress, encrypt, hash) and its reverse (decrypt, decompress, check).
 * - components/: what each component dumps, restores and compares in a drill.
 * - retention.ts: which sets prune deletes (a pure function).
 * - service.ts: create, verify, drill, prune and restore, with the catalog in the store.
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../app/log.ts';
import type { Clock } from '../core/index.ts';

export const COMPONENT_KINDS = ['mysql', 'redis', 'kubernetes', 'files'] as const;
/** `kubernetes` is the platform's config: ConfigMaps and Secrets, or the game config file locally. */
export type ComponentKind = (typeof COMPONENT_KINDS)[number];

/** `bk-20261126T170500Z-3f9a2c`: the only shape of id accepted anywhere (never a path from input). */
export const BACKUP_ID_PATTERN = /^bk-\d{8}T\d{6}Z-[0-9a-f]{6}$/;

// ---------------------------------------------------------------------------------------------------
// Storage

export interface PutOptions {
  /** S3 storage class for this object (ignored by the filesystem). */
  storageClass?: string | undefined;
  signal?: AbortSignal | undefined;
}

/** An object as stored: its size and the SHA-256 of the stored (encrypted) bytes, hex. */
export interface StoredObject {
  key: string;
  size: number;
  sha256: string;
}

export interface ObjectInfo {
  key: string;
  size: number;
}

/**
 * Where backup objects live. Keys are made by gameops only (`<setId>/<component>/<name>`), checked by
 * `checkObjectKey`; no key is ever built from user input. Every method fails with a GameopsError whose
 * message names the storage and key (never a credential).
 */
export interface ObjectStore {
  /** `filesystem /var/backups/gameops` or `s3://bucket/prefix (endpoint)`. */
  describe(): string;
  /**
   * Streams `body` to `key`. Resolves with the size and SHA-256 of the bytes as stored, computed in the
   * stream. The object appears only once complete (filesystem: temp file, fsync, rename; S3: multipart
   * completion). On any failure, including a full disk or an aborted signal, nothing is left under
   * `key` (temp file removed, multipart upload aborted) and the promise rejects; the error's message
   * says "storage full" for ENOSPC / EntityTooLarge / quota errors.
   */
  put(key: string, body: Readable | AsyncIterable<Uint8Array>, options?: PutOptions): Promise<StoredObject>;
  /** The stored bytes. @throws NotFoundError naming the key when it does not exist. */
  get(key: string, options?: { signal?: AbortSignal | undefined }): Promise<Readable>;
  /** Size of an object, or undefined when it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Deletes one object; a missing one is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Removes what an interrupted put left under `prefix` (a set's own prefix, `<setId>/`): temporary
   * files and empty directories on the filesystem, unfinished multipart uploads on S3. Never an object.
   * @returns how many leftovers were removed
   */
  discardIncomplete(prefix: string): Promise<number>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------
// Objects and progress

/** One object of a component, as listed in the manifest. */
export interface ObjectRecord {
  /** Within the component, e.g. `tables/gamedb.players.0001.sql` or `dump.rdb`. */
  name: string;
  /** The storage key: `<setId>/<component>/<name>.zst.age`. */
  key: string;
  /** Stored (compressed, encrypted) bytes. */
  size: number;
  /** SHA-256 of the stored bytes, hex. */
  sha256: string;
  /** Bytes before compression and encryption. */
  plainSize: number;
  /** SHA-256 of the bytes before compression and encryption, hex. */
  plainSha256: string;
  storageClass?: string | undefined;
}

/** Bytes, rate and ETA of one phase (dump, upload, download, restore), shown by the CLI and the API. */
export interface Progress {
  /** Starts a phase; `totalBytes` when known (downloads, restores) gives an ETA. */
  phase(name: string, totalBytes?: number): void;
  add(bytes: number): void;
  /** A one-line note for the operator, e.g. `gamedb.players: 1.2M rows`. */
  note(text: string): void;
}

/** A Progress that records nothing. */
export const silentProgress: Progress = {
  phase() {},
  add() {},
  note() {},
};

/** Writes one object through the pipeline; bytes are the component's plain dump. */
export interface ObjectWriter {
  /** Resolves once the pipeline accepted the chunk (backpressure). */
  write(chunk: Uint8Array): Promise<void>;
  /** Flushes, uploads and resolves with the record; the object exists only after this. */
  end(): Promise<ObjectRecord>;
  /** Abandons the object: nothing of it is left in storage. */
  abort(reason: Error): Promise<void>;
}

/** What a component's backup gets from the service. */
export interface ComponentWriteContext {
  setId: string;
  /** Opens a new object of this component. Names are unique within the component. */
  open(name: string): ObjectWriter;
  /** Writes a whole object from a stream. */
  write(name: string, source: Readable | AsyncIterable<Uint8Array>): Promise<ObjectRecord>;
  signal: AbortSignal;
  progress: Progress;
  clock: Clock;
  log: Logger;
  /** A private (0700) directory for small files such as a MySQL defaults file; removed afterwards. */
  tempDir: string;
}

/** What a component's restore or drill gets from the service. */
export interface ComponentReadContext {
  setId: string;
  /** The component's objects, from the manifest, in the order they were written. */
  objects: readonly ObjectRecord[];
  /**
   * The plain bytes of one object: downloaded, decrypted, decompressed. The stream errors (naming the
   * object) when the stored bytes' size or SHA-256, or the plain bytes', differ from the record.
   */
  read(name: string): Readable;
  signal: AbortSignal;
  progress: Progress;
  clock: Clock;
  log: Logger;
  /** A private (0700) directory for scratch files; removed afterwards. */
  tempDir: string;
}

/** What a component's backup returns; it becomes the component's entry in the manifest. */
export interface ComponentBackup {
  /** The dump tool, e.g. `{ name: 'mariadb-dump', version: '10.11.19-MariaDB' }`. */
  tool: { name: string; version: string };
  /** Where the snapshot was taken: binlog file and position, GTID, replication offset... (null when unknown). */
  source: Record<string, string | number | null>;
  /** Component-specific numbers a drill compares with: row counts and checksums, key counts, file hashes. */
  verification: unknown;
  /** Things the operator should know, e.g. which columns are compared with a tolerance. */
  notes: string[];
}

/** One comparison of a drill. */
export interface DrillCheck {
  /** e.g. `gamedb.players rows`, `db0 keys`, `files /srv/game/config.yaml`. */
  subject: string;
  expected: string;
  actual: string;
  ok: boolean;
  note?: string | undefined;
}

export interface ComponentDrill {
  component: ComponentKind;
  ok: boolean;
  checks: DrillCheck[];
  notes: string[];
  /** Bytes restored into the scratch copy. */
  bytes: number;
  durationMs: number;
}

// ---------------------------------------------------------------------------------------------------
// The manifest

export interface ManifestComponent extends ComponentBackup {
  kind: ComponentKind;
  startedAt: string;
  completedAt: string;
  objects: ObjectRecord[];
}

/** Written last, as `<setId>/manifest.json`; a set without it is never complete. */
export interface Manifest {
  format: 'gameops-backup/1';
  id: string;
  service: string;
  environment: string;
  createdAt: string;
  completedAt: string;
  gameopsVersion: string;
  encryption: { kind: 'age'; recipients: string[] };
  compression: { kind: 'zstd'; level: number };
  components: ManifestComponent[];
}
