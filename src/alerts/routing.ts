/**
 * Routing: which incident an alert opens or joins, with which severity, service, escalation policy and
 * runbook. The first route (config `alerts.routes`) whose matchers all match decides; the defaults apply
 * where it is silent or when none matches.
 */
import type { GameopsConfig } from '../config/index.ts';
import type { AlertRef, Severity } from '../ops/contracts.ts';
import type { StoredAlert } from '../store/alerts.ts';
import { matchesAll, parseMatchers, type Matcher } from './matchers.ts';

export interface CompiledRoute {
  /** The route's name, or `route-<n>` (1-based) when it has none. */
  name: string;
  matchers: Matcher[];
  severity?: Severity | undefined;
  service?: string | undefined;
  policy?: string | undefined;
  runbook?: string | undefined;
  groupBy?: string[] | undefined;
  createIncident: boolean;
}

/** What processing does with an alert. */
export interface RouteDecision {
  /** The matching route's name; undefined: the defaults. */
  route?: string | undefined;
  severity: Severity;
  service: string;
  policy?: string | undefined;
  runbook?: string | undefined;
  groupKey: string;
  createIncident: boolean;
  title: string;
}

/**
 * Compiles the configured routes.
 * @throws InputError naming `alerts.routes[i].matchers[j]` for a matcher that does not parse.
 */
export function compileRoutes(routes: GameopsConfig['alerts']['routes']): CompiledRoute[] {
  return routes.map((route, i) => ({
    name: route.name ?? `route-${i + 1}`,
    matchers: parseMatchers(route.matchers, `alerts.routes[${i}].matchers`),
    severity: route.severity,
    service: route.service,
    policy: route.policy,
    runbook: route.runbook,
    groupBy: route.groupBy,
    createIncident: route.createIncident,
  }));
}

/** Decides an alert's incident: first matching route, then the defaults. */
export function decide(
  alert: Pick<StoredAlert, 'labels' | 'annotations' | 'groupKey' | 'fingerprint' | 'name'>,
  routes: readonly CompiledRoute[],
  config: Pick<GameopsConfig, 'alerts' | 'service' | 'server'>,
): RouteDecision {
  const route = routes.find((r) => matchesAll(r.matchers, alert.labels));
  const label = alert.labels['severity'];
  const severity =
    route?.severity ?? (label !== undefined ? config.alerts.severityLabels[label] : undefined) ?? 'P3';
  const service = route?.service ?? alert.labels['service'] ?? config.service.name;
  let groupKey = alert.groupKey;
  if (route?.groupBy && route.groupBy.length > 0) {
    groupKey = route.groupBy.includes('...')
      ? `${route.name}:${alert.fingerprint}`
      : `${route.name}:${route.groupBy.map((l) => `${l}=${JSON.stringify(alert.labels[l] ?? '')}`).join(',')}`;
  }
  const summary = alert.annotations['summary'];
  return {
    route: route?.name,
    severity,
    service,
    policy: route?.policy,
    runbook: route?.runbook ?? gameopsRunbook(runbookUrlOf(alert.annotations), config.server.publicUrl),
    groupKey,
    createIncident: route?.createIncident ?? true,
    title: summary !== undefined && summary.trim() !== '' ? oneLine(summary) : alert.name,
  };
}

/** The runbook link of an alert: the `runbook_url` annotation, else `runbook`. */
export function runbookUrlOf(annotations: Record<string, string>): string | undefined {
  const url = annotations['runbook_url'] ?? annotations['runbook'];
  return url !== undefined && url.trim() !== '' ? url.trim() : undefined;
}

const RUNBOOK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * The gameops runbook a runbook link points at, if it does: `gameops:<name>`, `gameops://runbooks/<name>`,
 * or `<server.publicUrl>/runbooks/<name>` (also under `/api/runbooks/`).
 */
export function gameopsRunbook(url: string | undefined, publicUrl: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  let name: string | undefined;
  if (url.startsWith('gameops://runbooks/')) name = url.slice('gameops://runbooks/'.length);
  else if (url.startsWith('gameops:')) name = url.slice('gameops:'.length);
  else if (publicUrl !== undefined) {
    const base = publicUrl.replace(/\/+$/, '');
    for (const prefix of [`${base}/runbooks/`, `${base}/api/runbooks/`])
      if (url.startsWith(prefix)) name = url.slice(prefix.length).replace(/[?#].*$/, '');
  }
  return name !== undefined && RUNBOOK_NAME.test(name) ? name : undefined;
}

/** The alert as incidents see it. */
export function alertRef(alert: StoredAlert): AlertRef {
  const summary = alert.annotations['summary'];
  return {
    fingerprint: alert.fingerprint,
    startsAt: alert.startsAt,
    status: alert.status,
    endsAt: alert.endsAt,
    name: alert.name,
    summary: summary !== undefined ? oneLine(summary) : undefined,
    labels: alert.labels,
    runbookUrl: runbookUrlOf(alert.annotations),
    generatorUrl: alert.generatorUrl,
  };
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}
