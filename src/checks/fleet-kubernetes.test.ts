/**
 * The daily check's fleet and logs sections on the Kubernetes adapter, against the Kubernetes API
 * stand-in (test/k8s-standin: no API server can run here). The local platform's side is covered end to
 * end in test/e2e/fleet.e2e.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import { startFleet, type Fleet } from '../../test/k8s-standin/fleet.ts';
import { runDailyCheck } from './daily.ts';
import { fleetCheck } from './fleet.ts';
import { logsCheck } from './logs.ts';
import { testConfig } from './test-support.ts';
import type { CheckRun } from './types.ts';

const fleets: Fleet[] = [];
afterEach(async () => {
  await Promise.all(fleets.splice(0).map((f) => f.close()));
});

describe('daily check: fleet and logs on Kubernetes (API stand-in)', () => {
  it('reports pods, restarts since the last check, usage and ERROR lines per pod; a crash loop fails it', async () => {
    const f = await startFleet({ replicas: 3 });
    fleets.push(f);
    const config = testConfig({
      platform: { kind: 'kubernetes', namespace: 'game', deployment: 'game-server' },
      thresholds: { fleet: { errorLinesWarn: 5, errorLinesFail: 50 } },
      timeout: 10_000,
    });
    const clock = new ManualClock(new Date());
    const pods = await f.platform.instances();
    expect(pods).toHaveLength(3);
    f.standIn.appendLogs(
      pods[0]!.name,
      Array.from({ length: 7 }, (_, i) => JSON.stringify({ level: 'ERROR', msg: `boom ${i}` })),
    );
    const check = (): Promise<CheckRun> =>
      runDailyCheck({
        config,
        clock,
        trigger: 'cli',
        checks: [fleetCheck, logsCheck],
        platform: f.platform,
        previous: history,
      });
    const history: CheckRun[] = [];
    const first = await check();
    history.unshift(first);
    const [fleet, logs] = first.results;
    expect(fleet?.status, fleet?.summary).toBe('ok');
    expect(fleet?.values).toMatchObject({ total: 3, ready: 3, versions: ['v1'], platform: 'kubernetes' });
    expect(fleet?.summary).toMatch(/^3\/3 instances ready on .*game-server/);
    expect(logs?.status, logs?.summary).toBe('warn');
    expect((logs?.values['perInstance'] as Record<string, number>)[pods[0]!.name]).toBe(7);
    expect(logs?.findings[0]).toMatchObject({ subject: pods[0]!.name, value: 7 });

    // A version that never becomes ready: its pods crash-loop next to the old ones.
    await expect(f.platform.setVersion('v3-broken', { timeoutMs: 1500 })).rejects.toThrow();
    clock.advance(60_000);
    const second = await check();
    const after = second.results[0]!;
    expect(after.status, after.summary).toBe('fail');
    expect(after.findings.some((x) => x.value === 'crashloop' && /CrashLoopBackOff/.test(x.message))).toBe(
      true,
    );

    // A pod on a lost node: its log cannot be read, which the logs section says instead of counting 0.
    const lost = pods[1]!;
    f.standIn.loseNode(lost.node!);
    const third = await check();
    const logsNow = third.results[1]!;
    expect(logsNow.status, logsNow.summary).toMatch(/^(warn|fail)$/); // the crash-looping pods log errors too
    expect(logsNow.summary).toMatch(/[1-9]\d* not read/); // every pod on that node
    const notRead = logsNow.findings.find((x) => x.subject === lost.name);
    expect(notRead?.message).toMatch(/^log not read: /);
  }, 60_000);
});
