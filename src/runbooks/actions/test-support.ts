/** Helpers for action tests: resources around a config, and a step context that records its log. */
import { bootstrap, shutdown, type Resources } from '../../app/bootstrap.ts';
import { createLogger } from '../../app/log.ts';
import { readEnv, type GameopsConfig } from '../../config/index.ts';
import { systemClock, type Clock } from '../../core/index.ts';
import type { Store } from '../../store/index.ts';
import type { ActionDefinition, StepContext } from '../model.ts';
import { createCatalog } from './index.ts';
import { createRunbookServices, type RunbookServices } from './services.ts';

/** Resources around an already loaded config (no config file), with an optional store. */
export function resourcesFor(
  config: GameopsConfig,
  options: { store?: Store; clock?: Clock } = {},
): Resources {
  return {
    config,
    loaded: { config, file: undefined, configured: true, warnings: [] },
    clock: options.clock ?? systemClock,
    log: createLogger('silent'),
    metrics: undefined,
    store: options.store,
    storeProblem: undefined,
  };
}

/** Resources from a config file, as the CLI opens them (store opened when it can be). */
export async function resourcesFromFile(path: string, clock?: Clock): Promise<Resources> {
  return bootstrap({
    configPath: path,
    store: 'optional',
    logLevel: 'silent',
    env: readEnv({}),
    ...(clock ? { clock } : {}),
  });
}

export { shutdown };

const catalog = createCatalog();

/** The built-in action `name`; throws when the catalog has none (a test naming an action that is gone). */
export function catalogAction(name: string): ActionDefinition {
  const found = catalog.action(name);
  if (!found) throw new Error(`no action ${name}`);
  return found;
}

export interface TestStep extends StepContext {
  /** Lines the step logged. */
  lines: string[];
  abort(reason?: unknown): void;
}

let fence = 0;

/** A step context for calling an action or check directly. */
export function stepContext(
  services: RunbookServices,
  overrides: Partial<Pick<StepContext, 'runId' | 'stepId' | 'clock'>> = {},
): TestStep {
  const controller = new AbortController();
  const lines: string[] = [];
  fence += 1;
  return {
    runId: overrides.runId ?? `run-${fence}`,
    stepId: overrides.stepId ?? 'step',
    attempt: 1,
    fence,
    clock: overrides.clock ?? services.clock,
    signal: controller.signal,
    log: (line) => lines.push(line),
    services,
    lines,
    abort: (reason) => controller.abort(reason),
  };
}

export { createRunbookServices };
