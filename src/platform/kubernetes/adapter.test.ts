/**
 * The Kubernetes adapter's own behaviour, against the Kubernetes API **stand-in** (test/k8s-standin):
 * failures of the API and of the way to it, optimistic concurrency, rollouts that stall, log streams
 * that are cut, kubeconfig handling. A stand-in, not Kubernetes: see docs/adr/0005.
 */
import { inspect } from 'node:util';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConflictError,
  type GameopsError,
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
  systemClock,
} from '../../core/index.ts';
import type { InstanceFilter, RolloutProgress } from '../port.ts';
import type { ConfigMap } from '../../../test/k8s-standin/index.ts';
import { startFleet, type Fleet } from '../../../test/k8s-standin/fleet.ts';
import { writeKubeconfig } from '../../../test/k8s-standin/kubeconfig.ts';
import { createKubernetesPlatform } from './index.ts';

const fleets: Fleet[] = [];
async function fleet(options: Parameters<typeof startFleet>[0] = {}): Promise<Fleet> {
  const f = await startFleet(options);
  fleets.push(f);
  return f;
}
afterEach(async () => {
  await Promise.all(fleets.splice(0).map((f) => f.close()));
});

async function rejection(promise: Promise<unknown>): Promise<GameopsError> {
  try {
    await promise;
  } catch (err) {
    return err as GameopsError;
  }
  throw new Error('expected the operation to fail, and it succeeded');
}

async function drain<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** A raw request to the stand-in, as kubectl or another tool would make it. */
async function api(
  f: Fleet,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<Response> {
  return fetch(`${f.standIn.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${f.standIn.token}`, 'content-type': contentType },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** `unreadable` names exactly `pod`, with a reason that says `why`. */
function expectUnreadable(unreadable: unknown, pod: string, why: string): void {
  const map = unreadable as Record<string, string>;
  expect(Object.keys(map)).toEqual([pod]);
  expect(map[pod]).toContain(why);
}

const DEPLOYMENT_PATH = '/apis/apps/v1/namespaces/game/deployments/game-server';

describe('kubeconfig and context (API stand-in)', () => {
  it('uses the context named in the config, not the current one', async () => {
    const f = await fleet();
    // The file's current-context points at a closed port: only the named context reaches the stand-in.
    const list = await f.platform.instances();
    expect(list).toHaveLength(2);
    const noContext = f.newPlatform({}, { context: undefined });
    const err = await rejection(noContext.instances());
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain('http://127.0.0.1:9');
  });

  it('names a missing context, a missing file and a broken file without quoting it', async () => {
    const f = await fleet();
    const missingContext = () =>
      createKubernetesPlatform({ config: { ...f.config, context: 'prod' }, clock: systemClock });
    expect(missingContext).toThrow(InputError);
    expect(missingContext).toThrow(/no context "prod" \(it has: standin, elsewhere\)/);

    const path = join(f.kubeconfig.dir, 'absent');
    expect(() =>
      createKubernetesPlatform({ config: { ...f.config, kubeconfig: path }, clock: systemClock }),
    ).toThrow(new RegExp(`cannot read the kubeconfig ${path}: ENOENT`));

    const broken = join(f.kubeconfig.dir, 'broken');
    const secret = 'sk-very-secret-token-4242';
    await writeFile(broken, `users:\n- name: x\n  user:\n    token: ${secret}\n  bad: [indent\n`);
    let thrown: unknown;
    try {
      createKubernetesPlatform({ config: { ...f.config, kubeconfig: broken }, clock: systemClock });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(InputError);
    expect((thrown as Error).message).toMatch(/not valid YAML at line \d+/);
    expect(inspect(thrown)).not.toContain(secret);
  });

  it('refuses a plain-http server unless the kubeconfig says insecure-skip-tls-verify', async () => {
    const f = await fleet();
    const file = join(f.kubeconfig.dir, 'plain-http');
    await writeFile(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{ name: c, cluster: { server: "' + f.standIn.url + '" } }]',
        'users: [{ name: u, user: { token: "' + f.standIn.token + '" } }]',
        'contexts: [{ name: x, context: { cluster: c, user: u } }]',
        'current-context: x',
      ].join('\n'),
    );
    const p = f.newPlatform({}, { kubeconfig: file, context: undefined });
    const err = await rejection(p.instances());
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toContain('plain-http');
  });

  it('refuses a bad token with a clear 401 error that never shows a token', async () => {
    const f = await fleet();
    const badToken = 'definitely-wrong-token-0123456789';
    const kc = await writeKubeconfig(f.standIn, { token: badToken });
    try {
      const p = f.newPlatform({}, { kubeconfig: kc.path });
      const err = await rejection(p.instances());
      expect(err).toBeInstanceOf(NotAllowedError);
      expect(err.message).toContain('401 Unauthorized');
      expect(err.message).toContain('user "gameops"');
      expect(err.message).toContain('context "standin"');
      for (const text of [err.message, inspect(err, { depth: 5 }), JSON.stringify(err), String(err.stack)]) {
        expect(text).not.toContain(badToken);
        expect(text).not.toContain(f.standIn.token);
      }
    } finally {
      await kc.remove();
    }
  });
});

describe('API failures (API stand-in)', () => {
  it('names the deployment, the ConfigMap and the HPA that do not exist', async () => {
    // Without RBAC: deploy/rbac.yaml names the objects it grants, so RBAC would answer 403 first.
    const f = await fleet({ configMap: false, rbac: false });
    const p = f.platform;
    const missing = f.newPlatform({}, { deployment: 'no-such-deployment' });
    for (const call of [
      () => missing.instances(),
      () => missing.scale(3),
      () => missing.setVersion('v2'),
      () => missing.rotateLogs(),
    ]) {
      const err = await rejection(call());
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err.message).toContain('deployment game/no-such-deployment not found');
    }
    const cm = await rejection(p.readConfig());
    expect(cm).toBeInstanceOf(NotFoundError);
    expect(cm.message).toContain('configmap game/game-config not found');
    const hpa = await rejection(f.newPlatform({}, { hpa: 'game-server' }).autoscaler());
    expect(hpa).toBeInstanceOf(NotFoundError);
    expect(hpa.message).toContain('horizontalpodautoscaler game/game-server not found');
  });

  it('gives up on an API that accepts the request and never answers, in bounded time', async () => {
    const f = await fleet();
    const p = f.newPlatform({ requestTimeoutMs: 300 });
    await p.instances(); // the selector is read and cached while the API still answers
    f.standIn.injectFault({ action: 'hang' });
    for (const call of [() => p.instances(), () => p.countLines({ pattern: 'x' }), () => p.readConfig()]) {
      const began = performance.now();
      const err = await rejection(call());
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err.message).toMatch(/did not answer .* within 300 ms/);
      expect(performance.now() - began).toBeLessThan(2000);
    }
  });

  it('reports a dropped connection, a 500 and a missing metrics API as unavailable', async () => {
    const f = await fleet();
    const p = f.platform;
    await p.instances();
    const stop = f.standIn.injectFault({ resource: 'pods', verb: 'list', action: 'drop' });
    const dropped = await rejection(p.instances());
    expect(dropped).toBeInstanceOf(UnavailableError);
    expect(dropped.message).toContain(`Kubernetes API at ${f.standIn.url}`);
    stop();
    f.standIn.injectFault({ resource: 'deployments', action: 'error500', times: 1 });
    const failed = await rejection(p.autoscaler());
    expect(failed).toBeInstanceOf(UnavailableError);
    expect(failed.message).toContain('HTTP 500');
    f.standIn.injectFault({
      resource: 'metrics.k8s.io/pods',
      action: {
        status: 404,
        reason: 'NotFound',
        message: 'the server could not find the requested resource',
      },
    });
    const metrics = await rejection(p.usage());
    expect(metrics).toBeInstanceOf(UnavailableError);
    expect(metrics.message).toContain('metrics-server');
  });

  it('keeps waiting through a brief API outage during a rollout', async () => {
    const f = await fleet();
    f.standIn.injectFault({ resource: 'pods', verb: 'list', action: 'error500', times: 3 });
    const result = await f.platform.scale(3, { timeoutMs: 10_000 });
    expect(result.progress.ready).toBe(3);
  });
});

