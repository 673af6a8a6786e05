/**
 * The namespace's config for backups (runbook §5): every ConfigMap and Secret, as port `ConfigObject`s.
 *
 * Export leaves out what the cluster makes and owns itself: service-account token Secrets
 * (`kubernetes.io/service-account-token`), Helm release records (`helm.sh/release.v1`, restored by Helm,
 * not by copying) and the `kube-root-ca.crt` ConfigMap that every namespace gets. Labels are kept;
 * server metadata (uid, resourceVersion, managedFields, ownerReferences, timestamps) is dropped.
 *
 * Apply creates each object, or on 409 AlreadyExists reads the current one and replaces it with its
 * resourceVersion as the precondition (a bounded retry when it changed meanwhile). Annotations of an
 * object that is replaced stay as they are (they are not saved). Values are never logged.
 */
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { ConflictError, InputError, UnavailableError } from '../../core/index.ts';
import type { ConfigApplyResult, ConfigObject } from '../port.ts';
import type { Kube } from './client.ts';

/** What the adapter logs through (the platform's logger). */
interface Log {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export const EXCLUDED_SECRET_TYPES: readonly string[] = [
  'kubernetes.io/service-account-token',
  'helm.sh/release.v1',
];
export const EXCLUDED_CONFIGMAPS: readonly string[] = ['kube-root-ca.crt'];

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const KEY = /^[-._a-zA-Z0-9]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const REPLACE_ATTEMPTS = 4;

function isStringMap(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === 'string')
  );
}

function byKindAndName(a: ConfigObject, b: ConfigObject): number {
  if (a.kind !== b.kind) return a.kind < b.kind ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function labelsOf(labels: Record<string, string> | undefined): { labels?: Record<string, string> } {
  return labels && Object.keys(labels).length > 0 ? { labels: { ...labels } } : {};
}

/** A ConfigMap as a ConfigObject: `data` (UTF-8) and `binaryData` (base64) in one base64 map. */
function fromConfigMap(cm: V1ConfigMap, ns: string): ConfigObject {
  const name = cm.metadata?.name;
  if (typeof name !== 'string' || name === '')
    throw new UnavailableError(`the Kubernetes API listed a configmap without a name in namespace ${ns}`);
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(cm.data ?? {})) {
    if (typeof value !== 'string')
      throw new UnavailableError(`configmap ${ns}/${name} has a non-string value for ${key}`);
    data[key] = Buffer.from(value, 'utf8').toString('base64');
  }
  const binaryKeys: string[] = [];
  for (const [key, value] of Object.entries(cm.binaryData ?? {})) {
    if (typeof value !== 'string')
      throw new UnavailableError(`configmap ${ns}/${name} has a non-string binaryData value for ${key}`);
    data[key] = value;
    binaryKeys.push(key);
  }
  return {
    kind: 'ConfigMap',
    name,
    ...labelsOf(cm.metadata?.labels),
    ...(binaryKeys.length > 0 ? { binaryKeys: binaryKeys.sort() } : {}),
    data,
  };
}

function fromSecret(secret: V1Secret, ns: string): ConfigObject {
  const name = secret.metadata?.name;
  if (typeof name !== 'string' || name === '')
    throw new UnavailableError(`the Kubernetes API listed a secret without a name in namespace ${ns}`);
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(secret.data ?? {})) {
    // Never the value in a message.
    if (typeof value !== 'string')
      throw new UnavailableError(`secret ${ns}/${name} has a non-string value for ${key}`);
    data[key] = value;
  }
  return { kind: 'Secret', name, type: secret.type ?? 'Opaque', ...labelsOf(secret.metadata?.labels), data };
}

