/**
 * The Redis component of a backup set (runbook §5).
 *
 * Backup: an RDB snapshot taken through the replication stream, the way `redis-cli --rdb` does it, so the
 * server only forks (as for BGSAVE) and never stalls: gameops connects as a replica (`REPLCONF rdb-only 1`,
 * `PSYNC ? -1`), reads the `+FULLRESYNC <replid> <offset>` line (the exact replication position of the
 * snapshot) and streams the RDB payload into one object, `dump.rdb`. Not SCAN+DUMP. By default the server
 * writes the snapshot to its own disk first (as BGSAVE does) and then sends it; `diskless` asks for the
 * socket transfer instead, which the server starts only after `repl-diskless-sync-delay` (5 s by default).
 * The password goes over the socket (AUTH), never on a command line. redis-cli 7.0 is not used: with
 * `--rdb -` it appends the 40-byte EOF marker of a diskless transfer to the RDB it writes to stdout.
 *
 * Verification: per-db key counts (`INFO keyspace`) right before and right after the snapshot, and sampled
 * keys (RANDOMKEY per db) whose SHA-256 of a canonical rendering of the value did not change across the
 * snapshot. The sampled key names and digests are written as a second object, `samples.json`, so they are
 * encrypted like the dump: the manifest itself only holds counts (no key names, no values, no digests).
 *
 * Drill and restore load the RDB into a scratch `redis-server` on a free port (the one temp file allowed).
 * Restore then makes the target a replica of that scratch server until the sync is done, which also works
 * when the target has AOF enabled (Redis ignores a replaced dump.rdb at start when AOF is on: redis#837).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import dns from 'node:dns/promises';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import type { RedisConfig } from '../../config/index.ts';
import {
  GameopsError,
  InputError,
  maskSecrets,
  NotFoundError,
  secret,
  sleep,
  UnavailableError,
  VERSION,
  withTimeout,
} from '../../core/index.ts';
import { describeError } from '../../connectors/failures.ts';
import { parseRedisInfoSections, redisError, redisTarget } from '../../connectors/redis.ts';
import type {
  ComponentBackup,
  ComponentDrill,
  ComponentReadContext,
  ComponentWriteContext,
  DrillCheck,
  ManifestComponent,
} from '../types.ts';
import { findExecutable, SYSTEM_BIN_DIRS } from './executables.ts';
import { processStartTime } from '../temp-dirs.ts';

/** The object holding the RDB snapshot. */
export const REDIS_DUMP_OBJECT = 'dump.rdb';
/** The object holding the sampled keys and their digests (encrypted like the dump). */
export const REDIS_SAMPLES_OBJECT = 'samples.json';
/** Values larger than this are not sampled (reading them would cost the server and gameops memory). */
export const MAX_SAMPLED_VALUE_BYTES = 1024 * 1024;

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_SYNC_TIMEOUT_MS = 30 * 60_000;

/** What to back up. */
export interface RedisBackupSource {
  redis: RedisConfig;
  /** Keys sampled per non-empty database (RANDOMKEY), digested before and after the snapshot. */
  samples: number;
  /**
   * Deadline of each step (connect, each command, the handshake, and each wait for snapshot bytes); a
   * server that accepts the connection and never answers fails here. @default 30000
   */
  timeoutMs?: number;
  /** Ask for a diskless (socket) transfer instead of the server writing the RDB to its disk first. */
  diskless?: boolean;
}

/** Per-database key counts from `INFO keyspace`, e.g. `{ db0: { keys: 20000, expires: 120 } }`. */
export type RedisKeyspace = Record<string, { keys: number; expires: number }>;

/** The `verification` of a Redis component in the manifest. Only counts: nothing of the data. */
export interface RedisVerification {
  format: 'gameops-redis/1';
  /** `INFO keyspace` right before the snapshot. */
  keyspaceBefore: RedisKeyspace;
  /** `INFO keyspace` right after the snapshot; the drill accepts counts between the two. */
  keyspaceAfter: RedisKeyspace;
  samples: {
    /** The object with the kept samples, or null when none was kept. */
    object: string | null;
    /** Sampled keys whose digest did not change across the snapshot (compared by the drill). */
    kept: number;
    /** Sampled keys that changed, expired or were deleted during the snapshot (not compared). */
    volatile: number;
    /** Sampled keys skipped because the value is larger than 1 MiB or of a module type. */
    skipped: number;
    /** Kept samples that carry a TTL (a drill treats them as expired when missing). */
    withTtl: number;
  };
  rdbBytes: number;
}

/** One sampled key as stored in `samples.json` (inside the encrypted object only). */
interface StoredSample {
  db: number;
  /** The key name, base64 (keys are binary-safe). */
  key: string;
  type: string;
  sha256: string;
  ttl: boolean;
}

interface SamplesDocument {
  format: 'gameops-redis-samples/1';
  samples: StoredSample[];
}

// ---------------------------------------------------------------------------------------------------
// Backup

/**
 * Takes an RDB snapshot of `source.redis` through the replication stream and writes it as one object,
 * `dump.rdb` (plus `samples.json` with the sampled keys' digests). The server forks as for BGSAVE; it is
 * never blocked by gameops. The user needs the SYNC/PSYNC and REPLCONF commands (`@admin`).
 *
 * @throws UnavailableError naming the server (never the password) when it is down, does not answer
 *   within `timeoutMs`, or the transfer breaks; InputError when authentication fails. The dump object's
 *   writer is aborted then, so nothing half-written is left.
 */
