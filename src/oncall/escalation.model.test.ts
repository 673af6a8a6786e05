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
  /**
   * Seconds at which gameops restarts: `midAttempt`, it dies while a delivery is in flight (and comes back
   * at once); otherwise it stops between ticks and is down for `down` seconds (the auditor's case).
   */
  restarts: Array<{ at: number; midAttempt: boolean; down: number }>;
}

const scenario: fc.Arbitrary<Scenario> = fc
  .record({
    gaps: fc.array(fc.integer({ min: 0, max: 90 }), { minLength: 1, maxLength: 3 }),
    repeat: fc.integer({ min: 0, max: 2 }),
    ackAt: fc.option(fc.integer({ min: 0, max: 700 }), { nil: undefined }),
    restarts: fc.array(
      fc.record({
        at: fc.integer({ min: 0, max: 700 }),
        midAttempt: fc.boolean(),
        down: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 150 })),
      }),
      { maxLength: 3 },
    ),
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
  /** Seconds of the ticks during which gameops died: every attempt in flight then may go out again. */
  const crashedAt: number[] = [];
  let h: Harness | undefined;
  const channels = {
    sent: [],
    attempt: async (_channel: string, message: OutboundMessage) => {
      sends.push({ deliveryId: message.deliveryId, at: (clock.now().getTime() - START) / 1000 });
      if (dieDuringNextSend) {
        dieDuringNextSend = false;
        crashedAt.push((clock.now().getTime() - START) / 1000);
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
  // Run past the last step and past every downtime, so each step gets its chance.
  const end =
    Math.max((stepDueAt(START, plan, steps) - START) / 1000, ...s.restarts.map((r) => r.at + r.down)) + 60;
  const restarts = [...s.restarts];
  // Seconds at which gameops is down (stopped between ticks, not yet started again).
  const down = new Set<number>();
  for (const r of s.restarts) if (!r.midAttempt) for (let t = r.at; t < r.at + r.down; t += 1) down.add(t);
  const firstUp = (from: number): number => {
    let t = Math.ceil(from);
    while (down.has(t)) t += 1;
    return t;
  };
  // An acknowledgement while gameops is down lands when it is back (the CLI needs the store).
  const ackTick = s.ackAt === undefined ? undefined : firstUp(s.ackAt);
  let stopped = false;
  for (let second = 0; second <= end; second += 1) {
    clock.set(START + second * 1000);
    while (restarts[0] && restarts[0].at <= second) {
      const restart = restarts.shift()!;
      if (restart.midAttempt) dieDuringNextSend = true;
      else if (!stopped) {
        await h!.store.close();
        stopped = true;
      }
    }
    if (down.has(second)) continue;
    if (stopped) {
      await open();
      stopped = false;
    }
    if (ackTick === second) await h!.service.acknowledge(page.id, responder);
    const crashing = dieDuringNextSend;
    try {
      await h!.service.tick(clock.now());
    } catch (err) {
      if (!crashing) throw err;
    }
    if (crashing && !dieDuringNextSend) await open();
  }
  const ackAt = ackTick ?? Infinity;
  const mine = sends.filter((x) => x.deliveryId.startsWith(`${page.id}.`));
  const byDelivery = new Map<string, number[]>();
  for (const send of mine)
    byDelivery.set(send.deliveryId, [...(byDelivery.get(send.deliveryId) ?? []), send.at]);
  for (let step = 0; step < steps; step += 1) {
    const level = step % s.afters.length;
    const round = Math.floor(step / s.afters.length);
    const due = (stepDueAt(START, plan, step) - START) / 1000;
    const id = `${page.id}.${level}.${round}.${PEOPLE[level]}.hook`;
    const times = byDelivery.get(id) ?? [];
    // While gameops is up a step fires within a second of its time; one due while it was down fires
    // as soon as it is back (late, never skipped).
    const fireAt = firstUp(due);
    if (fireAt < ackAt) {
      expect(times.length, `step ${step} (due ${due}s) fired`).toBeGreaterThanOrEqual(1);
      expect(times[0]! - due, `step ${step} not early`).toBeGreaterThanOrEqual(0);
      expect(times[0]! - fireAt, `step ${step} on time (due ${due}s, up at ${fireAt}s)`).toBeLessThanOrEqual(
        1,
      );
      // At most one duplicate per crash during its attempt, under the same delivery id.
      const crashes = crashedAt.filter((at) => times.includes(at)).length;
      expect(times.length, `step ${step}: one send and one per crash`).toBeLessThanOrEqual(1 + crashes);
    } else {
      expect(times, `step ${step} (due ${due}s) after the ack at ${ackAt}s`).toEqual([]);
    }
  }
  expect(
    mine.every((x) => x.at < ackAt),
    'nothing sent after the acknowledgement',
  ).toBe(true);
  // A step that came due over a minute before gameops got to it was reported by the auditor.
  const late = [...Array(steps).keys()].some((step) => {
    const due = (stepDueAt(START, plan, step) - START) / 1000;
    return firstUp(due) - due > 60 && firstUp(due) < ackAt;
  });
  if (late)
    expect(
      sends.some((x) => !x.deliveryId.startsWith(`${page.id}.`)),
      'the stall was paged',
    ).toBe(true);
  const final = await h!.service.pageDetail(page.id);
  expect(final.status).toBe(ackTick !== undefined && ackTick <= end ? 'acknowledged' : 'exhausted');
  if (!stopped) await h!.store.close();
  return sends;
}

describe('escalation model', () => {
  it('fires every level within 1 s of its time, skips none across restarts, none after an ack, at most one duplicate per crash', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => void (await simulate(s))),
      { numRuns: 60 },
    );
  }, 600_000);

  it('gameops down for two minutes: the overdue level fires on restart and the stall is paged', async () => {
    const sends = await simulate({
      afters: [0, 30],
      repeat: 0,
      ackAt: undefined,
      restarts: [{ at: 10, midAttempt: false, down: 120 }],
    });
    const own = sends.filter((x) => /\.\d+\.\d+\.(dave|bob)\.hook$/.test(x.deliveryId));
    expect(own.find((x) => x.deliveryId.includes('.1.0.bob.'))?.at).toBe(130);
    expect(sends.filter((x) => x.at === 130).length).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('a crash mid-attempt re-sends once, with the same delivery id', async () => {
    const sends = await simulate({
      afters: [0, 30],
      repeat: 0,
      ackAt: undefined,
      restarts: [{ at: 0, midAttempt: true, down: 0 }],
    });
    const first = sends.filter((x) => x.deliveryId.endsWith('.0.0.dave.hook'));
    // Sent at once; sent again (same id) when the claim's lease ran out after the restart (5 s + 30 s).
    expect(first.map((x) => x.at)).toEqual([0, 35]);
    expect(sends.filter((x) => x.deliveryId.endsWith('.1.0.bob.hook')).map((x) => x.at)).toEqual([30]);
  }, 60_000);
});
