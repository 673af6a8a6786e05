/**
 * Test fixture, run as a separate process by store.test.ts: opens the store in a data directory,
 * records one run, prints `ready <pid>` and waits to be killed.
 * Usage: node src/store/hold-data-dir.fixture.ts <dataDir> <runId>
 */
import { openStore } from './index.ts';

const [dataDir, runId] = process.argv.slice(2);
if (!dataDir || !runId) {
  process.stderr.write('usage: hold-data-dir.fixture.ts <dataDir> <runId>\n');
  process.exit(2);
}
const store = await openStore({ dataDir });
await store.checkRuns.record({
  id: runId,
  kind: 'daily',
  service: 'fixture',
  environment: 'test',
  trigger: 'cli',
  status: 'ok',
  startedAt: new Date().toISOString(),
  finishedAt: new Date().toISOString(),
  durationMs: 0,
  results: [],
});
process.stdout.write(`ready ${process.pid}\n`);
setInterval(() => undefined, 60_000);
