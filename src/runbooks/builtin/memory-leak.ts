import { z } from 'zod';
import { defineRunbook } from '../compile.ts';
import type { RunbookInput } from '../input.ts';

/**
 * Runbook §3.2, memory leak: memory per instance and its trend (Prometheus when configured, otherwise
 * sampled), a heap snapshot of the largest instance kept as an artefact, then an approval-gated rolling
 * restart (one instance at a time, each ready before the next) and a check that the fleet is back.
 */
export function memoryLeakRunbook(): RunbookInput {
  return defineRunbook({
    name: 'memory-leak',
    version: '1',
    title: 'Memory leak',
    description:
      'Runbook §3.2: memory per instance and its trend (Prometheus process_resident_memory_bytes when ' +
      'configured, otherwise sampled); a heap snapshot of the largest instance (artefact); an ' +
      'approval-gated rolling restart (operator, 30 min; one instance at a time with readiness waits); ' +
      'then every instance must be ready, and memory is measured again.',
    runBy: ['responder'],
    tags: ['troubleshooting', 'memory', 'fleet'],
    params: z.object({
      windowMinutes: z
        .number()
        .int()
        .min(1)
        .max(10080)
        .default(60)
        .describe('Prometheus: how far back the trend looks.'),
      samples: z.number().int().min(2).max(120).default(5).describe('Without Prometheus: samples taken.'),
      sampleIntervalMs: z
        .number()
        .int()
        .min(0)
        .max(600_000)
        .default(10_000)
        .describe('Without Prometheus: time between samples.'),
      restart: z.boolean().default(true).describe('Ask to restart the fleet (false: diagnose only).'),
    }),
    steps: [
      {
        id: 'usage',
        title: 'Memory per instance',
        action: 'fleet.usage',
        args: { top: 20, atLeast: 1 },
      },
      {
        id: 'trend',
        title: 'Memory trend per instance',
        action: 'fleet.memory-trend',
        args: {
          windowMinutes: '${{ params.windowMinutes }}',
          samples: '${{ params.samples }}',
          intervalMs: '${{ params.sampleIntervalMs }}',
        },
      },
      {
        id: 'heap',
        title: 'Heap snapshot of the largest instance',
        action: 'fleet.diagnostics',
        args: { instance: '${{ steps.usage.output.largest.name }}', kind: 'heap-snapshot' },
      },
      {
        id: 'approve',
        title: 'Approve the rolling restart',
        when: { value: '${{ params.restart }}', op: 'truthy' },
        approval: {
          covers: ['restart'],
          approvers: ['operator'],
          expiresIn: '30m',
          message:
            'Restart every instance, one at a time (each ready before the next). The largest was ' +
            '${{ steps.usage.output.largest.name }} (${{ steps.usage.output.largest.memoryBytes }} bytes); the heap snapshot is ${{ steps.heap.output.path }}.',
        },
      },
      {
        id: 'restart',
        title: 'Rolling restart',
        when: { value: '${{ params.restart }}', op: 'truthy' },
        action: 'fleet.restart',
        args: { maxUnavailable: 1 },
      },
      {
        id: 'ready',
        title: 'Every instance ready again',
        check: 'fleet.ready',
      },
      {
        id: 'after',
        title: 'Memory per instance afterwards',
        action: 'fleet.usage',
        args: { top: 20 },
      },
    ],
  });
}
