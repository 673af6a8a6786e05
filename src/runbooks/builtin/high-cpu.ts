import { z } from 'zod';
import { defineRunbook } from '../compile.ts';
import type { RunbookInput } from '../input.ts';

/**
 * Runbook §3.1, high server CPU: what burns (instances ranked by CPU), why (a CPU profile of the hottest
 * instance and a stack dump, kept as artefacts), what the autoscaler is doing, then an approval-gated
 * scale-up to an exact replica count worked out before the approval, and a wait until the hottest
 * instance's CPU is under the target.
 */
export function highCpuRunbook(): RunbookInput {
  return defineRunbook({
    name: 'high-cpu',
    version: '1',
    title: 'High server CPU',
    description:
      'Runbook §3.1: instances ranked by CPU; a CPU profile (artefact) and a stack dump of the hottest; ' +
      'autoscaler status; an approval-gated scale-up (operator, 30 min) to `replicas` (default: ' +
      'runbooks.highCpu.scaleUpTo, else current + 50 %, at least +1); then waits up to 10 minutes for the ' +
      'hottest instance to be under `cpuTargetPercent` (default runbooks.highCpu.cpuTargetPercent).',
    runBy: ['responder'],
    tags: ['troubleshooting', 'cpu', 'fleet'],
    params: z.object({
      profileSeconds: z
        .number()
        .int()
        .min(1)
        .max(60)
        .nullable()
        .default(null)
        .describe('How long the hottest instance is profiled (default: runbooks.highCpu.profileSeconds).'),
      replicas: z
        .number()
        .int()
        .min(1)
        .max(1000)
        .nullable()
        .default(null)
        .describe('Replicas to scale up to (default: runbooks.highCpu.scaleUpTo, else current + 50 %).'),
      cpuTargetPercent: z
        .number()
        .min(1)
        .max(100)
        .nullable()
        .default(null)
        .describe('CPU (% of one core) the hottest instance must come under (default: runbooks.highCpu).'),
    }),
    steps: [
      {
        id: 'usage',
        title: 'Instances ranked by CPU',
        action: 'fleet.usage',
        args: { top: 10, atLeast: 1 },
      },
      {
        id: 'profile',
        title: 'CPU profile of the hottest instance',
        action: 'fleet.diagnostics',
        args: {
          instance: '${{ steps.usage.output.hottest.name }}',
          kind: 'cpu-profile',
          seconds: '${{ params.profileSeconds }}',
        },
      },
      {
        id: 'stack',
        title: 'Stack dump of the hottest instance',
        action: 'fleet.diagnostics',
        args: { instance: '${{ steps.usage.output.hottest.name }}', kind: 'stack-dump' },
      },
      { id: 'autoscaler', title: 'Autoscaler status', action: 'fleet.autoscaler' },
      {
        id: 'plan',
        title: 'Replicas to scale up to',
        action: 'fleet.plan-scale',
        args: { replicas: '${{ params.replicas }}' },
      },
      {
        id: 'approve',
        title: 'Approve the scale-up',
        when: { value: '${{ steps.plan.output.scaleUp }}', op: 'truthy' },
        approval: {
          covers: ['scale'],
          approvers: ['operator'],
          expiresIn: '30m',
          message:
            'Scale the fleet up to ${{ steps.plan.output.replicas }} replicas (now ${{ steps.plan.output.current }}); ' +
            'the hottest instance was ${{ steps.usage.output.hottest.name }} at ${{ steps.usage.output.hottest.cpuPercent }} % CPU.',
        },
      },
      {
        id: 'scale',
        title: 'Scale up',
        when: { value: '${{ steps.plan.output.scaleUp }}', op: 'truthy' },
        action: 'fleet.scale',
        args: { replicas: '${{ steps.plan.output.replicas }}' },
      },
      {
        id: 'cpu-down',
        title: 'Wait for CPU to come down',
        needs: ['scale'],
        timeout: '10m',
        wait: {
          interval: '15s',
          until: {
            check: 'fleet.cpu',
            args: { targetPercent: '${{ params.cpuTargetPercent }}' },
            assert: [
              {
                value: '${{ steps.cpu-down.output.hottestPercent }}',
                op: 'lt',
                to: '${{ steps.cpu-down.output.targetPercent }}',
                message:
                  'the hottest instance (${{ steps.cpu-down.output.hottest }}) is at ${{ steps.cpu-down.output.hottestPercent }} % CPU, not under ${{ steps.cpu-down.output.targetPercent }} %',
              },
            ],
          },
        },
      },
    ],
  });
}
