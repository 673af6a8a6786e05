/**
 * The Kubernetes adapter against the Kubernetes API **stand-in** (test/k8s-standin): no API server runs
 * here, so these tests prove the adapter against a simulation of the API's conventions and of the
 * Deployment/ReplicaSet controllers and kubelet, not against Kubernetes itself (docs/adr/0005).
 */
import { describePlatformContract } from '../contract.test-suite.ts';
import { startFleet } from '../../../test/k8s-standin/fleet.ts';

describePlatformContract(
  'kubernetes (API stand-in)',
  async () => {
    const fleet = await startFleet({ replicas: 2, controller: { progressDeadlineMs: 400 } });
    return {
      platform: fleet.platform,
      versions: { current: 'v1', next: 'v2', broken: 'v3-broken' },
      initialReplicas: 2,
      async makeErrorLines(instance: string, n: number) {
        fleet.standIn.appendErrorLines(instance, n);
      },
      timeouts: { rolloutMs: 15_000, brokenRolloutMs: 5_000 },
      async cleanup() {
        await fleet.close();
      },
    };
  },
  { testTimeoutMs: 30_000, hookTimeoutMs: 30_000 },
);
