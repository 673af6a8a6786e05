/**
 * MySQL/MariaDB actions of the slow-queries runbook (§3.3). All read-only but one: `mysql.kill-query`,
 * destructive, which kills a statement only if the thread still runs the very statement it was approved
 * for. Connections use the configured `mysql` section (the password never on a command line) and are
 * closed after each action.
 */
import { z } from 'zod';
import type { GameopsConfig } from '../../config/index.ts';
import { mysqlTarget } from '../../connectors/mysql.ts';
import {
  isLocalDatabase,
  killQuery,
  longQueries,
  openTablesInUse,
  processById,
  slowLogTop,
  stillRunning,
  zeroCardinalityIndexes,
  type KillOutcome,
} from '../../connectors/mysql-ops.ts';
import { NotFoundError } from '../../core/index.ts';
import type { ActionDefinition } from '../model.ts';
import { maybeServices, servicesOf } from './services.ts';

/** `MySQL/MariaDB at db:3306`, from the config. */
export function mysqlServer(config: GameopsConfig | undefined): string {
  return config?.mysql ? `MySQL/MariaDB at ${mysqlTarget(config.mysql)}` : 'MySQL/MariaDB (not configured)';
}

function server(services: unknown): string {
  return mysqlServer(maybeServices(services)?.config);
}

function schemaName(services: unknown, given: string | undefined): string {
  return given ?? maybeServices(services)?.config.mysql?.database ?? 'gamedb';
}

const longArgs = z.strictObject({
  minSeconds: z
    .number()
    .int()
    .min(0)
    .max(86_400)
    .nullable()
    .optional()
    .describe('Running at least this long (default or null: runbooks.slowQueries.minSeconds).'),
});

const longQueriesAction: ActionDefinition<z.infer<typeof longArgs>> = {
  name: 'mysql.long-queries',
  description:
    'Client statements running at least minSeconds: id, user, host, db, time, state and the first 100 characters (our own connection and server threads left out).',
  effect: 'read-only',
  idempotent: true,
  args: longArgs,
  target: (_args, services) => `process list of ${server(services)}`,
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const minSeconds = args.minSeconds ?? services.config.runbooks.slowQueries.minSeconds;
    return services.mysql(ctx.signal, async (client) => {
      const [queries, processPrivilege] = await Promise.all([
        longQueries(client, minSeconds, { signal: ctx.signal }),
        client.hasProcessPrivilege({ signal: ctx.signal }),
      ]);
      ctx.log(`${queries.length} statement(s) running ${minSeconds} s or longer`);
      return {
        minSeconds,
        count: queries.length,
        queries,
        ...(processPrivilege === false
          ? { note: 'the configured user lacks the PROCESS privilege: only its own threads are visible' }
          : {}),
      };
    });
  },
};

const processArgs = z.strictObject({ id: z.number().int().positive() });

const processAction: ActionDefinition<z.infer<typeof processArgs>> = {
  name: 'mysql.process',
  description:
    'The statement one thread runs now (user, time, first 100 characters, sha256 of the full text): what an approval of mysql.kill-query binds to.',
  effect: 'read-only',
  idempotent: true,
  args: processArgs,
  target: (args, services) => `thread ${args.id} of ${server(services)}`,
  async run(args, ctx) {
    return servicesOf(ctx).mysql(ctx.signal, async (client) => {
      const found = await processById(client, args.id, { signal: ctx.signal });
      if (!found) throw new NotFoundError(`thread ${args.id} of ${client.target} is running no statement`);
      const { fullStatement: _full, queryId: _queryId, ...shown } = found;
      return shown;
    });
  },
};

const slowLogArgs = z.strictObject({
  limit: z.number().int().min(1).max(100).default(20),
});

const slowLogAction: ActionDefinition<z.infer<typeof slowLogArgs>> = {
  name: 'mysql.slow-log-top',
  description:
    "The slow log's top statements by total time (literals folded), from mysql.slow_log when log_output includes TABLE, else from the slow log file when readable here; says which.",
  effect: 'read-only',
  idempotent: true,
  args: slowLogArgs,
  target: (_args, services) => `slow log of ${server(services)}`,
  async run(args, ctx) {
    return servicesOf(ctx).mysql(ctx.signal, async (client, config) => {
      const top = await slowLogTop(client, {
        limit: args.limit,
        local: isLocalDatabase(config),
        signal: ctx.signal,
      });
      ctx.log(
        `slow log source: ${top.source}${top.file ? ` (${top.file})` : ''}; ${top.entries} entries, ${top.top.length} statement shapes${top.note ? `; ${top.note}` : ''}`,
      );
      return top;
    });
  },
};

