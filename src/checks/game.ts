import { errorMessage, mapLimit, UnavailableError } from '../core/index.ts';
import { requirePlatform } from './fleet.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import type { Check, Finding, GameServerStatus } from './types.ts';

/** Game servers asked at once; a fleet of hundreds is read in a few rounds, never hundreds of sockets. */
const CONCURRENCY = 32;
const MAX_LISTED = 100;

/**
 * Runbook §1.1 (players online) and §7.2 (tick budget): every ready game server's `GET /ops/status`, the
 * players online across the fleet, and tick lag p99 against `game.tickBudgetMs` (warn past 80 % of the
 * budget, fail past it). A server that does not answer is a failure of its own, named.
 */
export const gameCheck: Check = {
  name: 'game',
  configured: (config) => config.platform !== undefined,
  target: (config) => (config.platform ? `game servers on the ${config.platform.kind} platform` : 'game'),
  async run(ctx) {
    const platform = requirePlatform(ctx);
    const reader = ctx.gameStatus;
    if (!reader) throw new UnavailableError('no game-server client was given to the game check');
    const budget = ctx.config.game.tickBudgetMs;
    const instances = (await platform.instances()).filter((i) => i.ready && i.opsUrl !== undefined);
    const answers = await mapLimit(instances, CONCURRENCY, async (i) => {
      try {
        return { name: i.name, status: await reader.status(i.opsUrl!, { signal: ctx.signal }) };
      } catch (err) {
        return { name: i.name, problem: errorMessage(err) };
      }
    });
    const findings: Finding[] = [];
    const rows: Array<{ name: string } & Partial<GameServerStatus> & { problem?: string }> = [];
    let players = 0;
    let worstP99 = 0;
    for (const a of answers) {
      if ('problem' in a) {
        findings.push({ status: CheckStatus.fail, subject: a.name, message: `no answer: ${a.problem}` });
        rows.push({ name: a.name, problem: a.problem });
        continue;
      }
      const s = a.status;
      players += s.playersOnline;
      worstP99 = Math.max(worstP99, s.tickLagMs.p99);
      rows.push({ name: a.name, ...s });
      findings.push(...serverFindings(a.name, s, budget));
    }
    const answered = answers.length - answers.filter((a) => 'problem' in a).length;
    const closed = rows.filter((r) => r.maintenance?.enabled === true).length;
    return {
      status: worstOf([CheckStatus.ok, ...findings.map((f) => f.status)]),
      summary:
        instances.length === 0
          ? 'no ready game servers to ask'
          : `${players} players online on ${answered}/${instances.length} game servers, ` +
            `worst tick lag p99 ${worstP99.toFixed(1)} ms (budget ${budget} ms)` +
            (closed > 0 ? `; ${closed} in maintenance (logins closed)` : ''),
      values: {
        playersOnline: players,
        servers: instances.length,
        answered,
        tickBudgetMs: budget,
        worstTickLagP99Ms: worstP99,
        instances: rows.slice(0, MAX_LISTED),
        listedTruncated: rows.length > MAX_LISTED,
      },
      findings: findings.slice(0, 50),
    };
  },
};

/**
 * What one game server's status says: tick lag against the budget, and whether it takes players. A server
 * in maintenance mode (the traffic gate closed) with nobody on it is what maintenance itself makes, so it
 * is `ok` (the maintenance run's health gate would otherwise always end with warnings); players still on a
 * closed server, a drain, or logins refused without maintenance mode still warn.
 */
export function serverFindings(name: string, s: GameServerStatus, budget: number): Finding[] {
  const findings: Finding[] = [];
  if (s.tickLagMs.p99 >= budget * 0.8)
    findings.push({
      status: s.tickLagMs.p99 >= budget ? CheckStatus.fail : CheckStatus.warn,
      subject: name,
      message: `tick lag p99 ${s.tickLagMs.p99.toFixed(1)} ms against a ${budget} ms budget`,
      value: s.tickLagMs.p99,
      threshold: budget,
    });
  if (s.maintenance.enabled && !s.draining && s.playersOnline === 0)
    findings.push({
      status: CheckStatus.ok,
      subject: name,
      message: `in maintenance: 0 players, logins closed${s.maintenance.message ? ` (${s.maintenance.message})` : ''}`,
    });
  else if (s.maintenance.enabled || s.draining || !s.acceptingLogins)
    findings.push({
      status: CheckStatus.warn,
      subject: name,
      message: s.draining
        ? 'draining'
        : s.maintenance.enabled
          ? `in maintenance with ${s.playersOnline} players still on${s.maintenance.message ? `: ${s.maintenance.message}` : ''}`
          : 'refusing new logins',
    });
  return findings;
}
