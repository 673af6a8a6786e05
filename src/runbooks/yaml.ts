/**
 * YAML runbook files: read safely (a regular file of at most 1 MiB), parsed keeping line numbers so that
 * every problem is reported at its `file:line`. Follows src/config/load.ts: yaml's own duplicate-key
 * check is quadratic, so duplicates are found here in linear time; aliases are bounded.
 */
import { closeSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { fileProblem, keyOffset, openNonBlocking, readOpenRegularFile } from '../config/yaml-file.ts';
import type { RunbookProblem } from './compile.ts';
import { pathText } from './input.ts';

/** A runbook file larger than this is refused before it is parsed. */
export const MAX_RUNBOOK_FILE_BYTES = 1024 * 1024;
/** Alias expansions allowed when converting a document (an alias bomb is refused). */
const MAX_ALIAS_COUNT = 50;
/** More keys than this in one mapping is refused (bounds the work on a hostile file). */
const MAX_KEYS_PER_MAP = 10_000;

type Path = Array<string | number>;

/** A parsed YAML document and where each of its values is. */
export interface ParsedYaml {
  value: unknown;
  /** The 1-based line of the value at `path` (of its key, for a mapping entry); for a missing key, its parent's. */
  lineOf: (path: Path) => number | undefined;
}

/**
 * Reads a runbook file: it must be a regular file of at most 1 MiB.
 * @returns the text, or why it cannot be read (a phrase).
 */
export function readRunbookFile(path: string): { text: string } | { problem: string } {
  let fd: number;
  try {
    fd = openNonBlocking(path);
  } catch (err) {
    return { problem: fileProblem(err).message };
  }
  try {
    return { text: readOpenRegularFile(fd, MAX_RUNBOOK_FILE_BYTES, 'a runbook file') };
  } catch (err) {
    return { problem: fileProblem(err).message };
  } finally {
    closeSync(fd);
  }
}

/**
 * Parses YAML text, refusing syntax errors, duplicate keys, non-scalar keys, huge mappings and alias
 * bombs, each as a problem with its line.
 */
export function parseRunbookYaml(text: string, file: string): ParsedYaml | { problems: RunbookProblem[] } {
  const lineCounter = new LineCounter();
  const lineAt = (offset: number | undefined) =>
    offset === undefined ? undefined : lineCounter.linePos(offset).line;
  const problem = (field: string, offset: number | undefined, message: string): RunbookProblem => {
    const line = lineAt(offset);
    return { source: file, ...(line === undefined ? {} : { line }), field, message };
  };
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => problem('', e.pos[0], e.message.split('\n')[0] ?? e.message)),
    };
  }
  const structural = checkMappings(doc, problem, lineAt);
  if (structural.length > 0) return { problems: structural };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) as unknown;
  } catch (err) {
    const aliases = err instanceof ReferenceError && /alias/i.test(err.message);
    return {
      problems: [
        problem(
          '',
          undefined,
          aliases
            ? `aliases expand too far (more than ${MAX_ALIAS_COUNT} expansions)`
            : `cannot be read: ${(err as Error).message}`,
        ),
      ],
    };
  }
  if (value === null || value === undefined) {
    return { problems: [problem('', undefined, 'empty file: a runbook needs name and steps')] };
  }
  return { value, lineOf: (path) => locate(doc, path, lineCounter) };
}

function checkMappings(
  doc: Document.Parsed,
  problem: (field: string, offset: number | undefined, message: string) => RunbookProblem,
  lineAt: (offset: number | undefined) => number | undefined,
): RunbookProblem[] {
  const problems: RunbookProblem[] = [];
  const stack: Array<{ node: unknown; path: Path }> = [{ node: doc.contents, path: [] }];
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const { node, path } = entry;
    if (isSeq(node)) {
      node.items.forEach((item, i) => stack.push({ node: item, path: [...path, i] }));
    } else if (isMap(node)) {
      if (node.items.length > MAX_KEYS_PER_MAP) {
        problems.push(
          problem(
            pathText(path),
            node.range?.[0],
            `a mapping with ${node.items.length} keys; at most ${MAX_KEYS_PER_MAP} are accepted`,
          ),
        );
        continue;
      }
      const seen = new Map<string, number | undefined>();
      for (const pair of node.items) {
        const key: unknown = pair.key;
        if (!isScalar(key)) {
          problems.push(
            problem(
              pathText(path),
              (key as { range?: [number] } | null)?.range?.[0] ?? node.range?.[0],
              'keys must be plain text or numbers (not empty, a list, a mapping or an alias)',
            ),
          );
          continue;
        }
        const name = String(key.value);
        if (seen.has(name)) {
          const first = seen.get(name);
          const firstLine = lineAt(first);
          problems.push(
            problem(
              pathText([...path, name]),
              key.range?.[0],
              `duplicate key${firstLine ? ` (first at line ${firstLine})` : ''}`,
            ),
          );
        } else {
          seen.set(name, key.range?.[0]);
        }
        stack.push({ node: pair.value, path: [...path, name] });
      }
    }
  }
  return problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

/** The line of the deepest YAML node that exists along `path` (for a present mapping key: the key's). */
function locate(doc: Document.Parsed, path: Path, lineCounter: LineCounter): number | undefined {
  for (let depth = path.length; depth >= 0; depth--) {
    const node: unknown = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true);
    if (node && typeof node === 'object' && 'range' in node && Array.isArray(node.range)) {
      const offset =
        depth === path.length ? keyOffset(doc, path, node.range[0] as number) : (node.range[0] as number);
      return lineCounter.linePos(offset).line;
    }
    // A key whose value is empty (`check:`) has no node; point at the key.
    if (depth > 0 && node === null) {
      const parent: unknown = depth === 1 ? doc.contents : doc.getIn(path.slice(0, depth - 1), true);
      if (isMap(parent)) {
        const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === path[depth - 1]);
        if (pair && isScalar(pair.key) && pair.key.range) return lineCounter.linePos(pair.key.range[0]).line;
      }
    }
  }
  return undefined;
}
