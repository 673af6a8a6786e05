/** Prometheus actions: an instant query and a range query, read-only. */
import { z } from 'zod';
import { alertmanagerTarget } from '../../connectors/alertmanager.ts';
import type { PrometheusClient } from '../../connectors/prometheus.ts';
import { InputError } from '../../core/index.ts';
import type { ActionDefinition, StepContext } from '../model.ts';
import { maybeServices, servicesOf } from './services.ts';

function server(services: unknown): string {
  const config = maybeServices(services)?.config.prometheus;
  return config ? `Prometheus at ${alertmanagerTarget(config)}` : 'Prometheus (not configured)';
}

function client(ctx: StepContext): PrometheusClient {
  const prometheus = servicesOf(ctx).prometheus();
  if (!prometheus)
    throw new InputError('no Prometheus is configured: add a `prometheus:` section (url) to the config');
  return prometheus;
}

const query = z.string().min(1).max(10_000).describe('A PromQL expression.');

const queryArgs = z.strictObject({
  query,
  time: z.iso.datetime({ offset: true }).optional().describe('Evaluation time (default: now).'),
});

const queryAction: ActionDefinition<z.infer<typeof queryArgs>> = {
  name: 'prometheus.query',
  description: 'A PromQL instant query: each series with its labels and value.',
  effect: 'read-only',
  idempotent: true,
  args: queryArgs,
  target: (_args, services) => server(services),
  async run(args, ctx) {
    const result = await client(ctx).query(args.query, {
      signal: ctx.signal,
      time: args.time !== undefined ? new Date(args.time) : ctx.clock.now(),
    });
    ctx.log(`${result.series.length} series`);
    return { ...result, count: result.series.length };
  },
};

const rangeArgs = z.strictObject({
  query,
  windowMs: z
    .number()
    .int()
    .min(1000)
    .max(90 * 86_400_000)
    .default(3_600_000)
    .describe('How far back from now (or from end).'),
  end: z.iso.datetime({ offset: true }).optional().describe('End of the range (default: now).'),
  stepSeconds: z
    .number()
    .positive()
    .max(86_400)
    .optional()
    .describe('Resolution (default: window / 120, at least 15 s).'),
});

const rangeAction: ActionDefinition<z.infer<typeof rangeArgs>> = {
  name: 'prometheus.range',
  description: 'A PromQL range query over a window: each series with its [time, value] points.',
  effect: 'read-only',
  idempotent: true,
  args: rangeArgs,
  target: (_args, services) => server(services),
  async run(args, ctx) {
    const end = args.end !== undefined ? new Date(args.end) : ctx.clock.now();
    const start = new Date(end.getTime() - args.windowMs);
    const stepSeconds = args.stepSeconds ?? Math.max(15, Math.ceil(args.windowMs / 1000 / 120));
    const result = await client(ctx).range(args.query, { start, end, stepSeconds }, { signal: ctx.signal });
    ctx.log(`${result.series.length} series, step ${stepSeconds} s`);
    return {
      ...result,
      count: result.series.length,
      start: start.toISOString(),
      end: end.toISOString(),
      stepSeconds,
    };
  },
};

/** The Prometheus actions. */
export const prometheusActions: ActionDefinition[] = [queryAction, rangeAction];
