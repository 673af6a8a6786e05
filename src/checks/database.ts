import {
  connectMysql,
  mysqlFlavour,
  mysqlTarget,
  type MysqlClient,
  type MysqlProcess,
  type MysqlQueryOptions,
  type MysqlServerVersion,
} from '../connectors/index.ts';
import { formatDuration, GameopsError } from '../core/index.ts';
import { previousNumber } from './previous.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import { counterDelta, levelFor, percentOf, shortStatement } from './thresholds.ts';
import type { Check, CheckContext, CheckResult, Finding } from './types.ts';

type Outcome = Omit<CheckResult, 'name' | 'durationMs'>;

/** Statements that are client work; replication and scheduler threads (`Connect`, `Slave_SQL`...) run forever. */
const QUERY_COMMANDS = new Set(['Query', 'Execute']);

/**
 * Runbook §1.1 step 2: the game database is reachable; connections against max_connections; slow queries since
 * the last check (counters reset on restart); statements running longer than `longQuerySeconds`. Other users'
 * statements are visible only with the PROCESS privilege: without it the check warns instead of claiming that
 * nothing runs long.
 */
export const databaseCheck: Check = {
  name: 'database',
  configured: (config) => config.mysql !== undefined,
  target: (config) => (config.mysql ? `MySQL/MariaDB at ${mysqlTarget(config.mysql)}` : 'MySQL/MariaDB'),
  async run(ctx) {
    const mysql = ctx.config.mysql;
    if (!mysql) return { status: CheckStatus.skipped, summary: 'not configured', values: {}, findings: [] };
    const timeoutMs = ctx.config.checks.timeout;
    // The server keeps its connection between checks (see KeptConnections).
    const kept = ctx.kept?.take('mysql', mysql, timeoutMs);
    if (kept) {
      try {
        const outcome = await measure(kept, ctx, mysql.user);
        await ctx.kept?.keep('mysql', mysql, timeoutMs, kept);
        return outcome;
      } catch (err) {
        kept.destroy();
        // The check's deadline or the caller's abort: no time is left to try again.
        if (ctx.signal.aborted) throw err;
        // It may have died while idle, unnoticed (server restarted, wait_timeout, network): once more on a
        // new connection, which reports whatever is wrong the way a first connection would.
      }
    }
    let client: MysqlClient;
    try {
      client = await connectMysql(mysql, {
        signal: ctx.signal,
        connectTimeoutMs: Math.min(mysql.connectTimeout, timeoutMs),
      });
    } catch (err) {
      // "Too many connections" is the very condition this check looks for: report it as a failure, not as
      // "could not measure".
      if (err instanceof GameopsError && err.details?.['driverCode'] === 'ER_CON_COUNT_ERROR')
        return tooManyConnections(mysqlTarget(mysql), err.message);
      throw err;
    }
    let outcome: Outcome;
    try {
      outcome = await measure(client, ctx, mysql.user);
    } catch (err) {
      await client.close();
      throw err;
    }
    if (ctx.kept) await ctx.kept.keep('mysql', mysql, timeoutMs, client);
    else await client.close();
    return outcome;
  },
};

