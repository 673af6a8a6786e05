/**
 * The S3 object store against an S3 stand-in (s3rver, see test/harness/s3.ts): the shared ObjectStore
 * contract, plus S3-specific behaviour (key prefix, storage class, pagination, credentials, timeouts).
 *
 * s3rver is not Amazon S3. What it cannot show, and is therefore not tested here:
 * - Object Lock: s3rver ignores the x-amz-object-lock-* headers, so neither a retention that is applied
 *   nor a bucket refusing it can be observed (the store sends ObjectLockMode + RetainUntilDate and a CRC32
 *   checksum, and maps a refusal to an InputError naming backups.storage.objectLock).
 * - Server-side encryption: the headers are sent and accepted but ignored.
 * - GLACIER_IR and other recent storage classes: s3rver knows only the older ones and refuses the rest
 *   (tested: the refusal is an InputError naming backups.storage.storageClass).
 * - AbortMultipartUpload: s3rver answers 405, so the parts of an aborted multipart upload stay in its
 *   upload directory; they never become an object, which is what the contract checks.
 * - A full bucket / quota errors: s3rver has no quotas.
 * - A wrong secret access key: s3rver checks that the access key id exists but does not verify SigV4
 *   signatures ("Signature version 4 calculation is unimplemented" in its source), so a wrong secret is
 *   accepted. An unknown access key id is refused (InvalidAccessKeyId) and tested; SignatureDoesNotMatch
 *   is mapped by the same rule (NotAllowedError naming the bucket).
 */
import { inspect } from 'node:util';
import { randomBytes } from 'node:crypto';
import { HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  randomSecret,
  startS3rver,
  startSilentServer,
  type S3rverHandle,
  type SilentServerHandle,
} from '../../../test/harness/index.ts';
import type { StorageConfig } from '../../config/load.ts';
import { InputError, mapLimit, NotAllowedError, secret, UnavailableError } from '../../core/index.ts';
import type { ObjectStore } from '../types.ts';
import {
  chunksOf,
  listAll,
  MULTIPART_SIZE,
  objectStoreContract,
  readAll,
  sha256,
} from './contract.test-suite.ts';
import { openObjectStore, type OpenObjectStoreOptions } from './index.ts';

type S3StorageConfig = Extract<StorageConfig, { kind: 's3' }>;
const PART_SIZE = 5 * 1024 * 1024;

function s3Config(server: S3rverHandle, overrides: Partial<S3StorageConfig> = {}): S3StorageConfig {
  return {
    kind: 's3',
    bucket: server.buckets[0]!,
    prefix: 'gameops/',
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    accessKeyId: secret(server.accessKeyId, 'inline'),
    secretAccessKey: secret(server.secretAccessKey, 'inline'),
    storageClass: {},
    partSize: PART_SIZE,
    ...overrides,
  };
}

function rawClient(server: S3rverHandle): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error as Error,
  );
}

/** Every way of calling the store, each expected to fail. */
function everyMethod(store: ObjectStore, key: string): Array<[string, () => Promise<unknown>]> {
  return [
    ['put', () => store.put(key, chunksOf(randomBytes(1000)))],
    ['put (multipart)', () => store.put(key, chunksOf(randomBytes(PART_SIZE + 1000)))],
    ['get', () => store.get(key)],
    ['head', () => store.head(key)],
    ['list', () => listAll(store, 'bk-')],
    ['delete', () => store.delete(key)],
  ];
}

let server: S3rverHandle;
beforeAll(async () => {
  server = await startS3rver({ buckets: ['gameops-test', 'gameops-other'] });
});
afterAll(async () => {
  await server?.stop();
});

objectStoreContract('S3 stand-in (s3rver), prefix "gameops/", 5 MiB parts', async () => {
  const store = openObjectStore(s3Config(server));
  return { store, cleanup: async () => {} };
});

objectStoreContract('S3 stand-in (s3rver), no prefix', async () => {
  const store = openObjectStore(s3Config(server, { bucket: 'gameops-other', prefix: '' }));
  return { store, cleanup: async () => {} };
});

