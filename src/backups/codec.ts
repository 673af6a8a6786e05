/**
 * The object pipeline of backups and its reverse.
 *
 * Writing: plain bytes → SHA-256 and size of the plain bytes → zstd (Node's zlib) → age (X25519
 * recipients; the standard `age -d` decrypts) → {@link ObjectStore.put}, which computes the size and
 * SHA-256 of the stored bytes. Reading: get → size and SHA-256 of the stored bytes → age → zstd → size
 * and SHA-256 of the plain bytes. Everything streams with backpressure: memory stays bounded by a few
 * buffers (age works in 64 KiB chunks) whatever the object's size.
 *
 * Errors name the object's key and what differed; a wrong key names the key's source and public key.
 */
import { createHash } from 'node:crypto';
import { PassThrough, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createZstdCompress, createZstdDecompress } from 'node:zlib';
import { Decrypter, Encrypter } from 'age-encryption';
import { ErrorCode, errorMessage, GameopsError, InputError } from '../core/index.ts';
import { wrongKeyMessage, type AgeIdentities } from './keys.ts';
import {
  silentProgress,
  type ObjectRecord,
  type ObjectStore,
  type ObjectWriter,
  type Progress,
} from './types.ts';

/** What {@link openObjectWriter} needs to write one object. */
export interface ObjectWriteArgs {
  /** The storage key, `<setId>/<component>/<name>.zst.age`. */
  key: string;
  /** The name within the component, recorded in the manifest. */
  name: string;
  /** age X25519 recipients (`age1...`), from the config; checked by `checkRecipients`. */
  recipients: readonly string[];
  /** zstd level, 1 to 19. */
  level: number;
  storageClass?: string | undefined;
  signal: AbortSignal;
  /** Plain bytes are added as they are written. */
  progress: Progress;
}

/**
 * A web stream of a Node stream that holds at most a few chunks: without a strategy, `Readable.toWeb`
 * counts chunks against the Node stream's byte high-water mark (16384 chunks) and reads ahead without
 * bound.
 */
function toWeb(stream: Readable): ReadableStream<Uint8Array> {
  return Readable.toWeb(stream, {
    strategy: new ByteLengthQueuingStrategy({ highWaterMark: 256 * 1024 }),
  });
}

/** An error about one stored object: its key, then what is wrong. */
function objectError(key: string, what: string, cause?: unknown): GameopsError {
  return new GameopsError(ErrorCode.internal, `backup object ${key}: ${what}`, {
    cause,
    details: { key },
  });
}

function abortReason(signal: AbortSignal, key: string): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : objectError(key, 'aborted');
}

/**
 * Opens one object for writing through the pipeline. Chunks written are hashed, counted, compressed,
 * encrypted and streamed to the store as they come; `write` resolves once the pipeline accepted the
 * chunk, so a fast producer waits for the store. `end` resolves with the manifest record once the store
 * has the whole object; `abort` (or the signal) makes the store drop it.
 *
 * @throws InputError (from `write`/`end`) when a recipient is not an age recipient; the store's error
 *   (naming the storage and key, "storage full" when it is) when the upload fails; the abort reason
 *   when aborted.
 */
