/**
 * Benchmark of the Kubernetes adapter's fleet status (issue #3): `instances()` + `usage()` across a
 * Deployment of 500 pods on 10 nodes, against the Kubernetes API **stand-in** (test/k8s-standin, with
 * deploy/rbac.yaml enforced). The stand-in runs in its own process, as an API server would, so its
 * work (serialising 500 pods and their metrics) does not share the adapter's event loop.
 *
 * Prints the median, min and max of 5 runs (after one warm-up) and the target (< 1 s), plus each call
 * alone. Figures only: nothing here passes or fails a build. A real API server adds its own latency
 * (etcd reads, admission, TLS, the network, and metrics-server behind the aggregator).
 *
 *   node bench/fleet-status-k8s.ts
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../src/core/index.ts';
import { createKubernetesPlatform } from '../src/platform/kubernetes/index.ts';
import { median, stats } from './stats.ts';

const PODS = Number(process.env.BENCH_PODS ?? 500);
const NODES = 10;
const RUNS = 5;
const TARGET_MS = 1000;

interface Served {
  kubeconfig: string;
  pods: number;
}

if (process.argv[2] === '--serve') {
  // The child: the API stand-in with a 500-pod fleet, until stdin closes.
  const { startStandIn, writeKubeconfig } = await import('../test/k8s-standin/index.ts');
  const { RBAC_PATH } = await import('../test/k8s-standin/fleet.ts');
  const standIn = await startStandIn({
    namespace: 'game',
    nodes: NODES,
    rbac: await readFile(RBAC_PATH, 'utf8'),
  });
  standIn.createDeployment({
    name: 'game-server',
    replicas: PODS,
    image: 'registry.example.com/game/server:v1',
  });
  await standIn.waitForRollout('game-server', 60_000);
  const kc = await writeKubeconfig(standIn);
  const served: Served = { kubeconfig: kc.path, pods: standIn.pods().length };
  process.stdout.write(`${JSON.stringify(served)}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    void (async () => {
      await standIn.close();
      await kc.remove();
      process.exit(0);
    })();
  });
} else {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  try {
    const lines = createInterface({ input: child.stdout });
    const first = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`the stand-in exited (${code}) before it was ready`)));
    });
    const served = JSON.parse(first) as Served;
    const platform = createKubernetesPlatform({
      config: {
        kind: 'kubernetes',
        kubeconfig: served.kubeconfig,
        context: 'standin',
        namespace: 'game',
        deployment: 'game-server',
        opsPort: 'ops',
        rolloutTimeout: 60_000,
        requestTimeout: 15_000,
        verifyImageTag: false,
      },
      clock: systemClock,
    });
    const fleetStatus = async (): Promise<{ instances: number; usage: number }> => {
      const [instances, usage] = await Promise.all([platform.instances(), platform.usage()]);
      return { instances: instances.length, usage: usage.instances.length };
    };
    const warm = await fleetStatus();
    if (warm.instances !== served.pods || warm.usage !== served.pods) {
      throw new Error(`expected ${served.pods} instances with usage, got ${JSON.stringify(warm)}`);
    }
    const both: number[] = [];
    const instancesOnly: number[] = [];
    const usageOnly: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      let t = performance.now();
      await fleetStatus();
      both.push(performance.now() - t);
      t = performance.now();
      await platform.instances();
      instancesOnly.push(performance.now() - t);
      t = performance.now();
      await platform.usage();
      usageOnly.push(performance.now() - t);
    }
    await platform.close();
    const load = loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
    console.log(
      `gameops bench: Kubernetes fleet status, ${served.pods} pods on ${NODES} nodes, API stand-in (${process.version}, load average ${load} on ${cpus().length} cores)`,
    );
    console.log(`  instances() + usage(), concurrently   ${stats(both)}   target < ${TARGET_MS} ms`);
    console.log(`    instances() alone                   ${stats(instancesOnly)}`);
    console.log(`    usage() alone                       ${stats(usageOnly)}`);
    console.log(`  ${median(both) < TARGET_MS ? 'target met' : 'TARGET MISSED'}`);
  } finally {
    child.stdin.end();
    await new Promise((resolve) => {
      if (child.exitCode !== null) resolve(undefined);
      else child.once('exit', resolve);
    });
  }
}
