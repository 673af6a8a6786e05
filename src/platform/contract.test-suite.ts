/**
 * The platform contract: ONE suite that every adapter runs (`local.test.ts` against real processes, the
 * Kubernetes adapter against its API stand-in). Every expectation here must hold for every adapter, so
 * it only asserts what the port (`port.ts`) promises, never how an adapter does it.
 *
 * Use:
 * ```ts
 * describePlatformContract('local', async () => ({ platform, versions, initialReplicas: 2, cleanup }));
 * ```
 *
 * The tests share one fleet and run in order (vitest runs the tests of a file one after the other); each
 * test starts by checking the state it needs, so a failure names the first broken promise.
 *
 * Decisions this suite fixes for every adapter:
 * - **Two state-changing operations at once: the second gets a ConflictError** (not queued). An
 *   operator who sees "another rollout is running" can wait or cancel; a silently queued `scale` that
 *   runs ten minutes later, after the rollout, is worse. The first operation is unaffected.
 * - **Instances are sorted by name**, either by code unit or numerically aware (`game-2` before
 *   `game-10`); both are accepted.
 * - **A restarted instance** is one with a new name (Kubernetes: a new pod) or a new `startedAt`.
 * - **A rollout to a version that never becomes ready** rejects with an UnavailableError whose
 *   `details.progress` is the last progress; afterwards at least one instance is ready, and every ready
 *   instance runs the previous version. `rollback` then brings every instance back to that version.
 * - `restarts` counts restarts after crashes (Kubernetes: restartCount), not operator restarts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConflictError,
  InputError,
  NotFoundError,
  UnavailableError,
  type GameopsError,
} from '../core/index.ts';
import type { ConfigObject, Instance, LogLine, Platform, RolloutProgress } from './port.ts';

export interface ContractFixture {
  /** A fleet running `initialReplicas` ready instances of `versions.current`. */
  platform: Platform;
  versions: {
    /** What the fleet runs at setup. */
    current: string;
    /** Another version that starts and becomes ready. */
    next: string;
    /** A version whose instances start but never become ready. */
    broken: string;
  };
  /** At least 2 (a rolling restart must be able to keep one instance up). */
  initialReplicas: number;
  /**
   * Makes `instance` write `n` lines containing {@link errorPattern}, and returns once they are readable
   * through `logs`. Without it, the log tests are skipped.
   */
  makeErrorLines?(instance: string, n: number): Promise<void>;
  /** The substring that marks the lines `makeErrorLines` writes. @default '"level":"ERROR"' */
  errorPattern?: string;
  timeouts?: {
    /** `timeoutMs` given to scale/restart/setVersion/rollback. @default 60 000 */
    rolloutMs?: number;
    /** `timeoutMs` for the rollout to the broken version (it must time out). @default rolloutMs */
    brokenRolloutMs?: number;
  };
  cleanup(): Promise<void>;
}