export function openObjectWriter(store: ObjectStore, args: ObjectWriteArgs): ObjectWriter {
  const { key } = args;
  const plainHash = createHash('sha256');
  let plainSize = 0;
  let failure: Error | undefined;
  let state: 'open' | 'ending' | 'done' = 'open';

  const zstd = createZstdCompress({
    params: {
      [zlibConstants.ZSTD_c_compressionLevel]: args.level,
      // A checksum in the zstd frame: `zstd -d` checks the content too.
      [zlibConstants.ZSTD_c_checksumFlag]: 1,
    },
  });
  const cancel = new AbortController();
  const signal = AbortSignal.any([args.signal, cancel.signal]);

  const encrypter = new Encrypter();
  let recipientError: Error | undefined;
  for (const recipient of args.recipients) {
    try {
      encrypter.addRecipient(recipient);
    } catch {
      recipientError ??= new InputError(`age recipient ${JSON.stringify(recipient)} is not an age recipient`);
    }
  }
  if (args.recipients.length === 0) recipientError = new InputError(`no age recipient to encrypt ${key} to`);

  async function* encrypted(): AsyncGenerator<Uint8Array> {
    if (recipientError !== undefined) throw recipientError;
    const web = await encrypter.encrypt(toWeb(zstd));
    // Node's web ReadableStream is async iterable; the DOM typing is not.
    yield* web as unknown as AsyncIterable<Uint8Array>;
  }

  const fail = (err: Error): void => {
    failure ??= err;
    if (!zstd.destroyed) zstd.destroy(failure);
    cancel.abort(failure);
  };
  const onAbort = (): void => fail(abortReason(args.signal, key));
  if (args.signal.aborted) onAbort();
  else args.signal.addEventListener('abort', onAbort, { once: true });
  if (recipientError !== undefined) fail(recipientError);

  const put = store.put(key, encrypted(), { storageClass: args.storageClass, signal });
  // The failure is reported by write/end/abort; this keeps it from being an unhandled rejection meanwhile.
  const settled = put.then(
    (stored) => stored,
    (err: unknown) => {
      const error = err instanceof Error ? err : new Error(String(err));
      // The store's error names the storage and the key; an abort keeps its own reason.
      fail(failure ?? error);
      throw failure ?? error;
    },
  );
  settled.catch(() => {});
  zstd.on('error', (err) =>
    fail(failure ?? objectError(key, `zstd compression failed: ${err.message}`, err)),
  );

  const throwIfFailed = (): void => {
    if (failure !== undefined) throw failure;
  };
  const waitForDrain = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (): void => {
        zstd.off('drain', onDrain);
        zstd.off('close', onClose);
      };
      const onDrain = (): void => {
        done();
        resolve();
      };
      const onClose = (): void => {
        done();
        reject(failure ?? objectError(key, 'the pipeline closed'));
      };
      zstd.on('drain', onDrain);
      zstd.on('close', onClose);
    });

  return {
    async write(chunk: Uint8Array): Promise<void> {
      if (failure !== undefined) throw failure;
      if (state !== 'open') throw objectError(key, 'write after end');
      if (chunk.length === 0) return;
      plainHash.update(chunk);
      plainSize += chunk.length;
      args.progress.add(chunk.length);
      if (!zstd.write(chunk)) await waitForDrain();
      throwIfFailed();
    },

    async end(): Promise<ObjectRecord> {
      if (failure !== undefined) throw failure;
      if (state !== 'open') throw objectError(key, 'end called twice');
      state = 'ending';
      zstd.end();
      try {
        const stored = await settled;
        return {
          name: args.name,
          key,
          size: stored.size,
          sha256: stored.sha256,
          plainSize,
          plainSha256: plainHash.digest('hex'),
          storageClass: args.storageClass,
        };
      } finally {
        state = 'done';
        args.signal.removeEventListener('abort', onAbort);
      }
    },

    async abort(reason: Error): Promise<void> {
      args.signal.removeEventListener('abort', onAbort);
      if (state === 'done' && failure === undefined) {
        // Already stored: abandoning it means deleting it.
        await store.delete(key);
        return;
      }
      fail(reason);
      await settled.then(
        () => store.delete(key),
        () => undefined,
      );
      state = 'done';
    },
  };
}

/**
 * Writes a whole object from `source` through the pipeline (see {@link openObjectWriter}).
 *
 * @throws the source's error, the store's error or the abort reason; nothing is left stored then.
 */
export async function writeObject(
  store: ObjectStore,
  args: ObjectWriteArgs,
  source: Readable | AsyncIterable<Uint8Array>,
): Promise<ObjectRecord> {
  const writer = openObjectWriter(store, args);
  try {
    for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
      await writer.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    }
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    await writer.abort(error);
    throw error;
  }
  return await writer.end();
}

/** Counts and hashes bytes as they pass; fails at the end (or as soon as there are too many). */
class CheckingStream extends Transform {
  readonly #hash = createHash('sha256');
  #size = 0;
  #ok = false;
  readonly expectedSize: number;
  readonly expectedSha256: string;
  readonly fault: (what: string) => Error;
  readonly label: string;
  readonly onBytes: (n: number) => void;
  constructor(
    expectedSize: number,
    expectedSha256: string,
    fault: (what: string) => Error,
    label: string,
    onBytes: (n: number) => void,
  ) {
    super();
    this.expectedSize = expectedSize;
    this.expectedSha256 = expectedSha256;
    this.fault = fault;
    this.label = label;
    this.onBytes = onBytes;
  }
  /** True once every byte was seen and matched. */
  get ok(): boolean {
    return this.#ok;
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    if (this.#size > this.expectedSize) {
      callback(this.fault(`${this.label} size is more than ${this.expectedSize} bytes, the manifest's size`));
      return;
    }
    this.#hash.update(chunk);
    this.onBytes(chunk.length);
    callback(null, chunk);
  }
  override _flush(callback: TransformCallback): void {
    if (this.#size !== this.expectedSize) {
      callback(
        this.fault(`${this.label} size ${this.#size} ≠ ${this.expectedSize} in the manifest (truncated)`),
      );
      return;
    }
    if (this.#hash.digest('hex') !== this.expectedSha256) {
      callback(this.fault(`${this.label} SHA-256 differs from the manifest`));
      return;
    }
    this.#ok = true;
    callback();
  }
}

/**
 * Reads the stored bytes again only to tell whether they match the record: the cause to report when
 * decryption or decompression failed before the stored bytes' own check could finish.
 */
async function storedDifference(
  store: ObjectStore,
  record: ObjectRecord,
  signal: AbortSignal,
): Promise<Error | undefined> {
  try {
    const stored = await store.get(record.key, { signal });
    const check = new CheckingStream(
      record.size,
      record.sha256,
      (what) => objectError(record.key, what),
      'stored',
      () => {},
    );
    await pipeline(stored, check, new Writable({ write: (_c, _e, cb) => cb() }), { signal });
    return undefined;
  } catch (err) {
    return err instanceof GameopsError && err.details?.key === record.key ? err : undefined;
  }
}

