import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type Clock,
  errorMessage,
  InputError,
  mapLimit,
  sleep as sleepFor,
  NotFoundError,
  UnavailableError,
} from '../core/index.ts';
import {
  checkIsoTime,
  checkNotice,
  checkPlayerText,
  type DiagnosticKind,
  type GameServerClient,
  type GameStatus,
  type NoticeInput,
} from './game-client.ts';
import type { AutoscalerStatus, Instance, InstanceFilter, Platform } from './port.ts';

/** Game servers asked at once: a fleet of hundreds is read in a few rounds, never hundreds of sockets. */
const CONCURRENCY = 32;
/** Game-config keys that hold the traffic gate (ADR 0006). */
export const MAINTENANCE_KEY = 'maintenance_mode';
export const MAINTENANCE_MESSAGE_KEY = 'maintenance_message';
export const MAINTENANCE_STARTS_KEY = 'maintenance_starts_at';

export interface FleetInstance extends Instance {
  /** What the game server said on `GET /ops/status`, when it is ready and answered. */
  game?: GameStatus;
  /** Why there is no `game`, when the instance is ready but did not answer. */
  gameProblem?: string;
}

export interface FleetStatus {
  platform: string;
  target: string;
  instances: FleetInstance[];
  totals: { instances: number; ready: number; playersOnline: number; notAnswering: number };
  versions: string[];
  /** The traffic gate as recorded in the game config. */
  gate: GateState;
  autoscaler?: AutoscalerStatus;
  autoscalerProblem?: string;
}

export interface GateState {
  closed: boolean;
  message: string | undefined;
  startsAt: string | undefined;
}

export interface PerInstanceOutcome {
  instance: string;
  ok: boolean;
  error?: string;
}

export interface GateResult {
  gate: GateState;
  /** `ok`: every live instance (ready or not) confirmed; `partial`: some did not (named in `instances`). */
  status: 'ok' | 'partial';
  instances: PerInstanceOutcome[];
}

export interface DrainResult {
  /**
   * `empty`: every instance asked said 0 players. `timeout`: players remain after `waitMs`. `partial`: some
   * instance could not be asked or stopped answering, so nobody can say it is empty (named in `instances`).
   */
  status: 'empty' | 'timeout' | 'partial';
  playersRemaining: number;
  instances: Array<PerInstanceOutcome & { playersRemaining?: number }>;
  waitedMs: number;
}

export interface NoticeResult {
  /**
   * `ok`: every live instance (ready or not) said how many it told; `partial`: some did not, or had no
   * address yet (named in `instances`).
   */
  status: 'ok' | 'partial';
  /** Players told, over the instances that answered. */
  delivered: number;
  instances: Array<PerInstanceOutcome & { delivered?: number }>;
}

export interface DrainPlayersInput {
  /**
   * How long players may leave by themselves (the gate is already closed); then the instances that still
   * have players (or did not answer) are drained through the contract. 0 drains them at once.
   */
  deadlineMs: number;
  /** Warning the players still there at the deadline get before they are saved and disconnected. @default 30 */
  kickNoticeSeconds?: number;
  /** Between two counts of the players online. @default 250 */
  pollMs?: number;
  /** What players are told at the deadline. @default the server's own drain message */
  message?: string;
  /**
   * How long to wait for the instances to empty after asking them to drain (they disconnect everyone at
   * `kickNoticeSeconds`). @default kickNoticeSeconds + 30 s
   */
  kickWaitMs?: number;
  signal?: AbortSignal;
  /** After every count: the players online over the instances that answered, and each instance's state. */
  onProgress?: (playersRemaining: number, instances: readonly DrainingInstance[]) => void;
}

/** One instance during {@link Fleet.drainPlayers}. */
export interface DrainingInstance extends PerInstanceOutcome {
  /** Players online at the last count (absent when it did not answer: unknown, never 0). */
  playersRemaining?: number;
  /**
   * Writes (sessions, saved positions) not yet in the databases at the last count. Absent when it did not
   * answer, or its server does not report `pendingWrites` (optional in the contract): then unknown.
   */
  pendingWrites?: number;
  /** On its way out (a terminating pod): waited for while it answers, since it may still have players. */
  terminating?: boolean;
  /** No longer listed by the platform (its process ended): not waited for. */
  gone?: boolean;
  /** It was asked to drain (`POST /ops/drain`): it refuses logins until restarted. */
  drained: boolean;
}