/** Every ConfigMap and Secret of `ns` but the excluded ones, sorted by kind and name. */
export async function exportNamespaceConfig(kube: Kube, ns: string, log: Log): Promise<ConfigObject[]> {
  const [configMaps, secrets] = await Promise.all([
    kube.call({ action: 'listing', kind: 'configmaps', namespace: ns }, (o) =>
      kube.core.listNamespacedConfigMap({ namespace: ns }, o),
    ),
    kube.call({ action: 'listing', kind: 'secrets', namespace: ns }, (o) =>
      kube.core.listNamespacedSecret({ namespace: ns }, o),
    ),
  ]);
  if (!Array.isArray(configMaps.items) || !Array.isArray(secrets.items))
    throw new UnavailableError(`the Kubernetes API answered a list in namespace ${ns} without items`);
  const objects: ConfigObject[] = [];
  let skipped = 0;
  for (const cm of configMaps.items) {
    if (EXCLUDED_CONFIGMAPS.includes(cm.metadata?.name ?? '')) skipped++;
    else objects.push(fromConfigMap(cm, ns));
  }
  for (const secret of secrets.items) {
    if (EXCLUDED_SECRET_TYPES.includes(secret.type ?? '')) skipped++;
    else objects.push(fromSecret(secret, ns));
  }
  objects.sort(byKindAndName);
  log.info(
    {
      namespace: ns,
      configMaps: objects.filter((o) => o.kind === 'ConfigMap').length,
      secrets: objects.filter((o) => o.kind === 'Secret').length,
      skipped,
    },
    'config objects exported',
  );
  return objects;
}

/**
 * Checks every object before anything is written.
 * @throws InputError naming the object and what is wrong (never a value)
 */
export function checkConfigObjects(objects: readonly ConfigObject[]): void {
  const list: unknown = objects;
  if (!Array.isArray(list)) throw new InputError('config objects: a list of objects');
  const seen = new Set<string>();
  for (const [index, object] of objects.entries()) {
    if (typeof object !== 'object' || object === null)
      throw new InputError(`config object ${index}: not an object`);
    const kind = object.kind as string;
    const name = object.name as unknown;
    const what = `config object ${typeof kind === 'string' ? kind : '?'} ${JSON.stringify(name)?.slice(0, 120) ?? '?'}`;
    if (kind !== 'ConfigMap' && kind !== 'Secret')
      throw new InputError(`${what}: Kubernetes holds ConfigMaps and Secrets only`);
    if (typeof name !== 'string' || name.length > 253 || !NAME.test(name))
      throw new InputError(`${what}: the name must be a DNS subdomain (lower case letters, digits, - and .)`);
    if (seen.has(`${kind}/${name}`)) throw new InputError(`${what}: listed twice`);
    seen.add(`${kind}/${name}`);
    const data: unknown = object.data;
    if (!isStringMap(data)) throw new InputError(`${what}: data must be a map of base64 strings`);
    for (const [key, value] of Object.entries(data)) {
      if (key.length > 253 || !KEY.test(key))
        throw new InputError(`${what}: key ${JSON.stringify(key.slice(0, 80))} is not a valid config key`);
      if (!BASE64.test(value)) throw new InputError(`${what}: the value of ${key} is not base64`);
    }
    if (object.labels !== undefined && !isStringMap(object.labels))
      throw new InputError(`${what}: labels must be a map of strings`);
    if (kind === 'Secret') {
      if (object.type !== undefined && (typeof object.type !== 'string' || object.type === ''))
        throw new InputError(`${what}: type must be a non-empty string`);
      if (EXCLUDED_SECRET_TYPES.includes(object.type ?? ''))
        throw new InputError(`${what}: a ${object.type} Secret is made by the cluster, not restored`);
    } else if (object.binaryKeys !== undefined) {
      const keys: unknown = object.binaryKeys;
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string' && Object.hasOwn(data, k)))
        throw new InputError(`${what}: binaryKeys must name keys of data`);
    }
    if (kind === 'ConfigMap') {
      // Keys not in binaryKeys go to `data`, which holds UTF-8 text only.
      const binary = new Set(object.binaryKeys ?? []);
      for (const [key, value] of Object.entries(data)) {
        if (binary.has(key)) continue;
        const bytes = Buffer.from(value, 'base64');
        if (!Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes))
          throw new InputError(`${what}: the value of ${key} is not UTF-8 text (list it in binaryKeys)`);
      }
    }
  }
}

