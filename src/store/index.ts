export { openStore } from './store.ts';
export type { Store, StoreOptions } from './store.ts';
export type { CheckRunRepo, ListCheckRunsOptions } from './check-runs.ts';
