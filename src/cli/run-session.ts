import type { Command } from 'commander';
import { errorMessage, sleep, UnavailableError } from '../core/index.ts';
import type { InvalidRunbook, Resources } from '../app/index.ts';
import type { GameopsEnv } from '../config/index.ts';
import type { Actor, RunEvent, RunService, RunView } from '../runbooks/model.ts';
import type { ApiRunService } from './api-client.ts';
import { REMOTE_ACTOR, sessionTarget, withSessionResources } from './session-target.ts';
import { isSettled, isTerminal, type ProgressDisplay } from './run-render.ts';

/**
 * Where run commands run. While `gameops serve` holds the store (its discovery file in the data
 * directory names a live process), or when GAMEOPS_URL is set, commands go to its API with its local
 * admin token or GAMEOPS_TOKEN; the server's worker moves runs on. Otherwise the command opens the store
 * itself and runs the engine in this process as the local admin (or GAMEOPS_TOKEN's actor), moving the
 * run on until it finishes or needs a person. Either way the commands use one RunService.
 */
export interface RunSession {
  service: RunService;
  /** Who we act as in-process; remotely the server decides from the token (this is a placeholder). */
  actor: Actor;
  /** `http://…` of the server, or `in-process`. */
  where: string;
  /** The API client, when remote. */
  api?: ApiRunService;
  /**
   * Moves the run on in this process until it is terminal, needs a person, or `signal` aborts (sleeping
   * while it waits on the clock: a retry backoff, a wait step). Undefined when a server does the work.
   */
  drive?: (runId: string, signal: AbortSignal) => Promise<void>;
  /** The runbook files of runbooks.dir set aside as invalid (this process's or the server's). */
  invalidRunbooks(): Promise<InvalidRunbook[]>;
  resources: Resources;
}

/**
 * Opens the session for one command and always releases it.
 * @throws ConflictError when another process holds the embedded store and no server can be reached.
 */
export async function withRunSession<T>(
  command: Command,
  work: (session: RunSession) => Promise<T>,
): Promise<T> {
  return withSessionResources(command, async (resources, env) => work(await openSession(resources, env)));
}

async function openSession(resources: Resources, env: GameopsEnv): Promise<RunSession> {
  const target = await sessionTarget(resources, env);
  if ('server' in target) {
    const { createApiClient } = await import('./api-client.ts');
    const { url, token } = target.server;
    const api = createApiClient({ url, ...(token ? { token } : {}) });
    return {
      service: api,
      api,
      // The server knows who the token is; RunService calls over HTTP ignore this.
      actor: REMOTE_ACTOR,
      where: api.url,
      invalidRunbooks: () => api.invalidRunbooks(),
      resources,
    };
  }
  const { clock } = resources;
  const { invalidRunbooks, openRunbooks } = await import('../app/index.ts');
  const engine = await openRunbooks(resources);
  return {
    service: engine,
    actor: target.actor,
    where: 'in-process',
    invalidRunbooks: () => invalidRunbooks(resources),
    resources,
    async drive(runId, signal) {
      while (!signal.aborted) {
        const view = await engine.runUntilIdle({ runId, signal });
        if (!view || isSettled(view.status) || signal.aborted) return;
        // Waiting on the clock (a retry backoff, a wait step) or on another worker's lease.
        await sleep(nextDueIn(view, clock.now().getTime()), signal);
      }
    },
  };
}

/** How long until something in the run is due (a retry, a wait's next poll), within 50 ms to 5 s. */
export function nextDueIn(view: RunView, now: number): number {
  let due = Infinity;
  for (const step of view.steps)
    if (step.notBefore !== undefined) {
      const at = Date.parse(step.notBefore);
      if (Number.isFinite(at)) due = Math.min(due, at - now);
    }
  if (!Number.isFinite(due)) return 1000;
  return Math.min(5000, Math.max(50, due));
}

/** Events of a run from `afterSeq` on, live, until `signal` aborts (in-process, over RunService.events). */
async function* pollEvents(
  service: RunService,
  actor: Actor,
  runId: string,
  afterSeq: number,
  signal: AbortSignal,
): AsyncGenerator<RunEvent> {
  let seq = afterSeq;
  while (!signal.aborted) {
    let events: RunEvent[];
    try {
      events = await service.events(runId, seq, actor, { waitMs: 5000, signal });
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
    for (const e of events) {
      seq = Math.max(seq, e.seq);
      yield e;
    }
  }
}

/**
 * Shows a run's events from where `display` is, and (in-process) moves the run on, until the run is
 * terminal, needs a person, or `signal` aborts. Returns the run as it is then.
 */
export async function followRun(
  session: RunSession,
  runId: string,
  display: ProgressDisplay,
  signal: AbortSignal,
): Promise<RunView> {
  const { service, actor } = session;
  const ticker = setInterval(() => display.tick(Date.now()), 1000);
  try {
    if (session.drive) {
      const stop = new AbortController();
      const watchSignal = AbortSignal.any([signal, stop.signal]);
      let driveError: Error | undefined;
      const driving = session
        .drive(runId, signal)
        .catch((err: unknown) => {
          driveError = err instanceof Error ? err : new Error(String(err));
        })
        .finally(() => stop.abort());
      for await (const event of pollEvents(service, actor, runId, display.lastSeq, watchSignal))
        display.event(event);
      await driving;
      // What the engine recorded after the watch stopped.
      for (const event of await service.events(runId, display.lastSeq, actor, { waitMs: 0 }))
        display.event(event);
      display.clear();
      if (driveError !== undefined && !signal.aborted) throw driveError;
      return await service.get(runId, actor);
    }
    const api = session.api;
    if (!api) throw new UnavailableError('no way to follow the run');
    let failures = 0;
    for (;;) {
      try {
        for await (const event of api.stream(runId, display.lastSeq, signal)) {
          failures = 0;
          display.event(event);
          if (
            event.type === 'run' &&
            event.status !== undefined &&
            isSettled(event.status as RunView['status'])
          ) {
            // A person-blocked status in the history may be over already: stop only if it still holds.
            const view = await service.get(runId, actor);
            if (isSettled(view.status) && !isTerminal(view.status)) {
              display.clear();
              return view;
            }
          }
        }
      } catch (err) {
        if (signal.aborted) break;
        failures += 1;
        if (failures >= 5) throw err;
        display.clear();
        process.stderr.write(`gameops: the event stream broke off (${errorMessage(err)}); reconnecting\n`);
        await sleep(500 * failures, signal);
        continue;
      }
      if (signal.aborted) break;
      // The server ends the stream when the run is terminal and everything was sent (or when it stops).
      const view = await service.get(runId, actor);
      if (isSettled(view.status)) {
        display.clear();
        return view;
      }
      failures += 1;
      if (failures >= 5)
        throw new UnavailableError(`the server at ${api.url} keeps closing the event stream of run ${runId}`);
      await sleep(500 * failures, signal);
    }
    display.clear();
    return await service.get(runId, actor);
  } finally {
    clearInterval(ticker);
    display.clear();
  }
}
