/**
 * The Kubernetes adapter against the Kubernetes API **stand-in** (test/k8s-standin): the shared platform
 * contract, then the RBAC manifest (deploy/rbac.yaml) checked against what the adapter really called.
 * No API server runs here: this proves the adapter against a simulation of the API's conventions and of
 * the Deployment/ReplicaSet controllers and kubelet, not against Kubernetes itself (docs/adr/0005).
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { NotAllowedError } from '../../core/index.ts';
import { describePlatformContract } from '../contract.test-suite.ts';
import { RBAC_PATH, startFleet, type Fleet } from '../../../test/k8s-standin/fleet.ts';
import { grantedPermissions, parseRbac } from '../../../test/k8s-standin/rbac.ts';
import { startStandIn } from '../../../test/k8s-standin/server.ts';
import { writeKubeconfig } from '../../../test/k8s-standin/kubeconfig.ts';

/** Every permission the adapter used during the contract suite, as `verb group/resource`. */
const usedByContract = new Set<string>();

describePlatformContract(
  'kubernetes (API stand-in)',
  async () => {
    // A short progress deadline, so the broken rollout stops on ProgressDeadlineExceeded, not the timeout.
    const fleet = await startFleet({ replicas: 2, controller: { progressDeadlineMs: 1000 } });
    return {
      platform: fleet.platform,
      versions: { current: 'v1', next: 'v2', broken: 'v3-broken' },
      initialReplicas: 2,
      async makeErrorLines(instance: string, n: number) {
        fleet.standIn.appendErrorLines(instance, n);
      },
      timeouts: { rolloutMs: 15_000, brokenRolloutMs: 5_000 },
      async cleanup() {
        for (const p of fleet.standIn.usedPermissions()) usedByContract.add(p);
        await fleet.close();
      },
    };
  },
  { testTimeoutMs: 30_000, hookTimeoutMs: 30_000 },
);

async function granted(): Promise<Set<string>> {
  return grantedPermissions(parseRbac(await readFile(RBAC_PATH, 'utf8')));
}

describe('deploy/rbac.yaml (API stand-in enforcing it)', () => {
  it('is well-formed: a ServiceAccount, a Role and a ClusterRole, each bound to it', async () => {
    const docs = (await readFile(RBAC_PATH, 'utf8'))
      .split(/^---$/m)
      .map((d) => parse(d) as { kind?: string } | null)
      .filter((d): d is { kind: string } => d !== null && d !== undefined && typeof d.kind === 'string');
    expect(docs.map((d) => d.kind).sort()).toEqual(
      ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'].sort(),
    );
  });

  it('grants everything the adapter used during the contract suite', async () => {
    expect(usedByContract.size).toBeGreaterThan(5);
    const rules = await granted();
    expect([...usedByContract].filter((p) => !rules.has(p))).toEqual([]);
  });

  it('grants exactly what the adapter uses: every rule is exercised by some operation', async () => {
    const fleet: Fleet = await startFleet({ replicas: 2, controller: { progressDeadlineMs: 300 } });
    try {
      fleet.standIn.createHpa('game-server', 'game-server', { min: 2, max: 4 });
      const p = fleet.newPlatform({}, { hpa: 'game-server' });
      const [a] = await p.instances();
      await p.usage();
      fleet.standIn.appendErrorLines(a!.name, 1);
      expect((await p.countLines({ pattern: 'ERROR' })).total).toBe(1);
      for await (const line of p.logs({ names: [a!.name], tail: 1 })) expect(line.instance).toBe(a!.name);
      await p.patchConfig({ maintenance_mode: 'true' });
      expect(await p.readConfig()).toMatchObject({ maintenance_mode: 'true' });
      expect((await p.autoscaler()).enabled).toBe(true);
      await expect(p.scale(3)).rejects.toThrow(/HorizontalPodAutoscaler/);
      await fleet.platform.scale(3, { timeoutMs: 10_000 });
      await p.restart({ timeoutMs: 10_000 });
      await p.restart({ filter: { names: [(await p.instances())[0]!.name] }, timeoutMs: 10_000 });
      await p.setVersion('v2', { timeoutMs: 10_000 });
      await p.rollback({ timeoutMs: 10_000 });
      const saved = await p.exportConfigObjects();
      const objects = [...saved, { kind: 'Secret' as const, name: 'rbac-check', data: { k: 'dg==' } }];
      expect(await p.applyConfigObjects(objects)).toEqual({ created: 1, replaced: saved.length });
      expect(await p.applyConfigObjects(objects)).toEqual({ created: 0, replaced: objects.length });
      const used = fleet.standIn.usedPermissions();
      const denied = fleet.standIn.requests.filter((r) => r.code === 403);
      expect(denied).toEqual([]);
      expect([...used].sort()).toEqual([...(await granted())].sort());
    } finally {
      await fleet.close();
    }
  });

  it('is enforced: without pods/log the adapter gets a 403 naming the permission', async () => {
    const text = await readFile(RBAC_PATH, 'utf8');
    const without = text.replace("resources: ['pods/log']", "resources: ['pods/nothing']");
    expect(without).not.toBe(text);
    const fleet = await startFleet();
    const restricted = await startStandIn({ namespace: 'game', rbac: without });
    const kc = await writeKubeconfig(restricted);
    try {
      restricted.createDeployment({ name: 'game-server', replicas: 1, image: fleet.image('v1') });
      await restricted.waitForRollout('game-server');
      const p = fleet.newPlatform({}, { kubeconfig: kc.path });
      const err = await p.countLines({ pattern: 'x' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotAllowedError);
      expect((err as Error).message).toContain('cannot get resource "pods/log" in API group ""');
      expect((err as Error).message).toContain('403 Forbidden');
    } finally {
      await kc.remove();
      await restricted.close();
      await fleet.close();
    }
  });
});
