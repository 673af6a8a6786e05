/**
 * The actions and checks runbooks may call, and the services they run with. `createCatalog()` is what the
 * engine, the compiler and dry-run look actions up in; `createRunbookServices(resources)` is what
 * `StepContext.services` holds.
 */
import { ConflictError } from '../../core/index.ts';
import type { ActionDefinition, Catalog, CheckDefinition } from '../model.ts';
import { backupActions } from './backup.ts';
import { checkActions, dailyCheckDefinitions } from './checks.ts';
import { dbActions } from './db.ts';
import { fleetActions, fleetChecks } from './fleet.ts';
import { genericActions } from './generic.ts';
import { maintenanceActions, maintenanceChecks } from './maintenance.ts';
import { mysqlActions } from './mysql.ts';
import { notifyActions } from './notify.ts';
import { prometheusActions } from './prometheus.ts';

export { createRunbookServices, servicesOf } from './services.ts';
export type { RunbookServices } from './services.ts';
export { createNotifier } from './notify.ts';
export type { Notifier, Delivery, NotifierOptions } from './notify.ts';

/** Every built-in action and check, by name. @throws ConflictError when two share a name (a bug). */
export function createCatalog(
  extra: { actions?: ActionDefinition[]; checks?: CheckDefinition[] } = {},
): Catalog {
  const actions = new Map<string, ActionDefinition>();
  const checks = new Map<string, CheckDefinition>();
  const all = [
    ...genericActions,
    ...fleetActions,
    ...mysqlActions,
    ...prometheusActions,
    ...checkActions,
    ...notifyActions,
    ...backupActions,
    ...dbActions,
    ...maintenanceActions,
    ...(extra.actions ?? []),
  ];
  for (const action of all) {
    if (actions.has(action.name)) throw new ConflictError(`two actions are named ${action.name}`);
    actions.set(action.name, action);
  }
  for (const check of [
    ...dailyCheckDefinitions,
    ...fleetChecks,
    ...maintenanceChecks,
    ...(extra.checks ?? []),
  ]) {
    if (checks.has(check.name)) throw new ConflictError(`two checks are named ${check.name}`);
    checks.set(check.name, check);
  }
  return {
    action: (name) => actions.get(name),
    check: (name) => checks.get(name),
    actions: () => [...actions.values()],
    checks: () => [...checks.values()],
  };
}
