/**
 * The player-minutes a maintenance window costs (issue #7: shown by `maintenance plan --dry-run`): the
 * players expected online during the window × its planned minutes. The same hours of the latest past
 * week are the best predictor (players follow the week): the span moved back by whole weeks until it is
 * over (a window 10 days ahead looks 14 days back, never at a "last week" still to come). Its average is
 * used when it is known: from Prometheus (`sum(game_players_connected{<maintenance.playersSelector>})`)
 * when configured, else from the daily checks recorded near that time (the `game` check's players online,
 * within ±1 h); else the players online now. A source that cannot answer is a note, never an error; so is
 * a fleet where some game servers did not answer (their players are not counted), and one where none did
 * (players online now unknown, not 0).
 */
import { errorMessage } from '../core/index.ts';
import type { PrometheusClient } from '../connectors/prometheus.ts';
import type { CheckRunRepo, RunScope } from '../store/index.ts';
import type { PlayerMinutesEstimate } from './types.ts';

const WEEK_MS = 7 * 86_400_000;
const HOUR_MS = 3_600_000;
/** Points asked of Prometheus for last week's span (one per minute for windows up to 4 hours). */
const MAX_POINTS = 240;
/** The daily checks read around the time a week earlier. */
const CHECK_RUNS_LIMIT = 50;

/** The metric the reference game server exports (docs/game-server-contract.md). */
export const PLAYERS_QUERY = 'sum(game_players_connected)';

/** The query summed: every series of the metric, or those `selector` (label matchers) picks. */
export function playersQuery(selector = ''): string {
  return selector.trim() === '' ? PLAYERS_QUERY : `sum(game_players_connected{${selector.trim()}})`;
}

/** The fleet's answer about players online now (`status().totals`). */
export interface CurrentPlayers {
  players: number;
  /** Game servers asked that did not answer (their players are not counted). */
  notAnswering?: number | undefined;
  instances?: number | undefined;
}

/** How many whole weeks back the span is moved: the latest week whose span is over at `now`. */
export function weeksBack(startsAt: Date, endsAt: Date, now: Date): number {
  const over = Math.ceil((endsAt.getTime() - now.getTime()) / WEEK_MS);
  return Math.max(1, over);
}

export interface EstimateSources {
  /** Players online now (the fleet's `status().totals`); absent when no platform is configured. */
  currentPlayers?: (() => Promise<CurrentPlayers | number>) | undefined;
  /** Label matchers of game_players_connected (maintenance.playersSelector). */
  playersSelector?: string | undefined;
  /** Now (the injected clock): the week looked at is the latest past one. */
  now: Date;
  prometheus?: Pick<PrometheusClient, 'range' | 'target'> | undefined;
  checkRuns?: Pick<CheckRunRepo, 'list'> | undefined;
  scope: RunScope;
  /** Bounds each source's question. @default 5000 */
  timeoutMs?: number;
}

