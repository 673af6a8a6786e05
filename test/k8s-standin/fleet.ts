/**
 * A game fleet on the API stand-in, ready for the Kubernetes adapter: an OCI registry stand-in holding
 * the game image's tags, the API stand-in enforcing deploy/rbac.yaml, the Deployment `game-server`
 * (image `<registry>/game/server:v1`), the ConfigMap `game-config`, and a kubeconfig file with a
 * `standin` context. The adapter is built from a real config section, as gameops would build it.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { systemClock, type Clock } from '../../src/core/index.ts';
import type { KubernetesPlatformConfig } from '../../src/config/index.ts';
import {
  createKubernetesPlatform,
  type KubernetesPlatformOptions,
} from '../../src/platform/kubernetes/index.ts';
import type { KubernetesPlatform } from '../../src/platform/kubernetes/platform.ts';
import type { ControllerOptions } from './controller.ts';
import { writeKubeconfig, type KubeconfigFile } from './kubeconfig.ts';
import { startRegistry, type RegistryStandIn } from './registry.ts';
import { startStandIn, type DeploymentSeed, type StandIn } from './server.ts';

export const RBAC_PATH = fileURLToPath(new URL('../../deploy/rbac.yaml', import.meta.url));
export const TAGS = ['v1', 'v2', 'v3-broken', 'v4'];

export interface FleetOptions {
  replicas?: number;
  /** Enforce deploy/rbac.yaml, or (a string) this RBAC manifest instead. @default true */
  rbac?: boolean | string;
  controller?: Partial<ControllerOptions>;
  deployment?: Partial<DeploymentSeed>;
  /** Data of `game-config`; false: no ConfigMap. @default { motd: 'hello' } */
  configMap?: Record<string, string> | false;
  /** Extra fields of the platform config section. */
  config?: Partial<KubernetesPlatformConfig>;
  platform?: Partial<Omit<KubernetesPlatformOptions, 'config'>>;
  /** Wait for the initial rollout. @default true */
  waitReady?: boolean;
  clock?: Clock;
}

export interface Fleet {
  standIn: StandIn;
  registry: RegistryStandIn;
  kubeconfig: KubeconfigFile;
  config: KubernetesPlatformConfig;
  /** The adapter (one per fleet; `newPlatform` makes more). */
  platform: KubernetesPlatform;
  newPlatform(
    overrides?: Partial<Omit<KubernetesPlatformOptions, 'config'>>,
    config?: Partial<KubernetesPlatformConfig>,
  ): KubernetesPlatform;
  image(tag: string): string;
  close(): Promise<void>;
}

export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const registry = await startRegistry({ tags: { 'game/server': TAGS } });
  const rbac =
    options.rbac === false
      ? undefined
      : typeof options.rbac === 'string'
        ? options.rbac
        : await readFile(RBAC_PATH, 'utf8');
  const standIn = await startStandIn({
    namespace: 'game',
    ...(rbac ? { rbac } : {}),
    ...(options.controller ? { controller: options.controller } : {}),
  });
  const image = (tag: string): string => registry.image('game/server', tag);
  standIn.createDeployment({
    name: 'game-server',
    replicas: options.replicas ?? 2,
    image: image('v1'),
    labels: { app: 'game-server', tier: 'game' },
    ...options.deployment,
  });
  if (options.configMap !== false)
    standIn.createConfigMap('game-config', options.configMap ?? { motd: 'hello' });
  if (options.waitReady !== false) await standIn.waitForRollout('game-server');
  const kubeconfig = await writeKubeconfig(standIn, { currentIsElsewhere: true });
  const config: KubernetesPlatformConfig = {
    kind: 'kubernetes',
    kubeconfig: kubeconfig.path,
    context: 'standin',
    namespace: 'game',
    deployment: 'game-server',
    configMap: 'game-config',
    opsPort: 'ops',
    rolloutTimeout: 20_000,
    requestTimeout: 15_000,
    verifyImageTag: true,
    ...options.config,
  };
  const platforms: KubernetesPlatform[] = [];
  const newPlatform: Fleet['newPlatform'] = (overrides, extra) => {
    const p = createKubernetesPlatform({
      config: { ...config, ...extra },
      clock: options.clock ?? systemClock,
      requestTimeoutMs: 3000,
      pollMs: { initial: 10, max: 100 },
      ...options.platform,
      ...overrides,
    }) as KubernetesPlatform;
    platforms.push(p);
    return p;
  };
  const platform = newPlatform();
  return {
    standIn,
    registry,
    kubeconfig,
    config,
    platform,
    newPlatform,
    image,
    async close() {
      await Promise.all(platforms.map((p) => p.close()));
      await standIn.close();
      await registry.close();
      await kubeconfig.remove();
    },
  };
}
