import { performance } from 'node:perf_hooks';
import { errorMessage, sleep, UnavailableError } from '../core/index.ts';
import type { Channels } from '../channels/index.ts';
import type { OncallService } from '../oncall/index.ts';
import type { IncidentService } from '../incidents/index.ts';
import type { AlertService } from '../alerts/index.ts';
import type { Pager } from '../ops/contracts.ts';
import type { Resources } from './bootstrap.ts';
import { openRunbooks } from './runbooks.ts';

/** How often the server's background loop ticks. */
export const OPS_TICK_MS = 1_000;
/** A background duty taking this long is logged (escalations and reminders wait behind it). */
const SLOW_DUTY_MS = 5_000;

/**
 * Incident response of this process (issue #5), wired once per resources bag: the notification channels,
 * on-call paging, incidents and alert intake, each built on the contracts of src/ops/contracts.ts.
 */
export interface Ops {
  channels: Channels;
  oncall: OncallService;
  incidents: IncidentService;
  alerts: AlertService;
  /**
   * One round of every background duty at `now`, in this order: alert intake (pending alerts, reconcile,
   * heartbeats), on-call (deliveries, escalations), incidents (status-update reminders). Each duty is
   * isolated: one that fails is logged and the others still run. Never throws.
   */
  tick: (now: Date) => Promise<void>;
}

/**
 * The incident-response services of these resources, opened on first use and shared by the server's
 * background loop ({@link workOps}), its routes and in-process CLI commands. `shutdown` releases them.
 * The domain modules load on first use, so commands that never touch incidents do not pay for them.
 * @throws UnavailableError when there is no store (every service keeps its state there).
 */
export async function openOps(resources: Resources): Promise<Ops> {
  if (resources.ops) return resources.ops;
  // One set of services per resources bag, even when the first callers arrive together (the loop and
  // the first webhook): they share the opening.
  resources.opsOpening ??= createOps(resources).catch((err: unknown) => {
    resources.opsOpening = undefined;
    throw err;
  });
  return resources.opsOpening;
}

/**
 * Forgets the services of `openOps` (waiting for one being opened). Called by `shutdown` before the
 * store closes; the caller has stopped {@link workOps} through its signal first.
 */
export async function closeOps(resources: Resources): Promise<void> {
  const opening = resources.opsOpening;
  if (opening) await opening.catch(() => undefined);
  resources.ops = undefined;
  resources.opsOpening = undefined;
}

async function createOps(resources: Resources): Promise<Ops> {
  const { config, clock, log } = resources;
  const store = resources.store;
  if (!store)
    throw new UnavailableError(
      `incidents, on-call and alerts need the store and it is not open: ${resources.storeProblem ?? 'no config file was found (see --config)'}`,
    );
  const [channelsModule, oncallModule, incidentsModule, alertsModule, connectors] = await Promise.all([
    import('../channels/index.ts'),
    import('../oncall/index.ts'),
    import('../incidents/index.ts'),
    import('../alerts/index.ts'),
    import('../connectors/index.ts'),
  ]);
  const channels = channelsModule.createChannels(config, {
    clock,
    timeoutMs: config.oncall.delivery.timeout,
  });

  // The domains depend on each other in a cycle (incidents page through oncall; oncall writes page
  // events into incidents and asks alerts for suppression windows; alerts open incidents). Incidents get
  // a pager bound late to the on-call service; everything else is built in dependency order.
  const late: { oncall?: OncallService } = {};
  const pagerOf = (): OncallService => {
    if (!late.oncall)
      throw new UnavailableError('paging is not ready yet (the on-call service is being opened)');
    return late.oncall;
  };
  const pager: Pager = {
    page: (input, actor) => pagerOf().page(input, actor),
    notify: (input) => pagerOf().notify(input),
    acknowledgeIncident: (incidentId, actor) => pagerOf().acknowledgeIncident(incidentId, actor),
    resolveIncident: (incidentId, actor) => pagerOf().resolveIncident(incidentId, actor),
    pagesOf: (incidentId) => pagerOf().pagesOf(incidentId),
  };
  const incidents = incidentsModule.createIncidentService({
    config,
    store,
    clock,
    log: log.child({ component: 'incidents' }),
    pager,
    runs: () => openRunbooks(resources),
  });
  const alerts = alertsModule.createAlertService({
    config,
    store,
    clock,
    log: log.child({ component: 'alerts' }),
    incidents,
    alertmanager: config.alertmanager ? connectors.createAlertmanagerClient(config.alertmanager) : undefined,
  });
  const oncallService = oncallModule.createOncallService({
    config,
    store,
    clock,
    log: log.child({ component: 'oncall' }),
    channels,
    events: incidents,
    suppressions: alerts,
  });
  late.oncall = oncallService;
  const duties: Array<[string, (now: Date) => Promise<void>]> = [
    ['alerts', (now) => alerts.tick(now)],
    ['oncall', (now) => oncallService.tick(now)],
    ['incidents', (now) => incidents.tick(now)],
  ];
  const ops: Ops = {
    channels,
    oncall: oncallService,
    incidents,
    alerts,
    tick: async (now) => {
      for (const [name, duty] of duties) {
        const started = performance.now();
        try {
          await duty(now);
        } catch (err) {
          log.error(
            { duty: name, err: errorMessage(err) },
            `${name} background duty failed; retrying next tick`,
          );
        }
        const tookMs = Math.round(performance.now() - started);
        if (tookMs >= SLOW_DUTY_MS)
          log.warn(
            { duty: name, tookMs },
            `${name} background duty took ${tookMs} ms; later work waits for it`,
          );
        // The store is synchronous on SQLite: let waiting requests (webhooks, acknowledgements) in between.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    },
  };
  resources.ops = ops;
  log.debug('incident response ready');
  return ops;
}

/**
 * The server's incident-response loop until `signal` aborts: `ops.tick(clock.now())` about every second
 * (`everyMs`), never two ticks at once (a slow tick delays the next one instead of overlapping it), and
 * stopping promptly on abort (an unfinished tick is awaited, none is started). Never throws: services
 * that cannot be opened are logged, and the rest of the server goes on (their API answers the same error).
 */
export async function workOps(
  resources: Resources,
  signal: AbortSignal,
  options: { everyMs?: number } = {},
): Promise<void> {
  const everyMs = options.everyMs ?? OPS_TICK_MS;
  let ops: Ops;
  try {
    ops = await openOps(resources);
  } catch (err) {
    resources.log.error(
      { err: errorMessage(err) },
      'incident response not started (alerts, paging, reminders)',
    );
    return;
  }
  resources.log.info({ everyMs }, 'incident response loop started');
  while (!signal.aborted) {
    const started = performance.now();
    try {
      await ops.tick(resources.clock.now());
    } catch (err) {
      // tick isolates its duties; this only catches a broken tick itself.
      resources.log.error({ err: errorMessage(err) }, 'incident response tick failed');
    }
    const elapsed = performance.now() - started;
    await sleep(Math.max(0, everyMs - elapsed), signal);
  }
}
