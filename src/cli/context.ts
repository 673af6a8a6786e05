import type { Command } from 'commander';
import type { BootstrapOptions, Resources } from '../app/index.ts';

/** Options every command inherits from the root program. */
export interface GlobalOptions {
  config?: string;
  logLevel?: string;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

/** Builds the resources for one command, runs it, and always releases them. */
export async function withResources<T>(
  command: Command,
  store: BootstrapOptions['store'],
  work: (resources: Resources) => Promise<T>,
): Promise<T> {
  const opts = globalOptions(command);
  // Loaded on demand so `--help` and light commands start fast.
  const { bootstrap, shutdown } = await import('../app/index.ts');
  const resources = await bootstrap({
    store,
    ...(opts.config ? { configPath: opts.config } : {}),
    logLevel: opts.logLevel ?? 'warn',
  });
  try {
    return await work(resources);
  } finally {
    await shutdown(resources);
  }
}
