/**
 * The player-minutes a maintenance window costs (issue #7: shown by `maintenance plan --dry-run`): the
 * players expected online during the window × its planned minutes. The same hours a week earlier are the
 * best predictor (players follow the week), so last week's average is used when it is known: from
 * Prometheus (`sum(game_players_connected)` over the same span 7 days earlier) when configured, else
 * from the daily checks recorded near that time (the `game` check's players online, within ±1 h); else
 * the players online now. A source that cannot answer is a note, never an error.
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

export interface EstimateSources {
  /** Players online now (the fleet's `status().totals.playersOnline`); absent when no platform is configured. */
  currentPlayers?: (() => Promise<number>) | undefined;
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
      currentPlayers = await sources.currentPlayers();
    } catch (err) {
      notes.push(`players online now unknown: ${errorMessage(err)}`);
    }
  } else {
    notes.push('players online now unknown: no platform is configured');
  }

  let lastWeekPlayers: number | undefined;
  let lastWeekSource: PlayerMinutesEstimate['lastWeekSource'];
  const from = new Date(span.startsAt.getTime() - WEEK_MS);
  const to = new Date(span.endsAt.getTime() - WEEK_MS);
  if (sources.prometheus) {
    try {
      const stepSeconds = Math.max(60, Math.ceil((to.getTime() - from.getTime()) / 1000 / MAX_POINTS));
      const { series } = await sources.prometheus.range(
        PLAYERS_QUERY,
        { start: from, end: to, stepSeconds },
        { timeoutMs },
      );
      const values = series.flatMap((s) => s.values.map(([, v]) => v)).filter((v): v is number => v !== null);
      if (values.length > 0) {
        lastWeekPlayers = Math.round(values.reduce((a, b) => a + b, 0) / values.length);
        lastWeekSource = 'prometheus';
      } else {
        notes.push(
          `Prometheus (${sources.prometheus.target}) has no game_players_connected for the same span last week`,
        );
      }
    } catch (err) {
      notes.push(`Prometheus could not be asked for last week's players: ${errorMessage(err)}`);
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
        notes.push('no daily check recorded players online within an hour of the same time last week');
      }
    } catch (err) {
      notes.push(`recorded daily checks could not be read: ${errorMessage(err)}`);
    }
  }

  const players = lastWeekPlayers ?? currentPlayers ?? 0;
  const playerMinutes = Math.round(players * durationMinutes);
  const basis =
    lastWeekPlayers !== undefined
      ? `same hours last week, ${lastWeekSource === 'prometheus' ? 'Prometheus' : 'daily checks'}`
      : currentPlayers !== undefined
        ? 'players online now; no history for the same hours last week'
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
