export { openStore } from './store.ts';
export type { Store, StoreOptions } from './store.ts';
export type { CheckRunRepo, ListCheckRunsOptions, RunScope } from './check-runs.ts';
