/**
 * Test fixtures of the on-call domain: a config with people, teams, schedules and policies; fakes for the
 * other domains (recording channels, timeline, suppression windows); a service on a real store.
 */
import { parseConfigText } from '../config/index.ts';
import type { GameopsConfig } from '../config/load.ts';
import { ManualClock } from '../core/index.ts';
import { createLogger } from '../app/log.ts';
import type {
  ActiveSuppression,
  AttemptOutcome,
  IncidentEvents,
  OutboundMessage,
  Suppressions,
  TimelineEntryInput,
} from '../ops/contracts.ts';
import { openStore, type Store, type StoreOptions } from '../store/index.ts';
import { createOncallService, type ChannelAttempts, type OncallService } from './service.ts';

/** People alice (hook, then mail), bob (hook), carol (default contacts: mail), dave; team ops; schedule game. */
export function oncallConfigText(extra = ''): string {
  return `
service: { name: oncall-test, environment: test }
server: { publicUrl: "https://gameops.example.com/" }
notifications:
  channels:
    - { name: hook, kind: webhook, url: "https://hooks.example.com/page" }
    - { name: mail, kind: email, smtpUrl: "smtp://mail.example.com:25", from: "gameops@example.com" }
    - { name: ops-room, kind: webhook, url: "https://hooks.example.com/room" }
people:
  - { id: alice, name: Alice, email: alice@example.com, contacts: [hook, mail] }
  - { id: bob, name: Bob, contacts: [hook] }
  - { id: carol, name: Carol }
  - { id: dave, name: Dave, contacts: [hook] }
teams:
  - { id: ops, name: Ops, members: [alice, bob], lead: carol }
${extra}`;
}

export const DEFAULT_ONCALL = `
oncall:
  defaultContacts: [mail]
  delivery: { attempts: 3, firstRetry: 10s, maxRetry: 1m }
  schedules:
    - name: game
      timezone: Europe/Berlin
      layers:
        - { name: primary, start: "2026-03-01", participants: [alice, bob] }
        - { name: backup, start: "2026-03-01", participants: [bob, alice] }
  policies:
    - name: default
      levels:
        - { after: 0s, targets: [{ schedule: game }] }
        - { after: 15m, targets: [{ schedule: game, layer: backup }] }
        - { after: 30m, targets: [{ teamLead: ops }] }
`;

export function oncallConfig(oncall = DEFAULT_ONCALL): GameopsConfig {
  return parseConfigText(oncallConfigText(oncall), 'oncall-test.yaml', { all: {} }).config;
}

export interface Sent {
  channel: string;
  message: OutboundMessage;
  at: string;
}

/** Channels that record every attempt and answer what `answer` says (default: delivered). */
export function recordingChannels(
  clock: ManualClock,
  answer: (channel: string, message: OutboundMessage) => AttemptOutcome | Promise<AttemptOutcome> = () => ({
    ok: true,
    destination: 'hooks.example.com',
    response: 'HTTP 204',
    durationMs: 3,
  }),
): ChannelAttempts & { sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sent,
    attempt: async (channel, message) => {
      sent.push({ channel, message, at: clock.now().toISOString() });
      return answer(channel, message);
    },
  };
}

export function recordingEvents(): IncidentEvents & {
  entries: Array<TimelineEntryInput & { incidentId: string }>;
} {
  const entries: Array<TimelineEntryInput & { incidentId: string }> = [];
  return {
    entries,
    append: (incidentId, entry) => {
      entries.push({ incidentId, ...entry });
      return Promise.resolve();
    },
  };
}

/** Suppression windows: `window` is returned when the labels have `suppress: yes`. */
export function fakeSuppressions(
  window: ActiveSuppression = { name: 'maintenance', endsAt: '2026-03-10T12:00:00.000Z' },
): Suppressions & {
  asked: Array<Record<string, string>>;
} {
  const asked: Array<Record<string, string>> = [];
  return {
    asked,
    active: (labels) => {
      asked.push(labels);
      return Promise.resolve(labels.suppress === 'yes' ? window : undefined);
    },
  };
}

export interface Harness {
  store: Store;
  service: OncallService;
  clock: ManualClock;
  channels: ReturnType<typeof recordingChannels>;
  events: ReturnType<typeof recordingEvents>;
  suppressions: ReturnType<typeof fakeSuppressions>;
  config: GameopsConfig;
}

/** A service on a store at `options`, with recording fakes. */
export async function openHarness(
  options: StoreOptions,
  init: {
    clock?: ManualClock;
    config?: GameopsConfig;
    channels?: ReturnType<typeof recordingChannels>;
    events?: ReturnType<typeof recordingEvents>;
    suppressions?: ReturnType<typeof fakeSuppressions>;
    realChannels?: ChannelAttempts;
  } = {},
): Promise<Harness> {
  const clock = init.clock ?? new ManualClock('2026-03-10T12:00:00Z');
  const config = init.config ?? oncallConfig();
  const store = await openStore({ ...options, clock });
  const channels = init.channels ?? recordingChannels(clock);
  const events = init.events ?? recordingEvents();
  const suppressions = init.suppressions ?? fakeSuppressions();
  const service = createOncallService({
    config,
    store,
    clock,
    log: createLogger('silent'),
    channels: init.realChannels ?? channels,
    events,
    suppressions,
    random: () => 0.5,
  });
  return { store, service, clock, channels, events, suppressions, config };
}
