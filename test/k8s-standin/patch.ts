/**
 * The three patch types the API server accepts for built-in resources, as the clients send them:
 * JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch (merge patch whose lists
 * of known kinds are merged by key, with the `$patch` directives `delete` and `replace`).
 */
import { clone, deepEqual, isObject, type Json, type JsonObject } from './json.ts';

export class PatchError extends Error {
  readonly status: 400 | 415 | 422;
  constructor(status: 400 | 415 | 422, message: string) {
    super(message);
    this.status = status;
  }
}

export const PATCH_TYPES = [
  'application/json-patch+json',
  'application/merge-patch+json',
  'application/strategic-merge-patch+json',
] as const;
export type PatchType = (typeof PATCH_TYPES)[number];

export function applyPatch(target: JsonObject, patch: Json, type: PatchType): JsonObject {
  switch (type) {
    case 'application/merge-patch+json':
      if (!isObject(patch)) throw new PatchError(400, 'merge patch must be a JSON object');
      return mergePatch(target, patch) as JsonObject;
    case 'application/strategic-merge-patch+json':
      if (!isObject(patch)) throw new PatchError(400, 'strategic merge patch must be a JSON object');
      return strategicMerge(target, patch, '') as JsonObject;
    case 'application/json-patch+json':
      if (!Array.isArray(patch)) throw new PatchError(400, 'json patch must be a JSON array of operations');
      return jsonPatch(target, patch);
  }
}

export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key] ?? null, value);
  }
  return out;
}

/** Lists merged by a key in strategic merge patch (`patchMergeKey` in the Kubernetes API types). */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  ports: 'containerPort',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  volumes: 'name',
  imagePullSecrets: 'name',
  conditions: 'type',
  ownerReferences: 'uid',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
};

function strategicMerge(target: Json, patch: Json, field: string): Json {
  if (!isObject(patch)) return clone(patch);
  if (patch['$patch'] === 'replace') {
    const rest = clone(patch);
    delete rest['$patch'];
    return rest;
  }
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$setElementOrder/') || key === '$retainKeys' || key === '$patch') continue;
    if (key.startsWith('$deleteFromPrimitiveList/')) {
      const list = out[key.slice('$deleteFromPrimitiveList/'.length)];
      if (Array.isArray(list) && Array.isArray(value)) {
        out[key.slice('$deleteFromPrimitiveList/'.length)] = list.filter(
          (v) => !value.some((d) => deepEqual(d, v)),
        );
      }
      continue;
    }
    if (value === null) {
      delete out[key];
      continue;
    }
    const mergeKey = MERGE_KEYS[key];
    const current = out[key];
    if (Array.isArray(value) && mergeKey !== undefined && key !== field) {
      out[key] = mergeList(Array.isArray(current) ? current : [], value, mergeKey, key);
    } else {
      out[key] = strategicMerge(current ?? null, value, key);
    }
  }
  return out;
}

function mergeList(current: Json[], patch: Json[], mergeKey: string, field: string): Json[] {
  if (patch.some((p) => isObject(p) && p['$patch'] === 'replace')) {
    return patch.filter((p) => !(isObject(p) && p['$patch'] === 'replace')).map((p) => clone(p));
  }
  const out = current.map((c) => clone(c));
  for (const item of patch) {
    if (!isObject(item) || item[mergeKey] === undefined) {
      throw new PatchError(
        422,
        `strategic merge patch: every element of ${field} needs the merge key "${mergeKey}"`,
      );
    }
    const at = out.findIndex((c) => isObject(c) && deepEqual(c[mergeKey], item[mergeKey]));
    if (item['$patch'] === 'delete') {
      if (at >= 0) out.splice(at, 1);
      continue;
    }
    if (at >= 0) out[at] = strategicMerge(out[at]!, item, field);
    else out.push(strategicMerge({}, item, field));
  }
  return out;
}

function decodePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new PatchError(422, `json patch: invalid path "${path}"`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function parentOf(doc: Json, tokens: string[], path: string): { parent: JsonObject | Json[]; last: string } {
  let node: Json = doc;
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(node)) node = node[Number(token)] ?? null;
    else if (isObject(node)) node = node[token] ?? null;
    else node = null;
    if (node === null) throw new PatchError(422, `json patch: path "${path}" does not exist`);
  }
  if (!Array.isArray(node) && !isObject(node))
    throw new PatchError(422, `json patch: path "${path}" does not exist`);
  return { parent: node, last: tokens[tokens.length - 1]! };
}

function getAt(doc: Json, path: string): Json {
  let node: Json = doc;
  for (const token of decodePointer(path)) {
    const next: Json | undefined = Array.isArray(node)
      ? node[Number(token)]
      : isObject(node)
        ? node[token]
        : undefined;
    if (next === undefined) throw new PatchError(422, `json patch: path "${path}" does not exist`);
    node = next;
  }
  return node;
}

function arrayIndex(list: Json[], token: string, path: string, forAdd: boolean): number {
  if (forAdd && token === '-') return list.length;
  const i = Number(token);
  if (!/^(0|[1-9][0-9]*)$/.test(token) || i > list.length || (!forAdd && i === list.length)) {
    throw new PatchError(422, `json patch: index out of range in "${path}"`);
  }
  return i;
}

function removeAt(doc: Json, path: string): Json {
  const tokens = decodePointer(path);
  if (tokens.length === 0) throw new PatchError(422, 'json patch: cannot remove the whole document');
  const { parent, last } = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, path, false), 1)[0]!;
  if (!Object.hasOwn(parent, last)) throw new PatchError(422, `json patch: path "${path}" does not exist`);
  const old = parent[last]!;
  delete parent[last];
  return old;
}

function addAt(doc: Json, path: string, value: Json, replace: boolean): Json {
  const tokens = decodePointer(path);
  if (tokens.length === 0) return clone(value);
  const { parent, last } = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) {
    const i = arrayIndex(parent, last, path, !replace);
    if (replace) parent[i] = clone(value);
    else parent.splice(i, 0, clone(value));
  } else {
    if (replace && !Object.hasOwn(parent, last))
      throw new PatchError(422, `json patch: path "${path}" does not exist`);
    parent[last] = clone(value);
  }
  return doc;
}

export function jsonPatch(target: JsonObject, ops: Json[]): JsonObject {
  let doc: Json = clone(target);
  for (const op of ops) {
    if (!isObject(op) || typeof op['op'] !== 'string' || typeof op['path'] !== 'string') {
      throw new PatchError(400, 'json patch: each operation needs "op" and "path"');
    }
    const path = op['path'];
    const from = typeof op['from'] === 'string' ? op['from'] : undefined;
    switch (op['op']) {
      case 'add':
        doc = addAt(doc, path, op['value'] ?? null, false);
        break;
      case 'replace':
        doc = addAt(doc, path, op['value'] ?? null, true);
        break;
      case 'remove':
        removeAt(doc, path);
        break;
      case 'test':
        if (!deepEqual(getAt(doc, path), op['value'] ?? null)) {
          throw new PatchError(422, `json patch: test failed at "${path}"`);
        }
        break;
      case 'move': {
        if (from === undefined) throw new PatchError(400, 'json patch: move needs "from"');
        const value = removeAt(doc, from);
        doc = addAt(doc, path, value, false);
        break;
      }
      case 'copy': {
        if (from === undefined) throw new PatchError(400, 'json patch: copy needs "from"');
        doc = addAt(doc, path, getAt(doc, from), false);
        break;
      }
      default:
        throw new PatchError(400, `json patch: unknown operation "${String(op['op'])}"`);
    }
  }
  if (!isObject(doc)) throw new PatchError(422, 'json patch: the result is not an object');
  return doc;
}