const schemaArgs = z.strictObject({
  schema: z.string().min(1).max(64).optional().describe('The game schema (default: mysql.database).'),
});

const zeroCardinalityAction: ActionDefinition<z.infer<typeof schemaArgs>> = {
  name: 'mysql.zero-cardinality-indexes',
  description:
    'Indexes of the game schema whose cardinality is 0 or NULL although their table has rows (stale statistics; ANALYZE TABLE).',
  effect: 'read-only',
  idempotent: true,
  args: schemaArgs,
  target: (args, services) => `schema ${schemaName(services, args.schema)} on ${server(services)}`,
  async run(args, ctx) {
    return servicesOf(ctx).mysql(ctx.signal, async (client, config) => {
      const schema = args.schema ?? config.database;
      const indexes = await zeroCardinalityIndexes(client, schema, { signal: ctx.signal });
      ctx.log(`${indexes.length} index(es) with zero or unknown cardinality in ${schema}`);
      return { schema, count: indexes.length, indexes };
    });
  },
};

const openTablesAction: ActionDefinition<Record<string, never>> = {
  name: 'mysql.open-tables-in-use',
  description: 'Tables in use or locked right now (SHOW OPEN TABLES WHERE In_use > 0).',
  effect: 'read-only',
  idempotent: true,
  args: z.strictObject({}),
  target: (_args, services) => `open tables of ${server(services)}`,
  async run(_args, ctx) {
    return servicesOf(ctx).mysql(ctx.signal, async (client) => {
      const tables = await openTablesInUse(client, { signal: ctx.signal });
      ctx.log(`${tables.length} table(s) in use`);
      return { count: tables.length, tables };
    });
  },
};

const killArgs = z
  .strictObject({
    id: z.number().int().positive().describe('The thread (process list) id.'),
    user: z.string().min(1).max(400).describe('The user running it, as the process list shows.'),
    statementDigest: z
      .string()
      .regex(
        /^[0-9a-f]{64}$/i,
        'the sha256 (hex) of the full statement, as mysql.process or mysql.long-queries gives it',
      )
      .optional(),
    statementPrefix: z.string().min(1).max(1000).optional().describe('Or: the beginning of the statement.'),
  })
  .refine((a) => (a.statementDigest === undefined) !== (a.statementPrefix === undefined), {
    message: 'give exactly one of statementDigest and statementPrefix: the statement the kill is meant for',
    path: ['statementDigest'],
  });

type KillArgs = z.infer<typeof killArgs>;

const killAction: ActionDefinition<KillArgs, KillOutcome> = {
  name: 'mysql.kill-query',
  description:
    'KILL QUERY of one thread, only if it still runs the same statement by the same user (ids are recycled); the connection stays.',
  effect: 'destructive',
  idempotent: false,
  args: killArgs,
  target: (args, services) =>
    `query on thread ${args.id} (user ${args.user}, statement ${args.statementDigest ? `sha256 ${args.statementDigest.slice(0, 16)}…` : `"${args.statementPrefix!.slice(0, 40)}…"`}) of ${server(services)}`,
  async run(args, ctx) {
    return servicesOf(ctx).mysql(ctx.signal, async (client) => {
      const outcome = await killQuery(client, expectation(args), { signal: ctx.signal });
      switch (outcome.outcome) {
        case 'killed':
          ctx.log(
            `${outcome.method}: ${outcome.confirmed ? 'the statement is gone' : 'sent, but the statement was still running 3 s later'}`,
          );
          break;
        case 'not-running':
          ctx.log(`thread ${args.id} runs no statement any more: nothing killed`);
          break;
        case 'different-statement':
          ctx.log(
            `thread ${args.id} now runs something else (${outcome.differs.join(' and ')} differ): nothing killed`,
          );
          break;
      }
      return outcome;
    });
  },
  async verify(args, ctx) {
    const running = await servicesOf(ctx).mysql(ctx.signal, (client) =>
      stillRunning(client, expectation(args), { signal: ctx.signal }),
    );
    return running ? 'not-done' : 'done';
  },
};

function expectation(args: KillArgs) {
  return {
    id: args.id,
    user: args.user,
    ...(args.statementDigest !== undefined ? { statementDigest: args.statementDigest } : {}),
    ...(args.statementPrefix !== undefined ? { statementPrefix: args.statementPrefix } : {}),
  };
}

/** The MySQL actions. */
export const mysqlActions: ActionDefinition[] = [
  longQueriesAction,
  processAction,
  slowLogAction,
  zeroCardinalityAction,
  openTablesAction,
  killAction,
];