export async function backupRedis(
  source: RedisBackupSource,
  ctx: ComponentWriteContext,
): Promise<ComponentBackup> {
  const config = source.redis;
  const timeoutMs = source.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(source.samples) || source.samples < 0)
    throw new InputError(`Redis backup: samples must be a whole number ≥ 0, got ${source.samples}`);
  const notes: string[] = [];
  const redis = await openRedis(config, { timeoutMs, signal: ctx.signal, doing: 'connect' });
  try {
    const info = await command(redis, config, 'INFO', () => redis.info('server'));
    const redisVersion = parseRedisInfoSections(info)['server']?.['redis_version'] ?? 'unknown';
    await refuseCluster(redis, config, 'back up');

    ctx.progress.phase('redis: sampling keys');
    const keyspaceBefore = await readKeyspace(redis, config);
    const sampled: Array<StoredSample & { raw: Buffer }> = [];
    let skipped = 0;
    for (const [name, counts] of Object.entries(keyspaceBefore)) {
      if (counts.keys === 0 || source.samples === 0) continue;
      const db = Number(name.slice(2));
      await command(redis, config, `SELECT ${db}`, () => redis.select(db));
      const seen = new Set<string>();
      for (let attempt = 0; attempt < source.samples * 2 && seen.size < source.samples; attempt++) {
        ctx.signal.throwIfAborted();
        const key = (await command(redis, config, 'RANDOMKEY', () =>
          redis.callBuffer('RANDOMKEY'),
        )) as Buffer | null;
        if (key === null) break;
        const id = key.toString('base64');
        if (seen.has(id)) continue;
        seen.add(id);
        const digest = await digestKey(redis, config, key);
        if (digest === 'skip') skipped++;
        else if (digest !== 'missing') sampled.push({ db, key: id, raw: key, ...digest });
      }
    }

    const snapshot = await streamSnapshot(config, ctx, { timeoutMs, diskless: source.diskless === true });
    if (!snapshot.rdbOnly)
      notes.push('The server does not know REPLCONF rdb-only (Redis < 7.0); the snapshot is the same.');
    notes.push(
      snapshot.transfer === 'disk'
        ? 'The server wrote the snapshot to its own disk (as for BGSAVE) and then sent it: a disk-based sync.'
        : 'The server streamed the snapshot over the socket (diskless sync), nothing written on its disk.',
    );
    const keyspaceAfter = await readKeyspace(redis, config);

    // Keep only samples whose value did not change across the snapshot: they are what the RDB holds.
    const kept: StoredSample[] = [];
    let volatile = 0;
    for (const sample of sampled) {
      ctx.signal.throwIfAborted();
      await command(redis, config, `SELECT ${sample.db}`, () => redis.select(sample.db));
      const after = await digestKey(redis, config, sample.raw);
      if (typeof after === 'object' && after.sha256 === sample.sha256 && after.type === sample.type) {
        kept.push({
          db: sample.db,
          key: sample.key,
          type: sample.type,
          sha256: sample.sha256,
          ttl: sample.ttl,
        });
      } else volatile++;
    }
    let samplesObject: string | null = null;
    if (kept.length > 0) {
      const doc: SamplesDocument = { format: 'gameops-redis-samples/1', samples: kept };
      await ctx.write(REDIS_SAMPLES_OBJECT, Readable.from([Buffer.from(JSON.stringify(doc))]));
      samplesObject = REDIS_SAMPLES_OBJECT;
    }

    const drift = keyspaceDrift(keyspaceBefore, keyspaceAfter);
    if (drift.length > 0)
      notes.push(
        `Key counts changed during the snapshot (${drift.join(', ')}); a drill accepts counts in that range.`,
      );
    if (volatile > 0)
      notes.push(`${volatile} sampled key(s) changed or expired during the snapshot and are not compared.`);
    if (skipped > 0)
      notes.push(`${skipped} sampled key(s) were larger than 1 MiB or of a module type: not compared.`);
    const expiring = Object.values(keyspaceAfter).reduce((sum, c) => sum + c.expires, 0);
    if (expiring > 0)
      notes.push(
        `${expiring} key(s) carry a TTL; they may expire between backup and drill or restore (counted as expired, not as failures).`,
      );
    const verification: RedisVerification = {
      format: 'gameops-redis/1',
      keyspaceBefore,
      keyspaceAfter,
      samples: {
        object: samplesObject,
        kept: kept.length,
        volatile,
        skipped,
        withTtl: kept.filter((s) => s.ttl).length,
      },
      rdbBytes: snapshot.bytes,
    };
    ctx.progress.note(`redis ${redisTarget(config)}: ${snapshot.bytes} bytes of RDB, ${kept.length} samples`);
    return {
      tool: { name: 'gameops replica', version: `${VERSION} (PSYNC${source.diskless ? ', diskless' : ''})` },
      source: {
        master_replid: snapshot.replid,
        master_repl_offset: snapshot.offset,
        redis_version: redisVersion,
      },
      verification,
      notes,
    };
  } finally {
    redis.disconnect();
  }
}

/** Per-db changes between two keyspaces, e.g. `db0 20000→20012`. */
function keyspaceDrift(before: RedisKeyspace, after: RedisKeyspace): string[] {
  const out: string[] = [];
  for (const db of dbNames(before, after)) {
    const b = before[db]?.keys ?? 0;
    const a = after[db]?.keys ?? 0;
    if (a !== b) out.push(`${db} ${b}→${a}`);
  }
  return out;
}

function dbNames(...spaces: RedisKeyspace[]): string[] {
  const names = new Set<string>();
  for (const space of spaces) for (const name of Object.keys(space)) names.add(name);
  return [...names].sort((a, b) => Number(a.slice(2)) - Number(b.slice(2)));
}

interface Snapshot {
  replid: string;
  offset: number;
  bytes: number;
  rdbOnly: boolean;
  transfer: 'disk' | 'socket';
}

/** Connects as a replica, streams the RDB payload into the `dump.rdb` object; aborts the object on failure. */
async function streamSnapshot(
  config: RedisConfig,
  ctx: ComponentWriteContext,
  options: { timeoutMs: number; diskless: boolean },
): Promise<Snapshot> {
  const replica = await ReplicaConnection.open(config, options.timeoutMs, ctx.signal);
  try {
    const rdbOnly = await replica.handshake(options.diskless);
    const { length, ...position } = await replica.fullResync();
    ctx.progress.phase('redis: snapshot', length);
    const writer = ctx.open(REDIS_DUMP_OBJECT);
    let bytes = 0;
    try {
      for await (const chunk of replica.payload()) {
        ctx.signal.throwIfAborted();
        await writer.write(chunk);
        bytes += chunk.length;
        ctx.progress.add(chunk.length);
      }
      await writer.end();
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      await writer.abort(error);
      throw error;
    }
    return { ...position, bytes, rdbOnly, transfer: length === undefined ? 'socket' : 'disk' };
  } finally {
    replica.close();
  }
}

/**
 * A replica's side of the replication handshake over a raw socket: what `redis-cli --rdb` does, with a
 * deadline on every wait for the server and backpressure from the consumer to the socket.
 */
class ReplicaConnection {
  readonly #config: RedisConfig;
  readonly #socket: net.Socket;
  readonly #iterator: AsyncIterator<Buffer>;
  readonly #timeoutMs: number;
  readonly #signal: AbortSignal;
  #pending: Buffer = Buffer.alloc(0);
  #ended = false;
  #header: { kind: 'length'; length: number } | { kind: 'eof'; mark: Buffer } | undefined;

