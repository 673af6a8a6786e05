import { Command } from 'commander';
import { InputError, parseDuration, systemClock } from '../../core/index.ts';
import type { AuditRecord, AuditVerification, ListAuditOptions } from '../../store/index.ts';
import { ExitCode } from '../exit.ts';
import { table } from '../render.ts';
import { withAdminSession } from './tokens.ts';

interface ListOptions {
  since?: string;
  until?: string;
  actor?: string;
  action?: string;
  target?: string;
  limit?: string;
  json?: boolean;
}

/** `gameops audit list|verify`. */
export function auditCommand(): Command {
  const audit = new Command('audit').description(
    'The audit log: every run transition, approval, token change and config change, hash-chained.',
  );
  audit
    .command('list')
    .description('Audit records, oldest first: the newest --limit that match (operator or admin).')
    .option(
      '--since <when>',
      'records from this time: an ISO date-time, or a duration back from now (24h, 7d)',
    )
    .option('--until <when>', 'records before this time (same forms)')
    .option('--actor <id>', 'records of this actor id, e.g. token:0a1b2c3d4e5f or local:alice')
    .option(
      '--action <action>',
      'this action, or a prefix ending in * or . (run.* and run. both mean every run.… action)',
    )
    .option('--target <target>', 'this target, or a prefix ending in * (run:abc*)')
    .option('--limit <n>', 'at most this many records (1-1000)', '100')
    .option('--json', 'print JSON')
    .action(async (options: ListOptions, command: Command) => {
      const filter = listFilter(options, systemClock.now());
      const records = await withAdminSession(
        command,
        { role: 'operator', what: 'read the audit log' },
        async (session) => {
          if (session.kind === 'remote') {
            const query = new URLSearchParams();
            if (filter.since) query.set('since', filter.since.toISOString());
            if (filter.until) query.set('until', filter.until.toISOString());
            if (filter.actorId) query.set('actor', filter.actorId);
            if (filter.action) query.set('action', filter.action);
            if (filter.target) query.set('target', filter.target);
            query.set('limit', String(filter.limit));
            return (
              (await session.call('GET', `/api/audit?${query.toString()}`)) as { records: AuditRecord[] }
            ).records;
          }
          return session.store.audit.list(filter);
        },
      );
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ records }, null, 2)}\n`);
        return;
      }
      const { AUDIT_COLUMNS, auditRows } = await import('../../audit/index.ts');
      process.stdout.write(
        records.length === 0 ? 'no audit records match\n' : `${table(AUDIT_COLUMNS, auditRows(records))}\n`,
      );
    });

  audit
    .command('verify')
    .description(
      'Walk the whole hash chain; exit 1 naming every edited, deleted, reordered or cut-off record (admin). ' +
        'Prints the head as <seq>:<hash>: keep it outside gameops (a ticket, a chat, another machine) and ' +
        'pass it to a later verify with --expect, which then also catches the newest records deleted ' +
        'together with a rewritten head (undetectable from inside the database alone).',
    )
    .option(
      '--expect <seq:hash>',
      'a head printed by an earlier verify: the chain must still hold that record with that hash, and the head must be at or after it',
    )
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean; expect?: string }, command: Command) => {
      const { parseAuditExpectation } = await import('../../store/index.ts');
      const expect =
        options.expect === undefined ? undefined : parseAuditExpectation(options.expect, '--expect');
      const result = await withAdminSession(
        command,
        { role: 'admin', what: 'verify the audit log' },
        async (session) =>
          session.kind === 'remote'
            ? ((await session.call(
                'POST',
                `/api/audit/verify${expect ? `?expect=${expect.seq}:${expect.hash}` : ''}`,
              )) as AuditVerification)
            : session.store.audit.verify(expect ? { expect } : {}),
      );
      const { renderVerification } = await import('../../audit/index.ts');
      if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else {
        const lines = [renderVerification(result)];
        if (result.expected && result.ok)
          lines.push(`expected record ${result.expected.seq} is in the chain, the head at or after it`);
        if (result.head)
          lines.push(
            `head: ${result.head.seq}:${result.head.hash}`,
            '  keep it outside gameops; later: gameops audit verify --expect <that head>',
          );
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      process.exitCode = result.ok ? ExitCode.ok : ExitCode.warn;
    });
  return audit;
}

/** The options of `audit list` as a store filter; `--since 24h` counts back from `now`. */
export function listFilter(options: ListOptions, now: Date): ListAuditOptions & { limit: number } {
  const limit = Number(options.limit ?? '100');
  if (!/^\d+$/.test(options.limit ?? '100') || limit < 1 || limit > 1000)
    throw new InputError(`--limit: "${options.limit}" is not a whole number from 1 to 1000`);
  return {
    limit,
    ...(options.since === undefined ? {} : { since: when(options.since, '--since', now) }),
    ...(options.until === undefined ? {} : { until: when(options.until, '--until', now) }),
    ...(options.actor === undefined ? {} : { actorId: options.actor }),
    ...(options.action === undefined ? {} : { action: options.action }),
    ...(options.target === undefined ? {} : { target: options.target }),
  };
}

function when(text: string, flag: string, now: Date): Date {
  if (/^\d+(\.\d+)?(ms|s|m|h|d)$/.test(text.trim())) return new Date(now.getTime() - parseDuration(text));
  const ms = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(ms))
    throw new InputError(
      `${flag}: "${text.slice(0, 60)}" is neither an ISO date-time nor a duration such as 24h`,
    );
  return new Date(ms);
}
