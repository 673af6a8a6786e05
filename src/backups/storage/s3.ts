/**
 * The S3-compatible object store (AWS S3, MinIO, Ceph, R2...), with the AWS SDK v3. Objects are uploaded
 * with `@aws-sdk/lib-storage`'s multipart Upload (`partSize` from the config, two parts in flight, so at
 * most about three parts of memory per upload); the SHA-256 and size are computed as the bytes go out.
 *
 * Options on every object: a storage class (per component, from PutOptions), server-side encryption
 * (AES256 or aws:kms) and Object Lock retention (mode + retain-until = now + days) when configured.
 *
 * Credentials come from the config's `accessKeyId` / `secretAccessKey` (revealed only here, for the
 * client) or, when absent, from the SDK's default chain (env, profile, instance role). Error messages
 * name the bucket, endpoint and key and never a credential.
 */
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  type PutObjectCommandInput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Logger } from '../../app/log.ts';
import type { StorageConfig } from '../../config/load.ts';
import {
  errorMessage,
  GameopsError,
  InputError,
  maskSecrets,
  NotAllowedError,
  NotFoundError,
  systemClock,
  UnavailableError,
  type Clock,
  type Secret,
} from '../../core/index.ts';
import type { ObjectInfo, ObjectStore, PutOptions, StoredObject } from '../types.ts';
import {
  checkObjectKey,
  checkObjectPrefix,
  checkS3Credentials,
  describeS3,
  MeasuredBody,
  putFailure,
} from './index.ts';

type S3Config = Extract<StorageConfig, { kind: 's3' }>;

/** Tuning of the S3 client; the defaults suit real servers, tests shorten the timeouts. */
export interface S3StoreOptions {
  log?: Logger | undefined;
  clock?: Clock | undefined;
  /** TCP connect timeout (default 10 s). */
  connectionTimeoutMs?: number | undefined;
  /**
   * How long a request's connection may stay silent (nothing sent or received) before the request fails
   * (default 60 s). An inactivity limit rather than a total one, so a large part on a slow link is fine.
   */
  requestTimeoutMs?: number | undefined;
  /** Attempts per request, including retries of throttling and network errors (default 3). */
  maxAttempts?: number | undefined;
  /** Keys per ListObjectsV2 page (default: the server's, 1000 on S3). */
  listPageSize?: number | undefined;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** Error names that mean "the credentials or the policy do not allow this". */
const DENIED = new Set([
  'AccessDenied',
  'AllAccessDisabled',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'AccountProblem',
  'CredentialsProviderError',
]);
/** Error names that mean "no room" (quotas of S3-compatible servers included). */
const FULL = new Set([
  'EntityTooLarge',
  'QuotaExceeded',
  'XMinioStorageFull',
  'XMinioAdminBucketQuotaExceeded',
  'InsufficientStorage',
  'StorageFull',
]);
/** Network-level error codes of Node and the SDK. */
const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'NetworkingError',
]);

/** An object store in an S3-compatible bucket, under the configured key prefix. */
export class S3ObjectStore implements ObjectStore {
  readonly #config: S3Config;
  readonly #client: S3Client;
  readonly #log: Logger | undefined;
  readonly #clock: Clock;
  readonly #requestTimeoutMs: number;
  readonly #listPageSize: number | undefined;
  readonly #endpoint: string;
  readonly #secrets: Array<Secret | undefined>;

  /**
   * Builds the client; no request is made yet.
   *
   * @throws InputError when only one of accessKeyId / secretAccessKey is set.
   */
  constructor(config: S3Config, options: S3StoreOptions = {}) {
    this.#config = config;
    this.#log = options.log;
    this.#clock = options.clock ?? systemClock;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    this.#listPageSize = options.listPageSize;
    this.#endpoint = config.endpoint ?? `AWS S3 ${config.region}`;
    this.#secrets = [config.accessKeyId, config.secretAccessKey];
    checkS3Credentials(config);
    const clientConfig: S3ClientConfig = {
      region: config.region,
      forcePathStyle: config.forcePathStyle,
      maxAttempts: options.maxAttempts ?? 3,
      // A server that accepts the connection and then never answers fails after socketTimeout of
      // silence (requestTimeout would only log a warning unless throwOnRequestTimeout is set, and would
      // bound the whole request, cutting off large parts on slow links).
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 10_000,
        socketTimeout: this.#requestTimeoutMs,
      },
      // Checksums only where the API requires them: recent SDKs otherwise add CRC32 headers and
      // aws-chunked trailers that older S3-compatible servers (s3rver, older MinIO and Ceph) reject.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    };
    if (config.endpoint !== undefined) clientConfig.endpoint = config.endpoint;
    if (config.accessKeyId !== undefined && config.secretAccessKey !== undefined) {
      clientConfig.credentials = {
        accessKeyId: config.accessKeyId.reveal(),
        secretAccessKey: config.secretAccessKey.reveal(),
      };
    }
    this.#client = new S3Client(clientConfig);
  }