  private constructor(config: RedisConfig, socket: net.Socket, timeoutMs: number, signal: AbortSignal) {
    this.#config = config;
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    this.#signal = signal;
    this.#iterator = (socket as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  static async open(config: RedisConfig, timeoutMs: number, signal: AbortSignal): Promise<ReplicaConnection> {
    const what = `Redis at ${redisTarget(config)}`;
    const socket = await withTimeout(
      `${what} (connect)`,
      timeoutMs,
      (deadline) =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = config.tls
            ? tls.connect({ host: config.host, port: config.port, servername: config.host })
            : net.connect({ host: config.host, port: config.port });
          const onAbort = (): void => {
            s.destroy();
            reject(
              deadline.reason instanceof Error ? deadline.reason : new UnavailableError(`${what}: aborted`),
            );
          };
          deadline.addEventListener('abort', onAbort, { once: true });
          s.once(config.tls ? 'secureConnect' : 'connect', () => {
            deadline.removeEventListener('abort', onAbort);
            s.removeAllListeners('error');
            s.on('error', () => undefined);
            resolve(s);
          });
          s.once('error', (err) => {
            deadline.removeEventListener('abort', onAbort);
            s.destroy();
            reject(redisError(err, config, 'connect'));
          });
        }),
      signal,
    );
    return new ReplicaConnection(config, socket, timeoutMs, signal);
  }

  /** AUTH, `REPLCONF rdb-only 1`, and `REPLCONF capa eof` for a diskless transfer. Resolves with rdb-only support. */
  async handshake(diskless: boolean): Promise<boolean> {
    const password = this.#config.password?.reveal();
    if (password !== undefined) {
      const args = this.#config.username ? ['AUTH', this.#config.username, password] : ['AUTH', password];
      const reply = await this.#request(args, 'AUTH');
      if (!reply.startsWith('+')) throw this.#fail(reply.slice(1), 'AUTH');
    }
    const rdbOnly = await this.#request(['REPLCONF', 'rdb-only', '1'], 'REPLCONF rdb-only');
    if (rdbOnly.startsWith('-') && /^-(NOAUTH|NOPERM|WRONGPASS)/.test(rdbOnly))
      throw this.#fail(rdbOnly.slice(1), 'REPLCONF');
    if (diskless) {
      const capa = await this.#request(['REPLCONF', 'capa', 'eof'], 'REPLCONF capa');
      if (!capa.startsWith('+')) throw this.#fail(capa.slice(1), 'REPLCONF capa eof');
    }
    return rdbOnly.startsWith('+');
  }

  /** `PSYNC ? -1`: the replication id and offset of the snapshot, then the payload header. */
  async fullResync(): Promise<{ replid: string; offset: number; length: number | undefined }> {
    const reply = await this.#request(['PSYNC', '?', '-1'], 'PSYNC');
    const match = /^\+FULLRESYNC ([0-9a-f]{40}) (\d+)$/.exec(reply);
    if (!match) throw this.#fail(reply.replace(/^[-+]/, ''), 'PSYNC');
    const header = await this.#readLine('the RDB transfer to start');
    const eof = /^\$EOF:(.{40})$/.exec(header);
    const length = /^\$(\d+)$/.exec(header);
    if (eof) this.#header = { kind: 'eof', mark: Buffer.from(eof[1]!, 'latin1') };
    else if (length) this.#header = { kind: 'length', length: Number(length[1]) };
    else throw this.#fail(`unexpected reply ${JSON.stringify(header.slice(0, 60))}`, 'PSYNC');
    const known = this.#header.kind === 'length' ? this.#header.length : undefined;
    return { replid: match[1]!, offset: Number(match[2]), length: known };
  }

  /** The RDB bytes (without the protocol's framing or EOF marker); checks the RDB signature. */
  async *payload(): AsyncGenerator<Buffer> {
    const header = this.#header;
    if (!header) throw new GameopsError('internal', 'Redis replica: payload() before fullResync()');
    let checkedSignature = false;
    const check = (chunk: Buffer): void => {
      if (checkedSignature || chunk.length === 0) return;
      if (chunk.length >= 5 && chunk.subarray(0, 5).toString('latin1') !== 'REDIS')
        throw this.#fail('the transfer is not an RDB file (no REDIS signature)', 'reading the snapshot');
      checkedSignature = true;
    };
    if (header.kind === 'length') {
      let remaining = header.length;
      while (remaining > 0) {
        const chunk = this.#pending.length > 0 ? this.#take() : await this.#next('snapshot bytes');
        if (chunk === undefined)
          throw this.#fail(
            `the connection closed after ${header.length - remaining} of ${header.length} bytes`,
            'reading the snapshot',
          );
        const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
        remaining -= part.length;
        check(part);
        yield part;
      }
      return;
    }
    // EOF-marked transfer: the payload ends with a 40-byte random marker; hold back that many bytes.
    const markSize = header.mark.length;
    let tail = Buffer.alloc(0);
    for (;;) {
      const chunk = this.#pending.length > 0 ? this.#take() : await this.#next('snapshot bytes');
      if (chunk === undefined)
        throw this.#fail('the connection closed before the end-of-transfer marker', 'reading the snapshot');
      const combined = Buffer.concat([tail, chunk]);
      if (combined.length >= markSize && combined.subarray(combined.length - markSize).equals(header.mark)) {
        const last = combined.subarray(0, combined.length - markSize);
        check(last);
        if (last.length > 0) yield last;
        return;
      }
      const emit = combined.subarray(0, Math.max(0, combined.length - markSize));
      tail = Buffer.from(combined.subarray(emit.length));
      check(emit);
      if (emit.length > 0) yield emit;
    }
  }

  close(): void {
    this.#socket.destroy();
  }

  #fail(reason: string, doing: string): GameopsError {
    return redisError(new Error(reason), this.#config, doing);
  }

  #take(): Buffer {
    const chunk = this.#pending;
    this.#pending = Buffer.alloc(0);
    return chunk;
  }

  async #request(args: string[], doing: string): Promise<string> {
    const payload = Buffer.concat([
      Buffer.from(`*${args.length}\r\n`),
      ...args.map((a) =>
        Buffer.concat([Buffer.from(`$${Buffer.byteLength(a)}\r\n`), Buffer.from(a), Buffer.from('\r\n')]),
      ),
    ]);
    this.#socket.write(payload);
    return this.#readLine(`${doing} reply`);
  }

  /** The next reply line, skipping the empty keepalive lines a master sends while it prepares the RDB. */
  async #readLine(waitingFor: string): Promise<string> {
    for (;;) {
      const newline = this.#pending.indexOf(0x0a);
      if (newline >= 0) {
        const line = this.#pending.subarray(0, newline).toString('latin1').replace(/\r$/, '');
        this.#pending = this.#pending.subarray(newline + 1);
        if (line === '') continue;
        return line;
      }
      if (this.#pending.length > 64 * 1024) throw this.#fail('reply line longer than 64 KiB', waitingFor);
      const chunk = await this.#next(waitingFor);
      if (chunk === undefined) throw this.#fail('the server closed the connection', waitingFor);
      this.#pending = Buffer.concat([this.#pending, chunk]);
    }
  }

  /** The next chunk from the socket, or undefined at its end; fails after `timeoutMs` without data. */
  async #next(waitingFor: string): Promise<Buffer | undefined> {
    if (this.#ended) return undefined;
    const result = await withTimeout(
      `Redis at ${redisTarget(this.#config)} (waiting for ${waitingFor})`,
      this.#timeoutMs,
      async (deadline) =>
        new Promise<IteratorResult<Buffer>>((resolve, reject) => {
          const onAbort = (): void => {
            this.#socket.destroy();
            reject(deadline.reason instanceof Error ? deadline.reason : new UnavailableError('aborted'));
          };
          deadline.addEventListener('abort', onAbort, { once: true });
          this.#iterator.next().then(
            (r) => {
              deadline.removeEventListener('abort', onAbort);
              resolve(r);
            },
            (err: unknown) => {
              deadline.removeEventListener('abort', onAbort);
              reject(redisError(err, this.#config, `waiting for ${waitingFor}`));
            },
          );
        }),
      this.#signal,
    );
    if (result.done) {
      this.#ended = true;
      return undefined;
    }
    return result.value;
  }
}

// ---------------------------------------------------------------------------------------------------
// Commands and digests

