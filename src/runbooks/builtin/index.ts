/** The built-in runbooks: the daily check (§1.1) and the troubleshooting runbooks (§3). */
import type { RunbookInput } from '../input.ts';
import { dailyCheckRunbook } from './daily-check.ts';
import { highCpuRunbook } from './high-cpu.ts';
import { memoryLeakRunbook } from './memory-leak.ts';
import { slowQueriesRunbook } from './slow-queries.ts';

export { dailyCheckRunbook, highCpuRunbook, memoryLeakRunbook, slowQueriesRunbook };

/** Every built-in runbook as written; compile each with `compileRunbook(input, catalog, { kind: 'builtin' })`. */
export function builtinRunbooks(): RunbookInput[] {
  return [dailyCheckRunbook(), highCpuRunbook(), memoryLeakRunbook(), slowQueriesRunbook()];
}
