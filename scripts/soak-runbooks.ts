/**
 * Soak of the runbook crash test (issue #4): the kill -9 iterations of
 * test/e2e/runbook-crash.e2e.test.ts, 200 of them by default, two at a time.
 *
 *   node scripts/soak-runbooks.ts [iterations] [firstSeed]
 *   RUNBOOK_CRASH_SEED=<n> node scripts/soak-runbooks.ts    # replay one seed
 *
 * Prints every failing seed with its replay command and exits 1 when any iteration failed.
 */
import { randomBytes } from 'node:crypto';
import { crashIteration } from '../test/e2e/runbook-crash.support.ts';

const fixed = process.env.RUNBOOK_CRASH_SEED;
const iterations = fixed ? 1 : Number(process.argv[2] ?? 200);
const first = fixed ? Number(fixed) : Number(process.argv[3] ?? randomBytes(4).readUInt32BE(0));
if (!Number.isInteger(iterations) || iterations < 1 || !Number.isInteger(first)) {
  process.stderr.write('usage: node scripts/soak-runbooks.ts [iterations] [firstSeed]\n');
  process.exit(2);
}

process.stdout.write(`soak: ${iterations} iterations, seeds ${first}..${(first + iterations - 1) >>> 0}\n`);
const started = Date.now();
const failures: Array<{ seed: number; message: string }> = [];
const totals = { kills: 0, selfKills: 0, needsVerification: 0, maxPickupMs: 0 };
let next = 0;
let done = 0;
const lane = async (): Promise<void> => {
  while (next < iterations) {
    const seed = (first + next++) >>> 0;
    try {
      const result = await crashIteration(seed);
      totals.kills += result.kills;
      totals.selfKills += result.selfKills;
      totals.needsVerification += result.needsVerification;
      totals.maxPickupMs = Math.max(totals.maxPickupMs, ...result.pickupMs);
    } catch (err) {
      failures.push({ seed, message: err instanceof Error ? err.message : String(err) });
      process.stdout.write(
        `FAIL seed ${seed}: ${failures.at(-1)!.message}\n  replay: RUNBOOK_CRASH_SEED=${seed} node scripts/soak-runbooks.ts\n`,
      );
    }
    done++;
    if (done % 20 === 0) process.stdout.write(`soak: ${done}/${iterations} (${failures.length} failed)\n`);
  }
};
await Promise.all([lane(), lane()]);
process.stdout.write(
  `soak: ${iterations - failures.length}/${iterations} passed in ${((Date.now() - started) / 1000).toFixed(0)} s; ` +
    `${totals.kills} kills (${totals.selfKills} at a kill point inside the worker), ` +
    `${totals.needsVerification} steps needed verification, slowest pickup after restart ${totals.maxPickupMs} ms\n`,
);
process.exit(failures.length > 0 ? 1 : 0);