/** Opens an ioredis connection with gameops's fail-fast settings and a deadline on connecting. */
async function openRedis(
  config: RedisConfig,
  options: { timeoutMs: number; signal?: AbortSignal | undefined; doing: string },
): Promise<Redis> {
  const redis = new Redis({
    host: config.host,
    port: config.port,
    ...(config.username ? { username: config.username } : {}),
    ...(config.password ? { password: config.password.reveal() } : {}),
    db: 0,
    ...(config.tls ? { tls: { servername: config.host } } : {}),
    // RESP2: the replies digested for samples keep one shape whatever the client's default protocol.
    protocol: 2,
    lazyConnect: true,
    connectTimeout: options.timeoutMs,
    commandTimeout: options.timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: null,
    reconnectOnError: null,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    autoResendUnfulfilledCommands: false,
    disconnectTimeout: 200,
    connectionName: 'gameops-backup',
  });
  let lastError: unknown;
  redis.on('error', (err: unknown) => {
    lastError = err;
  });
  try {
    await withTimeout(
      `Redis at ${redisTarget(config)} (${options.doing})`,
      options.timeoutMs,
      async (deadline) => {
        deadline.addEventListener('abort', () => redis.disconnect(), { once: true });
        await redis.connect();
        // AUTH and CLIENT SETNAME are sent on connect; a PING proves the server answers.
        await redis.ping();
      },
      options.signal,
    );
  } catch (err) {
    redis.disconnect();
    if (err instanceof GameopsError) throw maskError(err, config);
    throw redisError(lastError ?? err, config, options.doing);
  }
  return redis;
}

function maskError(err: GameopsError, config: RedisConfig): GameopsError {
  const message = maskSecrets(err.message, [config.password]);
  if (message === err.message) return err;
  return new UnavailableError(message, { details: { target: redisTarget(config) } });
}

/** Runs one command; failures become gameops errors naming the server (password masked). */
async function command<T>(
  redis: Redis,
  config: RedisConfig,
  doing: string,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw redisError(err, config, doing);
  }
}

/**
 * Refuses a Redis Cluster node (`INFO cluster` says `cluster_enabled:1`): one node holds only its own
 * hash slots, so its snapshot is not the dataset, and a restore would not give the cluster its data.
 * @throws InputError naming the node.
 */
async function refuseCluster(redis: Redis, config: RedisConfig, doing: string): Promise<void> {
  const text = await command(redis, config, 'INFO cluster', () => redis.info('cluster'));
  if (parseRedisInfoSections(text)['cluster']?.['cluster_enabled'] === '1')
    throw new InputError(
      `Redis at ${redisTarget(config)} is a Redis Cluster node (cluster_enabled:1): gameops cannot ${doing} a cluster, ` +
        'since one node holds only its own hash slots, not the whole dataset; only a standalone Redis (a primary, with or without replicas) is supported',
    );
}

async function readKeyspace(redis: Redis, config: RedisConfig): Promise<RedisKeyspace> {
  const text = await command(redis, config, 'INFO keyspace', () => redis.info('keyspace'));
  return parseKeyspace(text);
}

/** Parses `INFO keyspace` (`db0:keys=1,expires=0,avg_ttl=0`). Pure. */
export function parseKeyspace(text: string): RedisKeyspace {
  const out: RedisKeyspace = {};
  const section = parseRedisInfoSections(text)['keyspace'] ?? {};
  for (const [name, value] of Object.entries(section)) {
    if (!/^db\d+$/.test(name)) continue;
    const fields = Object.fromEntries(value.split(',').map((part) => part.split('=') as [string, string]));
    out[name] = { keys: Number(fields['keys'] ?? 0), expires: Number(fields['expires'] ?? 0) };
  }
  return out;
}

type Digest = { type: string; sha256: string; ttl: boolean } | 'missing' | 'skip';

/**
 * SHA-256 of a canonical rendering of a key's value: the type, then every element length-prefixed
 * (hash fields and set members sorted, lists and sorted sets in their order, streams entry by entry).
 * `missing` when the key does not exist; `skip` above 1 MiB or for module types.
 */
async function digestKey(redis: Redis, config: RedisConfig, key: Buffer): Promise<Digest> {
  const call = (cmd: string, ...args: Array<string | Buffer | number>): Promise<unknown> =>
    command(redis, config, cmd, () => redis.callBuffer(cmd, ...args));
  const type = String(await call('TYPE', key));
  if (type === 'none') return 'missing';
  const collections = ['hash', 'list', 'set', 'zset', 'stream'];
  if (type !== 'string' && !collections.includes(type)) return 'skip';
  const size =
    type === 'string' ? Number(await call('STRLEN', key)) : Number((await call('MEMORY', 'USAGE', key)) ?? 0);
  if (size > MAX_SAMPLED_VALUE_BYTES) return 'skip';
  let value: unknown;
  switch (type) {
    case 'string':
      value = await call('GET', key);
      break;
    case 'hash': {
      const flat = ((await call('HGETALL', key)) ?? []) as Buffer[];
      const pairs: Array<[Buffer, Buffer]> = [];
      for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
      pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
      value = pairs.flat();
      break;
    }
    case 'list':
      value = await call('LRANGE', key, 0, -1);
      break;
    case 'set':
      value = (((await call('SMEMBERS', key)) ?? []) as Buffer[]).sort((a, b) => Buffer.compare(a, b));
      break;
    case 'zset': {
      // Scores are rendered canonically: Redis 7.0 prints `%.17g` (0.10000000000000001), 7.2+ the
      // shortest round-trip form (0.1), so the server's text would differ between backup and drill.
      const flat = ((await call('ZRANGE', key, 0, -1, 'WITHSCORES')) ?? []) as Buffer[];
      value = flat.map((item, i) => (i % 2 === 1 ? canonicalScore(item.toString('latin1')) : item));
      break;
    }
    default:
      value = await call('XRANGE', key, '-', '+');
  }
  if (value === null) return 'missing';
  const hash = createHash('sha256');
  hash.update(type);
  render(hash, value);
  const pttl = Number(await call('PTTL', key));
  return { type, sha256: hash.digest('hex'), ttl: pttl > 0 };
}

/**
 * A sorted-set score as text that does not depend on the server's version: the shortest string that
 * round-trips the double (JavaScript's Number → String), `inf`/`-inf` for the infinities, `0` for -0.
 * Pure. @throws InputError when the text is not a number.
 */
export function canonicalScore(text: string): string {
  const t = text.trim().toLowerCase();
  if (t === 'inf' || t === '+inf' || t === 'infinity' || t === '+infinity') return 'inf';
  if (t === '-inf' || t === '-infinity') return '-inf';
  const n = t === '' ? NaN : Number(t);
  if (Number.isNaN(n)) throw new InputError(`sorted-set score ${JSON.stringify(text)} is not a number`);
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  return String(n === 0 ? 0 : n);
}

function render(hash: ReturnType<typeof createHash>, value: unknown): void {
  const length = Buffer.alloc(5);
  if (Array.isArray(value)) {
    length.writeUInt8(0x2a, 0);
    length.writeUInt32BE(value.length, 1);
    hash.update(length);
    for (const item of value) render(hash, item);
    return;
  }
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(String(value));
  length.writeUInt8(0x24, 0);
  length.writeUInt32BE(bytes.length, 1);
  hash.update(length);
  hash.update(bytes);
}

