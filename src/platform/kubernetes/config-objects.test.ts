/**
 * The namespace's ConfigMaps and Secrets for backups (exportConfigObjects / applyConfigObjects), against
 * the Kubernetes API **stand-in** (test/k8s-standin; not Kubernetes: docs/adr/0005).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConflictError, InputError, NotAllowedError } from '../../core/index.ts';
import type { ConfigObject } from '../port.ts';
import type { ConfigMap, Secret } from '../../../test/k8s-standin/index.ts';
import { startFleet, type Fleet } from '../../../test/k8s-standin/fleet.ts';

const fleets: Fleet[] = [];
async function fleet(options: Parameters<typeof startFleet>[0] = {}): Promise<Fleet> {
  const f = await startFleet({ replicas: 1, ...options });
  fleets.push(f);
  return f;
}
afterEach(async () => {
  await Promise.all(fleets.splice(0).map((f) => f.close()));
});

/** RBAC for the ServiceAccount gameops in namespace game granting only `rules`. */
function rbacGranting(rules: string): string {
  return `apiVersion: v1
kind: ServiceAccount
metadata: { name: gameops, namespace: game }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: gameops, namespace: game }
rules:
${rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: gameops, namespace: game }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: gameops }
subjects: [{ kind: ServiceAccount, name: gameops, namespace: game }]
`;
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const CANARY = 'canary-db-password-5f1d8e2a';

/** A namespace as a real one looks: app config and secrets, plus what the cluster and Helm put there. */
function seed(f: Fleet): void {
  const s = f.standIn;
  s.createSecret('db-credentials', { password: CANARY, user: 'game' }, { labels: { app: 'game' } });
  s.createSecret('tls-cert', { 'tls.crt': 'CERT', 'tls.key': 'KEY' }, { type: 'kubernetes.io/tls' });
  s.createSecret(
    'default-token-x7k2p',
    { token: 'sa-token' },
    { type: 'kubernetes.io/service-account-token' },
  );
  s.createSecret('sh.helm.release.v1.game.v3', { release: 'H4sI' }, { type: 'helm.sh/release.v1' });
  s.createConfigMap('kube-root-ca.crt', { 'ca.crt': '-----BEGIN CERTIFICATE-----' });
  s.createConfigMap('matchmaking', { 'rules.yaml': 'regions: [eu, us]\n', 'unicode.txt': 'ünïcödé ✓' });
  // binaryData, as `kubectl create configmap --from-file` makes for a file that is not UTF-8.
  const cm = s.store.get<ConfigMap>('configmaps', 'game', 'matchmaking')!;
  cm.binaryData = { 'map.bin': Buffer.from([0, 255, 254, 1]).toString('base64') };
  cm.metadata.labels = { app: 'game', tier: 'config' };
  cm.metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'Thing', name: 'x', uid: 'u-1' }];
}

describe('config objects: export (API stand-in)', () => {
  it('lists every ConfigMap and Secret of the namespace, without SA tokens, Helm releases or kube-root-ca.crt', async () => {
    const f = await fleet({ rbac: false });
    seed(f);
    const objects = await f.platform.exportConfigObjects();
    expect(objects.map((o) => `${o.kind}/${o.name}`)).toEqual([
      'ConfigMap/game-config',
      'ConfigMap/matchmaking',
      'Secret/db-credentials',
      'Secret/tls-cert',
    ]);
    const mm = objects.find((o) => o.name === 'matchmaking')!;
    expect(mm).toEqual({
      kind: 'ConfigMap',
      name: 'matchmaking',
      labels: { app: 'game', tier: 'config' },
      binaryKeys: ['map.bin'],
      data: {
        'rules.yaml': b64('regions: [eu, us]\n'),
        'unicode.txt': b64('ünïcödé ✓'),
        'map.bin': Buffer.from([0, 255, 254, 1]).toString('base64'),
      },
    });
    const db = objects.find((o) => o.name === 'db-credentials')!;
    expect(db).toEqual({
      kind: 'Secret',
      name: 'db-credentials',
      type: 'Opaque',
      labels: { app: 'game' },
      data: { password: b64(CANARY), user: b64('game') },
    });
    expect(objects.find((o) => o.name === 'tls-cert')!.type).toBe('kubernetes.io/tls');
    // No server metadata travels.
    expect(JSON.stringify(objects)).not.toMatch(/resourceVersion|uid|ownerReferences|managedFields/);
  });

  it('refused by RBAC (no list on secrets): NotAllowedError naming verb, resource and namespace', async () => {
    const f = await fleet({
      rbac: rbacGranting("  - { apiGroups: [''], resources: ['configmaps'], verbs: ['list'] }"),
    });
    const err = await f.platform.exportConfigObjects().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotAllowedError);
    expect((err as Error).message).toContain('listing secrets in namespace game');
    expect((err as Error).message).toContain('cannot list resource "secrets"');
  });
});

