import { systemClock } from '../../core/index.ts';
import { describePlatformContract } from '../contract.test-suite.ts';
import { createLocalPlatform } from './index.ts';
import {
  destroyFleet,
  freePortBlock,
  localConfig,
  randomToken,
  tempDataDir,
  writeErrorLines,
} from './test-support.ts';

describePlatformContract(
  'local',
  async () => {
    const dataDir = await tempDataDir();
    const token = randomToken();
    const basePort = await freePortBlock(4);
    const platform = createLocalPlatform({
      config: localConfig({ basePort, replicas: 2, readinessTimeout: '3s' }),
      dataDir,
      opsToken: token,
      clock: systemClock,
      stopGraceMs: 3000,
      minReadyMs: 300,
    });
    await platform.scale(2, { timeoutMs: 30_000 });
    return {
      platform,
      versions: { current: 'v1', next: 'v2', broken: 'broken' },
      initialReplicas: 2,
      timeouts: { rolloutMs: 30_000 },
      async makeErrorLines(instance, n) {
        const [found] = await platform.instances({ names: [instance] });
        await writeErrorLines(found!.opsUrl!, token, n);
      },
      async cleanup() {
        await platform.scale(0, { timeoutMs: 30_000 }).catch(() => undefined);
        await platform.close();
        await destroyFleet(dataDir);
      },
    };
  },
  { testTimeoutMs: 60_000 },
);
