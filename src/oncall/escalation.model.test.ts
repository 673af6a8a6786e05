import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { ManualClock } from '../core/index.ts';
import type { OutboundMessage } from '../ops/contracts.ts';
import type { Actor } from '../runbooks/model.ts';
import { type Harness, oncallConfig, openHarness, recordingEvents } from './oncall.fixture.ts';
import { roundGap, stepDueAt } from './service.ts';

const cleanups: Cleanups = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const START = Date.parse('2026-03-10T12:00:00Z');
const PEOPLE = ['dave', 'bob', 'alice'];
const responder: Actor = { id: 'token:r', name: 'r', role: 'responder', kind: 'token' };

interface Scenario {
  /** Level delays in seconds, non-decreasing. */
  afters: number[];
  repeat: number;
  /** Seconds after the page opened; undefined: never acknowledged. */
  ackAt: number | undefined;
  /** Seconds at which gameops restarts; `midAttempt`: it dies while a delivery is in flight. */
  restarts: Array<{ at: number; midAttempt: boolean }>;
}

const scenario: fc.Arbitrary<Scenario> = fc
  .record({
    gaps: fc.array(fc.integer({ min: 0, max: 90 }), { minLength: 1, maxLength: 3 }),
    repeat: fc.integer({ min: 0, max: 2 }),
    ackAt: fc.option(fc.integer({ min: 0, max: 700 }), { nil: undefined }),
    restarts: fc.array(fc.record({ at: fc.integer({ min: 0, max: 700 }), midAttempt: fc.boolean() }), {
      maxLength: 3,
    }),
  })
  .map(({ gaps, repeat, ackAt, restarts }) => {
    const afters: number[] = [];
    gaps.reduce((sum, g, i) => {
      const after = i === 0 ? g % 10 : sum + g;
      afters.push(after);
      return after;
    }, 0);
    return { afters, repeat, ackAt, restarts: restarts.sort((a, b) => a.at - b.at) };
  });

function configFor(s: Scenario) {
  const levels = s.afters
    .map((after, i) => `{ after: ${after}s, targets: [{ person: ${PEOPLE[i]} }] }`)
    .join(', ');
  return oncallConfig(`
oncall:
  delivery: { attempts: 3, firstRetry: 1s, maxRetry: 5s, timeout: 5s }
  policies: [{ name: model, repeat: ${s.repeat}, levels: [${levels}] }]
`);
}

async function simulate(s: Scenario): Promise<Array<{ deliveryId: string; at: number }>> {
  const place = sqlitePlace(cleanups);
  const clock = new ManualClock(START);
  const config = configFor(s);
  const events = recordingEvents();
  const sends: Array<{ deliveryId: string; at: number }> = [];
  let dieDuringNextSend = false;
  const crashedOn: string[] = [];
  let h: Harness | undefined;
  const channels = {
    sent: [],
    attempt: async (_channel: string, message: OutboundMessage) => {
      sends.push({ deliveryId: message.deliveryId, at: (clock.now().getTime() - START) / 1000 });
      if (dieDuringNextSend) {
        dieDuringNextSend = false;
        crashedOn.push(message.deliveryId);
        // The process dies with the message out but its outcome unrecorded.
        await h!.store.close();
      }
      return { ok: true as const, destination: 'x', response: 'HTTP 204', durationMs: 1 };
    },
  };
  const open = async () => {
    h = await openHarness(place.options, { clock, config, events, channels });
  };
  await open();
  const page = await h!.service.page({ dedupKey: 'model', subject: 'model', body: '', severity: 'P2' });
  const levels = s.afters.map((after) => ({ after: after * 1000, targets: [] }));
  const plan = { levels, repeat: s.repeat, roundMs: s.afters.at(-1)! * 1000 + roundGap(levels) };
  const steps = s.afters.length * (s.repeat + 1);
  const end = (stepDueAt(START, plan, steps) - START) / 1000 + 60;
  const restarts = [...s.restarts];
  for (let second = 0; second <= end; second += 1) {
    clock.set(START + second * 1000);
    while (restarts[0] && restarts[0].at <= second) {
      const restart = restarts.shift()!;
      if (restart.midAttempt) dieDuringNextSend = true;
      else {
        await h!.store.close();
        await open();
      }
    }
    if (s.ackAt === second) await h!.service.acknowledge(page.id, responder);
    const crashing = dieDuringNextSend;
    try {
      await h!.service.tick(clock.now());
    } catch (err) {
      if (!crashing) throw err;
    }
    if (crashing && !dieDuringNextSend) await open();
  }
  const ackAt = s.ackAt ?? Infinity;
  const byDelivery = new Map<string, number[]>();
  for (const send of sends)
    byDelivery.set(send.deliveryId, [...(byDelivery.get(send.deliveryId) ?? []), send.at]);
  for (let step = 0; step < steps; step += 1) {
    const level = step % s.afters.length;
    const round = Math.floor(step / s.afters.length);
    const due = (stepDueAt(START, plan, step) - START) / 1000;
    const id = `${page.id}.${level}.${round}.${PEOPLE[level]}.hook`;
    const times = byDelivery.get(id) ?? [];
    if (due < ackAt) {
      // Fired, within a second of its time, none skipped (restarts included).
      expect(times.length, `step ${step} (due ${due}s) fired`).toBeGreaterThanOrEqual(1);
      expect(times[0]! - due, `step ${step} on time`).toBeGreaterThanOrEqual(0);
      expect(times[0]! - due, `step ${step} on time`).toBeLessThanOrEqual(1);
      // At most one duplicate per crash during its attempt, under the same delivery id.
      const crashes = crashedOn.filter((x) => x === id).length;
      expect(times.length, `step ${step}: one send and one per crash`).toBeLessThanOrEqual(1 + crashes);
    } else {
      expect(times, `step ${step} (due ${due}s) after the ack at ${ackAt}s`).toEqual([]);
    }
  }
  expect(
    sends.every((x) => x.at < ackAt),
    'nothing sent after the acknowledgement',
  ).toBe(true);
  expect(byDelivery.size).toBe(
    sends.filter((x, i) => sends.findIndex((y) => y.deliveryId === x.deliveryId) === i).length,
  );
  const final = await h!.service.pageDetail(page.id);
  expect(final.status).toBe(s.ackAt !== undefined && s.ackAt <= end ? 'acknowledged' : 'exhausted');
  await h!.store.close();
  return sends;
}

describe('escalation model', () => {
  it('fires every level within 1 s of its time, skips none across restarts, none after an ack, at most one duplicate per crash', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => void (await simulate(s))),
      { numRuns: 60 },
    );
  }, 600_000);

  it('a crash mid-attempt re-sends once, with the same delivery id', async () => {
    const sends = await simulate({
      afters: [0, 30],
      repeat: 0,
      ackAt: undefined,
      restarts: [{ at: 0, midAttempt: true }],
    });
    const first = sends.filter((x) => x.deliveryId.endsWith('.0.0.dave.hook'));
    // Sent at once; sent again (same id) when the claim's lease ran out after the restart (5 s + 30 s).
    expect(first.map((x) => x.at)).toEqual([0, 35]);
    expect(sends.filter((x) => x.deliveryId.endsWith('.1.0.bob.hook')).map((x) => x.at)).toEqual([30]);
  }, 60_000);
});