// ---------------------------------------------------------------------------------------------------
// Scratch server (drill and restore)

/** Finds `redis-server` on PATH or in the usual directories. @throws NotFoundError naming the Debian package. */
export async function findRedisServer(): Promise<string> {
  const found = await findExecutable('redis-server');
  if (found) return found;
  throw new NotFoundError(
    `redis-server not found on PATH or in ${SYSTEM_BIN_DIRS.join(', ')}; install the Debian package redis-server`,
  );
}

/**
 * The directory where each running scratch redis-server is recorded (one JSON file per server: its pid and
 * start time, its owner's pid and start time, its private directory), so that a later gameops can stop
 * the servers and remove the RDB copies of a gameops that died without running its clean-up.
 */
export function scratchRegistryDir(): string {
  return path.join(os.tmpdir(), `gameops-redis-scratch-${process.getuid?.() ?? 'user'}`);
}

interface ScratchRecord {
  pid: number;
  start: string;
  ownerPid: number;
  ownerStart: string;
  dir: string;
}

/** The registry directory if it is ours: a real directory owned by this user, closed to others (0700). */
async function registryDir(create: boolean): Promise<string | undefined> {
  const dir = scratchRegistryDir();
  if (create) await fsp.mkdir(dir, { mode: 0o700 }).catch(() => undefined);
  const st = await fsp.lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  if ((process.getuid && st.uid !== process.getuid()) || (st.mode & 0o077) !== 0) return undefined;
  return dir;
}

async function registerScratch(
  pid: number,
  dir: string,
  ctx: ComponentReadContext,
): Promise<string | undefined> {
  const registry = await registryDir(true);
  const start = processStartTime(pid);
  const ownerStart = processStartTime(process.pid);
  if (registry === undefined || start === undefined || ownerStart === undefined) {
    ctx.log.warn(
      { registry: scratchRegistryDir() },
      'cannot record the scratch redis-server (the registry directory is missing, not a private directory of this user, or /proc is unreadable): a later run could not clean it up if gameops dies',
    );
    return undefined;
  }
  const record: ScratchRecord = { pid, start, ownerPid: process.pid, ownerStart, dir };
  const file = path.join(registry, `${pid}.json`);
  await fsp.writeFile(file, JSON.stringify(record), { mode: 0o600 });
  return file;
}

/**
 * Stops the scratch redis-servers recorded by gameops processes that no longer run (SIGKILLed, OOM-killed)
 * and removes their private directories (with the RDB copy). Servers of live gameops processes, including
 * concurrent ones, are left alone; a pid is only killed when its start time and name still match the
 * record. Runs before every drill and restore. Resolves with one line per server cleaned up.
 */
export async function sweepOrphanedScratchServers(): Promise<string[]> {
  const registry = await registryDir(false);
  if (registry === undefined) return [];
  const cleaned: string[] = [];
  for (const name of await fsp.readdir(registry).catch(() => [] as string[])) {
    if (!/^\d+\.json$/.test(name)) continue;
    const file = path.join(registry, name);
    let record: Partial<ScratchRecord>;
    try {
      record = JSON.parse(await fsp.readFile(file, 'utf8')) as Partial<ScratchRecord>;
    } catch {
      continue; // Being written right now, or not ours.
    }
    const { pid, start, ownerPid, ownerStart, dir } = record;
    if (typeof pid !== 'number' || typeof ownerPid !== 'number' || typeof dir !== 'string') continue;
    if (processStartTime(ownerPid) === ownerStart) continue; // Its gameops still runs.
    let killed = false;
    const comm = await fsp.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (processStartTime(pid) === start && /^(redis-server|setpriv)/.test(comm)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed = true;
      } catch {
        // Gone in between.
      }
    }
    if (path.isAbsolute(dir) && path.basename(dir).startsWith('redis-'))
      await fsp.rm(dir, { recursive: true, force: true });
    await fsp.rm(file, { force: true });
    cleaned.push(
      `pid ${pid}${killed ? ' killed' : ' already gone'}, ${dir} removed (owner pid ${ownerPid} is gone)`,
    );
  }
  return cleaned;
}

interface ScratchServer {
  host: string;
  port: number;
  password: string;
  config: RedisConfig;
  redis: Redis;
  bytes: number;
  stop(): Promise<void>;
}

/**
 * Writes the RDB of the backup to a 0600 file in a private directory under `ctx.tempDir` and starts a
 * `redis-server` on it (config from stdin, a random password, bound to `host`), resolving once the data
 * is loaded. stop() shuts it down and removes the directory.
 */
async function startScratchServer(
  backup: ManifestComponent,
  ctx: ComponentReadContext,
  host: string,
  loadTimeoutMs: number,
): Promise<ScratchServer> {
  if (!backup.objects.some((o) => o.name === REDIS_DUMP_OBJECT))
    throw new NotFoundError(`Redis backup of set ${ctx.setId} has no ${REDIS_DUMP_OBJECT} object`);
  const binary = await findRedisServer();
  const setpriv = await findExecutable('setpriv');
  const swept = await sweepOrphanedScratchServers();
  for (const line of swept)
    ctx.log.warn({ scratch: line }, 'removed a scratch redis-server left by a gameops that died');
  const dir = await fsp.mkdtemp(path.join(ctx.tempDir, 'redis-'));
  await fsp.chmod(dir, 0o700);
  let child: ChildProcess | undefined;
  let redis: Redis | undefined;
  const records: string[] = [];
  const stop = async (): Promise<void> => {
    redis?.disconnect();
    if (child) await stopProcess(child);
    await fsp.rm(dir, { recursive: true, force: true });
    for (const record of records.splice(0)) await fsp.rm(record, { force: true });
  };
  try {
    const file = path.join(dir, 'dump.rdb');
    let bytes = 0;
    ctx.progress.phase(
      'redis: download',
      backup.objects.find((o) => o.name === REDIS_DUMP_OBJECT)?.plainSize,
    );
    const counter = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        bytes += chunk.length;
        ctx.progress.add(chunk.length);
        yield chunk;
      }
    };
    await pipeline(ctx.read(REDIS_DUMP_OBJECT), counter, fs.createWriteStream(file, { mode: 0o600 }), {
      signal: ctx.signal,
    });
    await fsp.chmod(file, 0o600);

    ctx.progress.phase('redis: load');
    const password = randomBytes(24).toString('hex');
    const logFile = path.join(dir, 'redis.log');
    for (let attempt = 1; ; attempt++) {
      const port = await freeLoopbackPort(host);
      const lines = [
        `port ${port}`,
        `bind ${host}`,
        'protected-mode yes',
        'daemonize no',
        `dir ${quote(dir)}`,
        'dbfilename dump.rdb',
        `logfile ${quote(logFile)}`,
        'appendonly no',
        'save ""',
        `requirepass ${password}`,
        // A replica (restore) gets the data over the socket at once, without a copy on disk.
        'repl-diskless-sync yes',
        'repl-diskless-sync-delay 0',
      ];
      // With setpriv (util-linux), the kernel SIGKILLs the server when gameops dies, even by SIGKILL or
      // the OOM killer; the registry below catches what is left when setpriv is missing.
      const proc = setpriv
        ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', binary, '-'], {
            stdio: ['pipe', 'ignore', 'ignore'],
            cwd: dir,
          })
        : spawn(binary, ['-'], { stdio: ['pipe', 'ignore', 'ignore'], cwd: dir });
      trackChild(proc);
      if (proc.pid !== undefined) {
        const record = await registerScratch(proc.pid, dir, ctx);
        if (record !== undefined) records.push(record);
      }
      const exited = new Promise<number | null>((resolve) => {
        proc.once('exit', (code) => resolve(code));
        proc.once('error', () => resolve(-1));
      });
      proc.stdin?.on('error', () => undefined);
      proc.stdin?.end(lines.join('\n') + '\n');
      child = proc;
      const config: RedisConfig = { host, port, password: secret(password, 'generated'), db: 0, tls: false };
      const ready = await waitLoaded(config, exited, loadTimeoutMs, ctx.signal);
      if (ready.ok) {
        redis = ready.redis;
        return { host, port, password, config, redis, bytes, stop };
      }
      await stopProcess(proc);
      child = undefined;
      const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
      if (attempt < 3 && /Address already in use/.test(log)) continue;
      const tail = log.trim().split('\n').slice(-3).join(' | ');
      throw new UnavailableError(
        `scratch redis-server (${binary}) on ${host}:${port} could not load ${REDIS_DUMP_OBJECT} of set ${ctx.setId}: ${ready.reason}${tail ? ` (log: ${tail})` : ''}`,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Polls the scratch server until it answers and `INFO persistence` says `loading:0`. */
async function waitLoaded(
  config: RedisConfig,
  exited: Promise<number | null>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ ok: true; redis: Redis } | { ok: false; reason: string }> {
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });
  const start = performance.now();
  let last = 'not started';
  let redis: Redis | undefined;
  while (performance.now() - start < timeoutMs) {
    signal.throwIfAborted();
    if (exitCode !== undefined) return { ok: false, reason: `it exited with code ${exitCode}` };
    try {
      redis ??= await openRedis(config, { timeoutMs: 2_000, doing: 'connect' });
      const info = parseRedisInfoSections(await redis.info('persistence'));
      if (info['persistence']?.['loading'] === '0') return { ok: true, redis };
      last = 'still loading';
    } catch (err) {
      redis?.disconnect();
      redis = undefined;
      last = describeError(err);
    }
    await sleep(50);
  }
  redis?.disconnect();
  return { ok: false, reason: `not ready within ${timeoutMs} ms (${last})` };
}

