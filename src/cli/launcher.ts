/**
 * The entry of the bundle, dist/gameops.mjs (what bin/gameops runs after `npm run setup`): runs the CLI
 * from dist/app/ with a V8 code cache of the functions each command runs (src/cli/code-cache.ts).
 * scripts/build.ts defines GAMEOPS_BUILD_ID, a hash of dist/app/, so a rebuilt bundle never meets the
 * cache of another one.
 */
import { join } from 'node:path';
import { runBundle } from './code-cache.ts';

declare const GAMEOPS_BUILD_ID: string;

runBundle(join(import.meta.dirname, 'app'), GAMEOPS_BUILD_ID);
