/** Rollout status as `kubectl rollout status` judges it, on Deployment objects as the API sends them. */
import type { V1Deployment } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../core/index.ts';
import {
  deadlineExceeded,
  fleetCounts,
  rolloutStatus,
  waitForRollout,
  type RolloutCheck,
} from './rollout.ts';

function deployment(
  status: Partial<NonNullable<V1Deployment['status']>>,
  replicas = 3,
  generation = 2,
): V1Deployment {
  return {
    metadata: { name: 'game-server', generation },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'game-server' } },
      template: { spec: { containers: [{ name: 'game', image: 'r/game:v1' }] } },
    },
    status: { observedGeneration: generation, ...status },
  };
}

const timedOut = (at: string) => ({
  type: 'Progressing',
  status: 'False',
  reason: 'ProgressDeadlineExceeded',
  message: 'ReplicaSet "game-server-abc" has timed out progressing.',
  lastUpdateTime: new Date(at),
  lastTransitionTime: new Date(at),
});

describe('rolloutStatus', () => {
  it('follows kubectl: observed, updated, no old replicas, available', () => {
    const check = (s: Partial<NonNullable<V1Deployment['status']>>, generation = 2) =>
      rolloutStatus('scale', deployment(s, 3, generation));
    expect(check({ observedGeneration: 1 }).progress.message).toContain(
      'waiting for the change to be observed',
    );
    expect(check({ updatedReplicas: 2, replicas: 3 }).progress.message).toContain('1 more to be updated');
    expect(check({ updatedReplicas: 3, replicas: 4 }).progress.message).toContain('1 old replicas pending');
    expect(check({ updatedReplicas: 3, replicas: 3, availableReplicas: 2 }).progress.message).toContain(
      '1 to become available',
    );
    expect(check({ updatedReplicas: 3, replicas: 3, availableReplicas: 3, readyReplicas: 3 })).toMatchObject({
      done: true,
      progress: { desired: 3, updated: 3, ready: 3, available: 3 },
    });
  });

  it('waits while a scale down still counts replicas beyond the desired number', () => {
    // The first status after a scale from 4 to 3 may still count 4 (its ReplicaSet status lags).
    const d = deployment({ updatedReplicas: 4, replicas: 4, availableReplicas: 4 }, 3);
    expect(rolloutStatus('scale', d)).toMatchObject({ done: false });
    expect(rolloutStatus('scale', d).progress.message).toContain('1 replicas beyond 3 to be removed');
  });

  it('names terminating pods without waiting for them', () => {
    const d = deployment({ updatedReplicas: 3, replicas: 3, availableReplicas: 3 });
    const pods = ['a', 'b', 'c', 'd', 'e'].map((name, i) => ({
      metadata: { name, ...(i > 0 ? { deletionTimestamp: new Date() } : {}) },
      status: { phase: i === 4 ? 'Succeeded' : 'Running' },
    }));
    const check = rolloutStatus('restart', d, fleetCounts(pods));
    expect(check.done).toBe(true);
    expect(check.terminating).toEqual(['b', 'c', 'd', 'e']);
    expect(check.progress.message).toBe(
      '3/3 updated, 0 ready, 3 available; rolled out; 4 pods still terminating: b, c, d and 1 more',
    );
  });

  it('fails on ProgressDeadlineExceeded, unless it is the one seen before the change', () => {
    const before = deployment({
      updatedReplicas: 1,
      replicas: 4,
      conditions: [timedOut('2026-01-01T10:00:00Z')],
    });
    const stale = deadlineExceeded(before);
    expect(stale).toMatchObject({
      reason: 'ProgressDeadlineExceeded',
      lastUpdateTime: '2026-01-01T10:00:00.000Z',
    });
    // Right after a rollback: the new generation observed, the old condition kept.
    const after = deployment(
      { updatedReplicas: 3, replicas: 4, conditions: [timedOut('2026-01-01T10:00:00Z')] },
      3,
      3,
    );
    expect(rolloutStatus('rollback', after).failed).toContain('exceeded its progress deadline');
    const ignored = rolloutStatus('rollback', after, undefined, { staleDeadline: stale });
    expect(ignored.failed).toBeUndefined();
    expect(ignored.progress.message).toContain('1 old replicas pending termination');
    // A deadline passed after the change (new timestamps) is about the change.
    const fresh = deployment(
      { updatedReplicas: 3, replicas: 4, conditions: [timedOut('2026-01-01T10:20:00Z')] },
      3,
      3,
    );
    expect(rolloutStatus('rollback', fresh, undefined, { staleDeadline: stale }).failed).toContain(
      'exceeded its progress deadline',
    );
    expect(deadlineExceeded(deployment({}))).toBeUndefined();
  });
});

describe('waitForRollout', () => {
  const done = (terminating: string[]): RolloutCheck => ({
    done: true,
    terminating,
    progress: { operation: 'scale', desired: 2, updated: 2, ready: 2, available: 2, message: 'rolled out' },
  });
  const settings = { clock: systemClock, pollMs: { initial: 10, max: 20 }, settleMs: 200 };

  it('gives terminating pods a short settle, then succeeds without them', async () => {
    let looks = 0;
    const began = performance.now();
    const progress = await waitForRollout(
      'scale',
      async () => (looks++, done(['a'])),
      { timeoutMs: 10_000 },
      settings,
    );
    expect(progress.message).toBe('rolled out (not waited for)');
    expect(looks).toBeGreaterThan(1);
    expect(performance.now() - began).toBeGreaterThanOrEqual(190);
    expect(performance.now() - began).toBeLessThan(2000);
    // Gone within the settle: done at once, nothing to say.
    let n = 0;
    const quick = await waitForRollout(
      'scale',
      async () => done(n++ < 2 ? ['a'] : []),
      { timeoutMs: 10_000 },
      settings,
    );
    expect(quick.message).toBe('rolled out');
  });

  it('never fails on terminating pods, at its deadline or when cancelled during the settle', async () => {
    const atDeadline = await waitForRollout(
      'scale',
      async () => done(['a']),
      { timeoutMs: 50 },
      { ...settings, settleMs: 5000 },
    );
    expect(atDeadline.message).toBe('rolled out (not waited for)');
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('ctrl-c')), 50);
    const cancelled = await waitForRollout(
      'scale',
      async () => done(['a']),
      { timeoutMs: 10_000, signal: controller.signal },
      { ...settings, settleMs: 5000 },
    );
    expect(cancelled.message).toBe('rolled out (not waited for)');
  });
});
