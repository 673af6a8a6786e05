import type { Logger } from '../app/log.ts';
import type { GameopsConfig } from '../config/index.ts';
import {
  type Clock,
  InputError,
  NotFoundError,
  UnavailableError,
  errorMessage,
  formatDuration,
  parseDuration,
} from '../core/index.ts';
import type {
  AlertmanagerAlert,
  AlertmanagerClient,
  AlertmanagerSilence,
  SilenceMatcher,
} from '../connectors/alertmanager.ts';
import type { ActiveSuppression, AlertIncidents, AlertRef, Suppressions } from '../ops/contracts.ts';
import type { Actor } from '../runbooks/model.ts';
import type { Store } from '../store/index.ts';
import type {
  AlertStatus,
  BatchOutcome,
  HeartbeatState,
  ListAlertsQuery,
  StoredAlert,
  StoredWindow,
} from '../store/alerts.ts';
import { alertId, sortedJson } from '../store/alerts.ts';
import { OPEN_STATUSES, parseIncidentId } from '../incidents/model.ts';
import { formatMatcher, matchesAll, matcherMatches, parseMatchers, type Matcher } from './matchers.ts';
import {
  alertmanagerAlerts,
  alertmanagerPayloadSchema,
  genericAlert,
  genericPayloadSchema,
  normaliseInstant,
  parsePayload,
} from './payloads.ts';
import { alertRef, compileRoutes, decide } from './routing.ts';
import { activeConfigWindow, compileWindows, nextSpan, spanAt } from './windows.ts';

/** What an intake call stored (answered to the sender), and what follows it. */
export interface IngestResult {
  /** Alerts in the payload. */
  received: number;
  created: number;
  changed: number;
  unchanged: number;
  /**
   * Firing alerts of the group absent from the (complete) snapshot, now resolved (only when no
   * Alertmanager is configured to confirm the absence with).
   */
  resolvedByAbsence: number;
  /** Firing alerts absent from the snapshot, to confirm with Alertmanager (followUp reconciles the group). */
  absent: number;
  /** Alertmanager left alerts out (`truncatedAlerts`): absence was not inferred; the group is reconciled. */
  truncated: number;
  /** For {@link AlertService.followUp}: the group to reconcile against Alertmanager, when truncated. */
  reconcileGroup?: { groupKey: string; groupLabels: Record<string, string>; receiver: string } | undefined;
}

export interface ProcessResult {
  /** Firing alerts that opened or joined an incident. */
  linked: number;
  /** Firing alerts recorded only (route createIncident: false). */
  recorded: number;
  /** Resolved alerts told to their incident. */
  resolved: number;
  /** Alerts that failed (left pending; the next tick retries). */
  failed: number;
}

export interface ReconcileResult {
  /** Alerts Alertmanager has (for a group: matching its labels). */
  alertmanager: number;
  /** Firing in gameops, gone from Alertmanager: now resolved. */
  resolved: number;
  /** Alerts of a truncated group that gameops did not have: now stored. */
  added: number;
}

/** A silence as gameops shows it. */
export interface SilenceView {
  id: string;
  state: string;
  matchers: string[];
  startsAt: string;
  endsAt: string;
  createdBy: string;
  comment: string;
}

export interface CreateSilenceInput {
  /** Alertmanager matchers, e.g. `alertname="GameServerDown"`, `instance=~"eu-.*"`. */
  matchers: string[];
  /** How long from startsAt (`2h`, or ms); or give endsAt. */
  duration?: string | number | undefined;
  endsAt?: string | undefined;
  /** @default now */
  startsAt?: string | undefined;
  comment: string;
}

export interface CreateWindowInput {
  /** @default `adhoc-<start>` */
  name?: string | undefined;
  /** Only pages whose labels match all of these (none: every page). */
  matchers?: string[] | undefined;
  /** @default now */
  startsAt?: string | undefined;
  duration?: string | number | undefined;
  endsAt?: string | undefined;
  comment: string;
}

/** A suppression window as listed: from the config (recurring or one-off) or created ad hoc. */
export interface WindowView {
  id?: string | undefined;
  name: string;
  origin: 'config' | 'adhoc';
  matchers: string[];
  /** Recurring config windows: the cron expression and its time zone. */
  cron?: string | undefined;
  timezone?: string | undefined;
  durationMs: number;
  /** The occurrence in progress or the next one (absent when over). */
  startsAt?: string | undefined;
  endsAt?: string | undefined;
  active: boolean;
  comment?: string | undefined;
  createdBy?: string | undefined;
  endedAt?: string | undefined;
  endedBy?: string | undefined;
}

export interface HeartbeatView {
  name: string;
  description?: string | undefined;
  everyMs: number;
  graceMs: number;
  status: 'up' | 'down' | 'waiting';
  lastPingAt?: string | undefined;
  /** When it is overdue (a page fires) unless pinged. */
  dueAt: string;
  downSince?: string | undefined;
  incidentId?: string | undefined;
  pings: number;
  firstSeenAt: string;
}

/**
 * Alert intake: Alertmanager and generic alerts stored durably before they are answered, then routed into
 * incidents; Alertmanager silences; paging suppression windows; heartbeats. Every background duty is in
 * `tick`, so a crash between storing and processing loses nothing.
 */