/** Scratch servers still running: killed if gameops exits before their stop() ran. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const live of liveChildren) live.kill('SIGKILL');
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await gone;
  clearTimeout(timer);
}

function quote(value: string): string {
  if (/[\r\n\0]/.test(value))
    throw new InputError(`path ${JSON.stringify(value)} cannot go into a redis config`);
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

async function freeLoopbackPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (err) =>
      reject(
        new UnavailableError(`cannot listen on ${host} for a scratch redis-server: ${describeError(err)}`),
      ),
    );
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function verificationOf(backup: ManifestComponent): RedisVerification {
  const v = backup.verification as Partial<RedisVerification> | null;
  if (!v || v.format !== 'gameops-redis/1' || !v.keyspaceBefore || !v.keyspaceAfter || !v.samples)
    throw new InputError(`Redis component of the manifest has no gameops-redis/1 verification`);
  return v as RedisVerification;
}

// ---------------------------------------------------------------------------------------------------
// Drill

/**
 * Restores the backup's RDB into a scratch `redis-server` on a free loopback port and compares it with
 * what was recorded: per-db key counts (accepted within the drift seen during the snapshot, and lower by
 * keys with a TTL that expired since) and the sampled values' digests (a missing sampled key with a TTL
 * counts as expired). The scratch server and its file are always removed.
 *
 * @throws NotFoundError when `redis-server` is not installed or the dump object is not in the manifest;
 *   UnavailableError when the scratch server cannot load the RDB.
 */
export async function drillRedis(
  backup: ManifestComponent,
  ctx: ComponentReadContext,
): Promise<ComponentDrill> {
  const started = performance.now();
  const verification = verificationOf(backup);
  const scratch = await startScratchServer(backup, ctx, '127.0.0.1', DEFAULT_SYNC_TIMEOUT_MS);
  try {
    const checks: DrillCheck[] = [];
    const notes: string[] = [];
    const actual = parseKeyspace(await scratch.redis.info('keyspace'));
    checks.push(...compareKeyspace(verification, actual, notes));

    if (verification.samples.object !== null) {
      const doc = await readSamples(ctx, verification.samples.object);
      let matched = 0;
      let expired = 0;
      const failures: string[] = [];
      for (const [index, sample] of doc.samples.entries()) {
        await scratch.redis.select(sample.db);
        const digest = await digestKey(scratch.redis, scratch.config, Buffer.from(sample.key, 'base64'));
        const label = `sample #${index + 1} (db${sample.db}, ${sample.type})`;
        if (digest === 'missing') {
          if (sample.ttl) expired++;
          else failures.push(`${label} is missing`);
        } else if (digest === 'skip' || digest.sha256 !== sample.sha256 || digest.type !== sample.type) {
          failures.push(`${label} differs`);
        } else matched++;
      }
      checks.push({
        subject: 'sampled values',
        expected: `${doc.samples.length} values as digested at backup time`,
        actual: `${matched} equal, ${expired} expired, ${failures.length} differ`,
        ok: failures.length === 0,
        note: failures.length > 0 ? failures.slice(0, 10).join('; ') : undefined,
      });
      if (expired > 0)
        notes.push(`${expired} sampled key(s) with a TTL had expired: not counted as failures.`);
    } else {
      notes.push('No sampled values were kept at backup time; only key counts are compared.');
    }
    if (verification.samples.volatile > 0)
      notes.push(
        `${verification.samples.volatile} sampled key(s) changed during the snapshot and were not recorded.`,
      );
    return {
      component: 'redis',
      ok: checks.every((c) => c.ok),
      checks,
      notes,
      bytes: scratch.bytes,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    await scratch.stop();
  }
}

/** Per-db key count checks: accepted between the counts before and after the snapshot, minus expired keys. */
function compareKeyspace(
  verification: RedisVerification,
  actual: RedisKeyspace,
  notes: string[],
): DrillCheck[] {
  const checks: DrillCheck[] = [];
  const { keyspaceBefore: before, keyspaceAfter: after } = verification;
  for (const db of dbNames(before, after, actual)) {
    const b = before[db]?.keys ?? 0;
    const a = after[db]?.keys ?? 0;
    const expiring = Math.max(before[db]?.expires ?? 0, after[db]?.expires ?? 0);
    const got = actual[db]?.keys ?? 0;
    const hi = Math.max(a, b);
    const lo = Math.min(a, b);
    const ok = got <= hi && got >= lo - expiring;
    let note: string | undefined;
    if (a !== b) note = `counts changed during the snapshot (${b} before, ${a} after): accepted in between`;
    if (ok && got < lo) {
      note = `${note ? `${note}; ` : ''}${lo - got} fewer: keys with a TTL (${expiring} at backup time) expired since`;
    }
    if (note) notes.push(`${db}: ${note}.`);
    checks.push({
      subject: `${db} keys`,
      expected: a === b ? String(a) : `${lo}..${hi}`,
      actual: String(got),
      ok,
      note,
    });
  }
  return checks;
}

async function readSamples(ctx: ComponentReadContext, name: string): Promise<SamplesDocument> {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.read(name) as AsyncIterable<Buffer>) chunks.push(chunk);
  let doc: Partial<SamplesDocument>;
  try {
    doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<SamplesDocument>;
  } catch (err) {
    throw new InputError(`object ${name} of set ${ctx.setId} is not valid JSON`, { cause: err });
  }
  if (doc.format !== 'gameops-redis-samples/1' || !Array.isArray(doc.samples))
    throw new InputError(`object ${name} of set ${ctx.setId} is not a gameops-redis-samples/1 document`);
  return doc as SamplesDocument;
}

