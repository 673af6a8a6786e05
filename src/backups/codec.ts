/**
 * The object pipeline of backups and its reverse.
 *
 * Writing: plain bytes → SHA-256 and size of the plain bytes → zstd (Node's zlib) → age (X25519
 * recipients; the standard `age -d` decrypts) → {@link ObjectStore.put}, which computes the size and
 * SHA-256 of the stored bytes. Reading: get → size and SHA-256 of the stored bytes → age → zstd → size
 * and SHA-256 of the plain bytes. Everything streams with backpressure: memory stays bounded by a few
 * buffers (age works in 64 KiB chunks) whatever the object's size.
 *
 * age: the header (recipient stanzas wrapping a random file key, and its HMAC) is made and checked by
 * the `age-encryption` library; the payload (age's STREAM: ChaCha20-Poly1305 over 64 KiB chunks, keyed by
 * HKDF-SHA256 of the file key and a random nonce) is encrypted here with Node's OpenSSL ChaCha20-Poly1305,
 * several times faster than the library's JavaScript cipher. The format is age v1 exactly: the standard
 * `age` tool decrypts what this writes and this reads what `age -r` writes (both tested).
 *
 * Errors name the object's key and what differed; a wrong key names the key's source and public key.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import {
  PassThrough,
  pipeline as pipelineCallback,
  Transform,
  Writable,
  type Readable,
  type TransformCallback,
} from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createZstdCompress, createZstdDecompress } from 'node:zlib';
import { Decrypter, Encrypter } from 'age-encryption';
import { ErrorCode, errorMessage, GameopsError, InputError } from '../core/index.ts';
import { streamed } from './garbage.ts';
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

const ZSTD_CHUNK = 256 * 1024;
/** zstd's minimum match length at levels 3 and 4 (their default is 5). */
const ZSTD_MIN_MATCH = 6;
const AGE_CHUNK = 64 * 1024;
const AGE_TAG = 16;
const AGE_NONCE = 16;
/** A header larger than this is not a backup object's (one stanza per recipient, ~120 bytes each). */
const MAX_AGE_HEADER = 64 * 1024;

/** age's payload key: HKDF-SHA256 of the file key, salted with the payload nonce, info "payload". */
function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
}

/** STREAM nonce of chunk `counter`: 11-byte big-endian counter, then 1 for the last chunk. */
function chunkNonce(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(Math.floor(counter / 2 ** 40), 0, 6);
  nonce.writeUIntBE(counter % 2 ** 40, 6, 5);
  nonce.writeUInt8(last ? 1 : 0, 11);
  return nonce;
}

/** A decryption failure of the payload (not about the key): reported as "cannot decrypt". */
class PayloadError extends Error {}

/**
 * The header and payload nonce of a new age file to `recipients`, with the payload key. The library
 * makes the header; a recipient that adds no stanza sees the file key so the payload can be encrypted
 * here.
 */
async function ageHeader(recipients: readonly string[]): Promise<{ prefix: Buffer; key: Buffer }> {
  // Never a file no one can open: the capturing recipient below adds no stanza.
  if (recipients.length === 0) throw new InputError('no age recipient to encrypt to');
  const encrypter = new Encrypter();
  for (const recipient of recipients) encrypter.addRecipient(recipient);
  let fileKey: Uint8Array | undefined;
  encrypter.addRecipient({
    wrapFileKey(key: Uint8Array) {
      fileKey = Uint8Array.from(key);
      return [];
    },
  });
  // An empty file: header, nonce, and one empty final chunk (its 16-byte tag), which is dropped.
  const empty = await encrypter.encrypt(new Uint8Array(0));
  if (fileKey === undefined) throw new Error('age did not wrap a file key');
  const prefix = Buffer.from(empty.subarray(0, empty.length - AGE_TAG));
  return { prefix, key: payloadKey(fileKey, prefix.subarray(prefix.length - AGE_NONCE)) };
}

/** Encrypts a byte stream as an age file (header from {@link ageHeader}, then STREAM chunks). */
class AgeEncryptStream extends Transform {
  readonly #header: Promise<{ prefix: Buffer; key: Buffer }>;
  #key: Buffer | undefined;
  readonly #buffer = Buffer.alloc(AGE_CHUNK);
  #used = 0;
  #counter = 0;

  constructor(recipients: readonly string[]) {
    super();
    this.#header = ageHeader(recipients);
    this.#header.catch(() => {}); // reported by the first transform or flush
  }

