/** The built-in runbooks: the daily check (§1.1), the troubleshooting runbooks (§3) and backups (§5). */
import type { RunbookInput } from '../input.ts';
import {
  backupDrillRunbook,
  backupPruneRunbook,
  backupRestoreRunbook,
  backupRunbook,
  backupVerifyRunbook,
} from './backup.ts';
import { dailyCheckRunbook } from './daily-check.ts';
import { dbMaintenanceRunbook } from './db-maintenance.ts';
import { highCpuRunbook } from './high-cpu.ts';
import { maintenanceReopenRunbook, maintenanceRunbook } from './maintenance.ts';
import { memoryLeakRunbook } from './memory-leak.ts';
import { slowQueriesRunbook } from './slow-queries.ts';

export { backupDrillRunbook, backupPruneRunbook, backupRestoreRunbook, backupRunbook, backupVerifyRunbook };
export { dbMaintenanceRunbook };
export { dailyCheckRunbook, highCpuRunbook, memoryLeakRunbook, slowQueriesRunbook };
export { maintenanceReopenRunbook, maintenanceRunbook };

/** Every built-in runbook as written; compile each with `compileRunbook(input, catalog, { kind: 'builtin' })`. */
export function builtinRunbooks(): RunbookInput[] {
  return [
    dailyCheckRunbook(),
    highCpuRunbook(),
    memoryLeakRunbook(),
    slowQueriesRunbook(),
    backupRunbook(),
    backupDrillRunbook(),
    backupRestoreRunbook(),
    backupVerifyRunbook(),
    backupPruneRunbook(),
    maintenanceRunbook(),
    maintenanceReopenRunbook(),
    dbMaintenanceRunbook(),
  ];
}
