/** Actions with no dependency: `noop` and `sleep` (for tests, and for pacing a runbook). */
import { z } from 'zod';
import { sleep, UnavailableError } from '../../core/index.ts';
import type { ActionDefinition } from '../model.ts';

const noopArgs = z.strictObject({ message: z.string().max(2000).optional() });

const noopAction: ActionDefinition<z.infer<typeof noopArgs>> = {
  name: 'noop',
  description: 'Does nothing; logs its message, if any.',
  effect: 'read-only',
  idempotent: true,
  args: noopArgs,
  target: () => 'nothing',
  async run(args, ctx) {
    if (args.message !== undefined) ctx.log(args.message);
    return Promise.resolve({ ok: true, ...(args.message !== undefined ? { message: args.message } : {}) });
  },
};

const sleepArgs = z.strictObject({ ms: z.number().int().min(0).max(3_600_000) });

const sleepAction: ActionDefinition<z.infer<typeof sleepArgs>> = {
  name: 'sleep',
  description: 'Waits ms milliseconds (stops at once when the step is cancelled or times out).',
  effect: 'read-only',
  idempotent: true,
  args: sleepArgs,
  target: () => 'nothing',
  async run(args, ctx) {
    const started = performance.now();
    await sleep(args.ms, ctx.signal);
    if (ctx.signal.aborted)
      throw ctx.signal.reason instanceof Error
        ? ctx.signal.reason
        : new UnavailableError(`sleep of ${args.ms} ms interrupted`);
    return { sleptMs: Math.round(performance.now() - started) };
  },
};

/** The generic actions. */
export const genericActions: ActionDefinition[] = [noopAction, sleepAction];
