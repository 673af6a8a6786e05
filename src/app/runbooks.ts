import { dirname, resolve } from 'node:path';
import {
  errorMessage,
  InputError,
  isSecret,
  maskSecrets,
  UnavailableError,
  type Secret,
} from '../core/index.ts';
import { httpAuth } from '../connectors/http-auth.ts';
import type { GameopsConfig, LoadedConfig } from '../config/index.ts';
import type { Engine } from '../runbooks/engine.ts';
import type { RunbookProblem } from '../runbooks/compile.ts';
import type { Runbook, RunbookLibrary } from '../runbooks/model.ts';
import type { Resources } from './bootstrap.ts';

/**
 * The runbook engine of this process, wired once per resources bag: the catalog of actions and checks,
 * the services actions use, the library (built-in runbooks plus `runbooks.dir`), the access policy, the
 * notifier and the engine itself. The server and CLI commands share it; `shutdown` releases it.
 * Modules load on first use, so commands that never run a runbook do not pay for them.
 * An invalid file in `runbooks.dir` does not stop it: the valid runbooks load, the problems are logged and
 * kept ({@link invalidRunbooks}), and starting or planning an invalid runbook is refused naming them.
 * @throws UnavailableError when there is no store (the engine's memory).
 * @throws InputError when `runbooks.dir` cannot be read.
 */
export async function openRunbooks(resources: Resources): Promise<Engine> {
  if (resources.engine) return resources.engine;
  // One engine per resources bag, even when the first callers arrive together (the worker and the
  // first API request): they share the opening.
  resources.engineOpening ??= createEngineFor(resources).catch((err: unknown) => {
    resources.engineOpening = undefined;
    throw err;
  });
  return resources.engineOpening;
}

const closers = new WeakMap<Resources, () => Promise<void>>();
const invalidFiles = new WeakMap<Resources, InvalidRunbook[]>();

/** A runbook file of `runbooks.dir` that was set aside, as the API and the CLI show it. */
export interface InvalidRunbook {
  file: string;
  /** Its `name:`, when it has one. */
  name?: string;
  /** Each problem with its file:line (`text` is the one-line form). */
  problems: Array<{ line?: number; field: string; stepId?: string; message: string; text: string }>;
}

/**
 * The runbook files the engine of these resources set aside as invalid (opens the engine when needed).
 * Empty when every file loaded.
 */
export async function invalidRunbooks(resources: Resources): Promise<InvalidRunbook[]> {
  await openRunbooks(resources);
  return invalidFiles.get(resources) ?? [];
}

/**
 * Makes `start`, `plan` and `runbook` of a runbook that only exists as an invalid file say why it is not
 * there (its problems with file:line) instead of "unknown runbook".
 */
function refuseInvalid(engine: Engine, known: RunbookLibrary, invalid: InvalidRunbook[]): void {
  if (invalid.length === 0) return;
  const check = (name: string): void => {
    if (known.get(name)) return;
    const file = invalid.find((f) => f.name === name);
    if (!file) return;
    const listed = file.problems.slice(0, 5).map((p) => p.text);
    if (file.problems.length > 5) listed.push(`and ${file.problems.length - 5} more`);
    throw new InputError(
      `runbook "${name}" is invalid and was not loaded: ${listed.join('; ')} (gameops runbooks validate)`,
      { details: { runbook: name, file: file.file } },
    );
  };
  const start = engine.start.bind(engine);
  const plan = engine.plan.bind(engine);
  const runbook = engine.runbook.bind(engine);
  engine.start = async (input, actor) => {
    check(input.runbook);
    return start(input, actor);
  };
  engine.plan = async (input, actor) => {
    check(input.runbook);
    return plan(input, actor);
  };
  engine.runbook = async (name, actor) => {
    check(name);
    return runbook(name, actor);
  };
}

/**
 * Releases what `openRunbooks` opened (the runbook services refuse further use). Called by `shutdown`;
 * callers stop their engine work (`work`, `runUntilIdle`) through its signal first.
 */
export async function closeRunbooks(resources: Resources): Promise<void> {
  const opening = resources.engineOpening;
  if (opening) await opening.catch(() => undefined);
  const close = closers.get(resources);
  closers.delete(resources);
  resources.engine = undefined;
  resources.engineOpening = undefined;
  await close?.();
}