describe('S3 object store on an S3 stand-in (s3rver)', () => {
  let store: ObjectStore;
  let raw: S3Client;
  beforeAll(() => {
    store = openObjectStore(s3Config(server));
    raw = rawClient(server);
  });
  afterAll(async () => {
    await store?.close();
    raw?.destroy();
  });

  it('describes itself without credentials', () => {
    expect(store.describe()).toBe(`s3://gameops-test/gameops/ (${server.endpoint})`);
  });

  it('stores objects under the configured prefix', async () => {
    const key = 'bk-20261126T170500Z-aaaaaa/manifest.json';
    await store.put(key, chunksOf(Buffer.from('{}')));
    const listed = await raw.send(
      new ListObjectsV2Command({ Bucket: 'gameops-test', Prefix: 'gameops/bk-20261126T170500Z-aaaaaa/' }),
    );
    expect(listed.Contents?.map((o) => o.Key)).toEqual([`gameops/${key}`]);
  });

  it.each([
    ['a single PUT', 1000],
    ['a multipart upload', MULTIPART_SIZE],
  ])('sets the storage class of each object (%s)', async (_how, size) => {
    const key = `bk-20261126T170500Z-bbbbbb/files/${size}.tar.zst.age`;
    await store.put(key, chunksOf(randomBytes(size)), { storageClass: 'STANDARD_IA' });
    const head = await raw.send(new HeadObjectCommand({ Bucket: 'gameops-test', Key: `gameops/${key}` }));
    expect(head.StorageClass).toBe('STANDARD_IA');
    expect(head.ContentLength).toBe(size);
  });

  it('a storage class the server refuses is an InputError naming the config field; nothing is stored', async () => {
    // s3rver does not know GLACIER_IR (real S3 does): a real refusal to map.
    const key = 'bk-20261126T170500Z-cccccc/mysql/x.zst.age';
    const error = await failure(store.put(key, chunksOf(randomBytes(100)), { storageClass: 'GLACIER_IR' }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain('backups.storage.storageClass');
    expect(error.message).toContain(key);
    expect(await store.head(key)).toBeUndefined();
  });

  it('sends server-side encryption and Object Lock settings the server accepts', async () => {
    const locked = openObjectStore(
      s3Config(server, {
        serverSideEncryption: { kind: 'AES256' },
        objectLock: { mode: 'GOVERNANCE', days: 30 },
      }),
    );
    try {
      const data = randomBytes(PART_SIZE + 10);
      for (const key of ['bk-20261126T170500Z-dddddd/a', 'bk-20261126T170500Z-dddddd/b']) {
        const body = key.endsWith('a') ? data.subarray(0, 100) : data;
        const stored = await locked.put(key, chunksOf(body));
        expect(stored.sha256).toBe(sha256(body));
        expect(sha256(await readAll(await locked.get(key)))).toBe(sha256(body));
      }
    } finally {
      await locked.close();
    }
  });

  it('lists more than one page (ListObjectsV2 continuation) in key order', async () => {
    const paged = openObjectStore(s3Config(server), { listPageSize: 100 });
    try {
      const set = 'bk-20261126T170500Z-eeeeee';
      const keys = Array.from({ length: 250 }, (_, i) => `${set}/files/${String(i).padStart(5, '0')}`);
      await mapLimit(keys, 8, (key) => paged.put(key, chunksOf(Buffer.from(key))));
      const listed = await listAll(paged, `${set}/`);
      expect(listed.length).toBe(250);
      expect(listed.map((o) => o.key)).toEqual(keys);
      expect(listed[0]!.size).toBe(keys[0]!.length);
    } finally {
      await paged.close();
    }
  });

  it('uses the SDK credential chain when the config has no keys', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', server.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', server.secretAccessKey);
    const chained = openObjectStore(s3Config(server, { accessKeyId: undefined, secretAccessKey: undefined }));
    try {
      const key = 'bk-20261126T170500Z-ffffff/manifest.json';
      await chained.put(key, chunksOf(Buffer.from('{}')));
      expect(await chained.head(key)).toEqual({ key, size: 2 });
    } finally {
      await chained.close();
      vi.unstubAllEnvs();
    }
  });

  it('refuses a config with only one of the two keys', () => {
    expect(() => openObjectStore(s3Config(server, { secretAccessKey: undefined }))).toThrow(InputError);
  });

  it('a missing bucket is an InputError naming it, from every method', async () => {
    const missing = openObjectStore(s3Config(server, { bucket: 'no-such-bucket-here' }));
    try {
      for (const [method, call] of everyMethod(missing, 'bk-20261126T170500Z-000000/manifest.json')) {
        const error = await failure(call());
        expect(error, method).toBeInstanceOf(InputError);
        expect(error.message, method).toContain('bucket no-such-bucket-here does not exist');
      }
    } finally {
      await missing.close();
    }
  });

  it('an unknown access key id is a NotAllowedError naming the bucket, never the credentials', async () => {
    const wrongSecret = randomSecret();
    const wrongKeyId = `AKIA${randomSecret(8).toUpperCase()}`;
    for (const [label, config] of [
      [
        'unknown key id',
        s3Config(server, {
          accessKeyId: secret(wrongKeyId, 'env:S3_KEY'),
          secretAccessKey: secret(wrongSecret, 'env:S3_SECRET'),
        }),
      ],
    ] as const) {
      const wrong = openObjectStore(config);
      try {
        for (const [method, call] of everyMethod(wrong, 'bk-20261126T170500Z-000001/manifest.json')) {
          const error = await failure(call());
          const what = `${label} ${method}`;
          expect(error, what).toBeInstanceOf(NotAllowedError);
          expect(error.message, what).toContain('gameops-test');
          for (const text of [error.message, inspect(error, { depth: 8 }), JSON.stringify(error)]) {
            expect(text, what).not.toContain(wrongSecret);
            expect(text, what).not.toContain(wrongKeyId);
          }
        }
      } finally {
        await wrong.close();
      }
    }
  });

  it('the secret access key never appears in any error message', async () => {
    const s3Secret = `canary-${randomSecret()}`;
    // s3rver does not verify signatures (see the header), so the canary secret goes with every failure
    // it can produce: an unknown key id, a missing bucket, a missing object, a refused storage class.
    const configs: S3StorageConfig[] = [
      s3Config(server, {
        accessKeyId: secret('AKIAUNKNOWN', 'inline'),
        secretAccessKey: secret(s3Secret, 'inline'),
      }),
      s3Config(server, { bucket: 'no-such-bucket-here', secretAccessKey: secret(s3Secret, 'inline') }),
    ];
    const messages: string[] = [];
    for (const config of configs) {
      const s = openObjectStore(config);
      try {
        for (const [, call] of everyMethod(s, 'bk-20261126T170500Z-000002/x')) {
          const error = await failure(call());
          messages.push(error.message, inspect(error, { depth: 8 }));
        }
      } finally {
        await s.close();
      }
    }
    const working = openObjectStore(s3Config(server, { secretAccessKey: secret(s3Secret, 'inline') }));
    try {
      for (const call of [
        () => working.get('bk-20261126T170500Z-000002/missing'),
        () =>
          working.put('bk-20261126T170500Z-000002/x', chunksOf(Buffer.from('x')), {
            storageClass: 'GLACIER_IR',
          }),
      ]) {
        const error = await failure(call());
        messages.push(error.message, inspect(error, { depth: 8 }));
      }
    } finally {
      await working.close();
    }
    expect(messages.length).toBeGreaterThan(20);
    for (const message of messages) expect(message).not.toContain(s3Secret);
  });

  it('a failed upload leaves no object in the bucket, whatever the prefix listing shows', async () => {
    const set = 'bk-20261126T170500Z-111111';
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield randomBytes(PART_SIZE * 2 + 5);
      throw new Error('source broke');
    }
    await expect(store.put(`${set}/mysql/big`, failing())).rejects.toThrow('source broke');
    const listed = await raw.send(
      new ListObjectsV2Command({ Bucket: 'gameops-test', Prefix: `gameops/${set}` }),
    );
    expect(listed.Contents ?? []).toEqual([]);
  });
});

