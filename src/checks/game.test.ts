import { describe, expect, it } from 'vitest';
import { serverFindings } from './game.ts';
import type { GameServerStatus } from './types.ts';

const open: GameServerStatus = {
  version: '1.0.0',
  playersOnline: 12,
  acceptingLogins: true,
  draining: false,
  maintenance: { enabled: false, message: null },
  tickRate: 30,
  tickLagMs: { p50: 1, p99: 5, max: 9 },
};
const closed = (players: number): GameServerStatus => ({
  ...open,
  playersOnline: players,
  acceptingLogins: false,
  maintenance: { enabled: true, message: 'Back at 05:00' },
});

describe('serverFindings (one game server in the game check)', () => {
  it.each([
    ['open and within budget: nothing to say', open, []],
    [
      'in maintenance with nobody on (what maintenance makes): ok',
      closed(0),
      [{ status: 'ok', message: 'in maintenance: 0 players, logins closed (Back at 05:00)' }],
    ],
    [
      'in maintenance with players still on: warns',
      closed(3),
      [{ status: 'warn', message: 'in maintenance with 3 players still on: Back at 05:00' }],
    ],
    [
      'draining in maintenance: warns',
      { ...closed(0), draining: true },
      [{ status: 'warn', message: 'draining' }],
    ],
    [
      'refusing logins without maintenance mode: warns',
      { ...open, playersOnline: 0, acceptingLogins: false },
      [{ status: 'warn', message: 'refusing new logins' }],
    ],
    [
      'tick lag past the budget fails even in maintenance',
      { ...closed(0), tickLagMs: { p50: 1, p99: 40, max: 50 } },
      [{ status: 'fail' }, { status: 'ok' }],
    ],
  ] as const)('%s', (_title, status, expected) => {
    expect(serverFindings('game-0', status, 33)).toMatchObject(expected);
    expect(serverFindings('game-0', status, 33)).toHaveLength(expected.length);
  });
});
