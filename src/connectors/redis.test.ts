import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  services,
  startSilentServer,
  type SilentServerHandle,
} from '../../test/harness/index.ts';
import { testConfig } from '../checks/test-support.ts';
import { InputError, UnavailableError } from '../core/index.ts';
import { connectRedis, withRedis } from './redis.ts';

describe('Redis connector (shared Redis)', () => {
  const config = () => {
    const { host, port, password } = services().redis;
    return testConfig({ redis: { host, port, password } }).redis!;
  };

  it('reads INFO into typed sections', async () => {
    await withRedis(config(), {}, async (client) => {
      const info = await client.info();
      expect(info.server.redisVersion).toMatch(/^\d+\.\d+\.\d+/);
      expect(info.server.runId).toMatch(/^[0-9a-f]{40}$/);
      expect(info.server.uptimeSeconds).toBeGreaterThanOrEqual(0);
      expect(info.memory.usedMemory).toBeGreaterThan(0);
      expect(info.memory.maxmemory).toBe(0);
      expect(info.memory.usedMemoryRss).toBeGreaterThan(0);
      expect(info.persistence.rdbLastBgsaveStatus).toBe('ok');
      expect(info.persistence.aofEnabled).toBe(false);
      expect(info.clients.connectedClients).toBeGreaterThanOrEqual(1);
    });
  });

  it('samples latency with a bounded number of PINGs', async () => {
    await withRedis(config(), {}, async (client) => {
      const sample = await client.latency({ count: 25, budgetMs: 5_000 });
      expect(sample.samplesMs).toHaveLength(25);
      expect(sample.truncated).toBe(false);
      for (const ms of sample.samplesMs) expect(ms).toBeGreaterThan(0);
    });
  });

  it('stops sampling when the time budget is spent', async () => {
    await withRedis(config(), {}, async (client) => {
      const sample = await client.latency({ count: 1_000_000, budgetMs: 20 });
      expect(sample.truncated).toBe(true);
      expect(sample.samplesMs.length).toBeLessThan(1_000_000);
    });
  });

  it('a bad password is an InputError without the password in it', async () => {
    const { host, port } = services().redis;
    const password = `wrong-${randomUUID()}`;
    const err = await connectRedis(testConfig({ redis: { host, port, password } }).redis!).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(`Redis at ${host}:${port}`);
    expect((err as Error).message).not.toContain(password);
  });
});

describe('Redis connector with a dependency that is down or hangs', () => {
  let silent: SilentServerHandle;
  beforeAll(async () => {
    silent = await startSilentServer();
  });
  afterAll(async () => {
    await silent.stop();
  });

  it('a closed port fails at once (no retries) naming host:port', async () => {
    const port = await closedPort();
    const started = performance.now();
    const err = await connectRedis(testConfig({ redis: { host: '127.0.0.1', port } }).redis!).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toBe(
      `Redis at 127.0.0.1:${port}: connect failed: connection refused (ECONNREFUSED)`,
    );
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('a server that never answers: the abort signal ends the connection attempt', async () => {
    const cfg = testConfig({ redis: { host: silent.host, port: silent.port } }).redis!;
    const reason = new UnavailableError('deadline');
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 300);
    const err = await connectRedis(cfg, { signal: controller.signal }).catch((e: unknown) => e);
    expect(err).toBe(reason);
  });
});