describe('S3 object store when the S3 stand-in (s3rver) goes away mid-upload', () => {
  it('put fails with an UnavailableError naming the endpoint (not "the source failed")', async () => {
    const dying = await startS3rver();
    const store = openObjectStore(s3Config(dying), { maxAttempts: 2 });
    try {
      async function* body(): AsyncGenerator<Uint8Array> {
        yield* chunksOf(randomBytes(PART_SIZE + 1024));
        // The first part is on its way; the server goes away before the rest.
        await dying.stop();
        yield* chunksOf(randomBytes(PART_SIZE + 1024));
      }
      const error = await failure(store.put('bk-20261126T170500Z-333333/mysql/x', body()));
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error.message).toContain(dying.endpoint);
      expect(error.message).toContain('bk-20261126T170500Z-333333/mysql/x');
      expect(error.message).not.toContain('source failed');
    } finally {
      await store.close();
      await dying.stop();
    }
  });
});

describe('S3 object store against a server that accepts connections and never answers', () => {
  let silent: SilentServerHandle;
  let store: ObjectStore;
  const options: OpenObjectStoreOptions = {
    requestTimeoutMs: 1_000,
    connectionTimeoutMs: 1_000,
    maxAttempts: 2,
  };
  beforeAll(async () => {
    silent = await startSilentServer();
    store = openObjectStore(
      {
        kind: 's3',
        bucket: 'gameops-test',
        prefix: '',
        endpoint: `http://${silent.host}:${silent.port}`,
        region: 'us-east-1',
        forcePathStyle: true,
        accessKeyId: secret('S3RVER', 'inline'),
        secretAccessKey: secret('silent-secret-canary', 'inline'),
        storageClass: {},
        partSize: PART_SIZE,
      },
      options,
    );
  });
  afterAll(async () => {
    await store?.close();
    await silent?.stop();
  });

  it.each([
    [
      'put',
      (s: ObjectStore) => s.put('bk-20261126T170500Z-222222/manifest.json', chunksOf(Buffer.from('{}'))),
    ],
    ['get', (s: ObjectStore) => s.get('bk-20261126T170500Z-222222/manifest.json')],
    ['head', (s: ObjectStore) => s.head('bk-20261126T170500Z-222222/manifest.json')],
    ['list', (s: ObjectStore) => listAll(s, 'bk-')],
  ])('%s fails within the timeouts with an UnavailableError naming the endpoint', async (_method, call) => {
    const started = Date.now();
    const error = await failure(call(store));
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(UnavailableError);
    expect(error.message).toContain(`http://${silent.host}:${silent.port}`);
    expect(error.message).not.toContain('silent-secret-canary');
    // put: two attempts of the PUT, then two of the clean-up DELETE, each bounded by 1 s (plus backoff).
    expect(elapsed).toBeLessThan(8_000);
    expect(silent.connections()).toBeGreaterThan(0);
  });
});
