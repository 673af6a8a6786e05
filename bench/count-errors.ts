/**
 * Counting ERROR lines: our streaming counter against `grep -c ERROR`, over ~150 MB of JSON-lines logs.
 *
 * Generates 6 instance logs (~25 MB each, about 1 % ERROR lines) in a temp directory laid out as a local
 * fleet (`<dataDir>/fleet/logs/game-<i>.log`), then times, 5 runs each after one warm-up (files in the
 * page cache for both):
 *   - `grep -c ERROR <files>` (execFile, argument array),
 *   - the local adapter's `countLines({ pattern: 'ERROR' })` (all instances concurrently),
 *   - `countLinesMatching` over the files one after the other (single stream, for reference).
 * Prints the medians and the ratio against the target (adapter ≤ 1.5 × grep).
 *
 * Usage: node bench/count-errors.ts [totalMiB]
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../src/core/index.ts';
import { countLinesMatching, fileChunks } from '../src/platform/lines.ts';
import { createLocalPlatform } from '../src/platform/local/index.ts';
import { localConfig } from '../src/platform/local/test-support.ts';

const run = promisify(execFile);
const INSTANCES = 6;
const RUNS = 5;
const totalMiB = Number(process.argv[2] ?? 150);
const perFileBytes = Math.round((totalMiB * 1024 * 1024) / INSTANCES);

/** A deterministic pseudo-random sequence, so every run writes the same logs. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const MESSAGES = [
  ['INFO', 'player moved'],
  ['INFO', 'snapshot sent'],
  ['DEBUG', 'tick'],
  ['INFO', 'login'],
  ['WARN', 'input dropped: late'],
  ['INFO', 'chat'],
] as const;

async function writeLog(file: string, instance: string, seed: number): Promise<{ errors: number }> {
  const random = rng(seed);
  const out = createWriteStream(file);
  let written = 0;
  let errors = 0;
  let t = Date.parse('2026-11-26T00:00:00Z');
  let batch = '';
  while (written < perFileBytes) {
    t += Math.floor(random() * 20);
    const player = `p${Math.floor(random() * 100_000)}`;
    let line: string;
    if (random() < 0.01) {
      errors++;
      line = `{"time":"${new Date(t).toISOString()}","level":"ERROR","msg":"bad message from player","instance":"${instance}","player":"${player}","error":"unexpected token in JSON at position ${Math.floor(random() * 300)}"}\n`;
    } else {
      const [level, msg] = MESSAGES[Math.floor(random() * MESSAGES.length)]!;
      line = `{"time":"${new Date(t).toISOString()}","level":"${level}","msg":"${msg}","instance":"${instance}","player":"${player}","x":${(random() * 1000).toFixed(2)},"y":${(random() * 1000).toFixed(2)},"tickLagMs":${(random() * 3).toFixed(3)}}\n`;
    }
    batch += line;
    written += line.length;
    if (batch.length > 1 << 20) {
      if (!out.write(batch)) await once(out, 'drain');
      batch = '';
    }
  }
  out.end(batch);
  await once(out, 'finish');
  return { errors };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function time(what: () => Promise<number>): Promise<{ ms: number; count: number }> {
  const began = performance.now();
  const count = await what();
  return { ms: performance.now() - began, count };
}

const dataDir = await mkdtemp(join(tmpdir(), 'gameops-bench-count-'));
try {
  const logDir = join(dataDir, 'fleet', 'logs');
  await mkdir(logDir, { recursive: true, mode: 0o700 });
  const files = Array.from({ length: INSTANCES }, (_, i) => join(logDir, `game-${i}.log`));
  const generated = await Promise.all(files.map((f, i) => writeLog(f, `game-${i}`, i + 1)));
  const expected = generated.reduce((s, g) => s + g.errors, 0);
  const platform = createLocalPlatform({
    config: localConfig({ basePort: 7700, replicas: INSTANCES }),
    dataDir,
    clock: systemClock,
  });

  const grep = async (): Promise<number> => {
    const { stdout } = await run('grep', ['-c', 'ERROR', ...files], { maxBuffer: 1 << 20 });
    return stdout
      .trim()
      .split('\n')
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(':') + 1)), 0);
  };
  const adapter = async (): Promise<number> => (await platform.countLines({ pattern: 'ERROR' })).total;
  const sequential = async (): Promise<number> => {
    let total = 0;
    for (const file of files) total += (await countLinesMatching(fileChunks(file), 'ERROR')).count;
    return total;
  };

  const results: Record<string, number[]> = { grep: [], adapter: [], sequential: [] };
  const candidates: Array<[string, () => Promise<number>]> = [
    ['grep', grep],
    ['adapter', adapter],
    ['sequential', sequential],
  ];
  for (const [, fn] of candidates) await fn(); // warm-up: every file in the page cache
  for (let r = 0; r < RUNS; r++) {
    for (const [name, fn] of candidates) {
      const { ms, count } = await time(fn);
      if (count !== expected) throw new Error(`${name} counted ${count}, expected ${expected}`);
      results[name]!.push(ms);
    }
  }
  await platform.close();

  const bytes = INSTANCES * perFileBytes;
  const g = median(results.grep!);
  const a = median(results.adapter!);
  const s = median(results.sequential!);
  const mbps = (ms: number): string => `${(bytes / 1024 / 1024 / (ms / 1000)).toFixed(0)} MiB/s`;
  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(', ');
  process.stdout.write(
    [
      `count-errors: ${INSTANCES} files, ${(bytes / 1024 / 1024).toFixed(0)} MiB, ${expected} ERROR lines; median of ${RUNS} runs (files cached)`,
      `  grep -c ERROR              ${g.toFixed(0).padStart(6)} ms  ${mbps(g)}   runs: ${fmt(results.grep!)}`,
      `  countLines (local adapter) ${a.toFixed(0).padStart(6)} ms  ${mbps(a)}   runs: ${fmt(results.adapter!)}`,
      `  countLinesMatching, 1 file at a time ${s.toFixed(0).padStart(6)} ms  ${mbps(s)}   runs: ${fmt(results.sequential!)}`,
      `  adapter / grep = ${(a / g).toFixed(2)} (target ≤ 1.50: ${a / g <= 1.5 ? 'met' : 'NOT met'}); sequential / grep = ${(s / g).toFixed(2)}`,
      '',
    ].join('\n'),
  );
} finally {
  await rm(dataDir, { recursive: true, force: true });
}
