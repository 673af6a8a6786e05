/**
 * Backup object storage: where the objects of backup sets live. Two implementations of one contract
 * ({@link ObjectStore} in ../types.ts): a local directory (the embedded default) and an S3-compatible
 * bucket. Both are checked by the same contract test suite (contract.test-suite.ts).
 *
 * Keys are made by gameops only, never taken from input, and every store checks them again with
 * {@link checkObjectKey} before touching anything.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../app/log.ts';
import type { StorageConfig } from '../../config/load.ts';
import { assertNever, errorMessage, GameopsError, InputError, type Clock } from '../../core/index.ts';
import type { Readable } from 'node:stream';
import type { ObjectInfo, ObjectStore, PutOptions, StoredObject } from '../types.ts';
import { FilesystemObjectStore } from './filesystem.ts';
import type { S3StoreOptions } from './s3.ts';

export { FilesystemObjectStore } from './filesystem.ts';
export type { S3StoreOptions } from './s3.ts';

type S3Config = Extract<StorageConfig, { kind: 's3' }>;

/** The longest key accepted (S3 allows 1024 bytes; the S3 prefix and filesystem root need room too). */
export const MAX_OBJECT_KEY_LENGTH = 900;

const SEGMENT = /^[A-Za-z0-9._-]+$/;
/** Segments starting with this are the filesystem store's temporary files, never objects. */
export const TEMP_PREFIX = '.tmp-';

/**
 * Checks an object key such as `bk-20261126T170500Z-3f9a2c/mysql/tables/gamedb.players.0001.sql.zst.age`:
 * segments of `A-Z a-z 0-9 . _ -` separated by `/`, no empty, `.` or `..` segment, no segment starting
 * with `.tmp-` (the filesystem store's temporary files), no leading or trailing `/`, at most 900
 * characters. Returns the key.
 *
 * @throws InputError naming the key and what is wrong with it.
 */
export function checkObjectKey(key: string): string {
  const problem = keyProblem(key);
  if (problem !== undefined) {
    throw new InputError(`bad backup object key ${JSON.stringify(key)}: ${problem}`);
  }
  return key;
}

function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'it is empty';
  if (key.length > MAX_OBJECT_KEY_LENGTH) {
    return `it has ${key.length} characters, at most ${MAX_OBJECT_KEY_LENGTH} are allowed`;
  }
  if (key.startsWith('/')) return 'it starts with "/" (keys are relative)';
  if (key.endsWith('/')) return 'it ends with "/"';
  for (const segment of key.split('/')) {
    if (segment === '') return 'it has an empty segment ("//")';
    if (segment === '.' || segment === '..') return `it has a "${segment}" segment`;
    if (!SEGMENT.test(segment)) {
      return `segment ${JSON.stringify(segment)} has characters other than A-Z a-z 0-9 . _ -`;
    }
    if (segment.startsWith(TEMP_PREFIX))
      return `segment ${JSON.stringify(segment)} starts with "${TEMP_PREFIX}"`;
  }
  return undefined;
}

/**
 * Checks a listing prefix: empty, or the start of a valid key (complete segments, each followed by `/`,
 * then possibly the start of one more segment), e.g. `bk-20261126T170500Z-3f9a2c/mysql/` or `bk-2026`.
 *
 * @throws InputError naming the prefix.
 */
export function checkObjectPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  const lastSlash = prefix.lastIndexOf('/');
  const dir = prefix.slice(0, lastSlash + 1);
  const rest = prefix.slice(lastSlash + 1);
  const problem =
    prefix.length > MAX_OBJECT_KEY_LENGTH
      ? `it has ${prefix.length} characters, at most ${MAX_OBJECT_KEY_LENGTH} are allowed`
      : dir !== ''
        ? keyProblem(dir.slice(0, -1))
        : undefined;
  if (problem !== undefined || (rest !== '' && !SEGMENT.test(rest))) {
    throw new InputError(
      `bad backup object prefix ${JSON.stringify(prefix)}: ${problem ?? 'it has characters other than A-Z a-z 0-9 . _ - /'}`,
    );
  }
  return prefix;
}

/** Options for {@link openObjectStore}. */
export interface OpenObjectStoreOptions extends S3StoreOptions {
  log?: Logger | undefined;
  /** For the S3 Object Lock retention date (default: the system clock). */
  clock?: Clock | undefined;
}

/**
 * Opens the object store that `backups.storage` describes: a directory (`kind: filesystem`) or an
 * S3-compatible bucket (`kind: s3`). Opening does no I/O; the first operation does (the filesystem
 * store creates its root directory, 0700, on the first put).
 *
 * @throws InputError when the S3 configuration is unusable (e.g. only one of the two access keys).
 */
export function openObjectStore(config: StorageConfig, options: OpenObjectStoreOptions = {}): ObjectStore {
  switch (config.kind) {
    case 'filesystem':
      return new FilesystemObjectStore(config.path);
    case 's3':
      return new LazyS3ObjectStore(config, options);
    default:
      return assertNever(config, 'storage kind');
  }
}

/** `s3://bucket/prefix (endpoint)`: how an S3 store names itself in messages. */
export function describeS3(config: S3Config): string {
  return `s3://${config.bucket}/${config.prefix} (${config.endpoint ?? `AWS S3 ${config.region}`})`;
}