export interface AlertService extends Suppressions {
  /**
   * Stores an Alertmanager webhook payload (version 4) in one transaction: upsert by (fingerprint,
   * startsAt); a complete payload is a snapshot of its group. Alertmanager leaves silenced and inhibited
   * alerts out, so with an Alertmanager configured an absence is only counted (`absent`) and confirmed
   * against it in `followUp`; without one, absent firing alerts resolve (a later firing reopens them). A
   * truncated payload is no snapshot (see `followUp`). A re-sent firing alert whose incident is over is
   * made pending again (processing opens or joins a new incident). No incident work happens here.
   * @throws InputError naming the field of a malformed payload (nothing stored).
   * @throws UnavailableError when the store is down (the sender retries).
   */
  ingestAlertmanager: (payload: unknown) => Promise<IngestResult>;
  /**
   * Stores generic alerts (`{alerts: [{name, status?, labels?, annotations?, startsAt?, endsAt?,
   * fingerprint?, summary?}]}`) in one transaction. A fingerprint is computed from name and labels when
   * absent; without startsAt an alert continues the firing instance of its fingerprint.
   * @throws InputError naming the field; UnavailableError when the store is down.
   */
  ingestGeneric: (payload: unknown) => Promise<IngestResult>;
  /**
   * What follows an intake once it is answered: reconciles a truncated group against Alertmanager, then
   * processes pending alerts. Never throws (failures are logged; `tick` retries).
   */
  followUp: (result: IngestResult) => Promise<void>;
  /**
   * Routes pending alerts: a firing alert not yet linked opens or joins its incident (or is recorded only,
   * route createIncident: false); a resolved one tells its incident. One pass at a time per process.
   */
  processPending: () => Promise<ProcessResult>;
  /**
   * Compares firing alerts with Alertmanager (`GET /api/v2/alerts`, silenced and inhibited included),
   * keyed by (fingerprint, startsAt): those it no longer has resolve, except within AM_WARMUP_MS of its
   * start or when it answers nothing while AM_EMPTY_GUARD or more fire. With `group`, only that group
   * (`GET /api/v2/alerts/groups`, the group whose labels and receiver match exactly), and its alerts
   * gameops lacks (left out of a truncated payload) are stored.
   * @throws UnavailableError when no Alertmanager is configured or it cannot be reached.
   */
  reconcile: (group?: IngestResult['reconcileGroup']) => Promise<ReconcileResult>;
  /** Stored alerts, most recently seen first. @throws InputError for a bad filter. */
  list: (query?: ListAlertsQuery) => Promise<StoredAlert[]>;
  /** @throws NotFoundError */
  get: (id: string) => Promise<StoredAlert>;

  /** Alertmanager silences (API v2). */
  silences: {
    /**
     * Creates a silence, createdBy the actor's name.
     * @throws InputError naming the field (matchers, duration, endsAt, comment) before anything is sent.
     * @throws UnavailableError when no Alertmanager is configured or it is down.
     */
    create: (input: CreateSilenceInput, actor: Actor) => Promise<SilenceView>;
    /** Silences Alertmanager has; `state` filters (active, pending, expired). */
    list: (options?: {
      state?: string | undefined;
      matchers?: string[] | undefined;
    }) => Promise<SilenceView[]>;
    /** Expires a silence. @throws NotFoundError for an unknown id. */
    expire: (id: string, actor: Actor) => Promise<void>;
  };

  /** Paging suppression windows (config and ad hoc). */
  windows: {
    /** @throws InputError naming the field. */
    create: (input: CreateWindowInput, actor: Actor) => Promise<WindowView>;
    /** Config windows (current or next occurrence) and ad-hoc windows not over yet (`all`: every one). */
    list: (options?: { all?: boolean | undefined }) => Promise<WindowView[]>;
    /** Ends an ad-hoc window now. @throws NotFoundError (config windows cannot be ended). */
    end: (id: string, actor: Actor) => Promise<WindowView>;
  };

  /** Records a ping; an outage in progress ends (its incident is told). @throws NotFoundError for an unknown name. */
  ping: (name: string) => Promise<HeartbeatView>;
  /**
   * Every configured heartbeat and its state. A heartbeat counts from its last ping, or from when gameops
   * first saw it in the config; after a restart, from the restart at the earliest (pings sent while
   * gameops was down were lost, so they must not page).
   */
  heartbeats: () => Promise<HeartbeatView[]>;
  /**
   * Pending alerts, reconciliation every alerts.reconcileEvery (and at start), heartbeats, and hourly
   * pruning of alerts resolved longer ago than alerts.retention (90 days by default).
   */
  tick: (now: Date) => Promise<void>;
}

export interface AlertServiceDeps {
  config: GameopsConfig;
  store: Store;
  clock: Clock;
  log: Logger;
  incidents: AlertIncidents;
  alertmanager?: AlertmanagerClient | undefined;
}

