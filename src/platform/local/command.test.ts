/**
 * How a version's command is run: a relative program path (one with a `/`) is the version's `cwd` joined
 * with it, whichever gameops process (and working directory) starts it.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UnavailableError, systemClock } from '../../core/index.ts';
import { cleanups, readStateFile, useCleanups, waitFor } from './fleet-test-kit.ts';
import { createLocalPlatform } from './index.ts';
import {
  MINI_SERVER,
  destroyFleet,
  freePortBlock,
  localConfig,
  randomToken,
  tempDataDir,
} from './test-support.ts';

useCleanups();

describe('local platform: the command of a version', () => {
  it('runs a relative program path from the version cwd, and names the resolved path when it is missing', async () => {
    const dataDir = await tempDataDir();
    cleanups.push(() => destroyFleet(dataDir));
    const home = join(dataDir, 'game');
    await mkdir(join(home, 'bin'), { recursive: true });
    const script = join(home, 'bin', 'run.sh');
    await writeFile(script, `#!/bin/sh\nexec "${process.execPath}" "${MINI_SERVER}"\n`);
    await chmod(script, 0o755);
    const token = randomToken();
    const base = localConfig({ basePort: await freePortBlock(1), replicas: 1 });
    const platform = createLocalPlatform({
      config: {
        ...base,
        version: 'v1',
        versions: {
          v1: { command: ['bin/run.sh'], cwd: home, env: {} },
          gone: { command: ['bin/nope'], cwd: home, env: {} },
        },
      },
      dataDir,
      opsToken: token,
      clock: systemClock,
      minReadyMs: 0,
    });
    cleanups.push(() => platform.close());
    await platform.scale(1);
    const { pid } = (await readStateFile(dataDir)).instances[0]!;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    // The shell ran the script by the absolute path, then exec'd the server.
    expect(argv).toContain(MINI_SERVER);
    await waitFor('ready', async () => ((await platform.instances())[0]?.ready ? true : undefined));
    const err = await platform.setVersion('gone', { timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain(join(home, 'bin', 'nope'));
    await platform.scale(0);
  }, 30_000);
});
