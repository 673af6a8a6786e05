import { performance } from 'node:perf_hooks';
import { errorMessage, sleep, UnavailableError } from '../core/index.ts';
import type { MaintenanceService } from '../maintenance/service.ts';
import type { HoldOff } from '../schedules/scheduler.ts';
import type { ResolvedSchedule } from '../schedules/resolve.ts';
import { openOnce, type Resources } from './bootstrap.ts';
import { openFleet } from './fleet.ts';
import { openRunbooks } from './runbooks.ts';

/**
 * Planned maintenance (issue #7) of this process: one MaintenanceService per resources bag, opened on first
 * use over the process's store, the runbook engine (the `maintenance` runbook), the fleet (players online,
 * in-game notices) when a platform is configured, the notification channels and Prometheus (the estimate's
 * history) when configured. The server's loop ({@link workMaintenance}) ticks it; the CLI and the API plan,
 * list and cancel through it.
 */
const services = new WeakMap<Resources, Promise<MaintenanceService>>();

/** A window still active after its planned end (its run going on, held) holds off this long at a time. */
const HOLD_OFF_RECHECK_MS = 60_000;

/** How often serve's maintenance loop ticks (notices are due to the minute; runs start to the second). */
export const MAINTENANCE_TICK_MS = 1_000;

/**
 * The maintenance service of these resources, opened on first use.
 * @throws UnavailableError when there is no store (windows live there).
 */
export async function openMaintenance(resources: Resources): Promise<MaintenanceService> {
  return openOnce(services, resources, createFor);
}

async function createFor(resources: Resources): Promise<MaintenanceService> {
  const { config, clock, log } = resources;
  const store = resources.store;
  if (!store)
    throw new UnavailableError(
      `maintenance windows need the store and it is not open: ${resources.storeProblem ?? 'no config file was found (see --config)'}`,
    );
  const [{ createMaintenanceService }, { createNotifier }, prometheusModule] = await Promise.all([
    import('../maintenance/service.ts'),
    import('../runbooks/actions/notify.ts'),
    config.prometheus ? import('../connectors/prometheus.ts') : Promise.resolve(undefined),
  ]);
  const runs = await openRunbooks(resources);
  return createMaintenanceService({
    config,
    store,
    clock,
    runs,
    ...(config.platform ? { fleet: () => openFleet(resources) } : {}),
    notifier: createNotifier(config, { clock }),
    ...(config.prometheus && prometheusModule
      ? { prometheus: prometheusModule.createPrometheusClient(config.prometheus) }
      : {}),
    log: log.child({ component: 'maintenance' }),
  });
}

/**
 * The scheduler's hold-off (`maintenance.holdOff`): a schedule whose runbook is listed waits while a
 * maintenance window is active (from `leadTime` before its start; while its run goes on past the planned
 * end; while it is held), until its end, or a minute on when the end has passed and it is still active
 * (asked again then).
 */
export function maintenanceHoldOff(
  resources: Resources,
): (schedule: ResolvedSchedule, now: Date) => Promise<HoldOff | undefined> {
  const held = new Set(resources.config.maintenance.holdOff);
  return async (schedule, now) => {
    if (!held.has(schedule.runbook)) return undefined;
    const window = await (await openMaintenance(resources)).activeWindow(now);
    if (!window) return undefined;
    const until = Math.max(Date.parse(window.endsAt), now.getTime() + HOLD_OFF_RECHECK_MS);
    return {
      until: new Date(until),
      reason: `maintenance window ${window.id}${window.state === 'scheduled' ? '' : ` (${window.state})`}`,
    };
  };
}

/**
 * Serve's maintenance loop until `signal` aborts: `tick(clock.now())` about every second, never two at
 * once, stopping promptly on abort. Never throws: a service that cannot be opened is logged (the API
 * answers the same error).
 */
export async function workMaintenance(
  resources: Resources,
  signal: AbortSignal,
  options: { everyMs?: number } = {},
): Promise<void> {
  const everyMs = options.everyMs ?? MAINTENANCE_TICK_MS;
  let service: MaintenanceService;
  try {
    service = await openMaintenance(resources);
  } catch (err) {
    resources.log.error({ err: errorMessage(err) }, 'maintenance windows not followed (notices, runs)');
    return;
  }
  resources.log.info({ everyMs }, 'maintenance loop started');
  while (!signal.aborted) {
    const started = performance.now();
    // tick isolates each window and never throws.
    await service.tick(resources.clock.now());
    await sleep(Math.max(0, everyMs - (performance.now() - started)), signal);
  }
}
