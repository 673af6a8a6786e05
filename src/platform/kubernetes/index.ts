export { createKubernetesPlatform, KubernetesPlatform } from './platform.ts';
export type { KubernetesPlatformOptions, PlatformLog } from './platform.ts';
export { loadKubeConfig } from './client.ts';
export { cpuMillicores, memoryBytes, parseGoDuration, parseQuantity } from './quantity.ts';
export { checkVersion, imageVersion, parseImage, withTag } from './image.ts';
export { createRegistryCheck } from './registry.ts';
export type { ImageCheck, ImageCheckResult } from './registry.ts';