/** The directory of user runbooks, resolved against the config file's directory; undefined when none. */
export function runbooksDir(loaded: Pick<LoadedConfig, 'config' | 'file'>): string | undefined {
  const dir = loaded.config.runbooks.dir;
  if (dir === undefined) return undefined;
  return resolve(loaded.file ? dirname(loaded.file) : process.cwd(), dir);
}

async function createEngineFor(resources: Resources): Promise<Engine> {
  const { config, loaded, clock, log } = resources;
  const store = resources.store;
  if (!store)
    throw new UnavailableError(
      `runbooks need the store and it is not open: ${resources.storeProblem ?? 'no config file was found (see --config)'}`,
    );
  const [actions, builtin, compile, library, identity, engineModule] = await Promise.all([
    import('../runbooks/actions/index.ts'),
    import('../runbooks/builtin/index.ts'),
    import('../runbooks/compile.ts'),
    import('../runbooks/library.ts'),
    import('../identity/index.ts'),
    import('../runbooks/engine.ts'),
  ]);
  const catalog = actions.createCatalog();
  const builtins = builtin
    .builtinRunbooks()
    .map((input) => compile.compileRunbook(input, catalog, { kind: 'builtin' }));
  const dir = runbooksDir(loaded);
  const loadedFiles =
    dir === undefined ? { runbooks: [], invalid: [] } : library.loadRunbookDirLenient(dir, catalog);
  const lenient = library.createLenientLibrary(builtins, loadedFiles.runbooks);
  const fromFiles = lenient.library.list().filter((rb) => rb.source.kind === 'file');
  const invalid: InvalidRunbook[] = [...loadedFiles.invalid, ...lenient.invalid].map((f) => ({
    file: f.file,
    ...(f.name === undefined ? {} : { name: f.name }),
    problems: f.problems.map((p) => ({
      ...(p.line === undefined ? {} : { line: p.line }),
      field: p.field,
      ...(p.stepId === undefined ? {} : { stepId: p.stepId }),
      message: p.message,
      text: compile.formatProblem(p),
    })),
  }));
  for (const f of invalid)
    log.warn(
      { file: f.file, problems: f.problems.map((p) => p.text) },
      `runbook file ${f.file} is invalid and was not loaded (gameops runbooks validate)`,
    );
  const services = actions.createRunbookServices(resources);
  const engine = engineModule.createEngine({
    store,
    clock,
    catalog,
    library: lenient.library,
    policy: identity.createAccessPolicy(config),
    services,
    scope: { service: config.service.name, environment: config.service.environment },
    leaseTtlMs: config.runbooks.leaseTtl,
    mask: secretMasker(config),
    notify: (channel, message, signal, step) => services.notifier.notify(channel, message, signal, step),
    log,
  });
  refuseInvalid(engine, lenient.library, invalid);
  invalidFiles.set(resources, invalid);
  resources.engine = engine;
  closers.set(resources, () => services.close());
  log.debug(
    { builtin: builtins.length, files: fromFiles.length, invalid: invalid.length, dir },
    'runbook engine ready',
  );
  return engine;
}

/**
 * A function that returns a copy of any JSON-like value with every secret of the config masked: `Secret`
 * objects become the mask, and strings have each secret value (and, for HTTP APIs, the exact
 * Authorization header and its base64 credentials) replaced. Used for recorded arguments, outputs and logs.
 */
export function secretMasker(config: GameopsConfig): (value: unknown) => unknown {
  const secrets = configSecrets(config);
  const maskText = (text: string): string => (secrets.length > 0 ? maskSecrets(text, secrets) : text);
  const walk = (value: unknown, seen: Set<object>): unknown => {
    if (typeof value === 'string') return maskText(value);
    if (isSecret(value)) return String(value);
    if (typeof value !== 'object' || value === null) return value;
    if (seen.has(value)) return '[circular]';
    seen.add(value);
    try {
      if (Array.isArray(value)) return value.map((v) => walk(v, seen));
      if (value instanceof Date) return value.toISOString();
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[maskText(k)] = walk(v, seen);
      return out;
    } finally {
      seen.delete(value);
    }
  };
  return (value) => walk(value, new Set());
}

/**
 * Every `Secret` anywhere in the config (passwords, tokens, secret environment of game servers,
 * notification credentials), plus the HTTP Basic/Bearer header forms of the HTTP APIs' credentials;
 * longest first, so that a header is masked whole before a secret inside it.
 */
