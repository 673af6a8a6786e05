import { join } from 'node:path';
import { errorMessage, InputError } from '../core/index.ts';
import type { Fleet } from '../platform/index.ts';
import type { Resources } from './bootstrap.ts';

/**
 * The fleet of the configured platform, opened once per resources bag (the server keeps it; a CLI
 * command opens it for one operation). Released by `shutdown`. The platform modules load on first use.
 * @throws InputError when the config has no `platform` section.
 */
export async function openFleet(resources: Resources): Promise<Fleet> {
  // One fleet per resources bag, even when the first callers arrive together (the server's supervisor
  // and its first API request): they share the opening instead of each creating a platform.
  resources.fleetOpening ??= createFleetFor(resources).catch((err: unknown) => {
    resources.fleetOpening = undefined;
    throw err;
  });
  return resources.fleetOpening;
}

async function createFleetFor(resources: Resources): Promise<Fleet> {
  const { config, clock } = resources;
  if (!config.platform)
    throw new InputError(
      'no platform is configured: add a `platform:` section (kind: local or kubernetes) to the config; ' +
        'see examples/gameops.yaml',
    );
  // Loaded here, not at start-up: commands that never touch the fleet do not pay for it.
  const { createFleet, createGameServerClient, createPlatform } = await import('../platform/index.ts');
  const platform = await createPlatform({
    config: config.platform,
    dataDir: config.database.dataDir,
    opsToken: config.game.opsToken,
    clock,
    log: resources.log,
  });
  const game = createGameServerClient({
    ...(config.game.opsToken ? { token: config.game.opsToken } : {}),
    timeoutMs: config.game.requestTimeout,
  });
  resources.fleet = createFleet({
    platform,
    game,
    clock,
    artefactDir: config.game.artefactDir ?? join(config.database.dataDir, 'artefacts'),
  });
  return resources.fleet;
}

/**
 * Runs the platform's supervisor (local platform: restart crashed game servers, rotate logs) until
 * `signal` aborts. Resolves at once for platforms that supervise themselves (Kubernetes) or when no
 * platform is configured. Never throws: a platform that cannot be opened is logged.
 */
export async function superviseFleet(resources: Resources, signal: AbortSignal): Promise<void> {
  if (!resources.config.platform) return;
  try {
    const fleet = await openFleet(resources);
    if (!fleet.platform.supervise) return;
    resources.log.info({ platform: fleet.platform.describe() }, 'supervising the game servers');
    await fleet.platform.supervise({ signal });
  } catch (err) {
    resources.log.error({ err: errorMessage(err) }, 'cannot supervise the game servers');
  }
}
