/**
 * An S3 stand-in for tests: s3rver (npm `s3rver` 3.7.1, a dev dependency), an S3-compatible server
 * written in Node. It is NOT Amazon S3: it answers the calls backups use (PutObject, multipart upload,
 * GetObject, HeadObject, ListObjectsV2 with continuation tokens, DeleteObject) and checks SigV4
 * signatures, but it has no AbortMultipartUpload (405), no Object Lock, no server-side encryption (the
 * headers are ignored), and knows only the older storage classes (no GLACIER_IR).
 *
 * It runs as a child process of Node with `--openssl-legacy-provider`: s3rver encrypts ListObjectsV2
 * continuation tokens with DES, which OpenSSL 3 (Node ≥ 17) only offers through the legacy provider, so
 * in-process every truncated listing fails with a 500.
 */
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  makeTempDir,
  removeDirOnExit,
  spawnServer,
  stopServer,
  waitUntilReady,
  withPortRetry,
} from './proc.ts';

/** A running s3rver; credentials are s3rver's fixed pair. */
export interface S3rverHandle {
  /** `http://127.0.0.1:<port>` (use path-style addressing). */
  readonly endpoint: string;
  readonly port: number;
  readonly accessKeyId: 'S3RVER';
  readonly secretAccessKey: 'S3RVER';
  /** Buckets created at start. */
  readonly buckets: string[];
  /** Directory with the server's data (`data/`) and log (`s3rver.log`). */
  readonly dir: string;
  readonly pid: number;
  /** Stops the server and, when the directory was temporary, removes it. Safe to call twice. */
  stop(): Promise<void>;
}

export interface S3rverOptions {
  /** Buckets to create at start (default `['gameops-test']`). */
  buckets?: string[];
  /** Persistent directory (created when missing, kept by stop()); default a temporary one. */
  dir?: string;
}

/**
 * Starts s3rver on a free loopback port with its data in a temporary directory, and resolves once it
 * answers HTTP. Connect with `forcePathStyle: true`, region `us-east-1`, and the S3RVER/S3RVER keys
 * (s3rver rejects other keys with InvalidAccessKeyId, and a wrong secret with SignatureDoesNotMatch).
 */
export async function startS3rver(options: S3rverOptions = {}): Promise<S3rverHandle> {
  const buckets = options.buckets ?? ['gameops-test'];
  for (const bucket of buckets) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
      throw new Error(`startS3rver: bad bucket name ${bucket}`);
  }
  const ephemeral = options.dir === undefined;
  const dir = ephemeral ? await makeTempDir('s3rver') : path.resolve(options.dir!);
  const unregister = ephemeral ? removeDirOnExit(dir) : () => {};
  const dispose = async (): Promise<void> => {
    if (!ephemeral) return;
    await fsp.rm(dir, { recursive: true, force: true });
    unregister();
  };
  try {
    await fsp.mkdir(path.join(dir, 'data'), { recursive: true, mode: 0o700 });
    const bin = path.join(
      path.dirname(createRequire(import.meta.url).resolve('s3rver/package.json')),
      'bin',
      's3rver.js',
    );
    const logFile = path.join(dir, 's3rver.log');
    const { server, port } = await withPortRetry(undefined, 's3rver', async (port) => {
      const server = await spawnServer({
        name: 's3rver',
        command: process.execPath,
        args: [
          '--openssl-legacy-provider',
          bin,
          '--directory',
          path.join(dir, 'data'),
          '--address',
          '127.0.0.1',
          '--port',
          String(port),
          ...buckets.flatMap((bucket) => ['--configure-bucket', bucket]),
        ],
        logFile,
        cwd: dir,
        parentDeathSignal: ephemeral ? 'SIGKILL' : 'SIGTERM',
      });
      try {
        await waitUntilReady(server, async () => {
          // Any HTTP answer will do (an unsigned request gets an S3 error document).
          const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2_000) });
          await response.body?.cancel();
          return true;
        });
      } catch (error) {
        await stopServer(server);
        throw error;
      }
      return { server, port };
    });
    let stopping: Promise<void> | undefined;
    return {
      endpoint: `http://127.0.0.1:${port}`,
      port,
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      buckets,
      dir,
      pid: server.pid,
      stop: () => {
        stopping ??= (async () => {
          await stopServer(server);
          await dispose();
        })();
        return stopping;
      },
    };
  } catch (error) {
    await dispose().catch(() => {});
    throw error;
  }
}
