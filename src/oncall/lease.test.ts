import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { createLogger } from '../app/log.ts';
import { ManualClock } from '../core/index.ts';
import type { AttemptOutcome } from '../ops/contracts.ts';
import { openStore, type Store } from '../store/index.ts';
import { fakeSuppressions, oncallConfig, recordingEvents } from './oncall.fixture.ts';
import { createOncallService } from './service.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('delivery leases in a long tick', () => {
  it('a slow tick stops claiming after its budget; a second instance sends the rest and re-sends nothing', async () => {
    const clock = new ManualClock('2026-03-10T12:00:00Z');
    const config = oncallConfig();
    const store = await openStore({ ...sqlitePlace(cleanups).options, clock });
    stores.push(store);
    const sends: Array<[string, string]> = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const make = (who: string, answer: () => Promise<AttemptOutcome>) =>
      createOncallService({
        config,
        store,
        clock,
        log: createLogger('silent'),
        events: recordingEvents(),
        suppressions: fakeSuppressions(),
        random: () => 0.5,
        channels: {
          attempt: async (_channel, message) => {
            sends.push([who, message.deliveryId]);
            return answer();
          },
        },
      });
    // Instance A (8 attempts at a time): the first 4 attempts take 9 s of clock time each; later ones hang.
    const a = make('A', async (): Promise<AttemptOutcome> => {
      calls += 1;
      if (calls > 4) await gate;
      else clock.advance(9_000);
      return { ok: true, destination: 'hooks.example.com', response: 'HTTP 204', durationMs: 9_000 };
    });
    const b = make('B', () =>
      Promise.resolve<AttemptOutcome>({
        ok: true,
        destination: 'hooks.example.com',
        response: 'HTTP 204',
        durationMs: 5,
      }),
    );
    for (let i = 0; i < 20; i += 1)
      await a.page({
        dedupKey: `k${i}`,
        subject: `s${i}`,
        body: '',
        severity: 'P2',
        targets: [{ person: 'bob' }],
      });
    const tickA = a.tick(clock.now());
    while (calls < 8) await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
    // 36 s into A's tick, past its delivery budget: A claims nothing more; B sends the rest.
    expect(clock.now().toISOString()).toBe('2026-03-10T12:00:36.000Z');
    await b.tick(clock.now());
    release();
    await tickA;
    expect(calls).toBe(8);
    const by = new Map<string, string[]>();
    for (const [who, id] of sends) by.set(id, [...(by.get(id) ?? []), who]);
    expect([...by].filter(([, v]) => v.length > 1)).toEqual([]);
    // Every page still got its delivery, from one instance or the other.
    expect(by.size).toBe(20);
  });
});
