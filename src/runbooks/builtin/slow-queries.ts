import { z } from 'zod';
import { defineRunbook } from '../compile.ts';
import type { RunbookInput } from '../input.ts';

const GIVEN = { value: '${{ params.killId }}', op: 'exists' as const };

/**
 * Runbook §3.3, slow database queries: what runs long now, the slow log's top statements, indexes with
 * zero cardinality, tables in use; and, when `killId` is given, an approval-gated (four-eyes by default)
 * `KILL QUERY` bound to the statement that thread runs now, which kills only if it still runs it.
 */
export function slowQueriesRunbook(): RunbookInput {
  return defineRunbook({
    name: 'slow-queries',
    version: '1',
    title: 'Slow database queries',
    description:
      'Runbook §3.3: queries running at least `minSeconds` (default runbooks.slowQueries.minSeconds); the ' +
      "slow log's top 20 by total time (mysql.slow_log or the slow log file); indexes with zero " +
      'cardinality in the game schema; tables in use. With `killId`: the statement that thread runs is ' +
      'read, an operator other than the requester approves killing exactly it (four-eyes), and KILL QUERY runs only if the thread still runs that statement.',
    runBy: ['responder'],
    tags: ['troubleshooting', 'database'],
    params: z.object({
      minSeconds: z
        .number()
        .int()
        .min(0)
        .max(86_400)
        .nullable()
        .default(null)
        .describe('List queries running at least this long (default: runbooks.slowQueries.minSeconds).'),
      killId: z
        .number()
        .int()
        .positive()
        .optional()
        .describe('A process list id whose query is to be killed (after approval).'),
    }),
    steps: [
      {
        id: 'long',
        title: 'Queries running long',
        action: 'mysql.long-queries',
        args: { minSeconds: '${{ params.minSeconds }}' },
      },
      { id: 'slow-log', title: 'Slow log top 20', action: 'mysql.slow-log-top', args: { limit: 20 } },
      {
        id: 'indexes',
        title: 'Indexes with zero cardinality',
        action: 'mysql.zero-cardinality-indexes',
      },
      { id: 'tables', title: 'Tables in use', action: 'mysql.open-tables-in-use' },
      {
        id: 'inspect',
        title: 'The statement to kill',
        when: GIVEN,
        action: 'mysql.process',
        args: { id: '${{ params.killId }}' },
      },
      {
        id: 'approve-kill',
        title: 'Approve the kill',
        when: GIVEN,
        approval: {
          covers: ['kill'],
          approvers: ['operator'],
          fourEyes: true,
          expiresIn: '30m',
          message:
            'Kill the query of thread ${{ params.killId }} (user ${{ steps.inspect.output.user }}, running ' +
            '${{ steps.inspect.output.time }} s): ${{ steps.inspect.output.statement }}',
        },
      },
      {
        id: 'kill',
        title: 'KILL QUERY',
        when: GIVEN,
        action: 'mysql.kill-query',
        args: {
          id: '${{ params.killId }}',
          user: '${{ steps.inspect.output.user }}',
          statementDigest: '${{ steps.inspect.output.statementDigest }}',
        },
      },
    ],
  });
}
