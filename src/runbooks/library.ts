/**
 * The runbook library: every runbook this gameops knows (built-in and from `runbooks.dir`), checked as a
 * whole: names are unique, sub-runbooks exist and never call themselves through a chain.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/index.ts';
import { compileRunbook, didYouMean, RunbookDefinitionError, type RunbookProblem } from './compile.ts';
import { issueText } from './input.ts';
import type { Catalog, Runbook, RunbookLibrary, SubRunbookStep } from './model.ts';
import { hasTemplate } from './template.ts';
import { parseRunbookYaml, readRunbookFile } from './yaml.ts';

const RUNBOOK_FILE = /\.ya?ml$/i;

/**
 * A library over these runbooks.
 * @throws RunbookDefinitionError (an InputError) naming every duplicate name (with both sources), every
 *   sub-runbook step naming an unknown runbook or passing parameters it refuses, and every chain of
 *   sub-runbooks that comes back to where it started (`a → b → a`).
 */
export function createLibrary(runbooks: Runbook[]): RunbookLibrary {
  const problems: RunbookProblem[] = [];
  const byName = new Map<string, Runbook>();
  for (const rb of runbooks) {
    const first = byName.get(rb.name);
    if (first) {
      problems.push({
        source: sourceName(rb),
        field: 'name',
        message: `runbook "${rb.name}" is already defined by ${sourceName(first)}`,
      });
    } else {
      byName.set(rb.name, rb);
    }
  }
  const names = [...byName.keys()];
  for (const rb of byName.values()) {
    for (const step of subSteps(rb)) {
      const child = byName.get(step.runbook);
      const at = { source: step.source ?? sourceName(rb), field: 'runbook', stepId: step.id };
      if (!child) {
        problems.push({
          ...at,
          message: `unknown runbook "${step.runbook}"${didYouMean(step.runbook, names)}`,
        });
      } else if (!hasTemplate(step.params)) {
        const result = child.params.safeParse(step.params);
        if (!result.success) {
          problems.push({
            ...at,
            field: 'params',
            message: `parameters of ${child.name}: ${issueText(result.error.issues)}`,
          });
        }
      }
    }
  }
  for (const chain of subRunbookCycles(byName)) {
    const rb = byName.get(chain[0]!)!;
    const step = subSteps(rb).find((s) => s.runbook === chain[1]);
    problems.push({
      source: step?.source ?? sourceName(rb),
      field: 'runbook',
      ...(step ? { stepId: step.id } : {}),
      message: `sub-runbooks call each other in a cycle: ${chain.join(' → ')}`,
    });
  }
  if (problems.length > 0) throw new RunbookDefinitionError(problems);
  const list = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  return {
    get: (name) => byName.get(name),
    list: () => [...list],
  };
}

/** A runbook file that could not be loaded, with every problem found in it (each with its file:line). */
export interface InvalidRunbookFile {
  file: string;
  /** The runbook's `name:` when the file got far enough to have one (so starting it can say why not). */
  name?: string;
  problems: RunbookProblem[];
}

/**
 * Loads every `*.yaml` / `*.yml` runbook of a directory (not its subdirectories), in name order.
 * @throws InputError when the directory cannot be read; RunbookDefinitionError listing every problem of
 *   every file with its file:line (unreadable or larger than 1 MiB, not YAML, invalid, two files with one
 *   runbook name).
 */
export function loadRunbookDir(dir: string, catalog: Catalog): Runbook[] {
  const { runbooks, invalid } = loadRunbookDirLenient(dir, catalog);
  const problems = invalid.flatMap((f) => f.problems);
  if (problems.length > 0) throw new RunbookDefinitionError(problems);
  return runbooks;
}

/**
 * Loads the valid runbook files of a directory and keeps the problems of the others, so one bad file does
 * not take every runbook down (serve, `runbooks list`); `runbooks validate` and `config check` use the
 * strict {@link loadRunbookDir}.
 * @throws InputError when the directory cannot be read.
 */