async function measure(client: MysqlClient, ctx: CheckContext, user: string): Promise<Outcome> {
  const t = ctx.config.checks.thresholds.database;
  const options = { signal: ctx.signal, timeoutMs: ctx.config.checks.timeout };
  const { version, maxConnections } = await versionAndMaxConnections(client, options);
  const status = await client.globalStatus(options);
  const processes = await client.processlist(options);
  const processPrivilege = await client.hasProcessPrivilege(options);
  const findings: Finding[] = [];

  // Without PROCESS the process list holds the user's own threads only: "no long query" would be a guess.
  if (processPrivilege === false)
    findings.push({
      status: CheckStatus.warn,
      subject: 'privileges',
      message: `user ${user} lacks the PROCESS privilege: only its own queries are visible, long queries of others cannot be seen`,
    });

  const connected = status.threadsConnected;
  const connectionsPercent =
    connected === undefined || !(maxConnections > 0) ? undefined : percentOf(connected, maxConnections);
  if (connectionsPercent !== undefined) {
    const level = levelFor(connectionsPercent, t.connectionsWarnPercent, t.connectionsFailPercent);
    if (level !== CheckStatus.ok)
      findings.push({
        status: level,
        subject: 'connections',
        message: `${connected}/${maxConnections} connections in use (${connectionsPercent} %)`,
        value: connectionsPercent,
        threshold: level === CheckStatus.fail ? t.connectionsFailPercent : t.connectionsWarnPercent,
      });
  }

  const slow =
    status.slowQueries === undefined
      ? undefined
      : counterDelta({
          current: status.slowQueries,
          uptime: status.uptimeSeconds,
          previous: previousNumber(ctx.previous, 'slowQueries'),
          previousUptime: previousNumber(ctx.previous, 'uptimeSeconds'),
          elapsedSeconds: ctx.previousAt
            ? (ctx.clock.now().getTime() - ctx.previousAt.getTime()) / 1000
            : undefined,
        });
  if (slow?.restarted)
    findings.push({
      status: CheckStatus.warn,
      subject: 'server',
      message: `restarted since last check (up ${formatDuration((status.uptimeSeconds ?? 0) * 1000)})`,
      ...(status.uptimeSeconds === undefined ? {} : { value: status.uptimeSeconds }),
    });
  if (slow?.delta !== undefined) {
    const level = levelFor(slow.delta, t.slowQueriesWarn, t.slowQueriesFail);
    if (level !== CheckStatus.ok)
      findings.push({
        status: level,
        subject: 'slow queries',
        message: `${slow.delta} slow ${slow.delta === 1 ? 'query' : 'queries'} since last check`,
        value: slow.delta,
        threshold: level === CheckStatus.fail ? t.slowQueriesFail : t.slowQueriesWarn,
      });
  }

  const long = processes
    .filter((p) => QUERY_COMMANDS.has(p.command) && p.time >= t.longQuerySeconds)
    .sort((a, b) => b.time - a.time);
  const worst = long[0];
  if (long.length > 0) {
    const level = levelFor(long.length, t.longQueriesWarn, t.longQueriesFail);
    if (level !== CheckStatus.ok)
      findings.push({
        status: level,
        subject: 'long queries',
        message: `${long.length} ${long.length === 1 ? 'query' : 'queries'} running over ${t.longQuerySeconds} s`,
        value: long.length,
        threshold: level === CheckStatus.fail ? t.longQueriesFail : t.longQueriesWarn,
      });
    if (worst)
      findings.push({
        status: level,
        subject: `query ${worst.id}`,
        message: `longest: ${worst.user}@${worst.db ?? '-'} running ${worst.time} s: ${shortStatement(worst.info ?? '(no statement)')}`,
        value: worst.time,
        threshold: t.longQuerySeconds,
      });
  }

  const values = {
    target: client.target,
    flavour: version.flavour,
    version: version.version,
    maxConnections: Number.isFinite(maxConnections) ? maxConnections : null,
    threadsConnected: connected ?? null,
    threadsRunning: status.threadsRunning ?? null,
    maxUsedConnections: status.maxUsedConnections ?? null,
    connectionsPercent: connectionsPercent ?? null,
    activeSessions: processes.length,
    // False: activeSessions and longQueries count this user's own threads only. Null: could not be told.
    processPrivilege: processPrivilege ?? null,
    uptimeSeconds: status.uptimeSeconds ?? null,
    slowQueries: status.slowQueries ?? null,
    slowQueriesSinceLastCheck: slow?.delta ?? null,
    slowQueriesBaseline: slow?.baseline ?? true,
    restartedSinceLastCheck: slow?.restarted ?? false,
    longQuerySeconds: t.longQuerySeconds,
    longQueries: long.length,
    longestQuery: worst ? describeQuery(worst) : null,
  };
  return {
    status: worstOf([CheckStatus.ok, ...findings.map((f) => f.status)]),
    summary: summarize(values, version.flavour, shortVersion(version.version)),
    values,
    findings,
  };
}

/**
 * What `serverVersion()` and `globalVariables(['max_connections'])` would say, in one round trip instead of
 * two. max_connections is a global-only variable, so `@@GLOBAL.max_connections` is the value SHOW GLOBAL
 * VARIABLES lists.
 */
async function versionAndMaxConnections(
  client: MysqlClient,
  options: MysqlQueryOptions,
): Promise<{ version: MysqlServerVersion; maxConnections: number }> {
  const rows = await client.query(
    'SELECT VERSION() AS version, @@version_comment AS comment, @@GLOBAL.max_connections AS maxConnections',
    [],
    options,
  );
  const version = String(rows[0]?.['version'] ?? 'unknown');
  const comment = String(rows[0]?.['comment'] ?? '');
  return {
    version: { version, comment, flavour: mysqlFlavour(version, comment) },
    maxConnections: Number(rows[0]?.['maxConnections']),
  };
}

function describeQuery(p: MysqlProcess): Record<string, unknown> {
  return {
    id: p.id,
    user: p.user,
    db: p.db,
    timeSeconds: p.time,
    state: p.state,
    statement: shortStatement(p.info ?? ''),
  };
}

function summarize(
  v: {
    threadsConnected: number | null;
    maxConnections: number | null;
    connectionsPercent: number | null;
    threadsRunning: number | null;
    slowQueries: number | null;
    slowQueriesSinceLastCheck: number | null;
    longQueries: number;
    longQuerySeconds: number;
    longestQuery: Record<string, unknown> | null;
    processPrivilege: boolean | null;
  },
  flavour: string,
  version: string,
): string {
  const parts = [
    `${v.threadsConnected ?? '?'}/${v.maxConnections ?? '?'} connections${v.connectionsPercent === null ? '' : ` (${v.connectionsPercent} %)`}`,
    `${v.threadsRunning ?? '?'} running`,
    v.slowQueriesSinceLastCheck === null
      ? `Slow_queries ${v.slowQueries ?? '?'} (baseline)`
      : `${v.slowQueriesSinceLastCheck} slow since last check`,
    v.longQueries === 0
      ? `no query over ${v.longQuerySeconds} s`
      : `${v.longQueries} over ${v.longQuerySeconds} s (longest ${String(v.longestQuery?.['timeSeconds'])} s, id ${String(v.longestQuery?.['id'])})`,
  ];
  if (v.processPrivilege === false) parts[parts.length - 1] += ' (own queries only: no PROCESS privilege)';
  return `${flavour} ${version}: ${parts.join(', ')}`;
}

/** `10.11.19-MariaDB-0+deb12u1` → `10.11.19`. */
function shortVersion(version: string): string {
  return /^\d+(\.\d+)*/.exec(version)?.[0] ?? version;
}

function tooManyConnections(target: string, message: string): Outcome {
  return {
    status: CheckStatus.fail,
    summary: `MySQL/MariaDB at ${target} refused the check's connection: too many connections (max_connections reached)`,
    values: { target, maxConnectionsReached: true },
    findings: [{ status: CheckStatus.fail, subject: 'connections', message }],
  };
}
