import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CheckRun, CheckStatus } from '../checks/index.ts';

const STATUS_VALUE: Record<CheckStatus, number> = { skipped: -1, ok: 0, warn: 1, fail: 2, error: 3 };

/** gameops's own Prometheus metrics, on a registry of its own (no module-level singletons). */
export interface Metrics {
  registry: Registry;
  observeCheckRun(run: CheckRun): void;
  observeHttp(method: string, route: string, status: number, seconds: number): void;
}

export function createMetrics(info: {
  version: string;
  service: string;
  environment: string;
  store: string;
}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gameops_' });
  new Gauge({
    name: 'gameops_build_info',
    help: 'Always 1; labels describe this gameops instance.',
    labelNames: ['version', 'service', 'environment', 'store'],
    registers: [registry],
  }).set(info, 1);
  const checkStatus = new Gauge({
    name: 'gameops_check_status',
    help: 'Last status per check: -1 skipped, 0 ok, 1 warn, 2 fail, 3 error.',
    labelNames: ['check'],
    registers: [registry],
  });
  const checkDuration = new Histogram({
    name: 'gameops_check_duration_seconds',
    help: 'Duration of each check.',
    labelNames: ['check'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const runs = new Counter({
    name: 'gameops_check_runs_total',
    help: 'Daily-check runs by overall status.',
    labelNames: ['status'],
    registers: [registry],
  });
  const lastRun = new Gauge({
    name: 'gameops_check_last_run_timestamp_seconds',
    help: 'When the last daily check finished.',
    registers: [registry],
  });
  const http = new Histogram({
    name: 'gameops_http_request_duration_seconds',
    help: 'HTTP API requests by route and status.',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  return {
    registry,
    observeCheckRun(run) {
      runs.inc({ status: run.status });
      lastRun.set(Date.parse(run.finishedAt) / 1000);
      for (const r of run.results) {
        checkStatus.set({ check: r.name }, STATUS_VALUE[r.status]);
        if (r.status !== 'skipped') checkDuration.observe({ check: r.name }, r.durationMs / 1000);
      }
    },
    observeHttp(method, route, status, seconds) {
      http.observe({ method, route, status: String(status) }, seconds);
    },
  };
}