function configSecrets(config: GameopsConfig): Secret[] {
  const found: Secret[] = [];
  const visit = (value: unknown, depth: number): void => {
    if (depth > 12 || typeof value !== 'object' || value === null) return;
    if (isSecret(value)) {
      found.push(value);
      return;
    }
    for (const v of Array.isArray(value) ? value : Object.values(value)) visit(v, depth + 1);
  };
  visit(config, 0);
  found.push(...httpAuth(config.alertmanager).secrets, ...httpAuth(config.prometheus).secrets);
  return found.sort((a, b) => b.reveal().length - a.reveal().length);
}

/** What `gameops runbooks validate` reports. */
export interface RunbookValidation {
  /** The runbooks that compiled, with where they came from. */
  runbooks: Array<{ name: string; version: string; file: string }>;
  /** Every problem, with its file:line; `text` is the one-line form. */
  problems: Array<{
    source: string;
    line?: number;
    field: string;
    stepId?: string;
    message: string;
    text: string;
  }>;
}

/**
 * Compiles runbook files the way `openRunbooks` does, collecting every problem instead of stopping at the
 * first file: `files`, or every runbook file of `runbooks.dir`. The files are checked together with the
 * built-in runbooks (duplicate names, sub-runbooks that do not exist or call each other in a cycle).
 * @throws InputError when no file is named and `runbooks.dir` is not set or cannot be read.
 */
export async function validateRunbooks(
  resources: Pick<Resources, 'loaded'>,
  files?: string[],
): Promise<RunbookValidation> {
  const [actions, builtin, compile, library, yaml] = await Promise.all([
    import('../runbooks/actions/index.ts'),
    import('../runbooks/builtin/index.ts'),
    import('../runbooks/compile.ts'),
    import('../runbooks/library.ts'),
    import('../runbooks/yaml.ts'),
  ]);
  const catalog = actions.createCatalog();
  const problems: RunbookValidation['problems'] = [];
  const add = (list: RunbookProblem[]): void => {
    for (const p of list) problems.push({ ...p, text: compile.formatProblem(p) });
  };
  const compiled: Runbook[] = [];
  const collect = (work: () => void): void => {
    try {
      work();
    } catch (err) {
      if (err instanceof compile.RunbookDefinitionError) add(err.problems);
      else throw err;
    }
  };
  if (files === undefined) {
    const dir = runbooksDir(resources.loaded);
    if (dir === undefined)
      throw new InputError(
        'runbooks.dir is not set in the config: name the files to validate, or set runbooks.dir',
      );
    collect(() => compiled.push(...library.loadRunbookDir(dir, catalog)));
  } else {
    for (const file of files) {
      const path = resolve(file);
      const read = yaml.readRunbookFile(path);
      if ('problem' in read) {
        add([{ source: file, field: '', message: read.problem }]);
        continue;
      }
      const parsed = yaml.parseRunbookYaml(read.text, file);
      if ('problems' in parsed) {
        add(parsed.problems);
        continue;
      }
      collect(() =>
        compiled.push(
          compile.compileRunbook(parsed.value, catalog, { kind: 'file', path: file, lineOf: parsed.lineOf }),
        ),
      );
    }
  }
  const builtins = builtin
    .builtinRunbooks()
    .map((input) => compile.compileRunbook(input, catalog, { kind: 'builtin' }));
  collect(() => library.createLibrary([...builtins, ...compiled]));
  return {
    runbooks: compiled.map((rb) => ({
      name: rb.name,
      version: rb.version,
      file: rb.source.kind === 'file' ? rb.source.path : 'builtin',
    })),
    problems,
  };
}

/**
 * Runs the engine's worker (queued runs start, interrupted ones resume) until `signal` aborts. Never
 * throws: an engine that cannot be opened (no store, an invalid runbook file) is logged, and the rest of
 * the server goes on without it (its run API answers with the same error).
 */
export async function workRunbooks(resources: Resources, signal: AbortSignal): Promise<void> {
  let engine: Engine;
  try {
    engine = await openRunbooks(resources);
  } catch (err) {
    resources.log.error({ err: errorMessage(err) }, 'runbook engine not started');
    return;
  }
  resources.log.info({ worker: engine.workerId }, 'runbook worker started');
  try {
    await engine.work(signal);
  } catch (err) {
    if (!signal.aborted) resources.log.error({ err: errorMessage(err) }, 'runbook worker stopped');
  }
}
