/**
 * The db.* actions' contracts without a server: effects, arguments refused before anything runs (names
 * that are not MySQL names, bounds and cutoffs not made by db.plan), the targets an approval binds, and
 * the refusals that need no database (no backups for rotation, a purge rule that is not configured).
 * Against a real MariaDB they are run in src/maintenance/db/db.test.ts and the db-maintenance runbook test.
 */
import { describe, expect, it } from 'vitest';
import { testConfig } from '../../checks/test-support.ts';
import { ManualClock } from '../../core/index.ts';
import { catalogAction, createRunbookServices, resourcesFor, stepContext } from './test-support.ts';

const config = testConfig({ mysql: { host: 'db.internal', port: 3306, user: 'ops', password: 'pw' } });
const services = createRunbookServices(
  resourcesFor(config, { clock: new ManualClock('2026-11-26T12:00:00Z') }),
);

describe('db actions (no server)', () => {
  it('refuse names that are not MySQL names, and bounds or cutoffs db.plan does not make, naming the field', () => {
    const rotate = catalogAction('db.rotate-partitions').args;
    const bad = rotate.safeParse({
      partitions: [{ database: 'gamedb', table: 'game_logs', partition: 'p1`; DROP TABLE x; --' }],
    });
    expect(bad.error?.issues[0]?.path).toEqual(['partitions', 0, 'partition']);
    expect(rotate.safeParse({ partitions: [] }).success).toBe(false);
    const add = catalogAction('db.add-partitions').args;
    const injected = add.safeParse({
      tables: [
        {
          database: 'gamedb',
          table: 'game_logs',
          partitions: [
            {
              name: 'p_2026_12',
              lessThan: "TO_DAYS('2027-01-01')) , PARTITION x VALUES LESS THAN (1",
              until: '2027-01-01T00:00:00.000Z',
            },
          ],
        },
      ],
    });
    expect(injected.error?.issues[0]?.path).toEqual(['tables', 0, 'partitions', 0, 'lessThan']);
    const purge = catalogAction('db.purge').args;
    const cutoff = purge.safeParse({
      rules: [
        {
          database: 'gamedb',
          table: 'player_sessions',
          column: 'last_activity',
          cutoff: "2026-10-27' OR 1=1",
          batchSize: 10,
        },
      ],
    });
    expect(cutoff.error?.issues[0]?.path).toEqual(['rules', 0, 'cutoff']);
    expect(
      catalogAction('db.optimize').args.safeParse({ tables: [{ database: 'gamedb', table: 'a b' }] }).success,
    ).toBe(false);
  });

  it('targets name every table, partition and cutoff (what the approval hash binds)', () => {
    expect(
      catalogAction('db.rotate-partitions').target(
        { partitions: [{ database: 'gamedb', table: 'game_logs', partition: 'p_2025_10' }] },
        services,
      ),
    ).toBe('partitions gamedb.game_logs.p_2025_10 of MySQL/MariaDB at db.internal:3306');
    expect(
      catalogAction('db.purge').target(
        {
          rules: [
            {
              database: 'gamedb',
              table: 'player_sessions',
              column: 'last_activity',
              cutoff: '2026-10-27 12:00:00',
              zone: 'UTC',
              batchSize: 5000,
            },
          ],
        },
        services,
      ),
    ).toBe(
      'rows of gamedb.player_sessions with last_activity < 2026-10-27 12:00:00 UTC of MySQL/MariaDB at db.internal:3306',
    );
    expect(
      catalogAction('db.optimize').target({ tables: [{ database: 'gamedb', table: 'inventory' }] }, services),
    ).toBe('tables gamedb.inventory of MySQL/MariaDB at db.internal:3306');
  });

  it('refuse before connecting: rotation without backups, a table not configured for partitions, a purge not configured', async () => {
    const ctx = stepContext(services);
    const rotate = catalogAction('db.rotate-partitions');
    await expect(
      rotate.run(
        rotate.args.parse({
          partitions: [{ database: 'gamedb', table: 'game_logs', partition: 'p_2025_10' }],
        }),
        ctx,
      ),
    ).rejects.toThrow(/partition rotation needs backups: configured/);
    const add = catalogAction('db.add-partitions');
    await expect(
      add.run(
        add.args.parse({
          tables: [
            {
              database: 'gamedb',
              table: 'game_logs',
              partitions: [
                { name: 'p_2026_12', lessThan: "TO_DAYS('2027-01-01')", until: '2027-01-01T00:00:00.000Z' },
              ],
            },
          ],
        }),
        ctx,
      ),
    ).rejects.toThrow('gamedb.game_logs is not in maintenance.db.partitions');
    const purge = catalogAction('db.purge');
    await expect(
      purge.run(
        purge.args.parse({
          rules: [
            {
              database: 'gamedb',
              table: 'players',
              column: 'created_at',
              cutoff: '2026-01-01 00:00:00',
              batchSize: 10,
            },
          ],
        }),
        ctx,
      ),
    ).rejects.toThrow('gamedb.players.created_at is not a rule of maintenance.db.purge: not purged');
  });
});
