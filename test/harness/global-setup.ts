/**
 * Vitest global setup: makes sure the server packages are installed, then starts ONE shared MariaDB,
 * Redis, PostgreSQL, Alertmanager and Prometheus for the whole run (in parallel) and hands their connection
 * details to tests through `provide('services', …)`; read them with `services()` from test/harness.
 *
 * `GAMEOPS_TEST_SERVICES=none` starts nothing (quick unit-only runs) and provides nothing; `services()`
 * then throws. Otherwise
 * a server that fails to start fails the whole run, loudly, with the tail of its log.
 */
import type { TestProject } from 'vitest/node';
import { ensurePackages } from './packages.ts';
import { startAlertmanager, startMariaDB, startPostgres, startPrometheus, startRedis } from './servers.ts';
import type { ServerHandle } from './servers.ts';
import { randomSecret, sweepStaleTempDirs } from './proc.ts';

/** Connection details of the shared servers (plain data: it crosses into the test workers). */
export interface ProvidedServices {
  mariadb: {
    host: string;
    port: number;
    user: string;
    password: string;
    socketPath: string;
    database: string;
    pid: number;
  };
  redis: { host: string; port: number; password: string; pid: number };
  postgres: {
    /** `postgres://user:password@127.0.0.1:port/gameops` */
    url: string;
    host: string;
    port: number;
    user: string;
    password: string;
    database: string;
    pid: number;
  };
  alertmanager: { url: string; pid: number };
  prometheus: { url: string; pid: number };
}

declare module 'vitest' {
  export interface ProvidedContext {
    /**
     * The shared servers. Typed as always present so tests can use `inject('services')` directly; under
     * GAMEOPS_TEST_SERVICES=none nothing is provided and it is really `undefined` (`services()` from
     * test/harness turns that into a clear error).
     */
    services: ProvidedServices;
  }
}

/** Starts `start()`, timing it and printing one line to stderr once it answers. */
async function timed<T extends ServerHandle & { port: number }>(
  name: string,
  start: () => Promise<T>,
): Promise<T> {
  const began = performance.now();
  const handle = await start();
  const ms = Math.round(performance.now() - began);
  process.stderr.write(
    `[harness] ${name.padEnd(12)} 127.0.0.1:${handle.port} pid ${handle.pid} up in ${ms} ms\n`,
  );
  return handle;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.GAMEOPS_TEST_SERVICES === 'none') {
    process.stderr.write('[harness] GAMEOPS_TEST_SERVICES=none: no servers started\n');
    return async () => {};
  }
  const began = performance.now();
  const stale = await sweepStaleTempDirs();
  if (stale.length > 0)
    process.stderr.write(`[harness] removed ${stale.length} temp dirs left by killed runs\n`);
  await ensurePackages();

  const started = await Promise.allSettled([
    timed('mariadb', () => startMariaDB()),
    timed('redis', () => startRedis({ password: randomSecret() })),
    timed('postgres', () => startPostgres()),
    timed('alertmanager', () => startAlertmanager()),
    timed('prometheus', () => startPrometheus()),
  ] as const);
  const handles = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stopAll = async () => {
    const stopping = performance.now();
    await Promise.allSettled(handles.map((h) => h.stop()));
    process.stderr.write(`[harness] servers stopped in ${Math.round(performance.now() - stopping)} ms\n`);
  };
  const [mariadb, redis, postgres, alertmanager, prometheus] = started;
  if (
    mariadb.status === 'rejected' ||
    redis.status === 'rejected' ||
    postgres.status === 'rejected' ||
    alertmanager.status === 'rejected' ||
    prometheus.status === 'rejected'
  ) {
    await stopAll();
    const reasons = started.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
    throw new AggregateError(
      reasons,
      'test harness: could not start the shared servers:\n\n' +
        reasons.map((r) => (r instanceof Error ? r.message : String(r))).join('\n\n'),
    );
  }
  process.stderr.write(`[harness] all servers up in ${Math.round(performance.now() - began)} ms\n`);

  const m = mariadb.value;
  const r = redis.value;
  const p = postgres.value;
  project.provide('services', {
    mariadb: {
      host: m.host,
      port: m.port,
      user: m.user,
      password: m.password,
      socketPath: m.socketPath,
      database: m.database,
      pid: m.pid,
    },
    redis: { host: r.host, port: r.port, password: r.password!, pid: r.pid },
    postgres: {
      url: p.url,
      host: p.host,
      port: p.port,
      user: p.user,
      password: p.password,
      database: p.database,
      pid: p.pid,
    },
    alertmanager: { url: alertmanager.value.url, pid: alertmanager.value.pid },
    prometheus: { url: prometheus.value.url, pid: prometheus.value.pid },
  });
  return stopAll;
}
