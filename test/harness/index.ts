/**
 * The test harness: real servers for integration tests. Shared servers (started once per run by
 * global-setup.ts) come from {@link services}; tests that need a server with special settings start their
 * own with the `start*` functions and stop it in `afterAll`.
 *
 * @example
 * ```ts
 * import { services, startMariaDB } from '../../test/harness/index.ts';
 * const { mariadb } = services();
 * const small = await startMariaDB({ maxConnections: 5 });
 * ```
 */
import { inject } from 'vitest';
import type { ProvidedServices } from './global-setup.ts';

export type { ProvidedServices } from './global-setup.ts';
export { ensurePackages, findServerBinaries, serverBinaries } from './packages.ts';
export type { MissingServer, ServerBinaries } from './packages.ts';
export { freePort, randomSecret } from './proc.ts';
export { startS3rver } from './s3.ts';
export type { S3rverHandle, S3rverOptions } from './s3.ts';
export {
  closedPort,
  createSilence,
  getAlerts,
  postAlerts,
  smallFilesystem,
  startAlertmanager,
  startMariaDB,
  startPostgres,
  startPrometheus,
  startRedis,
  startSilentServer,
} from './servers.ts';
export type {
  AlertInput,
  AlertmanagerHandle,
  AlertmanagerOptions,
  CommonServerOptions,
  GettableAlert,
  MariaDBHandle,
  MariaDBOptions,
  PostgresHandle,
  PostgresOptions,
  PrometheusHandle,
  PrometheusOptions,
  RedisHandle,
  RedisOptions,
  ServerHandle,
  SilenceMatcher,
  SilenceOptions,
  SilentServerHandle,
  SmallFilesystemHandle,
} from './servers.ts';

/**
 * Connection details of the shared servers started by the global setup. Throws when the run was started
 * with `GAMEOPS_TEST_SERVICES=none`, so a test needing servers fails instead of silently passing.
 */
export function services(): ProvidedServices {
  // Typed as always present, but absent at run time when the global setup started nothing.
  const provided = inject('services') as ProvidedServices | undefined;
  if (provided === undefined) {
    throw new Error(
      'this test needs the shared servers, but they were not started (GAMEOPS_TEST_SERVICES=none); ' +
        'run without that variable',
    );
  }
  return provided;
}
