/**
 * Test fixture, run as a separate process by the local adapter's tests: a second gameops process.
 *
 * The fleet it opens knows the test versions (v1, v2, broken) plus `slow` (starts listening after 60 s)
 * and `stubborn` (ignores SIGTERM); the ops token comes from FIXTURE_OPS_TOKEN.
 *
 * - `scale <dataDir> <basePort> <replicas>`: scales the local fleet, prints `ready <pid>`, then waits to
 *   be killed.
 * - `scale-and-die <dataDir> <basePort> <replicas>`: scales, and SIGKILLs itself right after spawning,
 *   before the state naming the new processes is written (an interrupted start).
 * - `set-version <dataDir> <basePort> <version>`: rolls the fleet to `version`, prints `ready <pid>` once
 *   the rollout has begun, then waits to be killed.
 * - `hold-lock <dataDir>`: takes the fleet's operation lock, prints `ready <pid>`, then waits to be killed.
 * - `try-lock <dataDir> <lock file name>`: tries once to take `<dataDir>/fleet/<name>`, prints `acquired`
 *   or `refused: <message>`, and exits.
 */
import { join } from 'node:path';
import { secret, systemClock } from '../../core/index.ts';
import { createLocalPlatform, type LocalPlatform, type LocalPlatformOptions } from './index.ts';
import { FileLock } from './lock.ts';
import { writeState } from './state.ts';
import { localConfig } from './test-support.ts';

const [mode, dataDir, basePort, arg] = process.argv.slice(2);

function open(replicas: number, extra: Partial<LocalPlatformOptions> = {}): LocalPlatform {
  const token = process.env.FIXTURE_OPS_TOKEN;
  return createLocalPlatform({
    config: localConfig({
      basePort: Number(basePort),
      replicas,
      versions: { slow: { MINI_START_DELAY_MS: '60000' }, stubborn: { MINI_IGNORE_SIGTERM: '1' } },
    }),
    dataDir: dataDir!,
    ...(token ? { opsToken: secret(token, 'env:FIXTURE_OPS_TOKEN') } : {}),
    clock: systemClock,
    ...extra,
  });
}

if (mode === 'scale' && dataDir && basePort && arg) {
  await open(Number(arg)).scale(Number(arg), { timeoutMs: 30_000 });
} else if (mode === 'scale-and-die' && dataDir && basePort && arg) {
  const platform = open(Number(arg), {
    stateWriter: async (dir, state) => {
      if (state.instances.some((e) => e.pid !== undefined)) process.kill(process.pid, 'SIGKILL');
      await writeState(dir, state);
    },
  });
  await platform.scale(Number(arg), { timeoutMs: 30_000 });
} else if (mode === 'set-version' && dataDir && basePort && arg) {
  open(1)
    .setVersion(arg, { timeoutMs: 120_000 })
    .catch(() => undefined);
} else if (mode === 'hold-lock' && dataDir) {
  const lock = new FileLock(join(dataDir, 'fleet', 'operation.lock'), 'the fleet', systemClock);
  await lock.acquire('fixture-hold', 0);
} else if (mode === 'try-lock' && dataDir && basePort) {
  const lock = new FileLock(join(dataDir, 'fleet', basePort), 'the lock', systemClock, false);
  try {
    const held = await lock.acquire('fixture-try', 0);
    await held.release();
    process.stdout.write('acquired\n');
  } catch (err) {
    process.stdout.write(`refused: ${(err as Error).message}\n`);
  }
  process.exit(0);
} else {
  process.stderr.write(
    'usage: fleet.fixture.ts scale|scale-and-die <dataDir> <basePort> <replicas> | set-version <dataDir> <basePort> <version> | hold-lock <dataDir> | try-lock <dataDir> <name>\n',
  );
  process.exit(2);
}
process.stdout.write(`ready ${process.pid}\n`);
setInterval(() => undefined, 60_000);
