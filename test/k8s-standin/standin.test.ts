/**
 * The Kubernetes API **stand-in** itself: the REST conventions and controller behaviour it claims to
 * follow (README.md), checked over plain HTTP as any client would see them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { jsonPatch, mergePatch } from './patch.ts';
import { matches, parseSelector } from './selector.ts';
import { startRegistry } from './registry.ts';
import { startStandIn, type StandIn, type StandInOptions } from './server.ts';
import type { Deployment, Pod } from './objects.ts';

const started: StandIn[] = [];
async function standIn(options: StandInOptions = {}): Promise<StandIn> {
  const s = await startStandIn(options);
  started.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.close()));
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

async function call(
  s: StandIn,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
  token = s.token,
): Promise<Answer> {
  const res = await fetch(`${s.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // plain text (logs)
  }
  return { status: res.status, body: parsed, text };
}

const D = '/apis/apps/v1/namespaces/game/deployments/game';

async function withDeployment(options: StandInOptions = {}, replicas = 2): Promise<StandIn> {
  const s = await standIn(options);
  s.createDeployment({ name: 'game', replicas, image: 'example.com/game:v1' });
  await s.waitForRollout('game');
  return s;
}

describe('API stand-in: REST conventions', () => {
  it('answers 401 with a Status without a valid bearer token', async () => {
    const s = await standIn();
    const res = await call(s, 'GET', '/api/v1/namespaces/game/pods', undefined, 'application/json', 'wrong');
    expect(res.status).toBe(401);
    expect(res.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'Unauthorized',
      reason: 'Unauthorized',
      code: 401,
    });
  });

  it('lists with kind …List, a resourceVersion, items without kind, filtered by label selector', async () => {
    const s = await withDeployment();
    const res = await call(s, 'GET', '/api/v1/namespaces/game/pods?labelSelector=app%3Dgame');
    expect(res.body).toMatchObject({ kind: 'PodList', apiVersion: 'v1' });
    expect(typeof (res.body['metadata'] as { resourceVersion?: unknown }).resourceVersion).toBe('string');
    const items = res.body['items'] as Array<Record<string, unknown>>;
    expect(items).toHaveLength(2);
    expect(items[0]!['kind']).toBeUndefined();
    expect(
      (await call(s, 'GET', '/api/v1/namespaces/game/pods?labelSelector=app%20notin%20(game)')).body['items'],
    ).toEqual([]);
    const bad = await call(s, 'GET', '/api/v1/namespaces/game/pods?labelSelector=a%3D%3D%3Db');
    expect(bad.status).toBe(400);
    expect(bad.body['reason']).toBe('BadRequest');
  });

  it('answers 404 Status objects naming the resource, and for unknown paths', async () => {
    const s = await standIn();
    const res = await call(s, 'GET', '/apis/apps/v1/namespaces/game/deployments/nope');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({
      kind: 'Status',
      reason: 'NotFound',
      message: 'deployments.apps "nope" not found',
      details: { name: 'nope', group: 'apps', kind: 'deployments' },
      code: 404,
    });
    expect((await call(s, 'GET', '/apis/apps/v1/namespaces/game/statefulsets')).status).toBe(404);
    expect((await call(s, 'POST', '/api/v1/namespaces/game/pods', {})).status).toBe(405);
  });

  it('bumps resourceVersion on every write, generation only on spec changes, and refuses stale writes with 409', async () => {
    const s = await withDeployment();
    const first = (await call(s, 'GET', D)).body as unknown as Deployment;
    const annotated = await call(
      s,
      'PATCH',
      D,
      { metadata: { annotations: { team: 'ops' } } },
      'application/merge-patch+json',
    );
    const a = annotated.body as unknown as Deployment;
    expect(Number(a.metadata.resourceVersion)).toBeGreaterThan(Number(first.metadata.resourceVersion));
    expect(a.metadata.generation).toBe(first.metadata.generation);
    const scaled = (await call(s, 'PATCH', D, { spec: { replicas: 3 } }, 'application/merge-patch+json'))
      .body as unknown as Deployment;
    expect(scaled.metadata.generation).toBe(first.metadata.generation! + 1);

    const stale = { ...first, spec: { ...first.spec, replicas: 4 } };
    const conflict = await call(s, 'PUT', D, stale);
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({
      reason: 'Conflict',
      message:
        'Operation cannot be fulfilled on deployments.apps "game": the object has been modified; please apply your changes to the latest version and try again',
    });
    const stalePatch = await call(
      s,
      'PATCH',
      D,
      { metadata: { resourceVersion: first.metadata.resourceVersion }, spec: { replicas: 5 } },
      'application/merge-patch+json',
    );
    expect(stalePatch.status).toBe(409);
    const unconditional = await call(s, 'PUT', D, {
      ...stale,
      metadata: { ...stale.metadata, resourceVersion: '' },
    });
    expect(unconditional.status).toBe(200);
    await s.waitFor('observedGeneration', () => {
      const d = s.deployment('game');
      return d.status.observedGeneration === d.metadata.generation;
    });
  });

  it('applies the three patch types as the API server does, and refuses others with 415', async () => {
    const s = await withDeployment();
    const strategic = await call(
      s,
      'PATCH',
      D,
      { spec: { template: { spec: { containers: [{ name: 'game', image: 'example.com/game:v2' }] } } } },
      'application/strategic-merge-patch+json',
    );
    const container = (strategic.body as unknown as Deployment).spec.template.spec.containers[0]!;
    // Merged by name: the ports the patch did not mention are kept.
    expect(container).toMatchObject({
      name: 'game',
      image: 'example.com/game:v2',
      ports: [{ name: 'game' }, { name: 'ops' }],
    });
    const merge = await call(
      s,
      'PATCH',
      D,
      { spec: { template: { spec: { containers: [{ name: 'game', image: 'example.com/game:v3' }] } } } },
      'application/merge-patch+json',
    );
    // Merge patch replaces lists whole: the ports are gone.
    expect((merge.body as unknown as Deployment).spec.template.spec.containers[0]!.ports).toBeUndefined();
    const failedTest = await call(
      s,
      'PATCH',
      D,
      [{ op: 'test', path: '/spec/replicas', value: 99 }],
      'application/json-patch+json',
    );
    expect(failedTest.status).toBe(422);
    const replaced = await call(
      s,
      'PATCH',
      D,
      [{ op: 'replace', path: '/spec/replicas', value: 1 }],
      'application/json-patch+json',
    );
    expect((replaced.body as unknown as Deployment).spec.replicas).toBe(1);
    const unknown = await call(s, 'PATCH', D, { spec: {} }, 'application/json');
    expect(unknown.status).toBe(415);
    expect(unknown.body['reason']).toBe('UnsupportedMediaType');
  });

  it('validates Deployments with 422 Invalid and field causes', async () => {
    const s = await withDeployment();
    const negative = await call(s, 'PATCH', D, { spec: { replicas: -1 } }, 'application/merge-patch+json');
    expect(negative.status).toBe(422);
    expect(negative.body).toMatchObject({
      reason: 'Invalid',
      details: { kind: 'Deployment', causes: [{ field: 'spec.replicas' }] },
    });
    const selector = await call(
      s,
      'PATCH',
      D,
      { spec: { selector: { matchLabels: { app: 'other' } } } },
      'application/merge-patch+json',
    );
    expect(selector.status).toBe(422);
    expect(selector.body['message']).toContain('field is immutable');
  });

  it('serves the scale subresource (get, update, patch) with the Deployment resourceVersion as precondition', async () => {
    const s = await withDeployment();
    const scale = await call(s, 'GET', `${D}/scale`);
    expect(scale.body).toMatchObject({
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      spec: { replicas: 2 },
      status: { replicas: 2, selector: 'app=game' },
    });
    const meta = scale.body['metadata'] as { resourceVersion: string };
    expect((await call(s, 'PUT', `${D}/scale`, { ...scale.body, spec: { replicas: 3 } })).status).toBe(200);
    expect(
      (await call(s, 'PUT', `${D}/scale`, { ...scale.body, metadata: meta, spec: { replicas: 4 } })).status,
    ).toBe(409);
    expect(
      (await call(s, 'PATCH', `${D}/scale`, { spec: { replicas: 1 } }, 'application/merge-patch+json')).body,
    ).toMatchObject({ spec: { replicas: 1 } });
    expect(
      (await call(s, 'PATCH', `${D}/scale`, { spec: { replicas: -2 } }, 'application/merge-patch+json'))
        .status,
    ).toBe(422);
  });

  it('serves Services (get, patch)', async () => {
    const s = await standIn();
    s.createService('game', { app: 'game' });
    const svc = '/api/v1/namespaces/game/services/game';
    expect((await call(s, 'GET', svc)).body).toMatchObject({
      kind: 'Service',
      spec: { selector: { app: 'game' } },
    });
    const patched = await call(
      s,
      'PATCH',
      svc,
      { spec: { selector: { app: 'game', track: 'blue' } } },
      'application/merge-patch+json',
    );
    expect(patched.body).toMatchObject({
      spec: { selector: { app: 'game', track: 'blue' }, clusterIP: '10.96.0.42' },
    });
  });

  it('enforces RBAC with the API server’s 403 Status', async () => {
    const s = await standIn({
      rbac: [
        'kind: Role',
        'apiVersion: rbac.authorization.k8s.io/v1',
        'metadata: { name: r, namespace: game }',
        "rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['list'] }]",
        '---',
        'kind: RoleBinding',
        'apiVersion: rbac.authorization.k8s.io/v1',
        'metadata: { name: r, namespace: game }',
        'roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: r }',
        'subjects: [{ kind: ServiceAccount, name: gameops, namespace: game }]',
      ].join('\n'),
    });
    expect((await call(s, 'GET', '/api/v1/namespaces/game/pods')).status).toBe(200);
    expect((await call(s, 'GET', '/api/v1/namespaces/other/pods')).status).toBe(403);
    const denied = await call(s, 'DELETE', '/api/v1/namespaces/game/pods/x');
    expect(denied.body).toMatchObject({
      reason: 'Forbidden',
      code: 403,
      message:
        'pods "x" is forbidden: User "system:serviceaccount:game:gameops" cannot delete resource "pods" in API group "" in the namespace "game"',
    });
  });

  it('injects faults: 500, a dropped connection, a request that never answers', async () => {
    const s = await standIn();
    s.injectFault({ resource: 'pods', action: 'error500', times: 1 });
    expect((await call(s, 'GET', '/api/v1/namespaces/game/pods')).status).toBe(500);
    expect((await call(s, 'GET', '/api/v1/namespaces/game/pods')).status).toBe(200);
    s.injectFault({ resource: 'pods', action: 'drop', times: 1 });
    await expect(call(s, 'GET', '/api/v1/namespaces/game/pods')).rejects.toThrow();
    s.injectFault({ resource: 'pods', action: { delayMs: 150 }, times: 1 });
    const began = performance.now();
    expect((await call(s, 'GET', '/api/v1/namespaces/game/pods')).status).toBe(200);
    expect(performance.now() - began).toBeGreaterThanOrEqual(140);
    s.injectFault({ resource: 'pods', action: 'hang', times: 1 });
    await expect(
      fetch(`${s.url}/api/v1/namespaces/game/pods`, {
        headers: { authorization: `Bearer ${s.token}` },
        signal: AbortSignal.timeout(200),
      }),
    ).rejects.toThrow();
  });
});

describe('API stand-in: controllers and kubelet', () => {
  it('rolls within maxSurge and maxUnavailable, with a new ReplicaSet and revision per template', async () => {
    const s = await standIn();
    s.createDeployment({
      name: 'game',
      replicas: 4,
      image: 'example.com/game:v1',
      maxSurge: 1,
      maxUnavailable: 1,
    });
    await s.waitForRollout('game');
    await call(
      s,
      'PATCH',
      D,
      { spec: { template: { spec: { containers: [{ name: 'game', image: 'example.com/game:v2' }] } } } },
      'application/strategic-merge-patch+json',
    );
    let maxPods = 0;
    let minAvailable = 4;
    await s.waitFor('rollout', () => {
      const pods = s.pods().filter((p) => p.metadata.deletionTimestamp === undefined);
      maxPods = Math.max(maxPods, pods.length);
      minAvailable = Math.min(
        minAvailable,
        pods.filter((p) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
          .length,
      );
      const d = s.deployment('game');
      return (
        d.status.observedGeneration === d.metadata.generation &&
        d.status.updatedReplicas === 4 &&
        d.status.availableReplicas === 4 &&
        d.status.replicas === 4
      );
    });
    expect(maxPods).toBeLessThanOrEqual(5);
    expect(minAvailable).toBeGreaterThanOrEqual(3);
    const sets = s.replicaSets('game');
    expect(
      sets
        .map((rs) => [rs.metadata.annotations!['deployment.kubernetes.io/revision'], rs.spec.replicas])
        .sort(),
    ).toEqual([
      ['1', 0],
      ['2', 4],
    ]);
    const d = s.deployment('game');
    expect(d.metadata.annotations!['deployment.kubernetes.io/revision']).toBe('2');
    expect(d.status.conditions?.find((c) => c.type === 'Progressing')).toMatchObject({
      status: 'True',
      reason: 'NewReplicaSetAvailable',
    });
    const rsList = await call(s, 'GET', '/apis/apps/v1/namespaces/game/replicasets?labelSelector=app%3Dgame');
    const owners = (
      rsList.body['items'] as Array<{ metadata: { ownerReferences: Array<{ kind: string; uid: string }> } }>
    ).map((rs) => rs.metadata.ownerReferences[0]);
    expect(owners.every((o) => o?.kind === 'Deployment' && o.uid === d.metadata.uid)).toBe(true);
  });

  it('crash-loops a broken image and reports ProgressDeadlineExceeded', async () => {
    const s = await standIn({ controller: { progressDeadlineMs: 150 } });
    s.createDeployment({ name: 'game', replicas: 2, image: 'example.com/game:v1' });
    await s.waitForRollout('game');
    await call(
      s,
      'PATCH',
      D,
      {
        spec: { template: { spec: { containers: [{ name: 'game', image: 'example.com/game:v2-broken' }] } } },
      },
      'application/strategic-merge-patch+json',
    );
    await s.waitFor(
      'deadline',
      () =>
        s.deployment('game').status.conditions?.some((c) => c.reason === 'ProgressDeadlineExceeded') ?? false,
    );
    const broken = s.pods().find((p) => p.spec.containers[0]!.image.endsWith('v2-broken'))!;
    const status = broken.status.containerStatuses![0]!;
    expect(status.state.waiting?.reason).toBe('CrashLoopBackOff');
    expect(status.lastState.terminated).toMatchObject({ exitCode: 1 });
    expect(status.restartCount).toBeGreaterThan(0);
    expect(broken.status.phase).toBe('Running');
    expect(s.deployment('game').status.availableReplicas).toBe(2);
  });

  it('keeps a ProgressDeadlineExceeded through a rollback to an existing ReplicaSet, as the Deployment controller does', async () => {
    const s = await standIn({ controller: { progressDeadlineMs: 150 } });
    s.createDeployment({ name: 'game', replicas: 2, image: 'example.com/game:v1' });
    await s.waitForRollout('game');
    const image = (tag: string) => ({
      spec: { template: { spec: { containers: [{ name: 'game', image: `example.com/game:${tag}` }] } } },
    });
    const progressing = (d: Deployment) => d.status.conditions?.find((c) => c.type === 'Progressing');
    await call(s, 'PATCH', D, image('v2-broken'), 'application/strategic-merge-patch+json');
    await s.waitFor(
      'deadline',
      () => progressing(s.deployment('game'))?.reason === 'ProgressDeadlineExceeded',
    );
    const exceeded = { ...progressing(s.deployment('game'))! };

    // Back to v1, whose ReplicaSet exists: the pass that observes the change keeps the old condition,
    // and its counts are those the ReplicaSets had before this pass (one sync behind).
    s.controller.frozen = true;
    await call(s, 'PATCH', D, image('v1'), 'application/strategic-merge-patch+json');
    s.controller.step();
    const observed = (await call(s, 'GET', D)).body as unknown as Deployment;
    expect(observed.status.observedGeneration).toBe(observed.metadata.generation);
    expect(progressing(observed)).toEqual(exceeded);
    expect(observed.status.replicas).toBe(3);
    expect(s.pods().filter((p) => p.metadata.deletionTimestamp === undefined)).toHaveLength(2);
    s.controller.frozen = false;
    await s.waitFor('progress', () => progressing(s.deployment('game'))?.reason === 'NewReplicaSetAvailable');

    // A template never seen before gets a new ReplicaSet, and the condition is reset at once.
    await call(s, 'PATCH', D, image('v3-broken'), 'application/strategic-merge-patch+json');
    await s.waitFor(
      'deadline',
      () => progressing(s.deployment('game'))?.reason === 'ProgressDeadlineExceeded',
    );
    s.controller.frozen = true;
    await call(s, 'PATCH', D, image('v4'), 'application/strategic-merge-patch+json');
    s.controller.step();
    expect(progressing(s.deployment('game'))).toMatchObject({
      status: 'True',
      reason: 'NewReplicaSetCreated',
    });
    s.controller.frozen = false;
  });

  it('replaces a deleted pod after a graceful termination, and restarts on a new restartedAt', async () => {
    const s = await withDeployment();
    const [victim] = s.pods();
    const deleted = await call(s, 'DELETE', `/api/v1/namespaces/game/pods/${victim!.metadata.name}`);
    expect((deleted.body as unknown as Pod).metadata.deletionTimestamp).toBeDefined();
    expect(s.pod(victim!.metadata.name).status.conditions?.find((c) => c.type === 'Ready')?.status).toBe(
      'False',
    );
    await s.waitFor(
      'the victim gone',
      () => !s.pods().some((p) => p.metadata.name === victim!.metadata.name),
    );
    await s.waitForRollout('game');
    expect(s.pods().map((p) => p.metadata.name)).not.toContain(victim!.metadata.name);
    const names = s.pods().map((p) => p.metadata.name);
    await call(
      s,
      'PATCH',
      D,
      {
        spec: {
          template: {
            metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } },
          },
        },
      },
      'application/strategic-merge-patch+json',
    );
    await s.waitFor(
      'restart',
      () =>
        s.deployment('game').status.updatedReplicas === 2 &&
        s.pods().every((p) => !names.includes(p.metadata.name)) &&
        s.pods().length === 2,
    );
  });

  it('runs init containers in order before the containers; a failing one crash-loops and keeps the pod Pending', async () => {
    const s = await standIn();
    s.createDeployment({
      name: 'game',
      replicas: 1,
      image: 'example.com/game:v1',
      initContainers: [
        { name: 'mesh', image: 'example.com/mesh:v1', restartPolicy: 'Always' },
        { name: 'migrate', image: 'example.com/migrate:v1' },
      ],
    });
    await s.waitForRollout('game');
    const ok = s.pods()[0]!;
    expect(ok.status.initContainerStatuses!.map((c) => [c.name, c.started, c.state])).toEqual([
      ['mesh', true, { running: { startedAt: expect.any(String) as string } }],
      [
        'migrate',
        false,
        { terminated: expect.objectContaining({ exitCode: 0, reason: 'Completed' }) as object },
      ],
    ]);
    s.createDeployment({
      name: 'broken',
      replicas: 1,
      image: 'example.com/game:v1',
      initContainers: [{ name: 'migrate', image: 'example.com/migrate:v2-broken' }],
    });
    await s.waitFor('init crash loop', () => {
      const p = s.pods('app=broken')[0];
      return (p?.status.initContainerStatuses?.[0]?.restartCount ?? 0) >= 2;
    });
    const pod = (
      await call(s, 'GET', `/api/v1/namespaces/game/pods/${s.pods('app=broken')[0]!.metadata.name}`)
    ).body as unknown as Pod;
    expect(pod.status.phase).toBe('Pending');
    expect(pod.status.initContainerStatuses![0]!.state.waiting?.reason).toBe('CrashLoopBackOff');
    expect(pod.status.initContainerStatuses![0]!.lastState.terminated).toMatchObject({
      exitCode: 1,
      reason: 'Error',
    });
    expect(pod.status.containerStatuses![0]!.state.waiting?.reason).toBe('PodInitializing');
    expect(pod.status.conditions?.find((c) => c.type === 'Initialized')?.status).toBe('False');
    const log = await call(s, 'GET', `/api/v1/namespaces/game/pods/${pod.metadata.name}/log?container=game`);
    expect(log.status).toBe(400);
    expect(log.body['message']).toContain('is waiting to start: PodInitializing');
  });

  it('keeps a deleted pod Terminating while a finalizer holds it, counting only its replacement', async () => {
    const s = await withDeployment();
    const [held] = s.pods();
    const name = held!.metadata.name;
    s.holdPod(name);
    expect((await call(s, 'DELETE', `/api/v1/namespaces/game/pods/${name}`)).status).toBe(200);
    // The grace period passes: containers stopped, terminal phase, still listed with its deletionTimestamp.
    await s.waitFor('containers stopped', () => s.pod(name).status.phase === 'Succeeded');
    await s.waitForRollout('game', 5000, { terminating: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
    const listed = (await call(s, 'GET', '/api/v1/namespaces/game/pods')).body['items'] as Pod[];
    const stuck = listed.find((p) => p.metadata.name === name)!;
    expect(stuck.metadata.deletionTimestamp).toBeDefined();
    expect(stuck.metadata.finalizers).toEqual(['standin.example/hold']);
    expect(stuck.status.containerStatuses![0]!.state.terminated).toMatchObject({ exitCode: 0 });
    expect(listed).toHaveLength(3);
    // The Deployment counts non-terminated pods only: the rollout is complete (kubectl would say so).
    const d = s.deployment('game');
    expect(d.status).toMatchObject({ replicas: 2, updatedReplicas: 2, availableReplicas: 2 });
    s.releasePod(name);
    await s.waitFor('the held pod gone', () => !s.pods().some((p) => p.metadata.name === name));
  });

  it('keeps a pod with a long grace period Terminating and running through it', async () => {
    const s = await withDeployment();
    const [draining] = s.pods();
    const name = draining!.metadata.name;
    s.holdPod(name, 'grace');
    const deleted = (await call(s, 'DELETE', `/api/v1/namespaces/game/pods/${name}`)).body as unknown as Pod;
    expect(deleted.metadata.deletionGracePeriodSeconds).toBe(3600);
    expect(Date.parse(deleted.metadata.deletionTimestamp!)).toBeGreaterThan(Date.now() + 3_500_000);
    await s.waitForRollout('game', 5000, { terminating: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
    const pod = s.pod(name);
    expect(pod.status.phase).toBe('Running');
    expect(pod.status.containerStatuses![0]!.state.running).toBeDefined();
    expect(s.deployment('game').status).toMatchObject({
      replicas: 2,
      updatedReplicas: 2,
      availableReplicas: 2,
    });
    s.releasePod(name);
    await s.waitFor('the draining pod gone', () => !s.pods().some((p) => p.metadata.name === name));
  });

  it('loses a node: its pods turn not ready, a deleted one stays Terminating, nothing new lands there', async () => {
    const s = await withDeployment({}, 3);
    const victim = s.pods()[0]!;
    const node = victim.spec.nodeName!;
    s.loseNode(node);
    expect(s.pod(victim.metadata.name).status.conditions?.find((c) => c.type === 'Ready')?.status).toBe(
      'False',
    );
    const nodeObject = (await call(s, 'GET', '/api/v1/nodes')).body['items'] as Array<{
      metadata: { name: string };
      status: { conditions: Array<{ type: string; status: string }> };
    }>;
    expect(nodeObject.find((n) => n.metadata.name === node)!.status.conditions[0]).toMatchObject({
      type: 'Ready',
      status: 'Unknown',
    });
    const before = new Set(s.pods().map((p) => p.metadata.name));
    await call(s, 'DELETE', `/api/v1/namespaces/game/pods/${victim.metadata.name}`);
    await s.waitForRollout('game', 5000, { terminating: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
    const stuck = s.pod(victim.metadata.name);
    expect(stuck.metadata.deletionTimestamp).toBeDefined();
    expect(stuck.status.phase).toBe('Running');
    const live = s.pods().filter((p) => p.metadata.deletionTimestamp === undefined);
    expect(live).toHaveLength(3);
    const newcomers = live.filter((p) => !before.has(p.metadata.name));
    expect(newcomers).toHaveLength(1);
    expect(newcomers[0]!.spec.nodeName).not.toBe(node);
  });

  it('streams logs with tailLines, sinceSeconds, timestamps, container and follow', async () => {
    const s = await standIn();
    s.createDeployment({
      name: 'game',
      replicas: 1,
      image: 'example.com/game:v1',
      sidecars: [{ name: 'proxy', image: 'envoy:1' }],
    });
    await s.waitForRollout('game');
    const pod = s.pods()[0]!.metadata.name;
    const log = `/api/v1/namespaces/game/pods/${pod}/log`;
    s.appendLogs(pod, ['old'], { at: new Date(Date.now() - 120_000) });
    s.appendErrorLines(pod, 3);
    const noContainer = await call(s, 'GET', log);
    expect(noContainer.status).toBe(400);
    expect(noContainer.body['message']).toBe(
      `a container name must be specified for pod ${pod}, choose one of: [game proxy]`,
    );
    expect((await call(s, 'GET', `${log}?container=game&tailLines=2`)).text.trim().split('\n')).toHaveLength(
      2,
    );
    const recent = (await call(s, 'GET', `${log}?container=game&sinceSeconds=60`)).text;
    expect(recent).not.toContain('old');
    expect(recent).toContain('"level":"ERROR"');
    expect((await call(s, 'GET', `${log}?container=game&tailLines=1&timestamps=true`)).text).toMatch(
      /^\d{4}-\d\d-\d\dT[\d:.]+Z \{/,
    );
    expect((await call(s, 'GET', `${log}?container=game&sinceSeconds=0`)).status).toBe(422);

    const controller = new AbortController();
    const res = await fetch(`${s.url}${log}?container=game&follow=true&tailLines=0`, {
      headers: { authorization: `Bearer ${s.token}` },
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    setTimeout(() => s.appendLogs(pod, ['later line']), 50);
    const chunk: { value?: unknown } = await reader.read();
    expect(Buffer.from(chunk.value as Uint8Array).toString()).toBe('later line\n');
    controller.abort();
  });

  it('stalls a log stream on request: some bytes, then silence with the connection open', async () => {
    const s = await withDeployment({}, 1);
    const pod = s.pods()[0]!.metadata.name;
    s.appendGeneratedLines(pod, 1000, (i) => `line ${i}`);
    s.stallLogStream({ pod, afterBytes: 100, times: 1 });
    const controller = new AbortController();
    const res = await fetch(`${s.url}/api/v1/namespaces/game/pods/${pod}/log?container=game`, {
      headers: { authorization: `Bearer ${s.token}` },
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let got = 0;
    const quiet = new Promise<'quiet'>((r) => setTimeout(() => r('quiet'), 300));
    for (;;) {
      const next = await Promise.race([reader.read(), quiet]);
      if (next === 'quiet') break;
      expect(next.done).toBe(false);
      got += (next.value as Uint8Array).length;
    }
    expect(got).toBe(100);
    controller.abort();
    // The next read of the log is whole again.
    const whole = await call(s, 'GET', `/api/v1/namespaces/game/pods/${pod}/log?container=game`);
    expect(whole.text).toContain('line 999');
  });

  it('answers the log of an evicted pod and of a pod on a lost node as the API server does', async () => {
    const s = await withDeployment({}, 2);
    const [evicted, lost] = s.pods();
    s.appendErrorLines(evicted!.metadata.name, 2);
    s.evictPod(evicted!.metadata.name);
    const log = (pod: Pod): string => `/api/v1/namespaces/game/pods/${pod.metadata.name}/log?container=game`;
    const gone = await call(s, 'GET', log(evicted!));
    expect(gone.status).toBe(400);
    expect(gone.body).toMatchObject({
      kind: 'Status',
      reason: 'BadRequest',
      code: 400,
      message: `container "game" in pod "${evicted!.metadata.name}" is not available`,
    });
    s.loseNode(lost!.spec.nodeName!);
    const unreachable = await call(s, 'GET', log(lost!));
    expect(unreachable.status).toBe(500);
    expect(unreachable.body['reason']).toBeUndefined();
    expect(unreachable.body['message']).toMatch(
      new RegExp(
        `^Get "https://[\\d.]+:10250/containerLogs/game/${lost!.metadata.name}/game": dial tcp .*no route to host$`,
      ),
    );
  });

  it('serves pod and node metrics and the HPA', async () => {
    const s = await withDeployment();
    const pod = s.pods()[0]!.metadata.name;
    s.setPodUsage(pod, { cpu: '250m', memory: '64Mi' });
    const pods = await call(
      s,
      'GET',
      '/apis/metrics.k8s.io/v1beta1/namespaces/game/pods?labelSelector=app%3Dgame',
    );
    expect(pods.body).toMatchObject({ kind: 'PodMetricsList', apiVersion: 'metrics.k8s.io/v1beta1' });
    const items = pods.body['items'] as Array<{
      metadata: { name: string };
      window: string;
      containers: unknown[];
    }>;
    expect(items.find((i) => i.metadata.name === pod)).toMatchObject({
      window: '15.024s',
      containers: [{ name: 'game', usage: { cpu: '250m', memory: '64Mi' } }],
    });
    const nodes = await call(s, 'GET', '/apis/metrics.k8s.io/v1beta1/nodes');
    expect((nodes.body['items'] as unknown[]).length).toBe(3);
    s.createHpa('game', 'game', { min: 1, max: 5, cpuCurrent: 40 });
    await s.waitFor(
      'hpa status',
      () =>
        (s.store.list('horizontalpodautoscalers')[0] as unknown as { status: { currentReplicas?: number } })
          .status.currentReplicas === 2,
    );
    const hpa = await call(s, 'GET', '/apis/autoscaling/v2/namespaces/game/horizontalpodautoscalers/game');
    expect(hpa.body).toMatchObject({
      kind: 'HorizontalPodAutoscaler',
      status: { currentReplicas: 2, desiredReplicas: 2 },
    });
  });
});

describe('registry stand-in', () => {
  it('answers as the distribution registry: NAME_UNKNOWN, MANIFEST_UNKNOWN in a GET body, no body on HEAD, the realm it is told', async () => {
    const registry = await startRegistry({
      tags: { 'game/server': ['v1'] },
      realm: 'https://auth.example:{port}/x',
    });
    try {
      const base = `http://${registry.host}/v2`;
      const challenge = await fetch(`${base}/game/server/manifests/v1`, { method: 'HEAD' });
      expect(challenge.status).toBe(401);
      expect(challenge.headers.get('www-authenticate')).toBe(
        `Bearer realm="https://auth.example:${registry.host.split(':')[1]}/x",service="standin-registry",scope="repository:game/server:pull"`,
      );
      const token = ((await (await fetch(`http://${registry.host}/token`)).json()) as { token: string })
        .token;
      const get = (path: string, method = 'GET') =>
        fetch(`${base}/${path}`, { method, headers: { authorization: `Bearer ${token}` } });
      expect((await get('game/server/manifests/v1')).status).toBe(200);
      const head = await get('game/server/manifests/v9', 'HEAD');
      expect(head.status).toBe(404);
      expect(await head.text()).toBe('');
      const tag = await get('game/server/manifests/v9');
      expect(((await tag.json()) as { errors: Array<{ code: string }> }).errors[0]!.code).toBe(
        'MANIFEST_UNKNOWN',
      );
      const repo = await get('no/such/manifests/v1');
      expect(((await repo.json()) as { errors: Array<{ code: string }> }).errors[0]!.code).toBe(
        'NAME_UNKNOWN',
      );
    } finally {
      await registry.close();
    }
  });
});

describe('API stand-in: building blocks', () => {
  it('parses label selectors', () => {
    const req = parseSelector('app=game,tier!=db,env in (prod, staging),!canary,zone');
    expect(matches(req, { app: 'game', env: 'prod', zone: 'a' })).toBe(true);
    expect(matches(req, { app: 'game', env: 'dev', zone: 'a' })).toBe(false);
    expect(matches(req, { app: 'game', env: 'prod', zone: 'a', canary: 'x' })).toBe(false);
  });

  it('applies merge patches (RFC 7386) and JSON patches (RFC 6902)', () => {
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] })).toEqual({
      a: 1,
      b: { d: 3, e: 4 },
      f: [1],
    });
    expect(
      jsonPatch({ a: [1, 2], b: { 'x/y': 1 } }, [
        { op: 'add', path: '/a/-', value: 3 },
        { op: 'remove', path: '/b/x~1y' },
        { op: 'copy', from: '/a/0', path: '/c' },
        { op: 'move', from: '/c', path: '/d' },
      ]),
    ).toEqual({ a: [1, 2, 3], b: {}, d: 1 });
  });
});

describe('API stand-in: ConfigMaps and Secrets (create, replace, delete)', () => {
  const SECRETS = '/api/v1/namespaces/game/secrets';
  const CONFIGMAPS = '/api/v1/namespaces/game/configmaps';
  const b64 = (text: string): string => Buffer.from(text).toString('base64');

  it('creates a Secret (201), refuses a second with 409 AlreadyExists, replaces with the resourceVersion, deletes', async () => {
    const s = await standIn();
    const body = {
      metadata: { name: 'db', labels: { app: 'game' } },
      type: 'Opaque',
      data: { password: b64('pw') },
    };
    const created = await call(s, 'POST', SECRETS, body);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      kind: 'Secret',
      metadata: { name: 'db', namespace: 'game' },
      type: 'Opaque',
    });
    const again = await call(s, 'POST', SECRETS, body);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ reason: 'AlreadyExists', message: 'secrets "db" already exists' });
    const current = (await call(s, 'GET', `${SECRETS}/db`)).body as { metadata: { resourceVersion: string } };
    const stale = await call(s, 'PUT', `${SECRETS}/db`, {
      ...body,
      metadata: { name: 'db', resourceVersion: '1' },
    });
    expect(stale.status).toBe(409);
    const replaced = await call(s, 'PUT', `${SECRETS}/db`, {
      ...body,
      metadata: { name: 'db', resourceVersion: current.metadata.resourceVersion },
      data: { password: b64('new') },
    });
    expect(replaced.status).toBe(200);
    const list = await call(s, 'GET', SECRETS);
    expect((list.body['items'] as Array<{ data: object }>).map((i) => i.data)).toEqual([
      { password: b64('new') },
    ]);
    expect((await call(s, 'DELETE', `${SECRETS}/db`)).status).toBe(200);
    expect((await call(s, 'GET', `${SECRETS}/db`)).status).toBe(404);
  });

  it('validates like the API server: base64 data, immutable Secret type, stringData merged, binaryData keys', async () => {
    const s = await standIn();
    const notB64 = await call(s, 'POST', SECRETS, { metadata: { name: 'x' }, data: { k: 'not base64!' } });
    expect(notB64.status).toBe(400);
    const merged = await call(s, 'POST', SECRETS, { metadata: { name: 'y' }, stringData: { k: 'plain' } });
    expect(merged.body).toMatchObject({ data: { k: b64('plain') }, type: 'Opaque' });
    expect(merged.body['stringData']).toBeUndefined();
    const rv = (merged.body['metadata'] as { resourceVersion: string }).resourceVersion;
    const typeChange = await call(s, 'PUT', `${SECRETS}/y`, {
      metadata: { name: 'y', resourceVersion: rv },
      type: 'kubernetes.io/tls',
      data: {},
    });
    expect(typeChange.status).toBe(422);
    const badName = await call(s, 'POST', CONFIGMAPS, { metadata: { name: 'Bad_Name' }, data: {} });
    expect(badName.status).toBe(422);
    const dup = await call(s, 'POST', CONFIGMAPS, {
      metadata: { name: 'dup' },
      data: { a: 'x' },
      binaryData: { a: b64('x') },
    });
    expect(dup.status).toBe(422);
    const ok = await call(s, 'POST', CONFIGMAPS, {
      metadata: { name: 'bin' },
      binaryData: { 'a.bin': b64('\u0000\u00ff') },
    });
    expect(ok.status).toBe(201);
    const wrongNs = await call(s, 'POST', CONFIGMAPS, {
      metadata: { name: 'z', namespace: 'other' },
      data: {},
    });
    expect(wrongNs.status).toBe(400);
  });
});