/** Pending alerts read per processing round. */
const PROCESS_BATCH = 200;
/** Rounds per processing pass (a pass ends earlier when nothing is pending). */
const MAX_ROUNDS = 50;
/**
 * Alerts handled between two yields to the event loop, so webhooks and pings keep being answered: about
 * 1 ms of incident work per alert, so a webhook waits at most ~10 ms behind processing.
 */
const YIELD_EVERY = 10;
const MAX_SILENCE_MS = 365 * 86_400_000;
/** Resolved alerts (and ad-hoc windows that ended) are kept this long, then pruned. */
/** The default of alerts.retention. */
export const ALERT_RETENTION_MS = 90 * 86_400_000;
const PRUNE_EVERY_MS = 3_600_000;
const MAX_WINDOW_MS = 30 * 86_400_000;
/**
 * Reconcile resolves nothing while Alertmanager is younger than this: after a restart without persisted
 * state it learns its alerts again only as Prometheus re-sends them (resend_delay 1m, evaluation intervals,
 * then group_wait 30s by default), so 5 minutes is those with a wide margin.
 */
export const AM_WARMUP_MS = 5 * 60_000;
/** An empty Alertmanager answer never resolves this many firing alerts (or more) at once. */
export const AM_EMPTY_GUARD = 10;

/**
 * The alert intake service.
 * @throws InputError naming `alerts.routes[i].matchers[j]` / `alerts.suppressions[i]…` for a bad config.
 */