describe('optimistic concurrency (API stand-in)', () => {
  it('re-reads and retries a ConfigMap patch that met a concurrent write, keeping the other write', async () => {
    const f = await fleet();
    f.standIn.interfere('configmaps', 'game-config', 2);
    const config = await f.platform.patchConfig({ maintenance_mode: 'true' });
    expect(config).toMatchObject({ motd: 'hello', maintenance_mode: 'true', 'concurrent-writer': '1' });
    const patches = f.standIn.requests.filter((r) => r.resource === 'configmaps' && r.verb === 'patch');
    expect(patches.map((r) => r.code)).toEqual([409, 409, 200]);
  });

  it('gives up with a ConflictError when every retry meets a newer version', async () => {
    const f = await fleet();
    f.standIn.interfere('configmaps', 'game-config', 50);
    const err = await rejection(f.platform.patchConfig({ maintenance_mode: 'true' }));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.message).toContain('configmap game/game-config kept changing');
    expect(err.message).toContain('409 Conflict');
    const data = f.standIn.store.get<ConfigMap>('configmaps', 'game', 'game-config')!.data;
    expect(data?.['maintenance_mode']).toBeUndefined();
  });

  it('retries a version change that met a concurrent write of the Deployment, then gives up', async () => {
    const f = await fleet();
    f.standIn.interfere('deployments', 'game-server', 1);
    const result = await f.platform.setVersion('v2', { timeoutMs: 10_000 });
    expect(result.version).toBe('v2');
    f.standIn.interfere('deployments', 'game-server', 10);
    const err = await rejection(f.platform.setVersion('v4', { timeoutMs: 10_000 }));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.message).toContain('kept changing');
    expect(f.standIn.deployment('game-server').spec.template.spec.containers[0]!.image).toBe(f.image('v2'));
  });

  it('refuses to pile a change on a rollout started elsewhere, but joins one to the same version', async () => {
    const f = await fleet();
    f.standIn.controller.frozen = true;
    const patched = await api(
      f,
      'PATCH',
      DEPLOYMENT_PATH,
      { spec: { template: { spec: { containers: [{ name: 'game', image: f.image('v2') }] } } } },
      'application/strategic-merge-patch+json',
    );
    expect(patched.status).toBe(200);
    const other = await rejection(f.platform.setVersion('v4'));
    expect(other).toBeInstanceOf(ConflictError);
    expect(other.message).toContain('is in progress');
    expect(await rejection(f.platform.scale(3))).toBeInstanceOf(ConflictError);
    expect(await rejection(f.platform.restart())).toBeInstanceOf(ConflictError);
    const joining = f.platform.setVersion('v2', { timeoutMs: 10_000 });
    setTimeout(() => (f.standIn.controller.frozen = false), 100);
    const result = await joining;
    expect(result.version).toBe('v2');
    expect((await f.platform.instances()).map((i) => i.version)).toEqual(['v2', 'v2']);
  });

  it('gives a second adapter a ConflictError while the first one rolls out', async () => {
    const f = await fleet();
    const other = f.newPlatform();
    let started!: () => void;
    const first = new Promise<void>((r) => (started = r));
    const rollout = f.platform.setVersion('v2', { timeoutMs: 10_000, onProgress: () => started() });
    await first;
    const err = await rejection(other.scale(3));
    expect(err).toBeInstanceOf(ConflictError);
    await rollout;
    expect((await other.scale(3, { timeoutMs: 10_000 })).replicas).toBe(3);
  });
});

