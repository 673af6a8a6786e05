/**
 * The maintenance service against a real local fleet of the reference game server with bots logged in:
 * the estimate counts the players online, and a due notice reaches every player in game (POST /ops/notice)
 * once, however many ticks see it due.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBots, type BotRun } from '../../examples/game-server/bot-runner.ts';
import { writeReferenceFleetConfig, type ReferenceFleetConfig } from '../../test/support/fleet.ts';
import { bootstrap, openFleet, shutdown, type Resources } from '../app/index.ts';
import { openMaintenance } from '../app/maintenance.ts';
import { ManualClock } from '../core/index.ts';
import { destroyFleet } from '../platform/local/test-support.ts';
import type { Actor } from '../runbooks/model.ts';

const alice: Actor = { id: 'local:alice', name: 'alice', role: 'admin', kind: 'local' };

async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
}

describe('maintenance notices on a local reference fleet with players', () => {
  let written: ReferenceFleetConfig;
  let resources: Resources;
  let bots: BotRun | undefined;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    written = await writeReferenceFleetConfig({ prefix: 'mwfleet' });
    resources = await bootstrap({ configPath: written.path, store: 'required', clock, logLevel: 'silent' });
    await (await openFleet(resources)).platform.scale(1);
  });

  afterAll(async () => {
    await bots?.stop();
    if (resources) await shutdown(resources);
    if (written) await destroyFleet(written.dataDir);
  });

  it('estimates from the players online and tells each player once at T-60m', async () => {
    bots = startBots({
      players: 3,
      durationMs: 60_000,
      urls: [`ws://127.0.0.1:${written.basePort}/play`],
      namePrefix: 'mw',
    });
    await until(() => bots!.summary().onlineAtEnd >= 3);
    const service = await openMaintenance(resources);
    const start = new Date(clock.now().getTime() + 30 * 60_000);
    const end = new Date(start.getTime() + 20 * 60_000);
    const planned = await service.plan(
      { startsAt: start.toISOString(), endsAt: end.toISOString(), message: 'Short maintenance' },
      alice,
    );
    expect(planned.estimate).toMatchObject({
      currentPlayers: 3,
      players: 3,
      durationMinutes: 20,
      playerMinutes: 60,
    });

    await Promise.all([service.tick(clock.now()), service.tick(clock.now())]);
    await until(() => (bots!.summary().noticesByKind['announcement'] ?? 0) >= 3);
    expect(bots.summary().noticesByKind).toEqual({ announcement: 3 });
    const { notices } = await service.get(planned.window.id);
    expect(notices).toMatchObject([
      { key: 'T-60m', status: 'sent', detail: { players: { status: 'ok', delivered: 3 } } },
    ]);
  });
});