export function createAlertService(deps: AlertServiceDeps): AlertService {
  const { config, store, clock, log, incidents, alertmanager } = deps;
  const repo = store.alerts;
  const routes = compileRoutes(config.alerts.routes);
  const configWindows = compileWindows(config.alerts.suppressions);
  const heartbeatConfig = new Map(config.alerts.heartbeats.map((h) => [h.name, h]));
  const scope = { service: config.service.name, environment: config.service.environment };
  let lastReconcile = Number.NEGATIVE_INFINITY;
  let lastPrune = Number.NEGATIVE_INFINITY;
  /**
   * When this process started watching heartbeats (its first tick). Pings sent while gameops was down are
   * lost, so a heartbeat is not overdue before every + grace after this, whatever its last ping.
   */
  let watchingSince: number | undefined;
  /** The instant a heartbeat counts from: its last ping (else its first sighting), not before watchingSince. */
  const countsFrom = (state: HeartbeatState): number =>
    Math.max(Date.parse(state.lastPingAt ?? state.firstSeenAt), watchingSince ?? Number.NEGATIVE_INFINITY);

  let running: Promise<ProcessResult> | undefined;
  /** Generic posts with undated alerts, one at a time. */
  let undatedTurn: Promise<void> = Promise.resolve();
  let again = false;

  function requireAlertmanager(): AlertmanagerClient {
    if (!alertmanager)
      throw new UnavailableError('no Alertmanager is configured (set alertmanager.url in the config)');
    return alertmanager;
  }

  /** Lets webhooks and pings be answered during a long pass. */
  const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  /**
   * Firing alerts of one round, by group: each opens or joins its incident (openOrJoin records it on the
   * timeline once per (fingerprint, startsAt)), and the group's alerts are linked in one UPDATE as soon as
   * the incident id is known, before anything else of the group can fail.
   */
  async function processFiring(alerts: StoredAlert[], result: ProcessResult, failed: Set<string>) {
    const recorded: string[] = [];
    type Decision = ReturnType<typeof decide>;
    const groups = new Map<string, Array<{ alert: StoredAlert; decision: Decision }>>();
    for (const alert of alerts) {
      const decision = decide(alert, routes, config);
      if (!decision.createIncident) {
        recorded.push(alert.id);
        continue;
      }
      const group = groups.get(decision.groupKey);
      if (group) group.push({ alert, decision });
      else groups.set(decision.groupKey, [{ alert, decision }]);
    }
    if (recorded.length > 0) result.recorded += await repo.markProcessedMany(recorded, 'firing', undefined);
    let handled = 0;
    for (const members of groups.values()) {
      const linked = new Map<string, string[]>();
      const link = async () => {
        for (const [incidentId, ids] of linked)
          result.linked += await repo.markProcessedMany(ids, 'firing', incidentId);
        linked.clear();
      };
      try {
        for (const { alert, decision } of members) {
          try {
            const { incidentId } = await incidents.openOrJoin({
              groupKey: decision.groupKey,
              title: decision.title,
              severity: decision.severity,
              service: decision.service,
              policy: decision.policy,
              runbook: decision.runbook,
              alert: alertRef(alert),
            });
            linked.set(incidentId, [...(linked.get(incidentId) ?? []), alert.id]);
            // The first alert of a group links at once: a failure later in the group leaves it linked.
            if (linked.size === 1 && (linked.get(incidentId)?.length ?? 0) === 1) await link();
          } catch (err) {
            failAlert(alert, err, result, failed);
          }
          if (++handled % YIELD_EVERY === 0) {
            await link();
            await yieldToLoop();
          }
        }
      } finally {
        await link();
      }
    }
  }

  /** The open incident of a resolved alert's group, for an alert that resolved before it was linked. */
  async function openIncidentOf(alert: StoredAlert): Promise<string | undefined> {
    const decision = decide(alert, routes, config);
    if (!decision.createIncident) return undefined;
    const open = await store.incidents.byOpenGroup(scope, decision.groupKey);
    return open ? `INC-${open.number}` : undefined;
  }

  /**
   * Resolved alerts of one round: each tells its incident (an alert that resolved before it was linked
   * tells its group's open incident, if any); still-firing counts are read once per incident per round,
   * and the markings are one UPDATE per incident.
   */
  async function processResolved(alerts: StoredAlert[], result: ProcessResult, failed: Set<string>) {
    const stillFiring = new Map<string, number>();
    const told = new Map<string, string[]>();
    const quiet: string[] = [];
    let handled = 0;
    for (const alert of alerts) {
      try {
        const incidentId =
          alert.incidentId ?? (alert.processed === 'firing' ? undefined : await openIncidentOf(alert));
        if (incidentId === undefined) quiet.push(alert.id);
        else {
          let count = stillFiring.get(incidentId);
          if (count === undefined) {
            count = await repo.firingCount(incidentId);
            stillFiring.set(incidentId, count);
          }
          await incidents.alertResolved(incidentId, alertRef(alert), count);
          told.set(incidentId, [...(told.get(incidentId) ?? []), alert.id]);
        }
      } catch (err) {
        failAlert(alert, err, result, failed);
      }
      if (++handled % YIELD_EVERY === 0) await yieldToLoop();
    }
    for (const ids of told.values())
      result.resolved += await repo.markProcessedMany(ids, 'resolved', undefined);
    if (quiet.length > 0) await repo.markProcessedMany(quiet, 'resolved', undefined);
  }

  function failAlert(alert: StoredAlert, err: unknown, result: ProcessResult, failed: Set<string>): void {
    failed.add(alert.id);
    result.failed++;
    log.warn(
      { alert: alert.id, fingerprint: alert.fingerprint, err: errorMessage(err) },
      'alert not processed yet; retrying next tick',
    );
  }

  async function processPass(): Promise<ProcessResult> {
    const result: ProcessResult = { linked: 0, recorded: 0, resolved: 0, failed: 0 };
    const failed = new Set<string>();
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const batch = (await repo.pending(PROCESS_BATCH + failed.size)).filter((a) => !failed.has(a.id));
      if (batch.length === 0) break;
      // Firing before resolved: an incident hears of its alerts before it hears one resolve.
      await processFiring(
        batch.filter((a) => a.status === 'firing'),
        result,
        failed,
      );
      await processResolved(
        batch.filter((a) => a.status === 'resolved'),
        result,
        failed,
      );
      if (batch.length < PROCESS_BATCH) break;
      await yieldToLoop();
    }
    return result;
  }

  async function ingest(
    batch: Parameters<Store['alerts']['upsertBatch']>[0],
    truncated: number,
    reconcileGroup?: IngestResult['reconcileGroup'],
  ): Promise<IngestResult> {
    const { linked, ...outcome }: BatchOutcome = await repo.upsertBatch(batch);
    try {
      await requeueClosed(linked);
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'checking the incidents of re-sent alerts failed');
    }
    return {
      received: batch.alerts.length,
      ...outcome,
      truncated,
      ...(reconcileGroup ? { reconcileGroup } : {}),
    };
  }

  /**
   * A re-sent alert that still fires while its incident is over (resolved by hand) is pending again:
   * processing opens or joins a new incident for it, so a still-firing alert is never dropped.
   */
  async function requeueClosed(linked: Map<string, string[]>): Promise<void> {
    for (const [incidentId, ids] of linked) {
      let number: number;
      try {
        number = parseIncidentId(incidentId);
      } catch {
        continue;
      }
      const incident = await store.incidents.get(scope, number);
      // An incident gameops does not have (another scope) is left alone.
      if (!incident || OPEN_STATUSES.includes(incident.status)) continue;
      const n = await repo.requeue(incidentId, ids);
      if (n > 0)
        log.info({ incident: incidentId, alerts: n }, 'alerts still fire after their incident ended');
    }
  }

  async function heartbeatViews(now: Date): Promise<HeartbeatView[]> {
    const states = await repo.heartbeats([...heartbeatConfig.keys()]);
    return states.map((s) => heartbeatView(s, now));
  }

  function heartbeatView(state: HeartbeatState, now: Date): HeartbeatView {
    const hb = heartbeatConfig.get(state.name);
    const every = hb?.every ?? 0;
    const grace = hb?.grace ?? 0;
    const base = countsFrom(state);
    const due = new Date(base + every + grace);
    const status = state.downSince !== undefined ? 'down' : state.lastPingAt === undefined ? 'waiting' : 'up';
    return {
      name: state.name,
      description: hb?.description,
      everyMs: every,
      graceMs: grace,
      status: status === 'waiting' && due <= now ? 'down' : status,
      lastPingAt: state.lastPingAt,
      dueAt: due.toISOString(),
      downSince: state.downSince,
      incidentId: state.incidentId,
      pings: state.pings,
      firstSeenAt: state.firstSeenAt,
    };
  }

  function heartbeatAlert(name: string, status: AlertStatus, startsAt: string, endsAt?: string): AlertRef {
    const hb = heartbeatConfig.get(name);
    return {
      fingerprint: `heartbeat:${name}`,
      startsAt,
      status,
      endsAt,
      name: 'HeartbeatMissing',
      summary: `Heartbeat ${name} stopped: no ping within ${formatDuration((hb?.every ?? 0) + (hb?.grace ?? 0))}`,
      labels: { alertname: 'HeartbeatMissing', heartbeat: name, source: 'heartbeat' },
    };
  }

  async function openOutage(name: string, since: string): Promise<void> {
    const hb = heartbeatConfig.get(name);
    if (!hb) return;
    const alert = heartbeatAlert(name, 'firing', since);
    const { incidentId } = await incidents.openOrJoin({
      groupKey: `heartbeat:${name}`,
      title: alert.summary ?? `Heartbeat ${name} stopped`,
      severity: hb.severity,
      service: config.service.name,
      policy: hb.policy,
      alert,
    });
    await repo.linkOutage(name, since, incidentId);
  }

  async function closeOutage(state: HeartbeatState): Promise<void> {
    if (state.recoveredSince === undefined) return;
    if (state.recoveredIncidentId !== undefined)
      await incidents.alertResolved(
        state.recoveredIncidentId,
        heartbeatAlert(state.name, 'resolved', state.recoveredSince, state.recoveredAt),
        0,
      );
    await repo.clearRecovered(state.name, state.recoveredSince);
  }

  async function tickHeartbeats(now: Date): Promise<void> {
    watchingSince ??= now.getTime();
    const states = await repo.heartbeats([...heartbeatConfig.keys()]);
    for (const state of states) {
      const hb = heartbeatConfig.get(state.name);
      if (!hb) continue;
      try {
        await closeOutage(state);
        if (state.downSince !== undefined) {
          // Down, but the incident was not opened (a crash in between): open or join it again.
          if (state.incidentId === undefined) await openOutage(state.name, state.downSince);
          continue;
        }
        const due = countsFrom(state) + hb.every + hb.grace;
        if (now.getTime() < due) continue;
        const since = new Date(due).toISOString();
        if (await repo.markDown(state.name, since, state.lastPingAt ?? null)) {
          log.warn({ heartbeat: state.name, since }, 'heartbeat overdue: paging');
          await openOutage(state.name, since);
        }
      } catch (err) {
        log.warn(
          { heartbeat: state.name, err: errorMessage(err) },
          'heartbeat check failed; retrying next tick',
        );
      }
    }
  }

  /**
   * Whether Alertmanager's answer may resolve alerts: not within {@link AM_WARMUP_MS} of its start (after
   * a restart without persisted state it has nothing until Prometheus re-sends), and not an empty answer
   * while gameops has {@link AM_EMPTY_GUARD} or more alerts firing in scope (more likely a reset or a
   * wrong instance than that many alerts ending silently, since each resolve also comes as a payload).
   */
  async function mayResolve(am: AlertmanagerClient, answered: number, firing: number): Promise<boolean> {
    if (firing === 0) return false;
    if (answered === 0 && firing >= AM_EMPTY_GUARD) {
      log.warn({ firing }, 'Alertmanager has no alerts while gameops has many firing: not resolving them');
      return false;
    }
    const started = Date.parse((await am.status()).uptime ?? '');
    if (Number.isNaN(started) || clock.now().getTime() - started < AM_WARMUP_MS) {
      log.warn(
        { started: Number.isNaN(started) ? undefined : new Date(started).toISOString() },
        'Alertmanager started recently (or did not say when): not resolving alerts it lacks yet',
      );
      return false;
    }
    return true;
  }

  async function reconcile(group?: IngestResult['reconcileGroup']): Promise<ReconcileResult> {
    const am = requireAlertmanager();
    // Only alerts last seen before the question was asked may be resolved: one that arrives meanwhile
    // is in Alertmanager already.
    const asked = clock.now().toISOString();
    const query = { active: true, silenced: true, inhibited: true, unprocessed: true };
    let amAlerts: AlertmanagerAlert[];
    if (group) {
      // The group itself (labels and receiver exactly), not every alert matching its labels.
      const groups = await am.alertGroups({
        ...query,
        filter: Object.entries(group.groupLabels).map(([n, v]) =>
          formatMatcher({ name: n, op: '=', value: v }),
        ),
        receiver: `^(?:${escapeRegex(group.receiver)})$`,
      });
      const wanted = sortedJson(group.groupLabels);
      amAlerts = groups
        .filter((g) => g.receiver.name === group.receiver && sortedJson(g.labels) === wanted)
        .flatMap((g) => g.alerts);
    } else amAlerts = await am.alerts(query);
    // Keyed by (fingerprint, startsAt): a new instance of a fingerprint is not the stored one.
    const present = new Set<string>();
    for (const a of amAlerts) {
      const startsAt = normaliseInstant(a.startsAt);
      if (startsAt !== undefined) present.add(alertId(a.fingerprint, startsAt));
    }
    let added = 0;
    if (group) {
      const known = new Set((await repo.firing('alertmanager', group.groupKey)).map((a) => a.id));
      const missing = amAlerts.filter((a) => {
        const startsAt = normaliseInstant(a.startsAt);
        return startsAt !== undefined && !known.has(alertId(a.fingerprint, startsAt));
      });
      if (missing.length > 0) {
        const outcome = await repo.upsertBatch({
          source: 'alertmanager',
          groupKey: group.groupKey,
          receiver: group.receiver,
          snapshot: false,
          alerts: alertmanagerAlerts(
            parsePayload(
              alertmanagerPayloadSchema,
              {
                version: '4',
                groupKey: group.groupKey,
                status: 'firing',
                receiver: group.receiver,
                alerts: missing.map((a) => ({
                  status: 'firing',
                  labels: a.labels,
                  annotations: a.annotations,
                  startsAt: a.startsAt,
                  generatorURL: a.generatorURL,
                  fingerprint: a.fingerprint,
                })),
              },
              `Alertmanager at ${am.target}: GET /api/v2/alerts/groups`,
            ),
          ),
        });
        added = outcome.created;
      }
    }
    const firing = await repo.firing('alertmanager', group?.groupKey);
    const gone = firing.filter((a) => !present.has(a.id) && a.lastSeenAt <= asked).map((a) => a.id);
    const resolved =
      gone.length > 0 && (await mayResolve(am, amAlerts.length, firing.length))
        ? await repo.resolveMissing(gone, asked)
        : 0;
    if (resolved > 0 || added > 0)
      log.info({ resolved, added, group: group?.groupKey }, 'reconciled alerts with Alertmanager');
    return { alertmanager: amAlerts.length, resolved, added };
  }

  function silenceView(s: AlertmanagerSilence): SilenceView {
    return {
      id: s.id,
      state: s.status.state,
      matchers: s.matchers.map((m) =>
        formatMatcher({
          name: m.name,
          op: m.isRegex ? (m.isEqual ? '=~' : '!~') : m.isEqual ? '=' : '!=',
          value: m.value,
        }),
      ),
      startsAt: s.startsAt,
      endsAt: s.endsAt,
      createdBy: s.createdBy,
      comment: s.comment,
    };
  }

  async function activeAdhoc(labels: Record<string, string>, at: Date): Promise<StoredWindow | undefined> {
    const iso = at.toISOString();
    const windows = await repo.windows({ activeAfter: iso });
    let best: StoredWindow | undefined;
    for (const w of windows) {
      if (w.startsAt > iso) continue;
      let matchers: Matcher[];
      try {
        matchers = parseMatchers(w.matchers, `suppression ${w.id}.matchers`);
      } catch {
        continue;
      }
      if (matchesAll(matchers, labels) && (!best || w.endsAt > best.endsAt)) best = w;
    }
    return best;
  }

  function adhocView(w: StoredWindow, now: Date): WindowView {
    const iso = now.toISOString();
    const endsAt = w.endedAt !== undefined && w.endedAt < w.endsAt ? w.endedAt : w.endsAt;
    return {
      id: w.id,
      name: w.name,
      origin: 'adhoc',
      matchers: w.matchers,
      durationMs: Date.parse(w.endsAt) - Date.parse(w.startsAt),
      startsAt: w.startsAt,
      endsAt,
      active: w.startsAt <= iso && iso < endsAt,
      comment: w.comment,
      createdBy: w.createdBy,
      endedAt: w.endedAt,
      endedBy: w.endedBy,
    };
  }

  const service: AlertService = {
    async ingestAlertmanager(payload) {
      const parsed = parsePayload(alertmanagerPayloadSchema, payload, 'Alertmanager payload');
      const truncated = parsed.truncatedAlerts;
      const group = { groupKey: parsed.groupKey, groupLabels: parsed.groupLabels, receiver: parsed.receiver };
      const result = await ingest(
        {
          source: 'alertmanager',
          groupKey: parsed.groupKey,
          receiver: parsed.receiver,
          snapshot: truncated === 0,
          // Alertmanager leaves silenced and inhibited alerts out of a notification: when it can be asked,
          // an absence is confirmed against it (followUp) instead of resolving.
          confirmAbsence: alertmanager !== undefined,
          alerts: alertmanagerAlerts(parsed),
        },
        truncated,
        truncated > 0 ? group : undefined,
      );
      return result.absent > 0 ? { ...result, reconcileGroup: group } : result;
    },

    async ingestGeneric(payload) {
      const parsed = parsePayload(genericPayloadSchema, payload, 'alerts payload');
      const now = clock.now();
      // Generic alerts group by name (routing's default group key); a post is no snapshot of anything. An
      // undated alert continues the firing instance of its fingerprint, looked up in the upsert's
      // transaction; posts with undated alerts are also taken one at a time in this process, so two
      // concurrent posts of the same alert do not both start an instance.
      const alerts = parsed.alerts.map((a) => ({
        ...genericAlert(a, now, () => undefined),
        groupKey: `generic:${a.name}`,
        continues: a.startsAt === undefined,
      }));
      const batch = { source: 'generic' as const, groupKey: 'generic', snapshot: false, alerts };
      if (!alerts.some((a) => a.continues)) return ingest(batch, 0);
      const turn = undatedTurn.then(() => ingest(batch, 0));
      undatedTurn = turn.then(
        () => undefined,
        () => undefined,
      );
      return turn;
    },

    async followUp(result) {
      if (result.reconcileGroup && alertmanager) {
        try {
          await reconcile(result.reconcileGroup);
        } catch (err) {
          log.warn(
            { group: result.reconcileGroup.groupKey, err: errorMessage(err) },
            'truncated payload: reconciling with Alertmanager failed; the periodic reconcile retries',
          );
        }
      }
      try {
        await service.processPending();
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'processing alerts failed; retrying next tick');
      }
    },

    processPending() {
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        const total: ProcessResult = { linked: 0, recorded: 0, resolved: 0, failed: 0 };
        do {
          again = false;
          const r = await processPass();
          total.linked += r.linked;
          total.recorded += r.recorded;
          total.resolved += r.resolved;
          total.failed += r.failed;
        } while (again);
        return total;
      })().finally(() => {
        running = undefined;
      });
      return running;
    },

    reconcile,

    async list(query = {}) {
      if (query.status !== undefined && query.status !== 'firing' && query.status !== 'resolved')
        throw new InputError(`status: "${String(query.status)}" is not firing or resolved`, {
          details: { field: 'status' },
        });
      return repo.list(query);
    },

    get: (id) => repo.get(id),

    silences: {
      async create(input, actor) {
        const now = clock.now();
        if (!Array.isArray(input.matchers) || input.matchers.length === 0)
          throw new InputError(
            'matchers: a silence needs at least one matcher, e.g. alertname="GameServerDown"',
            {
              details: { field: 'matchers' },
            },
          );
        const matchers = parseMatchers(input.matchers, 'matchers');
        if (matchers.every((m) => matcherMatches(m, {})))
          throw new InputError(
            'matchers: at least one matcher must not match the empty string (it would silence every alert)',
            { details: { field: 'matchers' } },
          );
        if (typeof input.comment !== 'string' || input.comment.trim() === '')
          throw new InputError('comment: say why the alerts are silenced', { details: { field: 'comment' } });
        const { startsAt, endsAt } = span(input, now, MAX_SILENCE_MS, '1 year');
        const am = requireAlertmanager();
        const body = {
          matchers: matchers.map((m): SilenceMatcher => ({
            name: m.name,
            value: m.value,
            isRegex: m.op === '=~' || m.op === '!~',
            isEqual: m.op === '=' || m.op === '=~',
          })),
          startsAt: startsAt.toISOString(),
          endsAt: endsAt.toISOString(),
          createdBy: actor.name,
          comment: input.comment.trim(),
        };
        const id = await am.createSilence(body);
        await store.audit.append(
          {
            actor,
            action: 'silence.create',
            target: `silence:${id}`,
            data: {
              matchers: matchers.map(formatMatcher),
              startsAt: body.startsAt,
              endsAt: body.endsAt,
              comment: body.comment,
            },
          },
          now,
        );
        return {
          id,
          state: startsAt <= now ? 'active' : 'pending',
          matchers: matchers.map(formatMatcher),
          startsAt: body.startsAt,
          endsAt: body.endsAt,
          createdBy: actor.name,
          comment: body.comment,
        };
      },

      async list(options = {}) {
        const filter = parseMatchers(options.matchers ?? [], 'matchers').map(formatMatcher);
        const all = (await requireAlertmanager().silences(filter)).map(silenceView);
        return options.state === undefined ? all : all.filter((s) => s.state === options.state);
      },

      async expire(id, actor) {
        if (typeof id !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(id))
          throw new InputError(`id: "${String(id).slice(0, 80)}" is not a silence id`, {
            details: { field: 'id' },
          });
        await requireAlertmanager().expireSilence(id);
        await store.audit.append(
          { actor, action: 'silence.expire', target: `silence:${id}`, data: {} },
          clock.now(),
        );
      },
    },

    windows: {
      async create(input, actor) {
        const now = clock.now();
        const matcherTexts = input.matchers ?? [];
        if (!Array.isArray(matcherTexts))
          throw new InputError('matchers: must be a list of matchers', { details: { field: 'matchers' } });
        const matchers = parseMatchers(matcherTexts, 'matchers');
        if (typeof input.comment !== 'string' || input.comment.trim() === '')
          throw new InputError('comment: say why paging is suppressed', { details: { field: 'comment' } });
        const { startsAt, endsAt } = span(input, now, MAX_WINDOW_MS, '30d');
        const name = input.name ?? `adhoc-${startsAt.toISOString().slice(0, 16)}`;
        if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9 ._:@+-]{0,99}$/.test(name))
          throw new InputError(
            `name: "${String(name).slice(0, 80)}" must be 1-100 letters, digits, spaces or . _ : @ + -`,
            { details: { field: 'name' } },
          );
        const stored = await repo.createWindow({
          name,
          matchers: matchers.map(formatMatcher),
          startsAt: startsAt.toISOString(),
          endsAt: endsAt.toISOString(),
          comment: input.comment.trim(),
          by: actor,
        });
        return adhocView(stored, now);
      },

      async list(options = {}) {
        const now = clock.now();
        const fromConfig = configWindows.map((w, i): WindowView => {
          const source = config.alerts.suppressions[i];
          const current = spanAt(w, now) ?? nextSpan(w, now);
          return {
            name: w.name,
            origin: 'config',
            matchers: w.matcherTexts,
            cron: source?.cron,
            timezone: w.recurring?.timezone,
            durationMs: w.durationMs,
            startsAt: current?.startsAt.toISOString(),
            endsAt: current?.endsAt.toISOString(),
            active: spanAt(w, now) !== undefined,
          };
        });
        const stored = await repo.windows(options.all ? {} : { activeAfter: now.toISOString() });
        return [...fromConfig, ...stored.map((w) => adhocView(w, now))];
      },

      async end(id, actor) {
        if (configWindows.some((w) => w.name === id))
          throw new InputError(
            `"${id}" is a window from the config (alerts.suppressions); change the config to end it`,
            {
              details: { field: 'id' },
            },
          );
        return adhocView(await repo.endWindow(id, actor), clock.now());
      },
    },

    async active(labels, at): Promise<ActiveSuppression | undefined> {
      const fromConfig = activeConfigWindow(configWindows, labels, at);
      const adhoc = await activeAdhoc(labels, at);
      if (adhoc && (!fromConfig || adhoc.endsAt > fromConfig.endsAt.toISOString()))
        return { name: adhoc.name, endsAt: adhoc.endsAt };
      return fromConfig ? { name: fromConfig.name, endsAt: fromConfig.endsAt.toISOString() } : undefined;
    },

    async ping(name) {
      if (typeof name !== 'string' || !heartbeatConfig.has(name))
        throw new NotFoundError(
          `no heartbeat named "${String(name).slice(0, 80)}" (configured: ${[...heartbeatConfig.keys()].join(', ') || 'none'})`,
          { details: { name } },
        );
      const state = await repo.ping(name);
      try {
        await closeOutage(state);
      } catch (err) {
        log.warn(
          { heartbeat: name, err: errorMessage(err) },
          'heartbeat recovered; telling its incident failed, retrying next tick',
        );
      }
      return heartbeatView({ ...state, recoveredSince: undefined }, clock.now());
    },

    heartbeats: () => heartbeatViews(clock.now()),

    async tick(now) {
      await service.processPending();
      if (alertmanager && now.getTime() - lastReconcile >= config.alerts.reconcileEvery) {
        lastReconcile = now.getTime();
        try {
          await reconcile();
        } catch (err) {
          log.warn({ err: errorMessage(err) }, 'reconciling alerts with Alertmanager failed; retrying later');
        }
        await service.processPending();
      }
      await tickHeartbeats(now);
      if (now.getTime() - lastPrune >= PRUNE_EVERY_MS) {
        lastPrune = now.getTime();
        const retention = config.alerts.retention;
        const pruned = await repo.prune(new Date(now.getTime() - retention).toISOString(), 500);
        if (pruned > 0)
          log.info({ pruned }, `pruned alerts resolved more than ${formatDuration(retention)} ago`);
      }
    },
  };
  return service;
}