// ---------------------------------------------------------------------------------------------------
// Restore

export interface RedisRestoreOptions {
  /**
   * The address the temporary server binds to and the target connects to. The target must reach it:
   * the default 127.0.0.1 works for a target on the same host (or network namespace) as gameops.
   * @default '127.0.0.1'
   */
  via?: string;
  /** Restore into a target that is itself a replica (it is left detached, as a master). */
  force?: boolean;
  /** Deadline of each command to the target. @default 30000 */
  timeoutMs?: number;
  /** Deadline of the load, the sync and the AOF rewrite. @default 30 minutes */
  syncTimeoutMs?: number;
  /**
   * How long gameops keeps trying to detach the target from the temporary server (`REPLICAOF NO ONE`,
   * refused with LOADING while the target loads the data) when the restore ends. It does not depend on
   * the cancel signal: a cancelled restore still detaches the target. @default syncTimeoutMs
   */
  detachTimeoutMs?: number;
}

/**
 * Replaces the data of `target` with the backup: loads the RDB into a temporary `redis-server` bound to
 * `via`, makes the target its replica (`masterauth` set to the temporary password, then put back), waits
 * for the full sync and the load, detaches it (`REPLICAOF NO ONE`) and, with AOF on, waits for the AOF
 * rewrite that follows, so the data survives a restart. This works with AOF enabled, unlike replacing
 * dump.rdb (redis#837). Afterwards the key counts must equal the temporary server's.
 *
 * The target must reach `via` (same host or network namespace as gameops for the default 127.0.0.1); the
 * temporary server speaks plain TCP, so a target with `tls-replication yes` cannot sync from it, and
 * Redis Cluster is refused. However the restore ends (error, deadline, cancel), the target is detached
 * from the temporary server before that server stops. The user needs CONFIG, REPLICAOF and INFO. Replicas of the target follow
 * it and get the restored data too.
 *
 * @throws InputError when the target is a replica (unless `force`), a Redis Cluster node, not on the
 *   gameops host while `via` is loopback (set backups.redis.restoreVia), or authentication fails;
 *   UnavailableError when the target cannot be reached, the sync fails or a deadline passes, or when the
 *   target could not be detached from the temporary server afterwards (the message says how to fix it);
 *   GameopsError when the counts differ after the restore.
 */
export async function restoreRedis(
  backup: ManifestComponent,
  target: RedisConfig,
  ctx: ComponentReadContext,
  options: RedisRestoreOptions = {},
): Promise<{ bytes: number; keys: number }> {
  const via = options.via ?? '127.0.0.1';
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const syncTimeoutMs = options.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS;
  const name = `Redis at ${redisTarget(target)}`;
  if (isLoopback(via) && !(await onThisHost(target.host)))
    throw new InputError(
      `${name} is not on the gameops host, so it cannot replicate from the temporary server bound to ${via} (loopback): ` +
        `set backups.redis.restoreVia to an address of the gameops host that ${target.host} can reach`,
    );
  if (!isLoopback(via))
    ctx.log.warn(
      { via },
      `the temporary Redis holding the whole backup listens on ${via} (plain TCP, password-protected) until the restore ends`,
    );
  const redis = await openRedis(target, { timeoutMs, signal: ctx.signal, doing: 'connect' });
  try {
    const info = async (section: string): Promise<Record<string, string>> =>
      parseRedisInfoSections(await command(redis, target, `INFO ${section}`, () => redis.info(section)))[
        section
      ] ?? {};
    await refuseCluster(redis, target, 'restore into');
    const replication = await info('replication');
    if (replication['role'] === 'slave' && options.force !== true)
      throw new InputError(
        `${name} is a replica of ${replication['master_host'] ?? '?'}:${replication['master_port'] ?? '?'}; restore into its master, or pass force to detach it`,
      );

    const scratch = await startScratchServer(backup, ctx, via, syncTimeoutMs);
    try {
      const expected = parseKeyspace(await scratch.redis.info('keyspace'));
      const configGet = async (key: string): Promise<string> => {
        const reply: unknown = await command(redis, target, `CONFIG GET ${key}`, () =>
          redis.config('GET', key),
        );
        return Array.isArray(reply) ? String(reply[1] ?? '') : '';
      };
      const previousAuth = await configGet('masterauth');
      const previousUser = await configGet('masteruser');
      let failed = false;
      let failure: unknown;
      try {
        ctx.progress.phase('redis: sync into target', scratch.bytes);
        if (previousUser !== '')
          await command(redis, target, 'CONFIG SET masteruser', () => redis.config('SET', 'masteruser', ''));
        await command(redis, target, 'CONFIG SET masterauth', () =>
          redis.config('SET', 'masterauth', scratch.password),
        );
        await command(redis, target, 'REPLICAOF', () => redis.replicaof(scratch.host, scratch.port));
        const replicaSince = performance.now();
        let syncStarted = false;
        await waitFor(
          name,
          'the full sync from the temporary server',
          syncTimeoutMs,
          ctx.signal,
          async () => {
            const r = await info('replication');
            const p = await info('persistence');
            if (r['master_sync_in_progress'] === '1' || r['master_link_status'] === 'up') syncStarted = true;
            if (!syncStarted && performance.now() - replicaSince > timeoutMs)
              throw new UnavailableError(
                `${name} did not start syncing from the temporary server at ${scratch.host}:${scratch.port} within ${timeoutMs} ms: ` +
                  `the target must be able to reach that address; set backups.redis.restoreVia to an address of the gameops host that the target can reach`,
              );
            return (
              r['master_link_status'] === 'up' && r['master_sync_in_progress'] === '0' && p['loading'] === '0'
            );
          },
        );
      } catch (err) {
        failed = true;
        failure = err;
      }
      // However the sync ended (done, error, deadline, cancelled), the target must not stay a replica of the
      // temporary server, which is stopped next: detach it first, on a deadline of its own.
      const problem = await settleTarget(redis, target, ctx, {
        scratch: `${scratch.host}:${scratch.port}`,
        previousAuth,
        previousUser,
        timeoutMs,
        deadlineMs: options.detachTimeoutMs ?? syncTimeoutMs,
        cause: failed ? failure : undefined,
      });
      if (problem) throw problem;
      if (failed) throw failure;
      const persistence = await info('persistence');
      if (persistence['aof_enabled'] === '1') {
        ctx.progress.note(`${name}: waiting for the AOF rewrite after the sync`);
        await waitFor(name, 'the AOF rewrite after the sync', syncTimeoutMs, ctx.signal, async () => {
          const p = await info('persistence');
          return p['aof_rewrite_in_progress'] === '0' && p['aof_rewrite_scheduled'] === '0';
        });
        const p = await info('persistence');
        if (p['aof_last_bgrewrite_status'] !== 'ok')
          throw new UnavailableError(
            `${name}: the AOF rewrite after the restore failed (aof_last_bgrewrite_status ${p['aof_last_bgrewrite_status'] ?? '?'})`,
          );
      }
      const actual = parseKeyspace(
        await command(redis, target, 'INFO keyspace', () => redis.info('keyspace')),
      );
      const differences = dbNames(expected, actual).filter(
        (db) => (expected[db]?.keys ?? 0) !== (actual[db]?.keys ?? 0),
      );
      if (differences.length > 0) {
        // Keys with a TTL may expire on the target once it is a master again: only that much is accepted.
        const unexplained = differences.filter((db) => {
          const want = expected[db]?.keys ?? 0;
          const got = actual[db]?.keys ?? 0;
          return got > want || want - got > (expected[db]?.expires ?? 0);
        });
        const text = differences
          .map((db) => `${db} ${expected[db]?.keys ?? 0}→${actual[db]?.keys ?? 0}`)
          .join(', ');
        if (unexplained.length > 0)
          throw new GameopsError(
            'internal',
            `${name}: key counts after the restore differ from the backup (${text})`,
          );
        ctx.log.warn(
          { target: redisTarget(target) },
          `keys with a TTL expired right after the restore (${text})`,
        );
      }
      const keys = Object.values(actual).reduce((sum, c) => sum + c.keys, 0);
      ctx.progress.note(`${name}: restored ${keys} keys from ${scratch.bytes} bytes of RDB`);
      return { bytes: scratch.bytes, keys };
    } finally {
      await scratch.stop();
    }
  } finally {
    redis.disconnect();
  }
}

