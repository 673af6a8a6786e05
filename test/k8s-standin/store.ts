/**
 * The stand-in's etcd: objects by resource, namespace and name, with ONE resourceVersion counter for
 * the whole cluster (as etcd's revision), bumped on every write, and `metadata.generation` bumped when a
 * write changes `spec` of a resource that has one.
 */
import { randomUUID } from 'node:crypto';
import { clone, deepEqual } from './json.ts';
import type { KObject } from './objects.ts';

export const RESOURCES = [
  'pods',
  'deployments',
  'replicasets',
  'configmaps',
  'secrets',
  'services',
  'horizontalpodautoscalers',
  'nodes',
] as const;
export type Resource = (typeof RESOURCES)[number];

const GENERATIONAL = new Set<Resource>(['deployments', 'replicasets', 'horizontalpodautoscalers']);

function key(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

export class Store {
  #rv = 1000;
  readonly #data = new Map<Resource, Map<string, KObject>>(RESOURCES.map((r) => [r, new Map()]));
  /** Writes per resource, for tests that check what changed. */
  readonly writes = new Map<Resource, number>();

  get resourceVersion(): string {
    return String(this.#rv);
  }

  get<T extends KObject>(resource: Resource, namespace: string | undefined, name: string): T | undefined {
    return this.#data.get(resource)!.get(key(namespace, name)) as T | undefined;
  }

  list<T extends KObject>(resource: Resource, namespace?: string): T[] {
    const all = [...this.#data.get(resource)!.values()] as T[];
    return namespace === undefined ? all : all.filter((o) => o.metadata.namespace === namespace);
  }

  /** Stores a new object: uid, creationTimestamp, resourceVersion and generation are set here. */
  create<T extends KObject>(resource: Resource, obj: T): T {
    const map = this.#data.get(resource)!;
    const k = key(obj.metadata.namespace, obj.metadata.name);
    if (map.has(k)) throw new Error(`${resource} ${k} already exists`);
    obj.metadata.uid = randomUUID();
    obj.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    if (GENERATIONAL.has(resource)) obj.metadata.generation = 1;
    obj.metadata.resourceVersion = String(++this.#rv);
    map.set(k, obj);
    this.#count(resource);
    return obj;
  }

  /**
   * Stores `next` in place of the current object. `previous` is the object as it was before the caller
   * changed it (for the generation check); pass it when `next` is a new object or a changed copy.
   */
  update<T extends KObject>(resource: Resource, next: T, previousSpec?: unknown): T {
    const map = this.#data.get(resource)!;
    const k = key(next.metadata.namespace, next.metadata.name);
    if (GENERATIONAL.has(resource) && previousSpec !== undefined) {
      const spec = (next as unknown as { spec?: unknown }).spec;
      if (!deepEqual(spec, previousSpec)) next.metadata.generation = (next.metadata.generation ?? 1) + 1;
    }
    next.metadata.resourceVersion = String(++this.#rv);
    map.set(k, next);
    this.#count(resource);
    return next;
  }

  delete(resource: Resource, namespace: string | undefined, name: string): boolean {
    const deleted = this.#data.get(resource)!.delete(key(namespace, name));
    if (deleted) {
      ++this.#rv;
      this.#count(resource);
    }
    return deleted;
  }

  /** A deep copy, for handing out or patching. */
  snapshot<T extends KObject>(obj: T): T {
    return clone(obj);
  }

  #count(resource: Resource): void {
    this.writes.set(resource, (this.writes.get(resource) ?? 0) + 1);
  }
}
