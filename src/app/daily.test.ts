import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import { writeTestConfig } from '../../test/support/config.ts';
import type { MysqlClient, RedisClient } from '../connectors/index.ts';
import { bootstrap, runAndRecordDailyCheck, shutdown } from './index.ts';

/** A config with no game services (only the disk check measures), on a shared data directory. */
function config(dir: string, service: string, extra = ''): string {
  const path = join(dir, `${service}.yaml`);
  writeFileSync(
    path,
    `service: { name: ${service}, environment: test }\ndatabase: { dataDir: ${join(dir, 'data')} }\n` +
      `checks: { retention: 30d, thresholds: { disk: { paths: ["${dir}"] } } }\n${extra}`,
  );
  return path;
}

async function runOnce(path: string, clock: ManualClock) {
  const resources = await bootstrap({ configPath: path, store: 'required', clock, logLevel: 'silent' });
  try {
    const result = await runAndRecordDailyCheck(resources, 'cli');
    const history = await resources.store!.checkRuns.list({ limit: 100 });
    return { ...result, history };
  } finally {
    await shutdown(resources);
  }
}

describe('recording daily checks', () => {
  it('prunes runs older than checks.retention, using the injected clock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-app-'));
    const path = config(dir, 'retention-game');
    const clock = new ManualClock('2026-01-01T09:00:00Z');
    const first = await runOnce(path, clock);
    expect(first.recorded).toBe(true);
    clock.advance(29 * 86_400_000);
    expect((await runOnce(path, clock)).history.map((r) => r.id)).toContain(first.run.id);
    clock.advance(2 * 86_400_000);
    const third = await runOnce(path, clock);
    expect(third.history.map((r) => r.id)).not.toContain(first.run.id);
    expect(third.history).toHaveLength(2);
  });

  it('keeps services apart: pruning and history of one never touch another', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-app-'));
    const clock = new ManualClock('2026-01-01T09:00:00Z');
    const a = await runOnce(config(dir, 'game-a'), clock);
    clock.advance(40 * 86_400_000);
    const b = await runOnce(config(dir, 'game-b'), clock);
    // game-b's run pruned only game-b's old runs: game-a's 40-day-old run is still there.
    expect(b.history.map((r) => r.id)).toEqual(expect.arrayContaining([a.run.id, b.run.id]));
  });

  it('when the last run could not measure the database, deltas come from the run before it', async () => {
    const { path } = writeTestConfig();
    const clock = new ManualClock(new Date());
    const text = readFileSync(path, 'utf8');
    const first = await runOnce(path, clock);
    expect(first.run.results.find((r) => r.name === 'database')?.values['slowQueriesBaseline']).toBe(true);
    writeFileSync(
      path,
      text.replace(/mysql: \{ host: [^,]+, port: \d+/, 'mysql: { host: 127.0.0.1, port: 1'),
    );
    const down = await runOnce(path, clock);
    expect(down.run.results.find((r) => r.name === 'database')?.status).toBe('error');
    writeFileSync(path, text);
    const third = await runOnce(path, clock);
    expect(third.run.results.find((r) => r.name === 'database')?.values['slowQueriesBaseline']).toBe(false);
  });

  it('the server keeps its MySQL and Redis connections between runs and shutdown closes them; the CLI keeps none', async () => {
    const { path } = writeTestConfig();
    const cli = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    try {
      await runAndRecordDailyCheck(cli, 'cli');
      expect(cli.dailyConnections).toBeUndefined();
    } finally {
      await shutdown(cli);
    }

    const server = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    const { config } = server;
    const timeout = config.checks.timeout;
    let kept: { mysql: MysqlClient | undefined; redis: RedisClient | undefined } | undefined;
    try {
      const first = await runAndRecordDailyCheck(server, 'api');
      expect(first.run.results.find((r) => r.name === 'database')?.status).not.toBe('error');
      const second = await runAndRecordDailyCheck(server, 'schedule');
      expect(second.run.results.find((r) => r.name === 'redis')?.status).not.toBe('error');
      const connections = server.dailyConnections!;
      kept = {
        mysql: connections.take('mysql', config.mysql!, timeout),
        redis: connections.take('redis', config.redis!, timeout),
      };
      expect(kept.mysql?.usable).toBe(true);
      expect(kept.redis?.usable).toBe(true);
      await connections.keep('mysql', config.mysql!, timeout, kept.mysql!);
      await connections.keep('redis', config.redis!, timeout, kept.redis!);
    } finally {
      await shutdown(server);
    }
    expect(server.dailyConnections).toBeUndefined();
    expect(kept.mysql?.usable).toBe(false);
    expect(kept.redis?.usable).toBe(false);
  });
});