export interface DrainPlayersResult {
  /**
   * `empty`: every instance waited for said 0 players and 0 pending writes (the last logouts are saved).
   * `timeout`: players or unwritten saves remained after the deadline and the wait that follows the drain
   * (each instance's `playersRemaining` and `pendingWrites` say where). `partial`: some instance did not
   * answer (at the end), so nobody can say it is empty (named in `instances`).
   */
  status: 'empty' | 'timeout' | 'partial';
  /** Players online at the first count over the instances that answered: a lower bound when `silentAtStart` > 0. */
  playersAtStart: number;
  /** Instances that did not answer the first count (their players are not in `playersAtStart`). */
  silentAtStart: number;
  playersRemaining: number;
  /** Writes not yet in the databases at the last count, over the instances that report them. */
  pendingWrites: number;
  /**
   * Instances that answered without `pendingWrites` (a server of another make: the field is optional in
   * the contract): their players are counted but whether their last saves are written is not known.
   */
  pendingWritesUnknown: string[];
  /** The deadline came with players online (or instances silent) and they were asked to drain. */
  kicked: boolean;
  /**
   * Players online when the deadline came, then told to leave and saved and disconnected: a lower bound
   * when `silentAtKick` > 0.
   */
  playersKicked: number;
  /** Instances that did not answer when the deadline came. */
  silentAtKick: number;
  /**
   * Instances listed but not waited for: no address yet (a pending pod has no process serving players;
   * it is reported, never waited on forever), gone, or exiting and no longer answering.
   */
  notWaitedFor: string[];
  waitedMs: number;
  /** When the count reached 0 (ISO 8601), for status `empty`. */
  emptyAt?: string;
  instances: DrainingInstance[];
  /**
   * Instances that took the drain: they refuse logins until restarted (a version update restarts them,
   * or `fleet.restart-drained`). One whose answer was lost (it went quiet) may have taken it too:
   * `fleet.restart-drained` goes by what each instance's status says.
   */
  needsRestart: string[];
}

export interface Artefact {
  instance: string;
  kind: DiagnosticKind;
  path: string;
  bytes: number;
  sha256: string;
  createdAt: string;
}