describe('config objects: apply (API stand-in)', () => {
  it('recreates deleted objects and replaces changed ones; the namespace reads back as exported', async () => {
    const f = await fleet({ rbac: false });
    seed(f);
    const saved = await f.platform.exportConfigObjects();
    // Disaster: two objects deleted, one changed, one new label.
    f.standIn.store.delete('secrets', 'game', 'db-credentials');
    f.standIn.store.delete('configmaps', 'game', 'matchmaking');
    const cm = f.standIn.store.get<ConfigMap>('configmaps', 'game', 'game-config')!;
    cm.data = { motd: 'changed', extra: 'x' };
    cm.metadata.annotations = { 'team/owner': 'ops' };
    const tls = f.standIn.store.get<Secret>('secrets', 'game', 'tls-cert')!;
    tls.metadata.labels = { stray: 'yes' };

    const result = await f.platform.applyConfigObjects(saved);
    expect(result).toEqual({ created: 2, replaced: 2 });
    expect(await f.platform.exportConfigObjects()).toEqual(saved);
    // binaryData went back to binaryData; annotations of a replaced object stay.
    const back = f.standIn.store.get<ConfigMap>('configmaps', 'game', 'matchmaking')!;
    expect(Object.keys(back.binaryData ?? {})).toEqual(['map.bin']);
    expect(Object.keys(back.data ?? {}).sort()).toEqual(['rules.yaml', 'unicode.txt']);
    expect(f.standIn.store.get<ConfigMap>('configmaps', 'game', 'game-config')!.metadata.annotations).toEqual(
      {
        'team/owner': 'ops',
      },
    );
    // Applying again replaces everything, creates nothing.
    expect(await f.platform.applyConfigObjects(saved)).toEqual({ created: 0, replaced: 4 });
  });

  it('refuses to replace a Secret whose type differs from the saved one, naming it', async () => {
    const f = await fleet({ rbac: false });
    seed(f);
    const saved = await f.platform.exportConfigObjects();
    f.standIn.store.get<Secret>('secrets', 'game', 'tls-cert')!.type = 'Opaque';
    const err = await f.platform.applyConfigObjects(saved).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toMatch(
      /secret game\/tls-cert exists with type Opaque.*kubernetes\.io\/tls/,
    );
  });

  it('replaces with the current resourceVersion: a write in between is retried, not lost', async () => {
    const f = await fleet({ rbac: false });
    const saved = await f.platform.exportConfigObjects();
    f.standIn.interfere('configmaps', 'game-config', 1);
    expect(await f.platform.applyConfigObjects(saved)).toEqual({ created: 0, replaced: 1 });
    expect((await f.platform.readConfig())['motd']).toBe('hello');
    expect((await f.platform.readConfig())['concurrent-writer']).toBeUndefined();
  });

  it('checks every object before writing any: a bad one is an InputError naming it', async () => {
    const f = await fleet({ rbac: false });
    const good: ConfigObject = { kind: 'Secret', name: 'fresh', data: { k: b64('v') } };
    const bad: ConfigObject[] = [
      { kind: 'File', name: 'x', data: {} },
      { kind: 'Secret', name: 'Bad_Name', data: {} },
      { kind: 'Secret', name: 'notb64', data: { k: 'not base64!' } },
      { kind: 'ConfigMap', name: 'binary', data: { k: Buffer.from([0xff, 0xfe]).toString('base64') } },
      { kind: 'Secret', name: 'sa', type: 'kubernetes.io/service-account-token', data: {} },
      { kind: 'ConfigMap', name: 'bk', binaryKeys: ['missing'], data: {} },
    ];
    for (const object of bad) {
      const err = await f.platform.applyConfigObjects([good, object]).catch((e: unknown) => e);
      expect(err, object.name).toBeInstanceOf(InputError);
      expect((err as Error).message).toContain(object.name);
    }
    expect(f.standIn.store.get('secrets', 'game', 'fresh')).toBeUndefined();
  });

  it('a type conflict found up front: nothing is applied, not even the ConfigMaps sorted before it', async () => {
    const f = await fleet({ rbac: false });
    seed(f);
    const saved = await f.platform.exportConfigObjects();
    const configMap = saved.find((o) => o.kind === 'ConfigMap')!;
    const before = JSON.stringify(f.standIn.store.get('configmaps', 'game', configMap.name));
    const changed = saved.map((o) => (o === configMap ? { ...o, data: { ...o.data, added: 'eA==' } } : o));
    f.standIn.store.get<Secret>('secrets', 'game', 'tls-cert')!.type = 'Opaque';
    const err = await f.platform.applyConfigObjects(changed).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toMatch(/^nothing was applied: secret game\/tls-cert/);
    expect(JSON.stringify(f.standIn.store.get('configmaps', 'game', configMap.name))).toBe(before);
  });

  it('a Secret whose type changed is a ConflictError naming it (the type is immutable); values never in messages', async () => {
    const f = await fleet({ rbac: false });
    f.standIn.createSecret('api-key', { key: CANARY }, { type: 'Opaque' });
    const err = await f.platform
      .applyConfigObjects([
        { kind: 'Secret', name: 'api-key', type: 'example.com/key', data: { key: b64(CANARY) } },
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toContain('secret game/api-key');
    expect((err as Error).message).not.toContain(CANARY);
    expect((err as Error).message).not.toContain(b64(CANARY));
  });

  it('RBAC refusal of create is a NotAllowedError naming the object, verb, resource and namespace', async () => {
    const f = await fleet({
      rbac: rbacGranting(
        "  - { apiGroups: [''], resources: ['configmaps', 'secrets'], verbs: ['list', 'get'] }",
      ),
    });
    const err = await f.platform
      .applyConfigObjects([{ kind: 'Secret', name: 'db-credentials', data: { password: b64(CANARY) } }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotAllowedError);
    expect((err as Error).message).toContain('creating secret game/db-credentials');
    expect((err as Error).message).toContain('cannot create resource "secrets"');
    expect((err as Error).message).not.toContain(b64(CANARY));
  });
});