export interface ContractOptions {
  /** Vitest timeout of each test, in ms (known before setup runs). @default 120 000 */
  testTimeoutMs?: number;
  /** Vitest timeout of the setup and clean-up hooks. @default 180 000 */
  hookTimeoutMs?: number;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const UNKNOWN = 'no-such-instance-7f3a';

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byNumericAware(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function expectSorted(names: string[]): void {
  const plain = [...names].sort(byCodeUnit);
  const numeric = [...names].sort(byNumericAware);
  expect(
    names.join() === plain.join() || names.join() === numeric.join(),
    `instances not sorted by name: ${names.join(', ')}`,
  ).toBe(true);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the operation to fail, and it succeeded');
}

async function drain<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

function expectProgress(progress: unknown, operation?: string): asserts progress is RolloutProgress {
  expect(typeof progress, 'progress').toBe('object');
  const p = progress as Record<string, unknown>;
  for (const key of ['operation', 'message']) expect(typeof p[key], `progress.${key}`).toBe('string');
  for (const key of ['desired', 'updated', 'ready', 'available']) {
    expect(
      Number.isSafeInteger(p[key]) && (p[key] as number) >= 0,
      `progress.${key}: ${String(p[key])}`,
    ).toBe(true);
  }
  if (operation !== undefined) expect(p.operation).toBe(operation);
}

/** A one-line picture of the fleet, for failure messages and the broken-rollout report. */
function picture(list: Instance[]): string {
  return list.map((i) => `${i.name}:${i.version}:${i.phase}:${i.ready ? 'ready' : 'not-ready'}`).join(' ');
}

export function describePlatformContract(
  name: string,
  setup: () => Promise<ContractFixture>,
  options: ContractOptions = {},
): void {
  const testMs = options.testTimeoutMs ?? 120_000;
  const hookMs = options.hookTimeoutMs ?? 180_000;

  describe(`platform contract: ${name}`, () => {
    let fx: ContractFixture;
    let p: Platform;
    const rolloutMs = (): number => fx.timeouts?.rolloutMs ?? 60_000;
    const pattern = (): string => fx.errorPattern ?? '"level":"ERROR"';

    /** Waits (bounded) for the fleet to show `replicas` ready instances of `version`. */
    async function expectSettled(replicas: number, version: string): Promise<Instance[]> {
      const list = await p.instances();
      expect(list.length, picture(list)).toBe(replicas);
      for (const instance of list) {
        expect(instance.version, picture(list)).toBe(version);
        expect(instance.ready, picture(list)).toBe(true);
      }
      return list;
    }

    beforeAll(async () => {
      fx = await setup();
      p = fx.platform;
      expect(fx.initialReplicas).toBeGreaterThanOrEqual(2);
    }, hookMs);

    afterAll(async () => {
      await fx?.cleanup();
    }, hookMs);

    it('describes itself', () => {
      expect(typeof p.kind).toBe('string');
      expect(p.kind.length).toBeGreaterThan(0);
      expect(typeof p.describe()).toBe('string');
    });

    it(
      'lists the instances sorted by name, with phase, readiness, restarts, version, node and start time',
      async () => {
        const list = await p.instances();
        expect(list.length, picture(list)).toBe(fx.initialReplicas);
        expectSorted(list.map((i) => i.name));
        expect(new Set(list.map((i) => i.name)).size).toBe(list.length);
        for (const instance of list) {
          expect(instance.phase).toBe('running');
          expect(instance.ready).toBe(true);
          expect(Number.isSafeInteger(instance.restarts) && instance.restarts >= 0).toBe(true);
          expect(instance.version).toBe(fx.versions.current);
          expect(typeof instance.node === 'string' && instance.node.length > 0).toBe(true);
          expect(instance.startedAt).toMatch(ISO);
          expect(Date.parse(instance.startedAt!)).toBeLessThanOrEqual(Date.now() + 60_000);
          expect(typeof instance.opsUrl === 'string' && URL.canParse(instance.opsUrl)).toBe(true);
          expect(typeof instance.labels).toBe('object');
        }
      },
      testMs,
    );

    it(
      'filters by names and by labels',
      async () => {
        const all = await p.instances();
        const [first, second] = all;
        if (!first || !second) throw new Error(`expected 2 instances, got ${picture(all)}`);

        const named = await p.instances({ names: [second.name, first.name] });
        expect(named.map((i) => i.name)).toEqual([first.name, second.name]);
        expect((await p.instances({ names: [first.name] })).map((i) => i.name)).toEqual([first.name]);

        const labelEntries = Object.entries(first.labels);
        expect(labelEntries.length, 'an instance should carry at least one label').toBeGreaterThan(0);
        const [key, value] = labelEntries[0]!;
        const labelled = await p.instances({ labels: { [key]: value } });
        expect(labelled.map((i) => i.name)).toContain(first.name);
        for (const instance of labelled) expect(instance.labels[key]).toBe(value);
        expect(await p.instances({ labels: { [key]: `${value}-no-such-value` } })).toEqual([]);
        const both = await p.instances({ names: [first.name], labels: { [key]: value } });
        expect(both.map((i) => i.name)).toEqual([first.name]);
      },
      testMs,
    );

    it(
      'names an unknown instance in a NotFoundError, wherever instances are selected',
      async () => {
        const first = (await p.instances())[0]!;
        const cases: Array<[string, () => Promise<unknown>]> = [
          ['instances', () => p.instances({ names: [first.name, UNKNOWN] })],
          ['usage', () => p.usage({ names: [UNKNOWN] })],
          ['logs', () => drain(p.logs({ names: [UNKNOWN] }))],
          ['countLines', () => p.countLines({ names: [UNKNOWN], pattern: 'x' })],
          ['restart', () => p.restart({ filter: { names: [UNKNOWN] }, timeoutMs: rolloutMs() })],
        ];
        for (const [what, call] of cases) {
          const err = await rejection(call());
          expect(err, what).toBeInstanceOf(NotFoundError);
          expect((err as Error).message, what).toContain(UNKNOWN);
        }
        // Nothing was restarted by the refused restart.
        const after = await p.instances({ names: [first.name] });
        expect(after[0]?.startedAt).toBe(first.startedAt);
      },
      testMs,
    );

    it(
      'reports CPU and memory per instance and per node',
      async () => {
        const list = await p.instances();
        const report = await p.usage();
        expect(report.at).toMatch(ISO);
        expect(report.windowMs).toBeGreaterThanOrEqual(0);
        expect(report.instances.map((u) => u.name).sort()).toEqual(list.map((i) => i.name).sort());
        for (const u of report.instances) {
          expect(Number.isFinite(u.cpuMillicores) && u.cpuMillicores >= 0).toBe(true);
          expect(u.memoryBytes).toBeGreaterThan(0);
        }
        expect(report.nodes.length).toBeGreaterThanOrEqual(1);
        for (const node of report.nodes) {
          expect(node.name.length).toBeGreaterThan(0);
          expect(Number.isFinite(node.cpuMillicores) && node.cpuMillicores >= 0).toBe(true);
          expect(node.memoryBytes).toBeGreaterThan(0);
          if (node.memoryCapacityBytes !== undefined)
            expect(node.memoryCapacityBytes).toBeGreaterThanOrEqual(node.memoryBytes);
        }
        const one = await p.usage({ names: [list[0]!.name] });
        expect(one.instances.map((u) => u.name)).toEqual([list[0]!.name]);
      },
      testMs,
    );

    describe('logs', () => {
      it(
        'counts matching lines per instance, and streams them with tail and since',
        async (ctx) => {
          if (!fx.makeErrorLines) {
            ctx.skip();
            return;
          }
          const [a, b] = await p.instances();
          if (!a || !b) throw new Error('expected 2 instances');
          const before = await p.countLines({ pattern: pattern() });
          expect(Object.keys(before.perInstance).sort()).toEqual([a.name, b.name].sort());
          await fx.makeErrorLines(a.name, 5);
          await fx.makeErrorLines(b.name, 2);
          const after = await p.countLines({ pattern: pattern() });
          expect(after.perInstance[a.name]! - before.perInstance[a.name]!).toBe(5);
          expect(after.perInstance[b.name]! - before.perInstance[b.name]!).toBe(2);
          expect(after.total).toBe(Object.values(after.perInstance).reduce((s, n) => s + n, 0));
          expect(after.bytesScanned).toBeGreaterThan(0);
          const onlyA = await p.countLines({ pattern: pattern(), names: [a.name] });
          expect(Object.keys(onlyA.perInstance)).toEqual([a.name]);
          expect(onlyA.total).toBe(after.perInstance[a.name]);

          const tail = await drain(p.logs({ names: [a.name], tail: 3 }));
          expect(tail.length).toBe(3);
          for (const line of tail) {
            expect(line.instance).toBe(a.name);
            expect(line.line).toContain(pattern());
          }

          // Lines older than `sinceMs` are left out (Kubernetes rounds up to whole seconds: 1.5 s -> 2 s).
          await new Promise((resolve) => setTimeout(resolve, 2600));
          await fx.makeErrorLines(a.name, 3);
          const recent = await drain(p.logs({ names: [a.name], sinceMs: 1500 }));
          expect(recent.filter((l) => l.line.includes(pattern())).length).toBe(3);
          const recentCount = await p.countLines({ names: [a.name], sinceMs: 1500, pattern: pattern() });
          expect(recentCount.perInstance[a.name]).toBe(3);
          const everything = await drain(p.logs({ names: [a.name] }));
          expect(everything.filter((l) => l.line.includes(pattern())).length).toBe(
            after.perInstance[a.name]! + 3,
          );
        },
        testMs,
      );

      it(
        'follows new lines until the signal aborts',
        async (ctx) => {
          if (!fx.makeErrorLines) {
            ctx.skip();
            return;
          }
          const a = (await p.instances())[0]!;
          const controller = new AbortController();
          const seen: LogLine[] = [];
          const following = (async () => {
            for await (const line of p.logs({
              names: [a.name],
              follow: true,
              tail: 0,
              signal: controller.signal,
            })) {
              seen.push(line);
              if (seen.filter((l) => l.line.includes(pattern())).length >= 2) controller.abort();
            }
          })();
          // Give the follower time to reach the end of the log before writing.
          await new Promise((resolve) => setTimeout(resolve, 500));
          await fx.makeErrorLines(a.name, 2);
          const timer = setTimeout(() => controller.abort(), 20_000);
          try {
            await following.catch((err: unknown) => {
              // Ending by the abort is the expected way out; anything else is a failure.
              if (!controller.signal.aborted) throw err;
            });
          } finally {
            clearTimeout(timer);
          }
          expect(seen.filter((l) => l.line.includes(pattern())).length).toBe(2);
          for (const line of seen) expect(line.instance).toBe(a.name);
        },
        testMs,
      );

      it(
        'rotates logs on demand, or says why not; lines written before it (an idle writer) are all still read',
        async (ctx) => {
          if (!fx.makeErrorLines) {
            ctx.skip();
            return;
          }
          const names = (await p.instances()).map((i) => i.name);
          await fx.makeErrorLines(names[0]!, 2);
          const before = await p.countLines({ pattern: pattern() });
          const rotation = await p.rotateLogs();
          expect(Array.isArray(rotation.rotated)).toBe(true);
          for (const name of rotation.rotated) expect(names).toContain(name);
          if (rotation.rotated.length === 0) expect(rotation.note ?? '').not.toBe('');
          // Every line written before is still read and counted, wherever it now lives.
          expect((await p.countLines({ pattern: pattern() })).perInstance).toEqual(before.perInstance);
          await fx.makeErrorLines(names[0]!, 1);
          const after = await p.countLines({ pattern: pattern(), names: [names[0]!] });
          expect(after.perInstance[names[0]!]).toBe(before.perInstance[names[0]!]! + 1);
        },
        testMs,
      );
    });

    it(
      'reads and patches the game config: maintenance_mode set and removed',
      async () => {
        const initial = await p.readConfig();
        expect(typeof initial).toBe('object');
        const set = await p.patchConfig({ maintenance_mode: 'true' });
        expect(set.maintenance_mode).toBe('true');
        expect((await p.readConfig()).maintenance_mode).toBe('true');
        const removed = await p.patchConfig({ maintenance_mode: null });
        expect('maintenance_mode' in removed).toBe(false);
        const read = await p.readConfig();
        expect('maintenance_mode' in read).toBe(false);
        for (const [key, value] of Object.entries(initial)) expect(read[key]).toBe(value);

        for (const bad of [{ x: 5 }, { '': 'v' }] as unknown as Array<Record<string, string | null>>) {
          expect(await rejection(p.patchConfig(bad))).toBeInstanceOf(InputError);
        }
        expect(await p.readConfig()).toEqual(read);
      },
      testMs,
    );

    it(
      'exports its config objects and applies them back: the game config returns as saved',
      async () => {
        await p.patchConfig({ maintenance_mode: 'true' });
        const saved = await p.exportConfigObjects();
        expect(saved.length).toBeGreaterThan(0);
        const order = saved.map((o) => `${o.kind}\u0000${o.name}`);
        expect(order).toEqual([...order].sort(byCodeUnit));
        let text = '';
        for (const object of saved) {
          expect(['ConfigMap', 'Secret', 'File']).toContain(object.kind);
          expect(typeof object.name).toBe('string');
          for (const [key, value] of Object.entries(object.data)) {
            expect(value, `${object.name}/${key}`).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
            text += `${key}\n${Buffer.from(value, 'base64').toString('utf8')}\n`;
          }
        }
        expect(text).toContain('maintenance_mode');

        await p.patchConfig({ maintenance_mode: null, contract_extra: 'x' });
        const result = await p.applyConfigObjects(saved);
        expect(result.created + result.replaced).toBe(saved.length);
        const read = await p.readConfig();
        expect(read.maintenance_mode).toBe('true');
        expect('contract_extra' in read).toBe(false);
        expect(await p.exportConfigObjects()).toEqual(saved);
        await p.patchConfig({ maintenance_mode: null });
      },
      testMs,
    );

    it(
      'refuses a config object it cannot hold before changing anything; an empty list changes nothing',
      async () => {
        const before = await p.readConfig();
        const bad = [{ kind: 'Bogus', name: 'game-config', data: {} }] as unknown as ConfigObject[];
        expect(await rejection(p.applyConfigObjects(bad))).toBeInstanceOf(InputError);
        const notBase64 = (await p.exportConfigObjects()).map((o) => ({
          ...o,
          data: Object.fromEntries(Object.keys(o.data).map((k) => [k, '%%% not base64 %%%'])),
        }));
        expect(await rejection(p.applyConfigObjects(notBase64))).toBeInstanceOf(InputError);
        expect(await p.applyConfigObjects([])).toEqual({ created: 0, replaced: 0 });
        expect(await p.readConfig()).toEqual(before);
      },
      testMs,
    );

    it(
      'reports the autoscaler',
      async () => {
        const status = await p.autoscaler();
        expect(typeof status.enabled).toBe('boolean');
        expect(Number.isSafeInteger(status.currentReplicas)).toBe(true);
        expect(Number.isSafeInteger(status.desiredReplicas)).toBe(true);
        expect(status.currentReplicas).toBe(fx.initialReplicas);
        expect(Array.isArray(status.metrics)).toBe(true);
        expect(Array.isArray(status.conditions)).toBe(true);
        if (status.minReplicas !== undefined && status.maxReplicas !== undefined)
          expect(status.minReplicas).toBeLessThanOrEqual(status.maxReplicas);
      },
      testMs,
    );

    it(
      'refuses bad input with an InputError before changing anything',
      async () => {
        const before = await p.instances();
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['scale(-1)', () => p.scale(-1)],
          ['scale(1e9)', () => p.scale(1e9)],
          ['scale(2.5)', () => p.scale(2.5)],
          ['scale(NaN)', () => p.scale(Number.NaN)],
          ['setVersion(unknown)', () => p.setVersion('no-such-version-7f3a')],
          ['setVersion(empty)', () => p.setVersion('')],
          ['restart(maxUnavailable 0)', () => p.restart({ maxUnavailable: 0 })],
          ['restart(maxUnavailable 1.5)', () => p.restart({ maxUnavailable: 1.5 })],
          ['scale(timeoutMs -1)', () => p.scale(fx.initialReplicas, { timeoutMs: -1 })],
        ];
        const logCalls: Array<[string, () => Promise<unknown>]> = [
          ["countLines('')", () => p.countLines({ pattern: '' })],
          ['logs(tail -1)', () => drain(p.logs({ tail: -1 }))],
          ['logs(sinceMs -5)', () => drain(p.logs({ sinceMs: -5 }))],
          ['countLines(sinceMs NaN)', () => p.countLines({ pattern: 'x', sinceMs: Number.NaN })],
        ];
        for (const [what, call] of [...calls, ...logCalls]) {
          const err = await rejection(call());
          expect(err, what).toBeInstanceOf(InputError);
        }
        const after = await p.instances();
        expect(after.map((i) => [i.name, i.startedAt, i.version])).toEqual(
          before.map((i) => [i.name, i.startedAt, i.version]),
        );
      },
      testMs,
    );

    it(
      'scales up and down, waiting for readiness',
      async () => {
        const n = fx.initialReplicas;
        const seen: RolloutProgress[] = [];
        const up = await p.scale(n + 1, { timeoutMs: rolloutMs(), onProgress: (pr) => seen.push(pr) });
        expect(up.operation).toBe('scale');
        expect(up.replicas).toBe(n + 1);
        expect(up.version).toBe(fx.versions.current);
        expectProgress(up.progress, 'scale');
        expect(up.progress.ready).toBe(n + 1);
        expect(seen.length).toBeGreaterThan(0);
        for (const pr of seen) expectProgress(pr, 'scale');
        await expectSettled(n + 1, fx.versions.current);
        expect((await p.autoscaler()).currentReplicas).toBe(n + 1);

        const down = await p.scale(n, { timeoutMs: rolloutMs() });
        expect(down.replicas).toBe(n);
        await expectSettled(n, fx.versions.current);
      },
      testMs,
    );

    it(
      'restarts every instance, at most maxUnavailable at a time',
      async () => {
        const n = fx.initialReplicas;
        const before = await expectSettled(n, fx.versions.current);
        const seen: RolloutProgress[] = [];
        const result = await p.restart({
          maxUnavailable: 1,
          timeoutMs: rolloutMs(),
          onProgress: (pr) => seen.push(pr),
        });
        expect(result.operation).toBe('restart');
        expectProgress(result.progress, 'restart');
        expect(seen.length).toBeGreaterThan(0);
        const minReady = Math.min(...seen.map((pr) => pr.ready));
        expect(minReady, `ready counts seen: ${seen.map((pr) => pr.ready).join(',')}`).toBeGreaterThanOrEqual(
          n - 1,
        );
        const after = await expectSettled(n, fx.versions.current);
        const old = new Map(before.map((i) => [i.name, i.startedAt]));
        for (const instance of after) {
          const restarted = !old.has(instance.name) || old.get(instance.name) !== instance.startedAt;
          expect(restarted, `${instance.name} was not restarted`).toBe(true);
        }
      },
      testMs,
    );

    it(
      'restarts only the selected instances',
      async () => {
        const n = fx.initialReplicas;
        const [first, ...others] = await expectSettled(n, fx.versions.current);
        const result = await p.restart({ filter: { names: [first!.name] }, timeoutMs: rolloutMs() });
        expect(result.operation).toBe('restart');
        const after = await expectSettled(n, fx.versions.current);
        const untouched = after.filter((i) => others.some((o) => o.name === i.name));
        expect(untouched.map((i) => [i.name, i.startedAt])).toEqual(others.map((o) => [o.name, o.startedAt]));
        const replaced = after.filter((i) => !others.some((o) => o.name === i.name));
        expect(replaced).toHaveLength(1);
        expect(replaced[0]!.name !== first!.name || replaced[0]!.startedAt !== first!.startedAt).toBe(true);
      },
      testMs,
    );

    it(
      'setting the version the fleet already runs changes nothing',
      async () => {
        const n = fx.initialReplicas;
        const before = await expectSettled(n, fx.versions.current);
        const result = await p.setVersion(fx.versions.current, { timeoutMs: rolloutMs() });
        expect(result.version).toBe(fx.versions.current);
        expect(result.replicas).toBe(n);
        const after = await expectSettled(n, fx.versions.current);
        expect(after.map((i) => [i.name, i.startedAt])).toEqual(before.map((i) => [i.name, i.startedAt]));
      },
      testMs,
    );

    it(
      'rolls to a new version, reporting progress, until every instance runs it',
      async () => {
        const n = fx.initialReplicas;
        const seen: RolloutProgress[] = [];
        const result = await p.setVersion(fx.versions.next, {
          timeoutMs: rolloutMs(),
          onProgress: (pr) => seen.push(pr),
        });
        expect(result.operation).toBe('set-version');
        expect(result.version).toBe(fx.versions.next);
        expect(result.previousVersion).toBe(fx.versions.current);
        expect(result.replicas).toBe(n);
        expect(result.progress.updated).toBe(n);
        expect(seen.length).toBeGreaterThan(0);
        for (const pr of seen) expectProgress(pr, 'set-version');
        expect(Math.min(...seen.map((pr) => pr.ready))).toBeGreaterThanOrEqual(1);
        await expectSettled(n, fx.versions.next);
      },
      testMs,
    );

    it(
      'stops a rollout to a version that never becomes ready, keeps serving the old one, and rolls back',
      async () => {
        const n = fx.initialReplicas;
        await expectSettled(n, fx.versions.next);
        const err = await rejection(
          p.setVersion(fx.versions.broken, {
            timeoutMs: fx.timeouts?.brokenRolloutMs ?? rolloutMs(),
          }),
        );
        expect(err).toBeInstanceOf(UnavailableError);
        const details = (err as GameopsError).details;
        const progress = details?.progress;
        expectProgress(progress, 'set-version');
        expect(progress.updated).toBeLessThan(n);

        const fleet = await p.instances();
        const readyOld = fleet.filter((i) => i.ready && i.version === fx.versions.next);
        expect(readyOld.length, picture(fleet)).toBeGreaterThanOrEqual(1);
        for (const instance of fleet.filter((i) => i.ready))
          expect(instance.version, picture(fleet)).toBe(fx.versions.next);
        // What the fleet looks like after the failed rollout, for the test log.
        console.info(`[contract:${name}] after the failed rollout: ${picture(fleet)}; ${progress.message}`);

        // Rollback ends on a version that works, never the broken one: the version the failed rollout
        // started from when the adapter leaves a failed rollout in place for the rollback to undo
        // (Kubernetes), or the one before it when the adapter has put the fleet back by itself and kept
        // the rollback target of the last successful rollout (local).
        const back = await p.rollback({ timeoutMs: rolloutMs() });
        expect(back.operation).toBe('rollback');
        expect([fx.versions.next, fx.versions.current]).toContain(back.version);
        await expectSettled(n, back.version);
        // The next tests start from `next`, as if the rollback had undone the failed rollout.
        if (back.version !== fx.versions.next) {
          await p.setVersion(fx.versions.next, { timeoutMs: rolloutMs() });
          await expectSettled(n, fx.versions.next);
        }
      },
      testMs,
    );

    it(
      'refuses a second state-changing operation while one runs, with a ConflictError',
      async () => {
        const n = fx.initialReplicas;
        let started!: () => void;
        const firstProgress = new Promise<void>((resolve) => (started = resolve));
        const first = p.setVersion(fx.versions.current, {
          timeoutMs: rolloutMs(),
          onProgress: () => started(),
        });
        const outcome = first.then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
        await Promise.race([firstProgress, outcome]);
        const second = await rejection(p.scale(n + 1, { timeoutMs: rolloutMs() }));
        expect(second).toBeInstanceOf(ConflictError);
        const done = await outcome;
        expect('error' in done ? done.error : undefined).toBeUndefined();
        await expectSettled(n, fx.versions.current);
        // Once the rollout has ended, operations go through again.
        await p.patchConfig({ maintenance_mode: 'true' });
        await p.patchConfig({ maintenance_mode: null });
      },
      testMs,
    );

    it(
      'rejects waits when the signal is already aborted, without changing anything',
      async () => {
        const before = await p.instances();
        const controller = new AbortController();
        controller.abort(new Error('cancelled by the test'));
        const err = await rejection(p.scale(fx.initialReplicas + 1, { signal: controller.signal }));
        expect(err).toBeInstanceOf(Error);
        const after = await p.instances();
        expect(after.map((i) => i.name)).toEqual(before.map((i) => i.name));
      },
      testMs,
    );
  });
}