export function loadRunbookDirLenient(
  dir: string,
  catalog: Catalog,
): { runbooks: Runbook[]; invalid: InvalidRunbookFile[] } {
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((e) => RUNBOOK_FILE.test(e.name) && !e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'not found' : code === 'ENOTDIR' ? 'not a directory' : (err as Error).message;
    throw new InputError(`runbooks directory ${dir}: ${why}`, { cause: err });
  }
  const invalid: InvalidRunbookFile[] = [];
  const runbooks: Runbook[] = [];
  const byName = new Map<string, string>();
  for (const name of names) {
    const file = join(dir, name);
    const read = readRunbookFile(file);
    if ('problem' in read) {
      invalid.push({ file, problems: [{ source: file, field: '', message: read.problem }] });
      continue;
    }
    const parsed = parseRunbookYaml(read.text, file);
    if ('problems' in parsed) {
      invalid.push({ file, problems: parsed.problems });
      continue;
    }
    const declared = (parsed.value as { name?: unknown } | null)?.name;
    const named = typeof declared === 'string' ? { name: declared } : {};
    try {
      const rb = compileRunbook(parsed.value, catalog, { kind: 'file', path: file, lineOf: parsed.lineOf });
      const first = byName.get(rb.name);
      if (first) {
        const line = parsed.lineOf(['name']);
        invalid.push({
          file,
          problems: [
            {
              source: file,
              ...(line === undefined ? {} : { line }),
              field: 'name',
              message: `runbook "${rb.name}" is already defined in ${first}`,
            },
          ],
        });
        continue;
      }
      byName.set(rb.name, file);
      runbooks.push(rb);
    } catch (err) {
      if (!(err instanceof RunbookDefinitionError)) throw err;
      invalid.push({ file, ...named, problems: err.problems });
    }
  }
  return { runbooks, invalid };
}

/**
 * A library over the built-in runbooks and the valid files, setting aside (into `invalid`) every file
 * runbook the library refuses: a name a built-in already has, a sub-runbook that does not exist (or is
 * itself invalid), a cycle. Problems of built-in runbooks are bugs and still throw.
 * @throws RunbookDefinitionError when a built-in runbook is refused.
 */
export function createLenientLibrary(
  builtins: Runbook[],
  fromFiles: Runbook[],
): { library: RunbookLibrary; invalid: InvalidRunbookFile[] } {
  let files = [...fromFiles];
  const invalid: InvalidRunbookFile[] = [];
  for (;;) {
    try {
      return { library: createLibrary([...builtins, ...files]), invalid };
    } catch (err) {
      if (!(err instanceof RunbookDefinitionError)) throw err;
      // A problem's source is the file, or `file:line` for a step's.
      const ofFile = (p: RunbookProblem, path: string): boolean =>
        p.source === path || p.source.startsWith(`${path}:`);
      const bad = files.filter(
        (rb) =>
          rb.source.kind === 'file' &&
          err.problems.some((p) => ofFile(p, (rb.source as { path: string }).path)),
      );
      if (bad.length === 0) throw err;
      for (const rb of bad) {
        const path = (rb.source as { path: string }).path;
        invalid.push({ file: path, name: rb.name, problems: err.problems.filter((p) => ofFile(p, path)) });
      }
      files = files.filter((rb) => !bad.includes(rb));
    }
  }
}

function sourceName(rb: Runbook): string {
  return rb.source.kind === 'file' ? rb.source.path : `builtin ${rb.name}`;
}

function subSteps(rb: Runbook): SubRunbookStep[] {
  return rb.steps.filter((s): s is SubRunbookStep => s.kind === 'runbook');
}

/** Each cycle of runbooks calling runbooks once, as a chain that ends where it starts. */
function subRunbookCycles(byName: Map<string, Runbook>): string[][] {
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (name: string) => {
    state.set(name, 'active');
    stack.push(name);
    const rb = byName.get(name)!;
    for (const child of new Set(subSteps(rb).map((s) => s.runbook))) {
      if (!byName.has(child)) continue;
      const s = state.get(child);
      if (s === 'active') cycles.push([...stack.slice(stack.indexOf(child)), child]);
      else if (s === undefined) visit(child);
    }
    stack.pop();
    state.set(name, 'done');
  };
  for (const name of [...byName.keys()].sort()) if (!state.has(name)) visit(name);
  return cycles;
}