function configMapBody(object: ConfigObject, ns: string): V1ConfigMap {
  const binary = new Set(object.binaryKeys ?? []);
  const data: Record<string, string> = {};
  const binaryData: Record<string, string> = {};
  for (const [key, value] of Object.entries(object.data)) {
    if (binary.has(key)) binaryData[key] = value;
    else data[key] = Buffer.from(value, 'base64').toString('utf8');
  }
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: object.name, namespace: ns, ...labelsOf(object.labels) },
    data,
    ...(binary.size > 0 ? { binaryData } : {}),
  };
}

function secretBody(object: ConfigObject, ns: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: object.name, namespace: ns, ...labelsOf(object.labels) },
    type: object.type ?? 'Opaque',
    data: { ...object.data },
  };
}

/**
 * Creates or replaces each object, one after the other (in the order given).
 * @throws InputError (checked first, nothing written), NotAllowedError (RBAC), or the API's failure
 *   naming the object; objects before it were applied
 */
export async function applyNamespaceConfig(
  kube: Kube,
  ns: string,
  objects: readonly ConfigObject[],
  log: Log,
): Promise<ConfigApplyResult> {
  checkConfigObjects(objects);
  await preflight(kube, ns, objects);
  let created = 0;
  let replaced = 0;
  for (const object of objects) {
    const how =
      object.kind === 'ConfigMap'
        ? await applyConfigMap(kube, ns, configMapBody(object, ns), log)
        : await applySecret(kube, ns, secretBody(object, ns), log);
    if (how === 'created') created++;
    else replaced++;
  }
  log.info({ namespace: ns, created, replaced }, 'config objects applied');
  return { created, replaced };
}

/**
 * Finds, before anything is written, what would stop the apply halfway: a Secret whose type differs
 * from the saved one, and an immutable object whose data differs (the API refuses to change either).
 * @throws ConflictError naming every such object
 */
async function preflight(kube: Kube, ns: string, objects: readonly ConfigObject[]): Promise<void> {
  const [configMaps, secrets] = await Promise.all([
    kube.call({ action: 'listing', kind: 'configmaps', namespace: ns }, (o) =>
      kube.core.listNamespacedConfigMap({ namespace: ns }, o),
    ),
    kube.call({ action: 'listing', kind: 'secrets', namespace: ns }, (o) =>
      kube.core.listNamespacedSecret({ namespace: ns }, o),
    ),
  ]);
  const live = new Map<string, V1ConfigMap | V1Secret>();
  for (const cm of configMaps.items ?? []) live.set(`ConfigMap/${cm.metadata?.name ?? ''}`, cm);
  for (const secret of secrets.items ?? []) live.set(`Secret/${secret.metadata?.name ?? ''}`, secret);
  const problems: string[] = [];
  for (const object of objects) {
    const current = live.get(`${object.kind}/${object.name}`);
    if (!current) continue;
    if (object.kind === 'Secret') {
      const type = (current as V1Secret).type ?? 'Opaque';
      if (type !== (object.type ?? 'Opaque'))
        problems.push(
          `secret ${ns}/${object.name} exists with type ${type}, the saved one has type ${object.type ?? 'Opaque'} (a Secret's type cannot change; delete it first)`,
        );
    }
    if (current.immutable === true) {
      const body = object.kind === 'ConfigMap' ? configMapBody(object, ns) : secretBody(object, ns);
      const same =
        JSON.stringify(sortedEntries(current.data)) === JSON.stringify(sortedEntries(body.data)) &&
        JSON.stringify(sortedEntries((current as V1ConfigMap).binaryData)) ===
          JSON.stringify(sortedEntries((body as V1ConfigMap).binaryData));
      if (!same)
        problems.push(
          `${object.kind === 'ConfigMap' ? 'configmap' : 'secret'} ${ns}/${object.name} is immutable and its data differs from the saved one (delete it first to restore it)`,
        );
    }
  }
  if (problems.length > 0)
    throw new ConflictError(`nothing was applied: ${problems.join('; ')}`, { details: { problems } });
}