describe('rollouts (API stand-in)', () => {
  it('stops a rollout whose progress deadline passed, leaves it in place, and rolls back by reusing the old ReplicaSet', async () => {
    const f = await fleet({ replicas: 3, controller: { progressDeadlineMs: 500 } });
    const before = f.standIn.replicaSets('game-server');
    const progress: RolloutProgress[] = [];
    const err = await rejection(
      f.platform.setVersion('v3-broken', { timeoutMs: 10_000, onProgress: (p) => progress.push(p) }),
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.details?.['reason']).toBe('ProgressDeadlineExceeded');
    expect(err.message).toContain('exceeded its progress deadline');
    expect(err.message).toContain('left in place');
    const last = err.details?.['progress'] as RolloutProgress;
    expect(last).toEqual(progress.at(-1));
    expect(last.updated).toBeLessThan(3);
    // Left in place: not paused, the template still asks for the broken version, old pods serve.
    const d = f.standIn.deployment('game-server');
    expect(d.spec.paused).toBeUndefined();
    expect(d.spec.template.spec.containers[0]!.image).toBe(f.image('v3-broken'));
    const fleetNow = await f.platform.instances();
    expect(fleetNow.filter((i) => i.ready).every((i) => i.version === 'v1')).toBe(true);
    const crashing = fleetNow.filter((i) => i.version === 'v3-broken');
    expect(crashing.length).toBeGreaterThan(0);
    expect(crashing[0]).toMatchObject({ phase: 'crashloop', ready: false });
    expect(crashing[0]!.reason).toMatch(/^CrashLoopBackOff: exited with code 1/);
    expect(crashing[0]!.restarts).toBeGreaterThan(0);

    const back = await f.platform.rollback({ timeoutMs: 10_000 });
    expect(back).toMatchObject({
      operation: 'rollback',
      version: 'v1',
      previousVersion: 'v3-broken',
      replicas: 3,
    });
    const after = f.standIn.replicaSets('game-server');
    const v1 = before[0]!.metadata.name;
    expect(after.map((rs) => rs.metadata.name)).toContain(v1);
    expect(after).toHaveLength(2); // v1 reused under a new revision, no third ReplicaSet
    expect(
      after.find((rs) => rs.metadata.name === v1)!.metadata.annotations!['deployment.kubernetes.io/revision'],
    ).toBe('3');
    expect((await f.platform.instances()).map((i) => [i.version, i.ready])).toEqual([
      ['v1', true],
      ['v1', true],
      ['v1', true],
    ]);
  });

  it('rolls back after a progress deadline without mistaking the deadline it leaves behind for its own', async () => {
    const f = await fleet({ replicas: 2, controller: { progressDeadlineMs: 300 } });
    const failed = await rejection(f.platform.setVersion('v3-broken', { timeoutMs: 10_000 }));
    expect(failed.details?.['reason']).toBe('ProgressDeadlineExceeded');
    const generation = f.standIn.deployment('game-server').metadata.generation!;
    // The controller observes the rollback once and stops: the Deployment shows the new generation
    // observed and still the old ProgressDeadlineExceeded, as a real one does until it sees progress.
    f.standIn.controller.frozen = true;
    const seen: RolloutProgress[] = [];
    const back = f.platform.rollback({ timeoutMs: 10_000, onProgress: (p) => seen.push(p) });
    const outcome = back.then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    await f.standIn.waitFor(
      'the rollback patch',
      () => f.standIn.deployment('game-server').metadata.generation! > generation,
    );
    f.standIn.controller.step();
    const d = f.standIn.deployment('game-server');
    expect(d.status.observedGeneration).toBe(d.metadata.generation);
    expect(d.status.conditions?.find((c) => c.type === 'Progressing')?.reason).toBe(
      'ProgressDeadlineExceeded',
    );
    await new Promise((r) => setTimeout(r, 400));
    f.standIn.controller.frozen = false;
    const done = await outcome;
    expect('error' in done ? done.error : undefined).toBeUndefined();
    expect('result' in done && done.result.version).toBe('v1');
    expect(seen.some((p) => p.message.includes('progress deadline'))).toBe(false);
  });

  it('stops waiting with a ConflictError when someone else changes the version meanwhile', async () => {
    const f = await fleet({ replicas: 2 });
    const image = () => f.standIn.deployment('game-server').spec.template.spec.containers[0]!.image;
    const overrule = async (tag: string) => {
      const res = await api(
        f,
        'PATCH',
        DEPLOYMENT_PATH,
        { spec: { template: { spec: { containers: [{ name: 'game', image: f.image(tag) }] } } } },
        'application/strategic-merge-patch+json',
      );
      expect(res.status).toBe(200);
    };
    f.standIn.controller.frozen = true;
    const rolling = rejection(f.platform.setVersion('v4', { timeoutMs: 10_000 }));
    await f.standIn.waitFor('the v4 patch', () => image() === f.image('v4'));
    await overrule('v2'); // e.g. a CI job, or an operator's kubectl rollout undo
    f.standIn.controller.frozen = false;
    const err = await rolling;
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.message).toContain('rollout of deployment game/game-server to v4 was superseded by v2');
    expect(err.details).toMatchObject({ image: f.image('v2'), expected: f.image('v4') });
    await f.standIn.waitForRollout('game-server');

    f.standIn.controller.frozen = true;
    const back = rejection(f.platform.rollback({ timeoutMs: 10_000 }));
    await f.standIn.waitFor('the rollback patch', () => image() === f.image('v1'));
    await overrule('v4');
    f.standIn.controller.frozen = false;
    const undone = await back;
    expect(undone).toBeInstanceOf(ConflictError);
    expect(undone.message).toContain('rollback of deployment game/game-server was superseded by v4');
  });

  it('stops at its own timeout, with the last progress, when the deadline is further away', async () => {
    const f = await fleet();
    const began = performance.now();
    const err = await rejection(f.platform.setVersion('v3-broken', { timeoutMs: 400 }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain('did not finish within 400 ms');
    expect(err.details).toMatchObject({ timeoutMs: 400, progress: { operation: 'set-version' } });
    expect(performance.now() - began).toBeLessThan(3000);
    // Superseding a stalled rollout is refused until the Deployment itself says it is stuck.
    expect(await rejection(f.platform.setVersion('v2', { timeoutMs: 1000 }))).toBeInstanceOf(ConflictError);
    const back = await f.platform.rollback({ timeoutMs: 10_000 });
    expect(back.version).toBe('v1');
  });

  it('refuses a version the registry does not have before changing anything, and rollback without history', async () => {
    const f = await fleet();
    const rv = f.standIn.deployment('game-server').metadata.resourceVersion;
    const err = await rejection(f.platform.setVersion('v9'));
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toContain(
      `unknown version v9: the registry ${f.registry.host} has no image game/server:v9`,
    );
    expect(f.standIn.deployment('game-server').metadata.resourceVersion).toBe(rv);
    const none = await rejection(f.platform.rollback());
    expect(none).toBeInstanceOf(NotFoundError);
    expect(none.message).toContain('no earlier revision');
  });

  it('rolls back to the last other version, past restarts of the current one', async () => {
    const f = await fleet();
    await f.platform.setVersion('v2', { timeoutMs: 10_000 });
    await f.platform.restart({ timeoutMs: 10_000 });
    const back = await f.platform.rollback({ timeoutMs: 10_000 });
    expect(back).toMatchObject({ version: 'v1', previousVersion: 'v2' });
  });

  it('restarts with the restartedAt annotation, honouring a stricter maxUnavailable for this rollout only', async () => {
    const f = await fleet({ replicas: 4, deployment: { maxUnavailable: '50%', maxSurge: 0 } });
    const before = await f.platform.instances();
    const seen: RolloutProgress[] = [];
    const strategies = new Set<string>();
    const result = await f.platform.restart({
      maxUnavailable: 1,
      timeoutMs: 10_000,
      onProgress: (p) => {
        seen.push(p);
        strategies.add(JSON.stringify(f.standIn.deployment('game-server').spec.strategy.rollingUpdate));
      },
    });
    expect(result.operation).toBe('restart');
    expect(Math.min(...seen.map((p) => p.available))).toBeGreaterThanOrEqual(3);
    expect(strategies).toContain(JSON.stringify({ maxSurge: 0, maxUnavailable: 1 }));
    const d = f.standIn.deployment('game-server');
    expect(d.spec.template.metadata?.annotations?.['kubectl.kubernetes.io/restartedAt']).toMatch(
      /^\d{4}-\d\d-\d\dT/,
    );
    expect(d.spec.strategy.rollingUpdate).toEqual({ maxSurge: 0, maxUnavailable: '50%' });
    const after = await f.platform.instances();
    expect(after.map((i) => i.name).filter((n) => before.some((b) => b.name === n))).toEqual([]);
  });

  it('keeps the stricter maxUnavailable, and says so, when a restart stops before the rollout is done', async () => {
    const f = await fleet({ replicas: 4, deployment: { maxUnavailable: '50%', maxSurge: 0 } });
    f.standIn.controller.frozen = true;
    const err = await rejection(f.platform.restart({ maxUnavailable: 1, timeoutMs: 400 }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain('did not finish within 400 ms');
    expect(err.message).toContain(
      'maxUnavailable of deployment game/game-server stays 1 while the rollout goes on (it was 50%)',
    );
    expect(err.details).toMatchObject({
      timeoutMs: 400,
      maxUnavailable: { kept: 1, original: '50%' },
      progress: { operation: 'restart' },
    });
    // The rollout goes on in the cluster with at most one pod down, as asked.
    expect(f.standIn.deployment('game-server').spec.strategy.rollingUpdate).toEqual({
      maxSurge: 0,
      maxUnavailable: 1,
    });
    f.standIn.controller.frozen = false;
    await f.standIn.waitForRollout('game-server', 10_000);
    expect(f.standIn.deployment('game-server').spec.strategy.rollingUpdate?.maxUnavailable).toBe(1);
  });

  it('re-reads and retries a restart that met a concurrent write of the Deployment, then gives up', async () => {
    const f = await fleet();
    f.standIn.interfere('deployments', 'game-server', 1);
    const result = await f.platform.restart({ timeoutMs: 10_000 });
    expect(result.operation).toBe('restart');
    const patches = f.standIn.requests.filter((r) => r.resource === 'deployments' && r.verb === 'patch');
    expect(patches.map((r) => r.code)).toEqual([409, 200]);
    f.standIn.interfere('deployments', 'game-server', 10);
    const err = await rejection(f.platform.restart({ timeoutMs: 10_000 }));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.message).toContain('kept changing while gameops restarted it (3 attempts met 409 Conflict)');
  });

  it('restarts only the selected instances, a batch at a time', async () => {
    const f = await fleet({ replicas: 3 });
    const before = await f.platform.instances();
    const [a, b, c] = before;
    const seen: RolloutProgress[] = [];
    const result = await f.platform.restart({
      filter: { names: [a!.name, c!.name] },
      maxUnavailable: 1,
      timeoutMs: 10_000,
      onProgress: (p) => seen.push(p),
    });
    expect(result.progress).toMatchObject({ operation: 'restart', desired: 2, updated: 2 });
    expect(Math.min(...seen.map((p) => p.ready))).toBeGreaterThanOrEqual(2);
    const after = await f.platform.instances();
    const names = after.map((i) => i.name);
    expect(names).toHaveLength(3);
    expect(names).toContain(b!.name);
    expect(names).not.toContain(a!.name);
    expect(names).not.toContain(c!.name);
    expect(after.find((i) => i.name === b!.name)!.startedAt).toBe(b!.startedAt);
    expect(f.standIn.requests.filter((r) => r.verb === 'delete').map((r) => r.name)).toEqual([
      a!.name,
      c!.name,
    ]);
  });

  it('refuses to scale against an HPA, and reports the HPA', async () => {
    const f = await fleet();
    f.standIn.createHpa('game-server', 'game-server', {
      min: 2,
      max: 10,
      cpuTarget: 70,
      cpuCurrent: 72,
      scalingLimited: true,
    });
    const p = f.newPlatform({}, { hpa: 'game-server' });
    const err = await rejection(p.scale(5));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.message).toContain('HorizontalPodAutoscaler game-server (2-10 replicas)');
    await f.standIn.waitFor('hpa status', () => f.standIn.store.list('horizontalpodautoscalers').length > 0);
    const status = await p.autoscaler();
    expect(status).toMatchObject({
      enabled: true,
      name: 'game-server',
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [{ name: 'cpu', current: '72%', target: '70%' }],
    });
    expect(status.conditions).toContainEqual({
      type: 'ScalingLimited',
      status: 'True',
      message: 'the desired replica count is more than the maximum replica count',
    });
    expect(await f.platform.autoscaler()).toMatchObject({
      enabled: false,
      currentReplicas: 2,
      desiredReplicas: 2,
    });
  });

  it('finishes waits while an evicted pod (terminal, still listed) stays behind', async () => {
    const f = await fleet({ replicas: 2 });
    const [a] = await f.platform.instances();
    f.standIn.evictPod(a!.name);
    const result = await f.platform.scale(3, { timeoutMs: 10_000 });
    expect(result.progress.ready).toBe(3);
    const evicted = (await f.platform.instances()).find((i) => i.name === a!.name);
    expect(evicted).toMatchObject({ phase: 'failed', reason: 'Evicted', ready: false });
    expect((await f.platform.instances()).filter((i) => i.ready)).toHaveLength(3);
  });

  it('finishes scale, restart, setVersion and rollback while a pod stays Terminating (long grace, finalizer), and says so', async () => {
    const f = await fleet({ replicas: 2, platform: { terminatingSettleMs: 300 } });
    const p = f.platform;
    const [a] = await p.instances();
    f.standIn.holdPod(a!.name, 'grace');
    const seen: RolloutProgress[] = [];
    const onProgress = (progress: RolloutProgress): void => void seen.push(progress);
    // a is deleted by the rollout restart and stays listed, Terminating, for its hour of grace.
    const began = performance.now();
    const restarted = await p.restart({ timeoutMs: 10_000, onProgress });
    expect(performance.now() - began).toBeLessThan(5000);
    expect(f.standIn.pod(a!.name).metadata.deletionTimestamp).toBeDefined();
    expect(restarted.progress.message).toMatch(
      /; rolled out; 1 pod still terminating: game-server-\S+ \(not waited for\)$/,
    );
    expect(restarted.progress.message).toContain(a!.name);
    expect(seen.at(-1)).toEqual(restarted.progress);
    expect((await p.scale(3, { timeoutMs: 10_000, onProgress })).progress.ready).toBe(3);
    expect((await p.setVersion('v2', { timeoutMs: 10_000, onProgress })).version).toBe('v2');
    expect((await p.rollback({ timeoutMs: 10_000, onProgress })).version).toBe('v1');
    const [b] = (await p.instances()).filter((i) => i.phase === 'running');
    f.standIn.holdPod(b!.name);
    await p.restart({ filter: { names: [b!.name] }, timeoutMs: 10_000 });
    expect(f.standIn.pod(b!.name).metadata.deletionTimestamp).toBeDefined();
    const ready = (await f.platform.instances()).filter((i) => i.ready);
    expect(ready).toHaveLength(3);
    expect(ready.map((i) => i.name)).not.toContain(b!.name);
    f.standIn.releasePod(a!.name);
    f.standIn.releasePod(b!.name);
  });

  it('restarts an instance on a lost node: its pod stays Terminating, the replacement is waited for', async () => {
    const f = await fleet({ replicas: 3, platform: { terminatingSettleMs: 300 } });
    const [a] = await f.platform.instances();
    f.standIn.loseNode(a!.node!);
    const result = await f.platform.restart({ filter: { names: [a!.name] }, timeoutMs: 10_000 });
    expect(result.progress).toMatchObject({ desired: 1, updated: 1 });
    const after = await f.platform.instances();
    expect(after.find((i) => i.name === a!.name)).toMatchObject({ phase: 'stopped', reason: 'Terminating' });
    expect(after.filter((i) => i.ready)).toHaveLength(3);
    expect((await f.platform.scale(2, { timeoutMs: 10_000 })).progress.available).toBe(2);
  });

  it('stops a running wait when the platform closes', async () => {
    const f = await fleet();
    const p = f.newPlatform();
    f.standIn.controller.frozen = true;
    const waiting = rejection(p.scale(3, { timeoutMs: 10_000 }));
    await new Promise((r) => setTimeout(r, 100));
    await p.close();
    const err = await waiting;
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain('cancelled');
  });

  it('cancels a wait when the signal aborts, keeping the progress', async () => {
    const f = await fleet();
    f.standIn.controller.frozen = true;
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('operator pressed ctrl-c')), 200);
    const err = await rejection(f.platform.scale(3, { signal: controller.signal, timeoutMs: 10_000 }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain('cancelled');
    expect(err.details?.['progress']).toMatchObject({ operation: 'scale', desired: 3 });
  });
});

describe('instances and usage (API stand-in)', () => {
  it('maps pod states: crash loop, image pull failure, restarts, terminating, ops URL', async () => {
    const f = await fleet({ replicas: 2 });
    const [a] = await f.platform.instances();
    expect(a!.opsUrl).toMatch(/^http:\/\/10\.244\.\d+\.\d+:7001$/);
    expect(a!.node).toMatch(/^standin-node-\d$/);
    expect(a!.labels).toMatchObject({ app: 'game-server', tier: 'game' });
    f.standIn.crashContainer(a!.name);
    f.standIn.crashContainer(a!.name);
    const crashed = (await f.platform.instances({ names: [a!.name] }))[0]!;
    expect(crashed.restarts).toBe(2);
    expect(crashed.ready).toBe(false);
    expect(Date.parse(crashed.startedAt!)).toBeGreaterThanOrEqual(Date.parse(a!.startedAt!));

    const numeric = f.newPlatform({}, { opsPort: 7001 });
    expect((await numeric.instances({ names: [a!.name] }))[0]!.opsUrl).toBe(a!.opsUrl);
    const unnamed = f.newPlatform({}, { opsPort: 'nope' });
    expect((await unnamed.instances({ names: [a!.name] }))[0]!.opsUrl).toBeUndefined();

    f.standIn.controller.deletePod(f.standIn.pod(a!.name));
    const terminating = (await f.platform.instances({ names: [a!.name] }))[0]!;
    expect(terminating).toMatchObject({ phase: 'stopped', reason: 'Terminating', ready: false });

    const pulling = f.newPlatform({ imageCheck: false });
    const err = await rejection(pulling.setVersion('v5-missing', { timeoutMs: 300 }));
    expect(err).toBeInstanceOf(UnavailableError);
    const pending = (await pulling.instances()).find((i) => i.version === 'v5-missing');
    expect(pending).toMatchObject({ phase: 'pending', reason: 'ImagePullBackOff', ready: false });
    // A pod whose container never started has no log yet: it counts 0, it is not an error.
    const count = await pulling.countLines({ pattern: 'ERROR', names: [pending!.name] });
    expect(count.perInstance).toEqual({ [pending!.name]: 0 });
  });

  it('reports a crash-looping init container as a crash loop, with its restarts', async () => {
    const f = await fleet({
      replicas: 1,
      waitReady: false,
      deployment: { initContainers: [{ name: 'migrate', image: 'example.com/migrate:v2-broken' }] },
    });
    await f.standIn.waitFor(
      'init restarts',
      () => (f.standIn.pods()[0]?.status.initContainerStatuses?.[0]?.restartCount ?? 0) >= 2,
    );
    const [pod] = await f.platform.instances();
    expect(pod).toMatchObject({ phase: 'crashloop', ready: false });
    expect(pod!.reason).toMatch(/^Init:CrashLoopBackOff: exited with code 1 \(Error\)$/);
    expect(pod!.restarts).toBeGreaterThanOrEqual(2);
    // Its game container never started: no log yet, not an error.
    expect((await f.platform.countLines({ pattern: 'ERROR' })).perInstance).toEqual({ [pod!.name]: 0 });
  });

  it('reports usage from metrics.k8s.io with node capacity, parsing the quantities', async () => {
    const f = await fleet({ replicas: 2 });
    const [a, b] = await f.platform.instances();
    f.standIn.setPodUsage(a!.name, { cpu: '250m', memory: '64Mi' });
    f.standIn.setPodUsage(b!.name, { cpu: '1500000000n', memory: '131072Ki' });
    const report = await f.platform.usage();
    expect(report.windowMs).toBe(15_024);
    expect(report.instances).toEqual([
      { name: a!.name, cpuMillicores: 250, memoryBytes: 64 * 1024 * 1024 },
      { name: b!.name, cpuMillicores: 1500, memoryBytes: 128 * 1024 * 1024 },
    ]);
    const nodes = new Set([a!.node, b!.node]);
    expect(report.nodes.map((n) => n.name).sort()).toEqual([...nodes].sort());
    for (const node of report.nodes) {
      expect(node).toMatchObject({ cpuCapacityMillicores: 3920, memoryCapacityBytes: 15242892 * 1024 });
      expect(node.cpuMillicores).toBeGreaterThan(150);
    }
    expect(Date.parse(report.at)).toBeLessThanOrEqual(Date.now());
  });

  it('reports pod usage without node figures when RBAC gives no access to nodes', async () => {
    const f = await fleet();
    f.standIn.injectFault({
      resource: 'nodes',
      action: { status: 403, reason: 'Forbidden', message: 'nodes is forbidden' },
    });
    f.standIn.injectFault({
      resource: 'metrics.k8s.io/nodes',
      action: { status: 403, reason: 'Forbidden', message: 'nodes.metrics.k8s.io is forbidden' },
    });
    const report = await f.platform.usage();
    expect(report.instances).toHaveLength(2);
    expect(report.nodes).toEqual([]);
  });

  it('refuses invalid filters before asking the API', async () => {
    const f = await fleet();
    const requests = f.standIn.requests.length;
    const filters: InstanceFilter[] = [
      { labels: { 'bad key!': 'x' } },
      { labels: { app: 'a,b' } },
      { names: [''] },
    ];
    for (const filter of filters) {
      expect(await rejection(f.platform.instances(filter))).toBeInstanceOf(InputError);
    }
    expect(f.standIn.requests.length).toBe(requests);
  });
});

describe('logs (API stand-in)', () => {
  it('counts a large log as it streams, across many chunks', async () => {
    const f = await fleet();
    const [a, b] = await f.platform.instances();
    const lines = 200_000;
    f.standIn.appendGeneratedLines(a!.name, lines, (i) =>
      JSON.stringify({ level: i % 10 === 0 ? 'ERROR' : 'INFO', msg: `tick ${i}`, pad: 'x'.repeat(40) }),
    );
    const result = await f.platform.countLines({ pattern: '"level":"ERROR"' });
    expect(result.perInstance).toEqual({ [a!.name]: lines / 10, [b!.name]: 0 });
    expect(result.bytesScanned).toBeGreaterThan(lines * 60);
  });

  it('fails a count whose stream is cut mid-way, naming the pod and how far it got', async () => {
    const f = await fleet();
    const [a] = await f.platform.instances();
    f.standIn.appendGeneratedLines(a!.name, 50_000, (i) => `{"level":"ERROR","n":${i}}`);
    f.standIn.cutLogStream({ pod: a!.name, afterBytes: 100_000, times: 2 });
    const err = await rejection(f.platform.countLines({ pattern: 'ERROR', names: [a!.name] }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain(`the log stream of pod game/${a!.name} was cut after`);
    expectUnreadable(err.details?.['unreadable'], a!.name, 'was cut after');
    const details = err.details as { pod: string; bytes: number; lines: number };
    expect(details.pod).toBe(a!.name);
    expect(details.bytes).toBeGreaterThan(0);
    expect(details.bytes).toBeLessThanOrEqual(100_000);
    expect(details.lines).toBeGreaterThan(0);
    expect(err.message).toContain(`${details.bytes} bytes (${details.lines} lines)`);

    const seen: string[] = [];
    const streamed = await rejection(
      (async () => {
        for await (const line of f.platform.logs({ names: [a!.name] })) seen.push(line.line);
      })(),
    );
    expect(streamed).toBeInstanceOf(UnavailableError);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.length).toBeLessThan(50_000);
  });

  it('counts and streams what it can read when a pod was evicted or its node is lost, naming the rest', async () => {
    const warnings: Array<{ obj: Record<string, unknown>; msg: string }> = [];
    const log = {
      debug: () => {},
      info: () => {},
      warn: (obj: object, msg: string) => void warnings.push({ obj: obj as Record<string, unknown>, msg }),
    };
    const f = await fleet({ replicas: 3 });
    const p = f.newPlatform({ log });
    const pods = await p.instances();
    const [evicted, lost] = pods;
    const readable = pods.find((i) => i.node !== lost!.node && i.name !== evicted!.name)!;
    f.standIn.appendErrorLines(evicted!.name, 2);
    f.standIn.appendErrorLines(lost!.name, 3);
    f.standIn.appendErrorLines(readable.name, 4);
    f.standIn.evictPod(evicted!.name);
    f.standIn.loseNode(lost!.node!);
    await f.standIn.waitFor('a replacement', () => f.standIn.pods().length === 4);

    const counted = await p.countLines({ pattern: '"level":"ERROR"' });
    expect(counted.perInstance[readable.name]).toBe(4);
    expect(Object.keys(counted.perInstance)).not.toContain(evicted!.name);
    expect(Object.keys(counted.perInstance)).not.toContain(lost!.name);
    expectUnreadable(counted.unreadable, lost!.name, 'no route to host');
    expect(counted.total).toBe(4);
    const warned = warnings.find((w) => w.msg.includes('could not be read'));
    expectUnreadable(warned?.obj['unreadable'], lost!.name, 'no route to host');
    expect(warned?.msg).toContain(lost!.name);

    warnings.length = 0;
    const lines = await drain(p.logs({}));
    expect(lines.some((l) => l.instance === readable.name && l.line.includes('"level":"ERROR"'))).toBe(true);
    expect(lines.some((l) => l.instance === lost!.name || l.instance === evicted!.name)).toBe(false);
    expect(warnings.some((w) => w.msg.includes(lost!.name))).toBe(true);

    // Nothing readable at all: unavailable, naming why per pod.
    const none = await rejection(p.countLines({ pattern: 'ERROR', names: [lost!.name] }));
    expect(none).toBeInstanceOf(UnavailableError);
    expect(none.message).toContain(lost!.name);
    expectUnreadable(none.details?.['unreadable'], lost!.name, 'no route to host');
    const noLines = await rejection(drain(p.logs({ names: [lost!.name] })));
    expect(noLines).toBeInstanceOf(UnavailableError);
    expect(noLines.message).toContain(lost!.name);
    // An evicted pod runs nothing and keeps no log: it is left out, not an error.
    expect(await p.countLines({ pattern: 'ERROR', names: [evicted!.name] })).toEqual({
      perInstance: {},
      total: 0,
      bytesScanned: 0,
    });
  });

  it('merges several pods, counts per instance with since, and reads the game container of a multi-container pod', async () => {
    const f = await fleet({
      replicas: 2,
      deployment: { sidecars: [{ name: 'proxy', image: 'envoyproxy/envoy:v1.31.0' }] },
    });
    const [a, b] = await f.platform.instances();
    expect(a!.version).toBe('v1');
    f.standIn.appendLogs(a!.name, ['{"level":"ERROR","msg":"old"}'], { at: new Date(Date.now() - 60_000) });
    f.standIn.appendErrorLines(a!.name, 3);
    f.standIn.appendErrorLines(b!.name, 1);
    f.standIn.appendErrorLines(b!.name, 7, { container: 'proxy' });
    const all = await drain(f.platform.logs({}));
    expect(new Set(all.map((l) => l.instance))).toEqual(new Set([a!.name, b!.name]));
    const counted = await f.platform.countLines({ pattern: '"level":"ERROR"', sinceMs: 30_000 });
    expect(counted.perInstance).toEqual({ [a!.name]: 3, [b!.name]: 1 });
    const everything = await f.platform.countLines({ pattern: '"level":"ERROR"' });
    expect(everything.perInstance[a!.name]).toBe(4);
    const sidecar = f.newPlatform({}, { container: 'proxy' });
    expect((await sidecar.countLines({ pattern: 'ERROR', names: [b!.name] })).perInstance[b!.name]).toBe(7);
    expect((await sidecar.instances({ names: [b!.name] }))[0]!.version).toBe('v1.31.0');
    const wrong = f.newPlatform({}, { container: 'nope' });
    const err = await rejection(wrong.scale(3));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toContain(
      'container "nope" is not in deployment game/game-server (it has: game, proxy)',
    );
  });

  it('ends a followed log when the platform closes, and rejects a count whose signal aborted', async () => {
    const f = await fleet();
    const [a] = await f.platform.instances();
    const p = f.newPlatform();
    const seen: string[] = [];
    const following = (async () => {
      for await (const line of p.logs({ names: [a!.name], follow: true, tail: 0 })) seen.push(line.line);
    })();
    await new Promise((r) => setTimeout(r, 100));
    f.standIn.appendErrorLines(a!.name, 2);
    await f.standIn.waitFor('followed lines', () => seen.length === 2);
    await p.close();
    await following;
    const controller = new AbortController();
    controller.abort(new Error('stop counting'));
    const err = await rejection(f.platform.countLines({ pattern: 'x', signal: controller.signal }));
    expect(err.message).toBe('stop counting');
    expect(await rejection(p.instances())).toBeInstanceOf(UnavailableError);
  });

  it('gives up on a log stream that stalls, when not following, naming the pod', async () => {
    const f = await fleet();
    const [a] = await f.platform.instances();
    f.standIn.appendGeneratedLines(a!.name, 20_000, (i) => `{"level":"INFO","n":${i}}`);
    f.standIn.stallLogStream({ pod: a!.name, afterBytes: 50_000 });
    const p = f.newPlatform({ requestTimeoutMs: 300 });
    const began = performance.now();
    const seen: string[] = [];
    const outcome = await Promise.race([
      rejection(
        (async () => {
          for await (const line of p.logs({ names: [a!.name] })) seen.push(line.line);
        })(),
      ),
      new Promise<'hung'>((r) => setTimeout(() => r('hung'), 5000)),
    ]);
    expect(outcome).not.toBe('hung');
    const err = outcome as GameopsError;
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain(`the log stream of pod game/${a!.name} was cut after`);
    expect(err.message).toContain('nothing arrived for 300 ms');
    expect(seen.length).toBeGreaterThan(0);
    expect(performance.now() - began).toBeLessThan(4000);
    await p.close();
  });

  it('follows a quiet log for longer than the request timeout', async () => {
    const f = await fleet();
    const [a] = await f.platform.instances();
    const p = f.newPlatform({ requestTimeoutMs: 200 });
    const controller = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const line of p.logs({
        names: [a!.name],
        follow: true,
        tail: 0,
        signal: controller.signal,
      })) {
        seen.push(line.line);
        controller.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 600));
    f.standIn.appendLogs(a!.name, ['{"level":"INFO","msg":"after a quiet while"}']);
    await following;
    expect(seen).toEqual(['{"level":"INFO","msg":"after a quiet while"}']);
  });

  it('refuses bad log queries', async () => {
    const f = await fleet();
    for (const q of [{ sinceMs: -1 }, { sinceMs: Number.NaN }, { tail: 1.5 }, { tail: -1 }]) {
      expect(await rejection(drain(f.platform.logs(q)))).toBeInstanceOf(InputError);
    }
    expect(await rejection(f.platform.countLines({ pattern: '' }))).toBeInstanceOf(InputError);
    expect(await rejection(f.platform.countLines({ pattern: 'a\nb' }))).toBeInstanceOf(InputError);
  });
});
