import { z } from 'zod';
import { CHECK_NAMES } from '../../checks/index.ts';
import { defineRunbook } from '../compile.ts';
import type { RunbookInput } from '../input.ts';

/**
 * The daily health check of runbook §1.1 as a runbook: every check of `gameops check daily` as a check step,
 * all at once, then one recorded check run (the same history and deltas as the CLI's). A check that fails
 * or cannot measure does not stop the others, nor the recording.
 */
export function dailyCheckRunbook(): RunbookInput {
  return defineRunbook({
    name: 'daily-check',
    version: '1',
    title: 'Daily health check',
    description:
      'Runbook §1.1: database, Redis, disk, alerts, fleet, error logs and game servers checked at once, ' +
      'with deltas against the last recorded run; the results are recorded as one check run ' +
      '(`gameops check daily` shows the same history). Reads only, except for recording the results.',
    runBy: ['responder'],
    tags: ['daily', 'check', 'read-only'],
    params: z.object({}),
    steps: [
      {
        id: 'checks',
        title: 'Daily checks',
        parallel: CHECK_NAMES.map((name) => ({
          id: name,
          title: `${name} check`,
          check: `daily.${name}`,
          onFailure: 'continue' as const,
        })),
      },
      {
        id: 'record',
        title: 'Record the check run',
        action: 'daily.record',
        args: {
          runId: '${{ run.id }}',
          results: CHECK_NAMES.map((name) => `\${{ steps.checks.${name}.output }}`),
        },
      },
    ],
  });
}
