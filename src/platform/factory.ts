import type { Clock, Secret } from '../core/index.ts';
import type { PlatformConfig } from '../config/index.ts';
import type { Platform } from './port.ts';

export interface PlatformOptions {
  config: PlatformConfig;
  /** gameops's data directory: the local adapter keeps its fleet state under `<dataDir>/fleet`. */
  dataDir: string;
  /** The game servers' ops token (the local adapter hands it to the processes it starts). */
  opsToken: Secret | undefined;
  clock: Clock;
  /** Where adapters report what they do on their own (supervisor restarts, rotations). */
  log?: PlatformLogger;
}

/** The part of a pino logger adapters use. */
export interface PlatformLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Opens the configured platform adapter. Each adapter is loaded on demand, so a command that uses the
 * local platform never loads the Kubernetes client (and the other way round).
 */
export async function createPlatform(options: PlatformOptions): Promise<Platform> {
  const { config } = options;
  switch (config.kind) {
    case 'local': {
      const { createLocalPlatform } = await import('./local/index.ts');
      return createLocalPlatform({
        config,
        dataDir: options.dataDir,
        ...(options.opsToken ? { opsToken: options.opsToken } : {}),
        clock: options.clock,
        minReadyMs: config.minReady,
        ...(options.log ? { log: options.log } : {}),
      });
    }
    case 'kubernetes': {
      const { createKubernetesPlatform } = await import('./kubernetes/index.ts');
      return createKubernetesPlatform({
        config,
        clock: options.clock,
        requestTimeoutMs: config.requestTimeout,
        ...(config.verifyImageTag ? {} : { imageCheck: false as const }),
        ...(options.log ? { log: options.log } : {}),
      });
    }
  }
}
