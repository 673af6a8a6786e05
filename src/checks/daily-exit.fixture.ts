/**
 * Test fixture (run as a child process by daily.test.ts): runs the daily check against the targets given as
 * JSON in argv[2], prints the run as one JSON line, and then simply returns. If any socket or timer were left
 * behind the process would not exit, which is what the test detects.
 */
import { systemClock } from '../core/index.ts';
import { runDailyCheck } from './daily.ts';
import { testConfig, type TestConfigParts } from './test-support.ts';

const parts = JSON.parse(process.argv[2] ?? '{}') as TestConfigParts;
const run = await runDailyCheck({ config: testConfig(parts), clock: systemClock, trigger: 'cli' });
process.stdout.write(`${JSON.stringify({ run, returnedAt: Date.now() })}\n`);