  async #start(): Promise<Buffer> {
    if (this.#key === undefined) {
      const { prefix, key } = await this.#header;
      this.#key = key;
      this.push(prefix);
    }
    return this.#key;
  }

  #seal(key: Buffer, last: boolean): Buffer {
    const cipher = createCipheriv('chacha20-poly1305', key, chunkNonce(this.#counter++, last), {
      authTagLength: AGE_TAG,
    });
    const body = cipher.update(this.#buffer.subarray(0, this.#used));
    cipher.final();
    this.#used = 0;
    return Buffer.concat([body, cipher.getAuthTag()]);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#start().then(
      (key) => {
        let rest = chunk;
        while (rest.length > 0) {
          // A full chunk is sealed only once more bytes follow: the last chunk is flagged as last.
          if (this.#used === AGE_CHUNK) this.push(this.#seal(key, false));
          const n = Math.min(AGE_CHUNK - this.#used, rest.length);
          rest.copy(this.#buffer, this.#used, 0, n);
          this.#used += n;
          rest = rest.subarray(n);
        }
        callback();
      },
      (err: unknown) => callback(err as Error),
    );
  }

  override _flush(callback: TransformCallback): void {
    this.#start().then(
      (key) => callback(null, this.#seal(key, true)),
      (err: unknown) => callback(err as Error),
    );
  }
}

/**
 * Decrypts an age file: the header is checked by the library with `identities` (it yields the file
 * key), the payload here. Fails with the library's error for the header ("no identity matched..."),
 * with a {@link PayloadError} for a damaged or truncated payload.
 */
class AgeDecryptStream extends Transform {
  readonly #identities: readonly string[];
  #head: Buffer | undefined = Buffer.alloc(0);
  #key: Buffer | undefined;
  readonly #buffer = Buffer.alloc(AGE_CHUNK + AGE_TAG);
  #used = 0;
  #counter = 0;

  constructor(identities: readonly string[]) {
    super();
    this.#identities = identities;
  }

  #open(key: Buffer, last: boolean): Buffer {
    if (this.#used < AGE_TAG) throw new PayloadError('the payload is truncated');
    const decipher = createDecipheriv('chacha20-poly1305', key, chunkNonce(this.#counter++, last), {
      authTagLength: AGE_TAG,
    });
    decipher.setAuthTag(this.#buffer.subarray(this.#used - AGE_TAG, this.#used));
    const body = decipher.update(this.#buffer.subarray(0, this.#used - AGE_TAG));
    try {
      decipher.final();
    } catch {
      throw new PayloadError(`chunk ${this.#counter - 1} fails authentication (damaged or truncated)`);
    }
    if (last && body.length === 0 && this.#counter > 1) throw new PayloadError('the final chunk is empty');
    this.#used = 0;
    return body;
  }

  #payload(key: Buffer, chunk: Buffer): void {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#used === this.#buffer.length) this.push(this.#open(key, false));
      const n = Math.min(this.#buffer.length - this.#used, rest.length);
      rest.copy(this.#buffer, this.#used, 0, n);
      this.#used += n;
      rest = rest.subarray(n);
    }
  }

  /** Collects the header and nonce; once both are in, gets the file key and returns the rest. */
  async #header(chunk: Buffer): Promise<Buffer | undefined> {
    const head = Buffer.concat([this.#head ?? Buffer.alloc(0), chunk]);
    const mac = head.indexOf('\n--- ');
    const end = mac < 0 ? -1 : head.indexOf('\n', mac + 1);
    if (end < 0 || head.length < end + 1 + AGE_NONCE) {
      if (head.length > MAX_AGE_HEADER) throw new PayloadError('not an age file (no header end in 64 KiB)');
      this.#head = head;
      return undefined;
    }
    const decrypter = new Decrypter();
    for (const identity of this.#identities) decrypter.addIdentity(identity);
    const fileKey = await decrypter.decryptHeader(head.subarray(0, end + 1));
    this.#key = payloadKey(fileKey, head.subarray(end + 1, end + 1 + AGE_NONCE));
    this.#head = undefined;
    return head.subarray(end + 1 + AGE_NONCE);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#key !== undefined) {
      try {
        this.#payload(this.#key, chunk);
        callback();
      } catch (err) {
        callback(err as Error);
      }
      return;
    }
    this.#header(chunk).then(
      (rest) => {
        if (rest !== undefined && this.#key !== undefined) this.#payload(this.#key, rest);
        callback();
      },
      (err: unknown) => callback(err as Error),
    );
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.#key === undefined) throw new PayloadError('not an age file, or its header is truncated');
      callback(null, this.#open(this.#key, true));
    } catch (err) {
      callback(err as Error);
    }
  }
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
    // Larger output buffers than zlib's 16 KiB: fewer thread-pool round trips, about twice the throughput.
    chunkSize: ZSTD_CHUNK,
    params: {
      [zlibConstants.ZSTD_c_compressionLevel]: args.level,
      // Levels 3 and 4 look for 5-byte matches; on SQL dump text 6-byte ones give 3 % smaller output
      // (0.97x gzip -6 instead of 1.00x, measured on a 224 MB game dump) and 8 % less CPU; on source
      // code tarballs they cost 1 % in size.
      ...(args.level === 3 || args.level === 4 ? { [zlibConstants.ZSTD_c_minMatch]: ZSTD_MIN_MATCH } : {}),
      // A checksum in the zstd frame: `zstd -d` checks the content too.
      [zlibConstants.ZSTD_c_checksumFlag]: 1,
    },
  });
  const cancel = new AbortController();
  const signal = AbortSignal.any([args.signal, cancel.signal]);

  let recipientError: Error | undefined;
  for (const recipient of args.recipients) {
    try {
      new Encrypter().addRecipient(recipient);
    } catch {
      recipientError ??= new InputError(`age recipient ${JSON.stringify(recipient)} is not an age recipient`);
    }
  }
  if (args.recipients.length === 0) recipientError = new InputError(`no age recipient to encrypt ${key} to`);
  const encrypt = new AgeEncryptStream(recipientError === undefined ? args.recipients : []);
  // An error of either (or of the store, which destroys `encrypt`) tears both down; the store's put
  // then rejects, and its error, naming the storage and key, is the one reported.
  pipelineCallback(zstd, encrypt, () => {});

  const fail = (err: Error): void => {
    failure ??= err;
    if (!zstd.destroyed) zstd.destroy(failure);
    if (!encrypt.destroyed) encrypt.destroy(failure);
    cancel.abort(failure);
  };
  const onAbort = (): void => fail(abortReason(args.signal, key));
  if (args.signal.aborted) onAbort();
  else args.signal.addEventListener('abort', onAbort, { once: true });
  if (recipientError !== undefined) fail(recipientError);

  const put = store.put(key, encrypt, { storageClass: args.storageClass, signal });
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

  const throwIfFailed = (): void => {
    if (failure !== undefined) throw failure;
  };
  // The pipeline is gone: the put reports why (or the abort that closed it). The store tears its body
  // down when it fails (`encrypt` destroyed, and `zstd` with it through the pipeline above) before its
  // put rejects, so `zstd` can be destroyed, and its 'close' already emitted, while `failure` is not set
  // yet: wait for the put's outcome then, never for an event that has already happened.
  const pipelineGone = async (): Promise<never> => {
    try {
      await settled;
    } catch (err) {
      throw err instanceof Error ? err : new Error(String(err));
    }
    throw failure ?? objectError(key, 'the pipeline closed');
  };
  const waitForDrain = (): Promise<void> => {
    if (zstd.destroyed) return pipelineGone();
    return new Promise((resolve, reject) => {
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
        pipelineGone().then(resolve, reject);
      };
      zstd.on('drain', onDrain);
      zstd.on('close', onClose);
    });
  };

  return {
    async write(chunk: Uint8Array): Promise<void> {
      if (failure !== undefined) throw failure;
      if (state !== 'open') throw objectError(key, 'write after end');
      if (chunk.length === 0) return;
      // Torn down by the store's failure, which the put has not reported yet.
      if (zstd.destroyed) await pipelineGone();
      plainHash.update(chunk);
      plainSize += chunk.length;
      args.progress.add(chunk.length);
      const accepted = zstd.write(chunk);
      streamed(chunk.length);
      if (!accepted) await waitForDrain();
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

type Stage = 'read' | 'decrypt' | 'decompress';

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
    const stage = stageOf.get(err as object);
    if (stage === 'read') return objectError(key, `reading from ${store.describe()} failed: ${message}`, err);
    if (stage === 'decompress')
      return objectError(key, `not zstd data or damaged zstd data: ${message}`, err);
    if (NO_IDENTITY.test(message)) return new InputError(wrongKeyMessage(ids, `backup object ${key}`));
    return objectError(key, `cannot decrypt: ${message}`, err);
  };
  // Which stream an error started in: the first 'error' listener to see it.
  const stageOf = new WeakMap<object, Stage>();
  const tag = (stream: Readable | Writable, stage: Stage): void => {
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
      const decrypted = new AgeDecryptStream(ids.identities);
      const decompress = createZstdDecompress({ chunkSize: ZSTD_CHUNK });
      const plainCheck = new CheckingStream(
        record.plainSize,
        record.plainSha256,
        (what) => objectError(key, what),
        'plain',
        streamed,
      );
      streams.push(decrypted, decompress, plainCheck);
      tag(stored, 'read');
      tag(decrypted, 'decrypt');
      tag(decompress, 'decompress');
      plainCheck.pipe(out);
      await pipeline(stored, storedCheck, decrypted, decompress, plainCheck, { signal });
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
