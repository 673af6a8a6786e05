export { StandIn, startStandIn } from './server.ts';
export type {
  DeploymentSeed,
  Fault,
  FaultAction,
  LogCut,
  RecordedRequest,
  StandInOptions,
} from './server.ts';
export { writeKubeconfig } from './kubeconfig.ts';
export type { KubeconfigFile, KubeconfigOptions } from './kubeconfig.ts';
export { parseRbac, grantedPermissions, permissionKey, authorize } from './rbac.ts';
export type { RbacPolicy } from './rbac.ts';
export { parseSelector, matches } from './selector.ts';
export { mergePatch, jsonPatch, applyPatch } from './patch.ts';
export type { Deployment, Pod, ReplicaSet, ConfigMap, Secret } from './objects.ts';
export { RegistryStandIn, startRegistry } from './registry.ts';
export type { RegistryOptions } from './registry.ts';