function sortedEntries(data: Record<string, string> | undefined): Array<[string, string]> {
  return Object.entries(data ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

type Options = Parameters<Parameters<Kube['call']>[1]>[0];

/** How to create, read and replace one kind of namespaced object, for {@link createOrReplace}. */
interface ObjectApi<T> {
  kind: 'configmap' | 'secret';
  create(body: T, o: Options): Promise<unknown>;
  read(name: string, o: Options): Promise<T>;
  replace(name: string, body: T, o: Options): Promise<unknown>;
  /** Throws when the object found cannot be replaced by `body` at all. */
  check?(current: T, name: string): void;
}

/**
 * Creates `body`, or replaces the object of that name, keeping its annotations and retrying (up to
 * REPLACE_ATTEMPTS) when it changes between the read and the replace.
 * @throws ConflictError when it keeps changing, or `api.check` refuses it; the platform's errors otherwise.
 */
async function createOrReplace<T extends V1ConfigMap | V1Secret>(
  kube: Kube,
  ns: string,
  body: T,
  api: ObjectApi<T>,
  log: Log,
): Promise<'created' | 'replaced'> {
  const name = body.metadata!.name!;
  const kind = api.kind;
  try {
    await kube.call({ action: 'creating', kind, namespace: ns, name }, (o) => api.create(body, o));
    return 'created';
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
  for (let attempt = 1; ; attempt++) {
    const current = await kube.call({ action: 'reading', kind, namespace: ns, name }, (o) =>
      api.read(name, o),
    );
    api.check?.(current, name);
    const { annotations, ownerReferences, finalizers } = current.metadata ?? {};
    // What the live object has that a backup does not restore: kept, so an operator-managed object
    // is not orphaned by the replace.
    const next: T = {
      ...body,
      metadata: {
        ...body.metadata,
        resourceVersion: current.metadata?.resourceVersion,
        ...(annotations ? { annotations } : {}),
        ...(ownerReferences ? { ownerReferences } : {}),
        ...(finalizers ? { finalizers } : {}),
      },
    };
    try {
      await kube.call({ action: 'replacing', kind, namespace: ns, name }, (o) => api.replace(name, next, o));
      return 'replaced';
    } catch (err) {
      if (!(err instanceof ConflictError) || attempt >= REPLACE_ATTEMPTS) throw err;
      log.debug(
        { [kind === 'configmap' ? 'configMap' : 'secret']: name, attempt },
        `${kind} changed meanwhile; reading it again`,
      );
    }
  }
}

function applyConfigMap(
  kube: Kube,
  ns: string,
  body: V1ConfigMap,
  log: Log,
): Promise<'created' | 'replaced'> {
  return createOrReplace(
    kube,
    ns,
    body,
    {
      kind: 'configmap',
      create: (b, o) => kube.core.createNamespacedConfigMap({ namespace: ns, body: b }, o),
      read: (name, o) => kube.core.readNamespacedConfigMap({ name, namespace: ns }, o),
      replace: (name, b, o) => kube.core.replaceNamespacedConfigMap({ name, namespace: ns, body: b }, o),
    },
    log,
  );
}

function applySecret(kube: Kube, ns: string, body: V1Secret, log: Log): Promise<'created' | 'replaced'> {
  return createOrReplace(
    kube,
    ns,
    body,
    {
      kind: 'secret',
      create: (b, o) => kube.core.createNamespacedSecret({ namespace: ns, body: b }, o),
      read: (name, o) => kube.core.readNamespacedSecret({ name, namespace: ns }, o),
      replace: (name, b, o) => kube.core.replaceNamespacedSecret({ name, namespace: ns, body: b }, o),
      check: (current, name) => {
        if ((current.type ?? 'Opaque') !== body.type)
          throw new ConflictError(
            `secret ${ns}/${name} exists with type ${current.type ?? 'Opaque'}, the saved one has type ${body.type}: a Secret's type cannot change; delete it first to restore it`,
          );
      },
    },
    log,
  );
}