/** A window's start and end from startsAt (default now) and duration or endsAt. */
function span(
  input: {
    startsAt?: string | undefined;
    duration?: string | number | undefined;
    endsAt?: string | undefined;
  },
  now: Date,
  maxMs: number,
  maxText: string,
): { startsAt: Date; endsAt: Date } {
  const instant = (value: unknown, field: string): Date => {
    const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
    if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}T/.test(value as string))
      throw new InputError(`${field}: "${String(value).slice(0, 80)}" is not an ISO-8601 date-time`, {
        details: { field },
      });
    return new Date(ms);
  };
  const startsAt = input.startsAt !== undefined ? instant(input.startsAt, 'startsAt') : now;
  if ((input.duration === undefined) === (input.endsAt === undefined))
    throw new InputError('duration: give a duration (e.g. 2h) or endsAt, one of them', {
      details: { field: 'duration' },
    });
  let endsAt: Date;
  if (input.endsAt !== undefined) endsAt = instant(input.endsAt, 'endsAt');
  else {
    let ms: number;
    try {
      ms = typeof input.duration === 'number' ? input.duration : parseDuration(String(input.duration));
    } catch (err) {
      throw new InputError(`duration: ${(err as Error).message}`, { details: { field: 'duration' } });
    }
    if (!Number.isFinite(ms) || ms <= 0)
      throw new InputError('duration: must be positive', { details: { field: 'duration' } });
    endsAt = new Date(startsAt.getTime() + ms);
  }
  const field = input.endsAt !== undefined ? 'endsAt' : 'duration';
  if (endsAt <= startsAt || endsAt <= now)
    throw new InputError(
      `${field}: the end (${endsAt.toISOString()}) must be after the start and in the future`,
      {
        details: { field },
      },
    );
  if (endsAt.getTime() - startsAt.getTime() > maxMs)
    throw new InputError(`${field}: at most ${maxText}`, { details: { field } });
  return { startsAt, endsAt };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