/** Estimates the player-minutes lost by a window of `[startsAt, endsAt)`. Never throws. */
export async function estimatePlayerMinutes(
  sources: EstimateSources,
  span: { startsAt: Date; endsAt: Date },
): Promise<PlayerMinutesEstimate> {
  const notes: string[] = [];
  const timeoutMs = sources.timeoutMs ?? 5000;
  const durationMinutes = Math.max(0, Math.round((span.endsAt.getTime() - span.startsAt.getTime()) / 60_000));

  let currentPlayers: number | undefined;
  if (sources.currentPlayers) {
    try {
      const answer = await sources.currentPlayers();
      const now = typeof answer === 'number' ? { players: answer } : answer;
      const silent = now.notAnswering ?? 0;
      if (now.instances !== undefined && now.instances > 0 && silent >= now.instances)
        notes.push(`players online now unknown: none of the ${now.instances} game server(s) answered`);
      else if (now.instances === 0) notes.push('players online now unknown: no game server is running');
      else {
        currentPlayers = now.players;
        if (silent > 0)
          notes.push(
            `players online now: ${silent} of ${now.instances ?? '?'} game server(s) did not answer; their players are not counted`,
          );
      }
    } catch (err) {
      notes.push(`players online now unknown: ${errorMessage(err)}`);
    }
  } else {
    notes.push('players online now unknown: no platform is configured');
  }

  let lastWeekPlayers: number | undefined;
  let lastWeekSource: PlayerMinutesEstimate['lastWeekSource'];
  const weeks = weeksBack(span.startsAt, span.endsAt, sources.now);
  const weekText = weeks === 1 ? 'last week' : `${weeks} weeks earlier`;
  const from = new Date(span.startsAt.getTime() - weeks * WEEK_MS);
  const to = new Date(span.endsAt.getTime() - weeks * WEEK_MS);
  const query = playersQuery(sources.playersSelector);
  if (sources.prometheus) {
    try {
      const stepSeconds = Math.max(60, Math.ceil((to.getTime() - from.getTime()) / 1000 / MAX_POINTS));
      const { series } = await sources.prometheus.range(
        query,
        { start: from, end: to, stepSeconds },
        { timeoutMs },
      );
      const values = series.flatMap((s) => s.values.map(([, v]) => v)).filter((v): v is number => v !== null);
      if (values.length > 0) {
        lastWeekPlayers = Math.round(values.reduce((a, b) => a + b, 0) / values.length);
        lastWeekSource = 'prometheus';
      } else {
        notes.push(`Prometheus (${sources.prometheus.target}) has no ${query} for the same span ${weekText}`);
      }
    } catch (err) {
      notes.push(`Prometheus could not be asked for the players ${weekText}: ${errorMessage(err)}`);
    }
  }
  if (lastWeekPlayers === undefined && sources.checkRuns) {
    try {
      const runs = await sources.checkRuns.list({
        ...sources.scope,
        since: new Date(from.getTime() - HOUR_MS),
        until: new Date(from.getTime() + HOUR_MS + 1),
        limit: CHECK_RUNS_LIMIT,
      });
      let best: { players: number; distance: number } | undefined;
      for (const run of runs) {
        const game = run.results.find((r) => r.name === 'game');
        const players = game?.values.playersOnline;
        if (typeof players !== 'number' || !Number.isFinite(players)) continue;
        const distance = Math.abs(Date.parse(run.startedAt) - from.getTime());
        if (distance <= HOUR_MS && (!best || distance < best.distance)) best = { players, distance };
      }
      if (best) {
        lastWeekPlayers = best.players;
        lastWeekSource = 'check-runs';
      } else {
        notes.push(`no daily check recorded players online within an hour of the same time ${weekText}`);
      }
    } catch (err) {
      notes.push(`recorded daily checks could not be read: ${errorMessage(err)}`);
    }
  }

  if (lastWeekSource === 'prometheus') notes.push(`players ${weekText}: ${query}`);
  const players = lastWeekPlayers ?? currentPlayers ?? 0;
  const playerMinutes = Math.round(players * durationMinutes);
  const basis =
    lastWeekPlayers !== undefined
      ? `same hours ${weekText}, ${lastWeekSource === 'prometheus' ? 'Prometheus' : 'daily checks'}`
      : currentPlayers !== undefined
        ? `players online now; no history for the same hours ${weekText}`
        : 'no player count could be read';
  const summary =
    `≈ ${playerMinutes.toLocaleString('en-US')} player-minutes ` +
    `(${players.toLocaleString('en-US')} player${players === 1 ? '' : 's'} × ${durationMinutes} min; ${basis})`;
  return {
    ...(currentPlayers !== undefined ? { currentPlayers } : {}),
    ...(lastWeekPlayers !== undefined ? { lastWeekPlayers, lastWeekSource } : {}),
    players,
    durationMinutes,
    playerMinutes,
    summary,
    notes,
  };
}
