import { join } from 'node:path';
import { InputError } from '../core/index.ts';
import type { Fleet } from '../platform/index.ts';
import type { Resources } from './bootstrap.ts';

/**
 * The fleet of the configured platform, opened once per resources bag (the server keeps it; a CLI
 * command opens it for one operation). Released by `shutdown`. The platform modules load on first use.
 * @throws InputError when the config has no `platform` section.
 */
export async function openFleet(resources: Resources): Promise<Fleet> {
  if (resources.fleet) return resources.fleet;
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
