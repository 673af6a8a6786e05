/**
 * Starting the reference game server: a bad environment or an unreachable dependency ends it at once
 * with a clear message (and no secret); it listens only when it is ready; it can come up closed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, expect, test } from 'vitest';
import { closedPort, freePort, randomSecret, services, startSilentServer } from '../harness/index.ts';
import { connectPlayer, eventually } from './player.ts';
import {
  createTestDatabase,
  serverEnv,
  spawnGameServer,
  startGameServer,
  type LogLine,
} from './server-process.ts';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Run {
  code: number | null;
  lines: LogLine[];
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the server until it exits (it is expected to fail); `whileRunning` is called once it has started. */
async function runToExit(env: NodeJS.ProcessEnv, whileRunning?: () => Promise<void>): Promise<Run> {
  const began = performance.now();
  const child = spawnGameServer(env);
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  const lines: LogLine[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout += `${line}\n`;
    lines.push(JSON.parse(line) as LogLine);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  if (whileRunning) await whileRunning();
  const code = await exited;
  // The last lines may still be in the pipe when 'exit' fires.
  await new Promise<void>((resolve) =>
    child.stdout!.readableEnded ? resolve() : child.stdout!.once('end', resolve),
  );
  return { code, lines, stdout, stderr, ms: performance.now() - began };
}

async function baseEnv(overrides: { mariadbPort?: number; redisPassword?: string } = {}) {
  const { mariadb, redis } = services();
  const database = await createTestDatabase(mariadb);
  cleanups.push(database.drop);
  const port = await freePort();
  return {
    port,
    env: serverEnv({
      port,
      instance: 'game-start',
      version: '1.0.0',
      token: randomSecret(),
      database: database.name,
      keyPrefix: `st${randomSecret(3)}:`,
      mariadb: { ...mariadb, port: overrides.mariadbPort ?? mariadb.port },
      redis: { ...redis, password: overrides.redisPassword ?? redis.password },
    }),
  };
}

test('an invalid environment: exit 2, one ERROR line naming each variable, no secret', async () => {
  const { env } = await baseEnv();
  const run = await runToExit({
    ...env,
    GAME_PORT: 'seventy',
    GAME_OPS_TOKEN: 'short-token',
    GAME_MYSQL_PASSWORD: 'hunter2-password',
    GAME_TICK_RATE: '500',
    GAME_INSTANCE: undefined,
  });
  expect(run.code).toBe(2);
  expect(run.lines).toHaveLength(1);
  const [line] = run.lines;
  expect(line!.level).toBe('ERROR');
  for (const fragment of [
    'GAME_PORT: ',
    'GAME_INSTANCE: required',
    'GAME_OPS_TOKEN: at least 16 characters',
    'GAME_TICK_RATE: ',
  ])
    expect(line!.msg).toContain(fragment);
  expect(run.stdout + run.stderr).not.toMatch(/short-token|hunter2-password/);
});

test('MySQL refusing connections: exit 1 at once, naming MySQL and the cause', async () => {
  const port = await closedPort();
  const { env } = await baseEnv({ mariadbPort: port });
  const run = await runToExit(env);
  expect(run.code).toBe(1);
  const errors = run.lines.filter((l) => l.level === 'ERROR').map((l) => l.msg);
  expect(errors).toContain(
    `cannot use MySQL at 127.0.0.1:${port} (database ${env.GAME_MYSQL_DATABASE}): connection refused (ECONNREFUSED)`,
  );
  expect(errors).toContain('cannot start: a dependency is unreachable');
  expect(run.stdout).not.toContain(env.GAME_MYSQL_PASSWORD!);
});

test('MySQL that never answers: exit 1 after the 5 s deadline, not listening meanwhile', async () => {
  const silent = await startSilentServer();
  cleanups.push(silent.stop);
  const { env, port } = await baseEnv({ mariadbPort: silent.port });
  let refusedWhileStarting = false;
  const run = await runToExit(env, async () => {
    // Give it a moment to be connecting to the silent "MySQL", then knock on its port.
    await eventually('the server connecting to the silent MySQL', () => silent.connections() > 0);
    const answer = await fetch(`http://127.0.0.1:${port}/ops/status`).catch((err: unknown) => err);
    refusedWhileStarting = answer instanceof Error;
  });
  expect(refusedWhileStarting).toBe(true);
  expect(run.code).toBe(1);
  expect(run.lines.map((l) => l.msg)).toContain(
    `cannot use MySQL at 127.0.0.1:${silent.port} (database ${env.GAME_MYSQL_DATABASE}): connection timed out (ETIMEDOUT)`,
  );
  expect(run.ms).toBeLessThan(15_000);
});

test('Redis with a wrong password: exit 1 naming Redis, never the password', async () => {
  const { env } = await baseEnv({ redisPassword: 'wrong-redis-password' });
  const run = await runToExit(env);
  expect(run.code).toBe(1);
  const redisLine = run.lines.find((l) => l.level === 'ERROR' && l.msg?.startsWith('cannot use Redis at'));
  expect(redisLine?.msg).toMatch(/^cannot use Redis at 127\.0\.0\.1:\d+: WRONGPASS/);
  expect(run.stdout + run.stderr).not.toContain('wrong-redis-password');
});

test('the port taken: exit 1 saying it cannot listen', async () => {
  const { mariadb, redis } = services();
  const first = await startGameServer({ mariadb, redis });
  cleanups.push(() => first.stop());
  const { env } = await baseEnv();
  const run = await runToExit({ ...env, GAME_PORT: String(first.port) });
  expect(run.code).toBe(1);
  expect(
    run.lines.some(
      (l) => l.level === 'ERROR' && l.msg?.startsWith(`cannot listen on 127.0.0.1:${first.port}`),
    ),
  ).toBe(true);
});

test('comes up closed when the game config says maintenance_mode (ADR 0006)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'game-config-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'game-config.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ maintenance_mode: 'true', maintenance_message: 'Closed for the patch' }),
  );
  const { mariadb, redis } = services();
  const s = await startGameServer({ mariadb, redis, env: { GAME_CONFIG_FILE: file } });
  cleanups.push(() => s.stop());
  const status = (await (await s.ops('/ops/status')).json()) as {
    acceptingLogins: boolean;
    maintenance: unknown;
  };
  expect(status).toMatchObject({
    acceptingLogins: false,
    maintenance: { enabled: true, message: 'Closed for the patch', startsAt: null },
  });
  const player = await connectPlayer(s.wsUrl);
  player.send({ type: 'login', name: 'early-bird' });
  expect(await player.next('refused')).toMatchObject({
    reason: 'maintenance',
    message: 'Closed for the patch',
  });
  expect((await player.closed).code).toBe(4001);
});