const NO_IDENTITY = /no identity matched/i;

/**
 * The plain bytes of a stored object: downloaded, checked against the record's stored size and
 * SHA-256, decrypted with `ids`, decompressed, and checked against the plain size and SHA-256. Stored
 * bytes are added to `progress` as they are downloaded (the record's `size` is the total).
 *
 * The returned stream errors instead of ending when anything differs, with a GameopsError naming the
 * key and what differed (`stored SHA-256 differs from the manifest`, `stored size 123 ≠ 456 ...`,
 * `cannot decrypt: ...`, `not zstd data ...`), an InputError naming the key's source and public key
 * when the object is not encrypted to it, the store's NotFoundError for a missing object, or the abort
 * reason. Bytes already read before an error must be discarded by the caller.
 */
export function readObject(
  store: ObjectStore,
  record: ObjectRecord,
  ids: AgeIdentities,
  signal: AbortSignal,
  progress: Progress = silentProgress,
): Readable {
  const { key } = record;
  const out = new PassThrough();
  const streams: Array<Readable | Writable> = [];
  let finished = false;
  const destroyAll = (err: Error): void => {
    for (const s of streams) if (!s.destroyed) s.destroy(err);
  };
  // A consumer that stops reading, or the signal, tears the pipeline down.
  const onAbort = (): void => destroyAll(abortReason(signal, key));
  signal.addEventListener('abort', onAbort, { once: true });
  out.on('close', () => {
    signal.removeEventListener('abort', onAbort);
    if (!finished) destroyAll(objectError(key, 'reading stopped'));
  });

  const explain = async (err: unknown, storedCheck: CheckingStream | undefined): Promise<Error> => {
    if (signal.aborted) return abortReason(signal, key);
    // Already about this object (a size or hash that differs, a missing object...): as it is.
    if (err instanceof GameopsError) return err;
    // A damaged object fails decryption before its stored bytes are all seen; the damage is the cause.
    if (storedCheck?.ok !== true) {
      const damage = await storedDifference(store, record, signal);
      if (damage !== undefined) return damage;
    }
    const message = errorMessage(err);
    if (NO_IDENTITY.test(message)) return new InputError(wrongKeyMessage(ids, `backup object ${key}`));
    if (stageOf.get(err as object) === 'decompress') {
      return objectError(key, `not zstd data or damaged zstd data: ${message}`, err);
    }
    return objectError(key, `cannot decrypt: ${message}`, err);
  };
  const stageOf = new WeakMap<object, 'decrypt' | 'decompress'>();
  const tag = (stream: Readable | Writable, stage: 'decrypt' | 'decompress'): void => {
    stream.on('error', (err) => {
      if (!stageOf.has(err)) stageOf.set(err, stage);
    });
  };

  const run = async (): Promise<void> => {
    let storedCheck: CheckingStream | undefined;
    try {
      if (signal.aborted) throw abortReason(signal, key);
      const stored = await store.get(key, { signal });
      streams.push(stored);
      storedCheck = new CheckingStream(
        record.size,
        record.sha256,
        (what) => objectError(key, what),
        'stored',
        (n) => progress.add(n),
      );
      streams.push(storedCheck);
      const decrypter = new Decrypter();
      for (const identity of ids.identities) decrypter.addIdentity(identity);
      const storedWeb = toWeb(stored.pipe(storedCheck));
      stored.on('error', (err) => storedCheck?.destroy(err));
      const plainWeb = await decrypter.decrypt(storedWeb);
      const decrypted = Readable.fromWeb(plainWeb);
      const decompress = createZstdDecompress();
      const plainCheck = new CheckingStream(
        record.plainSize,
        record.plainSha256,
        (what) => objectError(key, what),
        'plain',
        () => {},
      );
      streams.push(decrypted, decompress, plainCheck);
      tag(decrypted, 'decrypt');
      tag(decompress, 'decompress');
      plainCheck.pipe(out);
      await pipeline(decrypted, decompress, plainCheck, { signal });
      finished = true;
    } catch (err) {
      const error = await explain(err, storedCheck);
      finished = true;
      destroyAll(error);
      out.destroy(error);
    }
  };
  run().catch((err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))));
  return out;
}

/**
 * Reads a whole object through {@link readObject}, discarding the bytes: checks the stored size and
 * SHA-256, that it decrypts with `ids` and decompresses, and the plain size and SHA-256.
 *
 * @throws as {@link readObject}'s stream errors: naming the key and what differed.
 */
export async function verifyObject(
  store: ObjectStore,
  record: ObjectRecord,
  ids: AgeIdentities,
  signal: AbortSignal,
  progress?: Progress,
): Promise<void> {
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  await pipeline(readObject(store, record, ids, signal, progress), sink);
}