  describe(): string {
    return describeS3(this.#config);
  }

  /**
   * Uploads `body` to `<prefix><key>` (multipart for bodies larger than one part). On any failure, the
   * multipart upload is aborted and the key is deleted, since a single PUT or a completion that was in
   * flight may have finished on the server: nothing is left under `key`, not even an earlier object.
   *
   * @throws InputError for a bad key or a missing bucket or refused Object Lock; NotAllowedError when the
   *   credentials are refused; UnavailableError saying "storage full" for size and quota errors, or naming
   *   the endpoint when it cannot be reached; the abort reason or body error, wrapped to name the key.
   */
  async put(
    key: string,
    body: Readable | AsyncIterable<Uint8Array>,
    options: PutOptions = {},
  ): Promise<StoredObject> {
    checkObjectKey(key);
    const signal = options.signal;
    const fullKey = this.#config.prefix + key;
    const measured = new MeasuredBody(body);
    const hashed = Readable.from(measured.chunks(), { objectMode: false });
    // Stop feeding the upload when the caller aborts: the Upload then fails once its requests in
    // flight have settled, and nothing of it runs on afterwards (Upload.abort() would reject at once
    // while part requests and the multipart abort still run in the background).
    const onAbort = (): void => {
      hashed.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    let upload: Upload | undefined;
    try {
      signal?.throwIfAborted();
      signal?.addEventListener('abort', onAbort, { once: true });
      upload = new Upload({
        client: this.#client,
        params: this.#putParams(fullKey, hashed, options.storageClass),
        partSize: this.#config.partSize,
        queueSize: 2,
        // The multipart upload is aborted below: the Upload's own abort, when it fails (s3rver answers
        // 405), replaces the error that caused it.
        leavePartsOnError: true,
      });
      await upload.done();
      signal?.throwIfAborted();
      return { key, size: measured.size, sha256: measured.sha256() };
    } catch (error) {
      hashed.destroy();
      await measured.discard().catch(() => {});
      await this.#cleanUpFailedPut(key, fullKey, upload);
      throw putFailure(`${this.describe()}: writing ${key}`, measured, signal, () =>
        this.#putError(key, error),
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * A stream of the object's bytes.
   *
   * @throws InputError for a bad key or a missing bucket; NotFoundError naming the key when there is no
   *   such object; NotAllowedError / UnavailableError as for put.
   */
  async get(key: string, options: { signal?: AbortSignal | undefined } = {}): Promise<Readable> {
    checkObjectKey(key);
    try {
      const response = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#config.bucket, Key: this.#config.prefix + key }),
        options.signal === undefined ? {} : { abortSignal: options.signal },
      );
      const body = response.Body;
      if (!(body instanceof Readable)) {
        throw new GameopsError(
          'internal',
          `${this.describe()}: reading ${key}: the response has no body stream`,
        );
      }
      return body;
    } catch (error) {
      if (error instanceof GameopsError) throw error;
      if (isNotFound(error)) throw this.#notFound(key);
      throw this.#error(`reading ${key}`, error);
    }
  }

  /** The object's size, or undefined when it does not exist. @throws as for get. */
  async head(key: string): Promise<ObjectInfo | undefined> {
    checkObjectKey(key);
    try {
      const response = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.#config.bucket, Key: this.#config.prefix + key }),
      );
      return { key, size: response.ContentLength ?? 0 };
    } catch (error) {
      if (isNotFound(error)) {
        // HEAD has no body, so a missing bucket looks like a missing key: tell them apart.
        await this.#assertBucket();
        return undefined;
      }
      throw this.#error(`reading ${key}`, error);
    }
  }

  /**
   * Every object whose key starts with `prefix`, in key order, page by page (ListObjectsV2).
   *
   * @throws InputError for a bad prefix or a missing bucket; NotAllowedError / UnavailableError as for put.
   */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkObjectPrefix(prefix);
    const base = this.#config.prefix;
    let token: string | undefined;
    let last: string | undefined;
    do {
      let page;
      try {
        page = await this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.#config.bucket,
            Prefix: base + prefix,
            ...(this.#listPageSize === undefined ? {} : { MaxKeys: this.#listPageSize }),
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        );
      } catch (error) {
        throw this.#error(`listing ${prefix === '' ? 'every object' : `prefix ${prefix}`}`, error);
      }
      // S3 lists in byte order. Some S3-compatible servers list in the order of their own directory
      // walk (s3rver puts `a/b` before `a.c`): a page is sorted here, and a page that starts before the
      // end of the previous one fails loudly rather than giving callers a wrong order.
      const items = (page.Contents ?? [])
        .filter((item) => item.Key !== undefined && item.Key.startsWith(base))
        .map((item) => ({ key: item.Key!.slice(base.length), size: item.Size ?? 0 }))
        .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const first = items[0];
      if (first !== undefined && last !== undefined && first.key <= last) {
        throw new GameopsError(
          'internal',
          `${this.describe()}: listing prefix ${prefix}: the server listed ${first.key} after ${last} (not in key order)`,
        );
      }
      for (const item of items) yield item;
      last = items.at(-1)?.key ?? last;
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** Deletes the object; a missing one is fine. @throws as for get (but never NotFoundError for the key). */
  async delete(key: string): Promise<void> {
    checkObjectKey(key);
    try {
      await this.#client.send(
        new DeleteObjectCommand({ Bucket: this.#config.bucket, Key: this.#config.prefix + key }),
      );
    } catch (error) {
      if (isNotFound(error)) return;
      throw this.#error(`deleting ${key}`, error);
    }
  }

  async discardIncomplete(prefix: string): Promise<number> {
    checkObjectPrefix(prefix);
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.#client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.#config.bucket,
            Prefix: this.#config.prefix + prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
      } catch (error) {
        throw this.#error(`listing unfinished uploads under ${prefix}`, error);
      }
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId) continue;
        try {
          await this.#client.send(
            new AbortMultipartUploadCommand({
              Bucket: this.#config.bucket,
              Key: upload.Key,
              UploadId: upload.UploadId,
            }),
          );
          removed++;
        } catch (error) {
          if (errorName(error) !== 'NoSuchUpload')
            throw this.#error(`aborting an upload under ${prefix}`, error);
        }
      }
      if (!page.IsTruncated) return removed;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  // -------------------------------------------------------------------------------------------------

  #putParams(fullKey: string, body: Readable, storageClass: string | undefined): PutObjectCommandInput {
    const params: PutObjectCommandInput = { Bucket: this.#config.bucket, Key: fullKey, Body: body };
    if (storageClass !== undefined)
      params.StorageClass = storageClass as PutObjectCommandInput['StorageClass'];
    const sse = this.#config.serverSideEncryption;
    if (sse !== undefined) {
      params.ServerSideEncryption = sse.kind;
      if (sse.kind === 'aws:kms' && sse.kmsKeyId !== undefined) params.SSEKMSKeyId = sse.kmsKeyId;
    }
    const lock = this.#config.objectLock;
    if (lock !== undefined) {
      params.ObjectLockMode = lock.mode;
      params.ObjectLockRetainUntilDate = new Date(this.#clock.now().getTime() + lock.days * DAY_MS);
      // S3 requires an integrity checksum on writes that carry Object Lock headers.
      params.ChecksumAlgorithm = 'CRC32';
    }
    return params;
  }

  /** After a failed put: abort the multipart upload (again, in case the Upload's own abort failed), delete the key. */
  async #cleanUpFailedPut(key: string, fullKey: string, upload: Upload | undefined): Promise<void> {
    const bounded = (): { abortSignal: AbortSignal } => ({
      abortSignal: AbortSignal.timeout(this.#requestTimeoutMs),
    });
    const uploadId = (upload as { uploadId?: string } | undefined)?.uploadId;
    if (uploadId !== undefined) {
      await this.#client
        .send(
          new AbortMultipartUploadCommand({ Bucket: this.#config.bucket, Key: fullKey, UploadId: uploadId }),
          bounded(),
        )
        .catch((error: unknown) => {
          // NoSuchUpload: the Upload already aborted it.
          if (errorName(error) !== 'NoSuchUpload') {
            this.#log?.warn(
              { storage: this.describe(), key, error: this.#safeMessage(error) },
              'could not abort the multipart upload of a failed put; its parts may remain until a lifecycle rule removes them',
            );
          }
        });
    }
    await this.#client
      .send(new DeleteObjectCommand({ Bucket: this.#config.bucket, Key: fullKey }), bounded())
      .catch((error: unknown) => {
        if (isNotFound(error)) return;
        this.#log?.warn(
          { storage: this.describe(), key, error: this.#safeMessage(error) },
          'could not delete the key of a failed put',
        );
      });
  }

  /** After a HEAD 404: InputError when the bucket is what is missing. */
  async #assertBucket(): Promise<void> {
    try {
      await this.#client.send(new ListObjectsV2Command({ Bucket: this.#config.bucket, MaxKeys: 1 }));
    } catch (error) {
      throw this.#error('checking the bucket', error);
    }
  }

  #notFound(key: string): NotFoundError {
    return new NotFoundError(`backup object ${key} not found in ${this.describe()}`);
  }

  /** Maps an error of the server during a put (body errors and aborts are handled by putFailure). */
  #putError(key: string, error: unknown): GameopsError {
    const where = `${this.describe()}: writing ${key}`;
    if (error instanceof GameopsError) return error;
    const name = errorName(error);
    if (this.#config.objectLock !== undefined && isObjectLockRefusal(error)) {
      return new InputError(
        `${where} failed: bucket ${this.#config.bucket} refuses Object Lock retention (${name}: ` +
          `${this.#safeMessage(error)}); enable Object Lock on the bucket or remove backups.storage.objectLock`,
        { cause: this.#safeCause(error) },
      );
    }
    if (name === 'InvalidStorageClass') {
      return new InputError(
        `${where} failed: ${this.#endpoint} does not accept that storage class (${this.#safeMessage(error)}); ` +
          'check backups.storage.storageClass',
        { cause: this.#safeCause(error) },
      );
    }
    return this.#error(`writing ${key}`, error);
  }

  /** Maps an SDK or network error to a GameopsError naming the storage and what was being done. */
  #error(what: string, error: unknown): GameopsError {
    const where = `${this.describe()}: ${what}`;
    const status = httpStatus(error);
    const rawName = errorName(error);
    // HEAD answers carry no error document: the SDK names them Unknown/NotFound/Forbidden.
    const name = /^Unknown/.test(rawName) && status !== undefined ? `HTTP ${status}` : rawName;
    const message = this.#safeMessage(error);
    const bucket = this.#config.bucket;
    // Not the SDK error itself: it carries fields such as AWSAccessKeyId that must not reach a log.
    const cause = this.#safeCause(error);
    if (name === 'NoSuchBucket') {
      return new InputError(`${where} failed: bucket ${bucket} does not exist at ${this.#endpoint}`, {
        cause,
      });
    }
    if (DENIED.has(name) || status === 403) {
      return new NotAllowedError(
        `${where} failed: access to bucket ${bucket} denied (${name}); check the credentials and the bucket policy`,
        { cause },
      );
    }
    if (FULL.has(name) || status === 507 || /storage full|quota/i.test(message)) {
      return new UnavailableError(`${where} failed: storage full (${name}: ${message})`, { cause });
    }
    if (NETWORK.has(name) || isNetworkError(error)) {
      return new UnavailableError(`${where} failed: cannot reach ${this.#endpoint} (${name}: ${message})`, {
        cause,
      });
    }
    if (status !== undefined && status >= 500) {
      return new UnavailableError(
        `${where} failed: ${this.#endpoint} answered ${status} (${name}: ${message})`,
        {
          cause,
        },
      );
    }
    return new GameopsError('internal', `${where} failed: ${name}: ${message}`, { cause });
  }

  /** A plain Error with the SDK error's name, masked message, HTTP status and request id only. */
  #safeCause(error: unknown): Error {
    const safe = new Error(`${errorName(error)}: ${this.#safeMessage(error)}`);
    safe.name = errorName(error);
    const meta = (error as { $metadata?: { httpStatusCode?: number; requestId?: string } } | undefined)
      ?.$metadata;
    Object.assign(safe, { httpStatus: meta?.httpStatusCode, requestId: meta?.requestId });
    return safe;
  }

  /** The error's message with every configured credential masked (servers may echo the key id). */
  #safeMessage(error: unknown): string {
    return maskSecrets(errorMessage(error), this.#secrets);
  }
}

function errorName(error: unknown): string {
  if (error instanceof S3ServiceException) return error.name;
  const e = error as { name?: unknown; code?: unknown } | undefined;
  if (typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code)) return e.code;
  return typeof e?.name === 'string' ? e.name : 'Error';
}

function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

function isNotFound(error: unknown): boolean {
  const name = errorName(error);
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatus(error) === 404;
}

function isNetworkError(error: unknown): boolean {
  // The SDK reports socket failures as Node errors with a syscall code, and timeouts by name.
  if (!(error instanceof Error) || error instanceof S3ServiceException) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return (
    (typeof code === 'string' && /^E[A-Z]+$/.test(code)) ||
    /timeout|timed out|socket hang up/i.test(`${error.name} ${error.message}`)
  );
}

function isObjectLockRefusal(error: unknown): boolean {
  const name = errorName(error);
  const message = errorMessage(error);
  return (
    name === 'InvalidRequest' ||
    name === 'ObjectLockConfigurationNotFoundError' ||
    /object ?lock/i.test(message)
  );
}
