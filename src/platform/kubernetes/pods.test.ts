/** Pods as instances: the states `kubectl get pods` shows, from pod objects as the API sends them. */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { toInstance } from './pods.ts';

const ctx = { container: 'game', opsPort: 'ops' };

function pod(
  status: V1Pod['status'],
  initContainers: Array<{ name: string; restartPolicy?: string }> = [],
): V1Pod {
  return {
    metadata: { name: 'game-server-abc-1', labels: { app: 'game-server' } },
    spec: {
      nodeName: 'node-1',
      initContainers: initContainers.map((c) => ({ image: `r/${c.name}:v1`, ...c })),
      containers: [{ name: 'game', image: 'r/game:v1', ports: [{ name: 'ops', containerPort: 7001 }] }],
    },
    status,
  };
}

const waitingGame = {
  name: 'game',
  image: 'r/game:v1',
  imageID: '',
  ready: false,
  restartCount: 0,
  state: { waiting: { reason: 'PodInitializing' } },
};

describe('toInstance with init containers', () => {
  it('shows a crash-looping init container as Init:CrashLoopBackOff, counting its restarts', () => {
    const instance = toInstance(
      pod(
        {
          phase: 'Pending',
          initContainerStatuses: [
            {
              name: 'migrate',
              image: 'r/migrate:v1',
              imageID: '',
              ready: false,
              restartCount: 4,
              state: {
                waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s restarting failed container' },
              },
              lastState: { terminated: { exitCode: 1, reason: 'Error' } },
            },
          ],
          containerStatuses: [waitingGame],
        },
        [{ name: 'migrate' }],
      ),
      ctx,
    );
    expect(instance).toMatchObject({
      phase: 'crashloop',
      ready: false,
      restarts: 4,
      reason: 'Init:CrashLoopBackOff: exited with code 1 (Error)',
    });
  });

  it('shows init progress, a failed pull and a failed run as kubectl does', () => {
    const running = {
      name: 'a',
      image: 'r/a:v1',
      imageID: '',
      ready: false,
      restartCount: 0,
      state: { running: { startedAt: new Date() } },
    };
    const completed = { ...running, state: { terminated: { exitCode: 0, reason: 'Completed' } } };
    const inits = [{ name: 'a' }, { name: 'b' }];
    expect(
      toInstance(
        pod(
          {
            phase: 'Pending',
            initContainerStatuses: [completed, { ...running, name: 'b' }],
            containerStatuses: [waitingGame],
          },
          inits,
        ),
        ctx,
      ),
    ).toMatchObject({ phase: 'pending', reason: 'Init:1/2' });
    expect(
      toInstance(
        pod(
          {
            phase: 'Pending',
            initContainerStatuses: [{ ...running, state: { waiting: { reason: 'ImagePullBackOff' } } }],
            containerStatuses: [waitingGame],
          },
          [{ name: 'a' }],
        ),
        ctx,
      ),
    ).toMatchObject({ phase: 'pending', reason: 'Init:ImagePullBackOff' });
    expect(
      toInstance(
        pod(
          {
            phase: 'Pending',
            initContainerStatuses: [
              { ...running, restartCount: 1, state: { terminated: { exitCode: 2, reason: 'Error' } } },
            ],
            containerStatuses: [waitingGame],
          },
          [{ name: 'a' }],
        ),
        ctx,
      ),
    ).toMatchObject({ phase: 'pending', reason: 'Init:Error', restarts: 1 });
  });

  it('lets a started sidecar (restartPolicy Always) and completed init containers be, counting their restarts', () => {
    const instance = toInstance(
      pod(
        {
          phase: 'Running',
          podIP: '10.0.0.5',
          conditions: [{ type: 'Ready', status: 'True' }],
          initContainerStatuses: [
            {
              name: 'mesh',
              image: 'r/mesh:v1',
              imageID: '',
              ready: true,
              started: true,
              restartCount: 2,
              state: { running: { startedAt: new Date() } },
            },
            {
              name: 'migrate',
              image: 'r/migrate:v1',
              imageID: '',
              ready: false,
              restartCount: 0,
              state: { terminated: { exitCode: 0, reason: 'Completed' } },
            },
          ],
          containerStatuses: [
            {
              name: 'game',
              image: 'r/game:v1',
              imageID: '',
              ready: true,
              restartCount: 1,
              state: { running: { startedAt: new Date('2026-01-01T00:00:00Z') } },
            },
          ],
        },
        [{ name: 'mesh', restartPolicy: 'Always' }, { name: 'migrate' }],
      ),
      ctx,
    );
    expect(instance).toMatchObject({
      phase: 'running',
      ready: true,
      restarts: 3,
      opsUrl: 'http://10.0.0.5:7001',
    });
    expect(instance.reason).toBeUndefined();
  });

  it('shows a crash-looping sidecar of a running pod as a crash loop', () => {
    const instance = toInstance(
      pod(
        {
          phase: 'Running',
          initContainerStatuses: [
            {
              name: 'mesh',
              image: 'r/mesh:v1',
              imageID: '',
              ready: false,
              started: false,
              restartCount: 5,
              state: { waiting: { reason: 'CrashLoopBackOff' } },
              lastState: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
            },
          ],
          containerStatuses: [waitingGame],
        },
        [{ name: 'mesh', restartPolicy: 'Always' }],
      ),
      ctx,
    );
    expect(instance).toMatchObject({
      phase: 'crashloop',
      restarts: 5,
      reason: 'Init:CrashLoopBackOff: exited with code 137 (OOMKilled)',
    });
  });
});