export interface FleetDeps {
  platform: Platform;
  game: GameServerClient;
  clock: Clock;
  /** Where diagnostics are written. */
  artefactDir: string;
  /** Waits between polls; injectable so tests need not sleep. @default setTimeout */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * The fleet as operators use it: the platform's instances joined with what each game server says, the
 * traffic gate (ADR 0006), drain, and diagnostics stored as artefacts. Scaling and rollouts go straight to
 * the platform; after each, {@link Fleet.reapplyGate} tells new instances about a closed gate.
 */
export interface Fleet {
  readonly platform: Platform;
  /** The game-server contract client the fleet uses. */
  readonly game: GameServerClient;
  status(filter?: InstanceFilter & { signal?: AbortSignal }): Promise<FleetStatus>;
  gate(): Promise<GateState>;
  setGate(
    input: { closed: boolean; message?: string; startsAt?: string },
    signal?: AbortSignal,
  ): Promise<GateResult>;
  /** Sends the recorded gate to every live instance, ready or not. */
  reapplyGate(signal?: AbortSignal): Promise<GateResult>;
  /**
   * What every caller does after a scale, restart or rollout (ADR 0006): when the gate is closed, tell the
   * instances (new ones come up not knowing). Never throws: a problem is returned, to be reported.
   */
  gateAfterRollout(signal?: AbortSignal): Promise<{ gate?: GateResult; gateProblem?: string }>;
  drain(input: {
    message?: string;
    deadlineSeconds?: number;
    /** Keep polling until every instance is empty or this long has passed. @default deadline + 30 s */
    waitMs?: number;
    filter?: InstanceFilter;
    signal?: AbortSignal;
    onProgress?: (playersRemaining: number) => void;
  }): Promise<DrainResult>;
  diagnostics(
    instance: string,
    kind: DiagnosticKind,
    options?: { seconds?: number; signal?: AbortSignal },
  ): Promise<Artefact>;
  /**
   * An announcement to every player of every live instance, ready or not (`POST /ops/notice`), logins
   * left open. An instance that does not answer, or has no address yet, is named in the result
   * (`ok: false`); it never fails the others.
   * @throws InputError naming the field, before any instance is told
   */
  notice(input: NoticeInput, signal?: AbortSignal): Promise<NoticeResult>;
  /**
   * Waits for players to leave once the gate is closed (maintenance): counts the players online every
   * `pollMs` and returns as soon as every instance says 0; at `deadlineMs` asks the instances that still
   * have players, or did not answer, to drain (they tell their players, then save and disconnect them at
   * `kickNoticeSeconds`), and waits for 0 again, bounded by `kickWaitMs`. Time comes from the clock.
   * @throws InputError for bad input, before anything is asked
   */
  drainPlayers(input: DrainPlayersInput): Promise<DrainPlayersResult>;
  /**
   * Which instances are draining (they refuse logins until restarted): asks every live instance with an
   * address, ready or not (a drained one may be momentarily failing its probe); those that did not answer
   * or have no address yet are in `notAnswering`, never taken for "not draining".
   */
  drainedInstances(signal?: AbortSignal): Promise<DrainedInstances>;
}

export interface DrainedInstances {
  draining: string[];
  notAnswering: PerInstanceOutcome[];
}

export function createFleet(deps: FleetDeps): Fleet {
  const { platform, game, clock } = deps;
  const sleep = deps.sleep ?? sleepFor;

  async function gate(): Promise<GateState> {
    return gateFromConfig(await platform.readConfig());
  }

  async function tellInstances(state: GateState, signal?: AbortSignal): Promise<GateResult> {
    // Every instance with a live process, ready or not: one that is slow to answer its readiness probe
    // still has players, and must never be counted as closed without having said so (ADR 0006).
    const live = (await platform.instances()).filter(isLive);
    const instances = await mapLimit(live, CONCURRENCY, async (i): Promise<PerInstanceOutcome> => {
      if (i.opsUrl === undefined)
        return { instance: i.name, ok: false, error: `no address yet (${i.phase})` };
      try {
        await game.setMaintenance(i.opsUrl, gateInput(state), signal ? { signal } : {});
        return { instance: i.name, ok: true };
      } catch (err) {
        return { instance: i.name, ok: false, error: errorMessage(err) };
      }
    });
    return { gate: state, status: instances.every((i) => i.ok) ? 'ok' : 'partial', instances };
  }

  return {
    platform,
    game,

    async status(filter = {}) {
      const { signal, ...selector } = filter;
      const [instances, config, autoscaler] = await Promise.all([
        platform.instances(selector),
        platform.readConfig(),
        platform.autoscaler().then(
          (a) => ({ ok: a }) as const,
          (err: unknown) => ({ problem: errorMessage(err) }) as const,
        ),
      ]);
      const joined = await mapLimit(instances, CONCURRENCY, async (i): Promise<FleetInstance> => {
        if (!i.ready || i.opsUrl === undefined) return i;
        try {
          return { ...i, game: await game.status(i.opsUrl, signal ? { signal } : {}) };
        } catch (err) {
          return { ...i, gameProblem: errorMessage(err) };
        }
      });
      return {
        platform: platform.kind,
        target: platform.describe(),
        instances: joined,
        totals: {
          instances: joined.length,
          ready: joined.filter((i) => i.ready).length,
          playersOnline: joined.reduce((n, i) => n + (i.game?.playersOnline ?? 0), 0),
          notAnswering: joined.filter((i) => i.gameProblem !== undefined).length,
        },
        versions: [...new Set(joined.map((i) => i.version))].sort(),
        gate: gateFromConfig(config),
        ...('ok' in autoscaler ? { autoscaler: autoscaler.ok } : { autoscalerProblem: autoscaler.problem }),
      };
    },

    gate,

    async setGate(input, signal) {
      if (input.message !== undefined) checkPlayerText('message', input.message);
      const startsAt = input.startsAt ? checkIsoTime('startsAt', input.startsAt) : undefined;
      // The record first: an instance that starts while we are telling the others reads it.
      await platform.patchConfig({
        [MAINTENANCE_KEY]: input.closed ? 'true' : null,
        [MAINTENANCE_MESSAGE_KEY]: input.closed ? (input.message ?? null) : null,
        [MAINTENANCE_STARTS_KEY]: input.closed ? (startsAt ?? null) : null,
      });
      return tellInstances({ closed: input.closed, message: input.message, startsAt }, signal);
    },

    async reapplyGate(signal) {
      return tellInstances(await gate(), signal);
    },

    async gateAfterRollout(signal) {
      try {
        const state = await gate();
        return state.closed ? { gate: await tellInstances(state, signal) } : {};
      } catch (err) {
        return { gateProblem: errorMessage(err) };
      }
    },

    async drain(input) {
      const started = clock.now().getTime();
      const deadlineSeconds = input.deadlineSeconds ?? 30;
      if (!Number.isInteger(deadlineSeconds) || deadlineSeconds < 1 || deadlineSeconds > 3600)
        throw new InputError(`deadlineSeconds: an integer from 1 to 3600 (got ${deadlineSeconds})`);
      if (input.message !== undefined) checkPlayerText('message', input.message);
      const waitMs = input.waitMs ?? (deadlineSeconds + 30) * 1000;
      // Every live instance, ready or not (a slow one still has players); one without an address yet is
      // reported, never taken for empty.
      const targets = (await platform.instances(input.filter)).filter(isLive);
      const opts = input.signal ? { signal: input.signal } : {};
      const asked = await mapLimit(targets, CONCURRENCY, async (i) => {
        if (i.opsUrl === undefined)
          return { instance: i.name, ok: false, error: `no address yet (${i.phase})`, opsUrl: '' };
        try {
          await game.drain(
            i.opsUrl,
            { ...(input.message ? { message: input.message } : {}), deadlineSeconds },
            opts,
          );
          return { instance: i.name, ok: true, opsUrl: i.opsUrl };
        } catch (err) {
          return { instance: i.name, ok: false, error: errorMessage(err), opsUrl: i.opsUrl };
        }
      });
      const lost = new Map<string, string>();
      for (;;) {
        const remaining = new Map<string, number>();
        await mapLimit(asked, CONCURRENCY, async (a) => {
          if (!a.ok) return;
          try {
            remaining.set(a.instance, (await game.status(a.opsUrl, opts)).playersOnline);
            lost.delete(a.instance);
          } catch (err) {
            // Gone quiet mid-drain (it may have exited once empty): its players are unknown, not zero.
            lost.set(a.instance, errorMessage(err));
          }
        });
        const total = [...remaining.values()].reduce((n, x) => n + x, 0);
        input.onProgress?.(total);
        const waited = clock.now().getTime() - started;
        const unsure = lost.size > 0 || asked.some((a) => !a.ok);
        if (total === 0 || waited >= waitMs || input.signal?.aborted)
          return {
            status: unsure ? 'partial' : total === 0 ? 'empty' : 'timeout',
            playersRemaining: total,
            waitedMs: waited,
            instances: asked.map(({ opsUrl: _opsUrl, ...a }) => {
              const problem = a.error ?? lost.get(a.instance);
              return {
                ...a,
                ok: problem === undefined,
                ...(problem !== undefined ? { error: problem } : {}),
                ...(remaining.has(a.instance) ? { playersRemaining: remaining.get(a.instance)! } : {}),
              };
            }),
          };
        await sleep(1000, input.signal);
      }
    },

    async notice(input, signal) {
      const body = checkNotice(input);
      // Every live instance, ready or not (one slow to pass its probe still has players); one without an
      // address cannot be told and is named, never skipped.
      const live = (await platform.instances()).filter(isLive);
      const opts = signal ? { signal } : {};
      const instances = await mapLimit(live, CONCURRENCY, async (i) => {
        if (i.opsUrl === undefined)
          return { instance: i.name, ok: false, error: `no address yet (${i.phase})` };
        try {
          const { delivered } = await game.notice(i.opsUrl, body, opts);
          return { instance: i.name, ok: true, delivered };
        } catch (err) {
          return { instance: i.name, ok: false, error: errorMessage(err) };
        }
      });
      return {
        status: instances.every((i) => i.ok) ? 'ok' : 'partial',
        delivered: instances.reduce((n, i) => n + (i.delivered ?? 0), 0),
        instances,
      };
    },

    async drainPlayers(input) {
      const kickNoticeSeconds = input.kickNoticeSeconds ?? 30;
      const pollMs = input.pollMs ?? 250;
      if (!Number.isInteger(input.deadlineMs) || input.deadlineMs < 0)
        throw new InputError(`deadlineMs: an integer of 0 or more (got ${input.deadlineMs})`);
      if (!Number.isInteger(kickNoticeSeconds) || kickNoticeSeconds < 1 || kickNoticeSeconds > 3600)
        throw new InputError(`kickNoticeSeconds: an integer from 1 to 3600 (got ${kickNoticeSeconds})`);
      if (!Number.isInteger(pollMs) || pollMs < 10 || pollMs > 60_000)
        throw new InputError(`pollMs: an integer from 10 to 60000 (got ${pollMs})`);
      if (input.message !== undefined) checkPlayerText('message', input.message);
      const kickWaitMs = input.kickWaitMs ?? (kickNoticeSeconds + 30) * 1000;
      if (!Number.isInteger(kickWaitMs) || kickWaitMs < 0)
        throw new InputError(`kickWaitMs: an integer of 0 or more (got ${kickWaitMs})`);
      const signal = input.signal;
      const opts = signal ? { signal } : {};
      const started = clock.now().getTime();
      const recorded = await gate();
      type Tracked = DrainingInstance & { opsUrl: string | undefined; seenAt: number; told: boolean };
      const state = new Map<string, Tracked>();
      let firstRound = true;
      let playersAtStart: number | undefined;
      let silentAtStart = 0;
      let kickedAt: number | undefined;
      let playersKicked = 0;
      let silentAtKick = 0;
      const listLive = async (): Promise<Instance[]> =>
        (await platform.instances()).filter(
          (i) => isLive(i) || (i.phase === 'stopped' && i.opsUrl !== undefined),
        );
      let relisting: Promise<void> | undefined;
      let freshList: Instance[] | undefined;
      /** Merges a listing: new instances and new addresses; those no longer listed are gone. */
      const merge = (listed: Instance[], first: boolean): void => {
        const listedNames = new Set(listed.map((i) => i.name));
        const listedAt = clock.now().getTime();
        for (const i of listed) {
          const known = state.get(i.name);
          if (known) {
            // A new address is a new process (or a pod that just got one): it must be told the gate.
            if (known.opsUrl !== i.opsUrl) known.told = false;
            known.opsUrl = i.opsUrl;
            known.terminating = i.phase === 'stopped';
            delete known.gone;
            continue;
          }
          state.set(i.name, {
            instance: i.name,
            ok: false,
            error: i.opsUrl === undefined ? `no address yet (${i.phase})` : 'not asked yet',
            drained: false,
            opsUrl: i.opsUrl,
            seenAt: listedAt,
            // Those listed at the start with an address were told by whoever closed the gate.
            told: first && i.opsUrl !== undefined,
            ...(i.phase === 'stopped' ? { terminating: true } : {}),
          });
        }
        for (const s of state.values()) if (!listedNames.has(s.instance)) s.gone = true;
      };
      for (;;) {
        // Listed again every round: an instance that comes up (or gets its address) during the drain is
        // asked too, and told the gate when first seen (it started not knowing). The first listing is
        // waited for; later ones run beside the polls (a listing can take a probe timeout when an instance
        // is silent) and the newest finished one is merged at the start of a round.
        let listed: Instance[] | undefined;
        if (firstRound) listed = await listLive();
        else {
          listed = freshList;
          freshList = undefined;
        }
        relisting ??= listLive()
          .then(
            (l) => {
              freshList = l;
            },
            // A listing that failed changes nothing: the instances known are polled; the next one retries.
            () => undefined,
          )
          .finally(() => {
            relisting = undefined;
          });
        if (listed) merge(listed, firstRound);
        firstRound = false;
        await mapLimit([...state.values()], CONCURRENCY, async (s) => {
          if (s.gone) return;
          if (s.opsUrl === undefined) {
            s.ok = false;
            s.error = 'no address yet (pending): it cannot have players, so it is not waited for';
            delete s.playersRemaining;
            delete s.pendingWrites;
            return;
          }
          try {
            if (!s.told && recorded.closed) {
              await game.setMaintenance(s.opsUrl, gateInput(recorded), opts);
              s.told = true;
            }
            const answer = await game.status(s.opsUrl, opts);
            s.playersRemaining = answer.playersOnline;
            if (answer.pendingWrites !== undefined) s.pendingWrites = answer.pendingWrites;
            else delete s.pendingWrites;
            s.ok = true;
            delete s.error;
          } catch (err) {
            // Gone quiet mid-drain: its players are unknown, never 0.
            s.ok = false;
            s.error = errorMessage(err);
            delete s.playersRemaining;
            delete s.pendingWrites;
          }
        });
        throwIfAborted(signal);
        const now = clock.now().getTime();
        const all = [...state.values()];
        // What is waited for: every instance with an address that is listed and not on its way out, and
        // an exiting one while it still answers. One without an address has no process serving players;
        // one that is gone, or exiting and silent, flushed on its way out (its shutdown does).
        const waitedFor = all.filter((s) => !s.gone && s.opsUrl !== undefined && (!s.terminating || s.ok));
        const total = waitedFor.reduce((n, s) => n + (s.playersRemaining ?? 0), 0);
        const pendingWrites = waitedFor.reduce((n, s) => n + (s.pendingWrites ?? 0), 0);
        const silent = waitedFor.filter((s) => !s.ok).length;
        if (playersAtStart === undefined) {
          playersAtStart = total;
          silentAtStart = silent;
        }
        const report = all.map(
          ({ opsUrl: _opsUrl, seenAt: _seenAt, told: _told, ...s }): DrainingInstance => ({ ...s }),
        );
        input.onProgress?.(total, report);
        const finish = (status: DrainPlayersResult['status']): DrainPlayersResult => ({
          status,
          playersAtStart: playersAtStart ?? 0,
          silentAtStart,
          playersRemaining: total,
          pendingWrites,
          pendingWritesUnknown: waitedFor
            .filter((s) => s.ok && s.pendingWrites === undefined)
            .map((s) => s.instance),
          kicked: kickedAt !== undefined,
          playersKicked,
          silentAtKick,
          waitedMs: now - started,
          ...(status === 'empty' ? { emptyAt: new Date(now).toISOString() } : {}),
          instances: report,
          notWaitedFor: all.filter((s) => !waitedFor.includes(s)).map((s) => s.instance),
          needsRestart: report.filter((s) => s.drained).map((s) => s.instance),
        });
        if (total === 0 && pendingWrites === 0 && silent === 0) return finish('empty');
        if (kickedAt !== undefined && now - kickedAt >= kickWaitMs)
          return finish(silent > 0 ? 'partial' : 'timeout');
        const deadlineNow = kickedAt === undefined && now - started >= input.deadlineMs;
        if (deadlineNow) {
          kickedAt = now;
          playersKicked = total;
          silentAtKick = silent;
        }
        if (kickedAt !== undefined) {
          // The instances with players, and at the deadline those that did not say; later rounds ask
          // again any that answers with players and has not taken it. An empty one keeps its logins.
          const ask = waitedFor.filter(
            (s) => !s.drained && (s.playersRemaining ?? (deadlineNow ? 1 : 0)) > 0,
          );
          await mapLimit(ask, CONCURRENCY, async (s) => {
            try {
              await game.drain(
                s.opsUrl!,
                { deadlineSeconds: kickNoticeSeconds, ...(input.message ? { message: input.message } : {}) },
                opts,
              );
              s.drained = true;
            } catch (err) {
              s.ok = false;
              s.error = `asked to drain: ${errorMessage(err)}`;
            }
          });
          throwIfAborted(signal);
        }
        await sleep(pollMs, signal);
        throwIfAborted(signal);
      }
    },

    async drainedInstances(signal) {
      const live = (await platform.instances()).filter(isLive);
      const opts = signal ? { signal } : {};
      const answers = await mapLimit(live, CONCURRENCY, async (i) => {
        if (i.opsUrl === undefined)
          return { instance: i.name, ok: false, error: `no address yet (${i.phase})` };
        try {
          return { instance: i.name, ok: true, draining: (await game.status(i.opsUrl, opts)).draining };
        } catch (err) {
          return { instance: i.name, ok: false, error: errorMessage(err) };
        }
      });
      return {
        draining: answers.filter((a) => a.ok && a.draining === true).map((a) => a.instance),
        notAnswering: answers
          .filter((a) => !a.ok)
          .map((a) => ({ instance: a.instance, ok: false, ...(a.error ? { error: a.error } : {}) })),
      };
    },

    async diagnostics(name, kind, options = {}) {
      const [instance] = await platform.instances({ names: [name] });
      if (!instance) throw new NotFoundError(`no instance named "${name}" on ${platform.describe()}`);
      if (!instance.ready || instance.opsUrl === undefined)
        throw new UnavailableError(
          `instance ${name} is not ready (${instance.phase}); it cannot be profiled`,
        );
      const file = await game.diagnostics(instance.opsUrl, kind, options);
      return storeArtefact(deps.artefactDir, name, kind, file.stream, clock);
    },
  };
}

/** The body of `POST /ops/maintenance` for a gate state. */
function gateInput(state: GateState): { enabled: boolean; message?: string; startsAt?: string } {
  return {
    enabled: state.closed,
    ...(state.message ? { message: state.message } : {}),
    ...(state.startsAt ? { startsAt: state.startsAt } : {}),
  };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw signal.reason instanceof Error ? signal.reason : new UnavailableError('drain aborted');
}

/** An instance whose process runs (ready or not yet): it may have players and must be told. */
function isLive(instance: Instance): boolean {
  return instance.phase === 'running' || instance.phase === 'pending';
}

function gateFromConfig(config: Record<string, string>): GateState {
  const flag = (config[MAINTENANCE_KEY] ?? '').trim().toLowerCase();
  return {
    closed: flag === 'true' || flag === '1' || flag === 'yes' || flag === 'on',
    message: config[MAINTENANCE_MESSAGE_KEY] || undefined,
    startsAt: config[MAINTENANCE_STARTS_KEY] || undefined,
  };
}

const EXTENSIONS: Record<DiagnosticKind, string> = {
  'cpu-profile': 'cpuprofile',
  'heap-snapshot': 'heapsnapshot',
  'stack-dump': 'report.json',
};

/**
 * Writes a diagnostic to `<dir>/<instance>-<time>.<ext>` through a temporary file, hashing as it goes;
 * on any failure (a cut stream, a full disk) the partial file is removed and nothing is left behind.
 */
export async function storeArtefact(
  dir: string,
  instance: string,
  kind: DiagnosticKind,
  source: Readable,
  clock: Clock,
): Promise<Artefact> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const createdAt = clock.now().toISOString();
  const safeName = instance.replace(/[^A-Za-z0-9._-]/g, '_');
  const path = join(dir, `${safeName}-${createdAt.replace(/[:.]/g, '-')}.${EXTENSIONS[kind]}`);
  const temp = join(dir, `.${randomUUID()}.partial`);
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(temp, { mode: 0o600, flags: 'wx' }));
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw new UnavailableError(`storing the ${kind} of ${instance} failed: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return { instance, kind, path, bytes, sha256: hash.digest('hex'), createdAt };
}