/**
 * @throws InputError when only one of accessKeyId / secretAccessKey is set.
 */
export function checkS3Credentials(config: S3Config): void {
  if ((config.accessKeyId === undefined) !== (config.secretAccessKey === undefined)) {
    throw new InputError(
      'backups.storage: set both accessKeyId and secretAccessKey, or neither (then the AWS SDK credential chain is used)',
    );
  }
}

/**
 * The S3 store, with the AWS SDK (about 20 MB of a process's memory) loaded by the first operation
 * rather than by every command that can open a store: the config is checked at once, as the store's
 * constructor does.
 */
class LazyS3ObjectStore implements ObjectStore {
  readonly #config: S3Config;
  readonly #options: OpenObjectStoreOptions;
  #store: Promise<ObjectStore> | undefined;

  constructor(config: S3Config, options: OpenObjectStoreOptions) {
    checkS3Credentials(config);
    this.#config = config;
    this.#options = options;
  }

  #open(): Promise<ObjectStore> {
    this.#store ??= import('./s3.ts').then(
      ({ S3ObjectStore }) => new S3ObjectStore(this.#config, this.#options),
    );
    return this.#store;
  }

  describe(): string {
    return describeS3(this.#config);
  }

  async put(
    key: string,
    body: Readable | AsyncIterable<Uint8Array>,
    options?: PutOptions,
  ): Promise<StoredObject> {
    return (await this.#open()).put(key, body, options);
  }

  async get(key: string, options?: { signal?: AbortSignal | undefined }): Promise<Readable> {
    return (await this.#open()).get(key, options);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    return (await this.#open()).head(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    yield* (await this.#open()).list(prefix);
  }

  async delete(key: string): Promise<void> {
    return (await this.#open()).delete(key);
  }

  async discardIncomplete(prefix: string): Promise<number> {
    return (await this.#open()).discardIncomplete(prefix);
  }

  async close(): Promise<void> {
    // Never opened: there is no client to close (and no SDK to load for nothing).
    if (this.#store !== undefined) await (await this.#store).close();
  }
}

/**
 * Reads an object's body for a store: `chunks()` yields its bytes while counting them and hashing them
 * (SHA-256). An error of the body itself is recorded in `sourceError`, apart from errors that the
 * consumer injects when it gives up (a stream destroyed with an error throws it into the generator),
 * so a store can tell "the dump failed" from "the disk is full".
 */
export class MeasuredBody {
  readonly #body: AsyncIterable<Buffer | Uint8Array | string>;
  readonly #hash = createHash('sha256');
  #size = 0;
  #sourceError: { error: unknown } | undefined;
  #started = false;

  constructor(body: AsyncIterable<Uint8Array>) {
    this.#body = body;
  }

  async *chunks(): AsyncGenerator<Uint8Array> {
    this.#started = true;
    const iterator = this.#body[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        let step: IteratorResult<Buffer | Uint8Array | string>;
        try {
          step = await iterator.next();
        } catch (error) {
          finished = true; // A failed iterator is done; do not ask it to return.
          this.#sourceError ??= { error };
          throw error;
        }
        if (step.done === true) {
          finished = true;
          return;
        }
        const bytes = typeof step.value === 'string' ? Buffer.from(step.value) : step.value;
        this.#hash.update(bytes);
        this.#size += bytes.byteLength;
        yield bytes;
      }
    } finally {
      // The consumer stopped early (or threw into us): close the body (a Readable is destroyed).
      if (!finished) await iterator.return?.();
    }
  }

  /**
   * After a failure before the body was read at all: releases it (a Readable is destroyed, an iterator
   * asked to return), so whatever produces it stops instead of waiting on backpressure forever.
   */
  async discard(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const body = this.#body as { destroy?: unknown };
    if (typeof body.destroy === 'function') {
      (this.#body as unknown as { destroy(): void }).destroy();
      return;
    }
    await this.#body[Symbol.asyncIterator]().return?.();
  }

  get size(): number {
    return this.#size;
  }

  /** Hex SHA-256 of every byte yielded; call once, after the last chunk. */
  sha256(): string {
    return this.#hash.digest('hex');
  }

  /** The body's own error, when reading it failed. */
  get sourceError(): { error: unknown } | undefined {
    return this.#sourceError;
  }
}

/**
 * The error of a failed put, naming the storage and key: the abort reason when the signal fired, the
 * body's error when reading it failed (both keep their GameopsError code, else `internal`), or
 * `otherwise()` for errors of the storage itself.
 */
export function putFailure(
  where: string,
  body: MeasuredBody,
  signal: AbortSignal | undefined,
  otherwise: () => GameopsError,
): GameopsError {
  if (signal?.aborted === true) return wrapReason(`${where} was aborted`, signal.reason);
  const source = body.sourceError;
  if (source !== undefined) return wrapReason(`${where} failed: the source failed`, source.error);
  return otherwise();
}

function wrapReason(message: string, reason: unknown): GameopsError {
  const code = reason instanceof GameopsError ? reason.code : 'internal';
  return new GameopsError(code, `${message}: ${errorMessage(reason)}`, { cause: reason });
}