/**
 * Detaches the target from the temporary server (`REPLICAOF NO ONE`, retried every 200 ms while the target
 * answers LOADING or the connection is lost, reconnecting as needed) and puts `masterauth`/`masteruser`
 * back, all within `deadlineMs` and regardless of any abort signal. Never throws: resolves with the error
 * to report (naming the target and the command to run by hand), or undefined when the target is a master
 * again with its settings back.
 */
async function settleTarget(
  first: Redis,
  target: RedisConfig,
  ctx: ComponentReadContext,
  options: {
    scratch: string;
    previousAuth: string;
    previousUser: string;
    timeoutMs: number;
    deadlineMs: number;
    cause: unknown;
  },
): Promise<GameopsError | undefined> {
  const name = `Redis at ${redisTarget(target)}`;
  const start = performance.now();
  let redis: Redis | undefined = first;
  const extra: Redis[] = [];
  let detached = false;
  let authBack = false;
  let userBack = options.previousUser === '';
  let last = '';
  let toldLoading = false;
  try {
    while (!(detached && authBack && userBack)) {
      try {
        if (redis === undefined || redis.status !== 'ready') {
          redis = await openRedis(target, { timeoutMs: options.timeoutMs, doing: 'reconnect to detach it' });
          extra.push(redis);
        }
        const conn: Redis = redis;
        if (!detached) {
          await conn.call('REPLICAOF', 'NO', 'ONE');
          detached = true;
        }
        if (!authBack) {
          await conn.config('SET', 'masterauth', options.previousAuth);
          authBack = true;
        }
        if (!userBack) {
          await conn.config('SET', 'masteruser', options.previousUser);
          userBack = true;
        }
      } catch (err) {
        last = maskSecrets(describeError(err), [target.password]);
        if (/LOADING/.test(last) && !toldLoading) {
          toldLoading = true;
          ctx.progress.note(
            `${name} is loading the data it received; waiting to detach it (REPLICAOF NO ONE)`,
          );
        }
        if (!/LOADING/.test(last) && redis !== undefined && redis.status !== 'ready') redis = undefined;
        if (performance.now() - start >= options.deadlineMs) break;
        await sleep(200);
      }
    }
  } finally {
    for (const conn of extra) conn.disconnect();
  }
  const cause = options.cause;
  const why =
    cause === undefined
      ? ''
      : ` The restore had failed before: ${maskSecrets(describeError(cause), [target.password])}.`;
  const cli = `redis-cli -h ${target.host} -p ${target.port}${target.tls ? ' --tls' : ''}${target.username ? ` --user ${target.username}` : ''}`;
  if (!detached) {
    const error = new UnavailableError(
      `${name} is still a replica of the temporary server ${options.scratch}, which is now stopped, so it rejects writes: ` +
        `REPLICAOF NO ONE did not succeed within ${options.deadlineMs} ms (last reply: ${last}). ` +
        `Fix it by hand: REDISCLI_AUTH=<password> ${cli} REPLICAOF NO ONE, then CONFIG SET masterauth (and masteruser) back to their previous values.${why}`,
      { details: { target: redisTarget(target) }, ...(cause !== undefined ? { cause } : {}) },
    );
    ctx.log.error({ target: redisTarget(target) }, error.message);
    return error;
  }
  if (!authBack || !userBack) {
    const error = new UnavailableError(
      `${name} is a master again, but its ${authBack ? 'masteruser' : 'masterauth'} could not be put back within ${options.deadlineMs} ms (last reply: ${last}); ` +
        `it still holds the temporary server's value: set it back with REDISCLI_AUTH=<password> ${cli} CONFIG SET ${authBack ? 'masteruser' : 'masterauth'} <previous value>.${why}`,
      { details: { target: redisTarget(target) }, ...(cause !== undefined ? { cause } : {}) },
    );
    ctx.log.error({ target: redisTarget(target) }, error.message);
    return error;
  }
  if (cause !== undefined)
    ctx.log.warn(
      { target: redisTarget(target) },
      `restore failed; ${name} was detached from the temporary server (REPLICAOF NO ONE) and is a master again, but its data may be the old data or the backup's`,
    );
  return undefined;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./.test(host);
}

/** Whether `host` is this machine: loopback, or resolving to an address of one of its interfaces. */
async function onThisHost(host: string): Promise<boolean> {
  if (isLoopback(host)) return true;
  let addresses: string[];
  try {
    addresses = (await dns.lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return true; // Cannot tell here; connecting to it fails with its own error.
  }
  const local = new Set(
    Object.values(os.networkInterfaces())
      .flat()
      .map((i) => i?.address),
  );
  return addresses.some((a) => isLoopback(a) || local.has(a));
}

async function waitFor(
  name: string,
  what: string,
  timeoutMs: number,
  signal: AbortSignal,
  done: () => Promise<boolean>,
): Promise<void> {
  const start = performance.now();
  while (!(await done())) {
    signal.throwIfAborted();
    if (performance.now() - start > timeoutMs)
      throw new UnavailableError(`${name}: ${what} did not finish within ${timeoutMs} ms`);
    await sleep(50);
  }
}
