import { appendFile, mkdtemp, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitLines } from '../lines.ts';
import {
  followChunks,
  lineTime,
  listLogFiles,
  merge,
  rangeLines,
  selectRanges,
  sinceOffset,
  tailOffset,
  type LogFile,
} from './logs.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gameops-logs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileNo = 0;
async function file(content: string, mtimeMs = Date.now()): Promise<LogFile> {
  const path = join(dir, `f${fileNo++}.log`);
  await writeFile(path, content);
  await utimes(path, mtimeMs / 1000, mtimeMs / 1000);
  return { path, size: Buffer.byteLength(content), mtimeMs };
}

async function collect<T>(source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of source) out.push(item);
  return out;
}

const T0 = Date.parse('2026-11-26T09:00:00.000Z');

describe('lineTime', () => {
  it('reads the JSON time field, epoch numbers and leading timestamps', () => {
    const t = (s: string): number | undefined => lineTime(Buffer.from(s));
    expect(t('{"time":"2026-11-26T09:00:00.000Z","level":"INFO"}')).toBe(T0);
    expect(t('{"level":"INFO","time": "2026-11-26T09:00:00Z"}')).toBe(T0);
    expect(t(`{"time":${T0},"msg":"pino"}`)).toBe(T0);
    expect(t(`{"time":${T0 / 1000}}`)).toBe(T0);
    expect(t('2026-11-26T09:00:00.000Z INFO started')).toBe(T0);
    expect(t('[2026-11-26 09:00:00,000Z] started')).toBe(T0);
    expect(t('    at Object.<anonymous> (/srv/game.js:1:1)')).toBeUndefined();
    expect(t('{"time":"not a date"}')).toBeUndefined();
    expect(t('')).toBeUndefined();
  });
});

/** A log: dated lines in time order, some undated ones between them, some long. */
const logArbitrary = fc
  .array(
    fc.record({
      dated: fc.boolean(),
      step: fc.nat({ max: 5000 }),
      pad: fc.oneof(
        { weight: 20, arbitrary: fc.nat({ max: 120 }) },
        { weight: 1, arbitrary: fc.nat({ max: 70_000 }) },
      ),
    }),
    { minLength: 0, maxLength: 3000, size: 'max' },
  )
  .map((specs) => {
    let t = T0;
    const lines = specs.map(({ dated, step, pad }) => {
      t += step;
      return dated
        ? {
            time: t,
            text: `{"time":"${new Date(t).toISOString()}","level":"INFO","msg":"${'x'.repeat(pad)}"}`,
          }
        : { time: undefined, text: `  at frame ${'y'.repeat(pad)}` };
    });
    return { lines, end: t };
  });

function naiveSince(
  lines: Array<{ time: number | undefined; text: string }>,
  cut: number,
  trailingNewline: boolean,
  mtimeMs: number,
): number {
  const size =
    lines.reduce((s, l) => s + l.text.length + 1, 0) - (trailingNewline || lines.length === 0 ? 0 : 1);
  if (!lines.some((l) => l.time !== undefined)) return mtimeMs >= cut || size === 0 ? 0 : size;
  // Undated lines at the start of a file go with the first dated line after them.
  const firstDated = lines.find((l) => l.time !== undefined)!;
  if (firstDated.time! >= cut) return 0;
  let offset = 0;
  for (const line of lines) {
    if (line.time !== undefined && line.time >= cut) return offset;
    offset += line.text.length + 1;
  }
  return size;
}

describe('sinceOffset', () => {
  it('finds the same cut as a line-by-line scan, by bisection', async () => {
    await fc.assert(
      fc.asyncProperty(
        logArbitrary,
        fc.double({ min: -0.1, max: 1.1, noNaN: true }),
        fc.boolean(),
        async (log, where, nl) => {
          const text = log.lines.map((l) => l.text).join('\n') + (nl && log.lines.length > 0 ? '\n' : '');
          const cut = Math.round(T0 + (log.end - T0) * where);
          const mtime = log.end + 1;
          const f = await file(text, mtime);
          try {
            expect(await sinceOffset(f, cut)).toBe(naiveSince(log.lines, cut, nl, mtime));
          } finally {
            await rm(f.path);
          }
        },
      ),
      { numRuns: 150 },
    );
  }, 120_000);

  it('bisects a large file (2 MB, long and undated lines) to the same cut as a scan', async () => {
    let seed = 7;
    const random = (): number => (seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32;
    let t = T0;
    const lines = Array.from({ length: 20_000 }, (_, i) => {
      t += Math.floor(random() * 50);
      const pad = i % 997 === 0 ? 100_000 : Math.floor(random() * 80);
      return random() < 0.2
        ? { time: undefined, text: `  at frame ${'y'.repeat(pad)}` }
        : {
            time: t,
            text: `{"level":"INFO","time":"${new Date(t).toISOString()}","msg":"${'x'.repeat(pad)}"}`,
          };
    });
    const text = lines.map((l) => l.text).join('\n') + '\n';
    const f = await file(text, t + 1);
    expect(f.size).toBeGreaterThan(2_000_000);
    for (let k = 0; k <= 40; k++) {
      const cut = Math.round(T0 - 10 + ((t - T0 + 20) * k) / 40);
      expect(await sinceOffset(f, cut), `cut ${k}`).toBe(naiveSince(lines, cut, true, t + 1));
    }
  });

  it('takes a file without dated lines whole when it was modified within the window', async () => {
    const f = await file('plain\nlines\n', T0);
    expect(await sinceOffset(f, T0 - 1000)).toBe(0);
    expect(await sinceOffset(f, T0 + 1000)).toBe(f.size);
  });
});

describe('tailOffset', () => {
  it('finds the last n lines reading backwards, with or without a final newline', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ maxLength: 40_000, unit: fc.constantFrom('a', 'é', ' ') }), { maxLength: 12 }),
        fc.boolean(),
        fc.nat({ max: 15 }),
        async (lines, nl, n) => {
          const text = lines.join('\n') + (nl && lines.length > 0 ? '\n' : '');
          const f = await file(text);
          try {
            const found = await tailOffset(f.path, f.size, n);
            const all = await collect(
              splitLines(
                (async function* () {
                  yield Buffer.from(text);
                })(),
              ),
            );
            const expected = n === 0 ? [] : all.slice(-n);
            const got = await collect(rangeLines([{ file: f, start: found.offset }], {}));
            expect(got).toEqual(expected);
            expect(found.lines).toBe(expected.length);
          } finally {
            await rm(f.path);
          }
        },
      ),
      { numRuns: 200 },
    );
  }, 60_000);
});

describe('selectRanges across rotated files', () => {
  it('combines tail and since over several files, oldest first', async () => {
    const base = join(dir, 'game-0.log');
    const line = (i: number): string => `{"time":"${new Date(T0 + i * 1000).toISOString()}","n":${i}}`;
    const lines = (from: number, to: number): string =>
      Array.from({ length: to - from }, (_, k) => line(from + k)).join('\n') + '\n';
    await writeFile(`${base}.2`, lines(0, 10));
    await writeFile(`${base}.1`, lines(10, 20));
    await writeFile(base, lines(20, 25));
    const files = await listLogFiles(base);
    expect(files.map((f) => f.path)).toEqual([`${base}.2`, `${base}.1`, base]);
    const read = async (q: { cutMs?: number; tail?: number }): Promise<number[]> =>
      (await collect(rangeLines(await selectRanges(files, q), {}))).map(
        (l) => (JSON.parse(l) as { n: number }).n,
      );

    expect(await read({})).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(await read({ tail: 7 })).toEqual([18, 19, 20, 21, 22, 23, 24]);
    expect(await read({ tail: 100 })).toHaveLength(25);
    expect(await read({ tail: 0 })).toEqual([]);
    expect(await read({ cutMs: T0 + 13_000 })).toEqual(Array.from({ length: 12 }, (_, i) => 13 + i));
    expect(await read({ cutMs: T0 + 22_000 })).toEqual([22, 23, 24]);
    expect(await read({ cutMs: T0 + 99_000 })).toEqual([]);
    // tail applies after since: the later cut wins.
    expect(await read({ cutMs: T0 + 13_000, tail: 3 })).toEqual([22, 23, 24]);
    expect(await read({ cutMs: T0 + 23_000, tail: 10 })).toEqual([23, 24]);
  });
});

describe('followChunks', () => {
  it('streams appended lines, survives a copy-truncate rotation, and stops on abort', async () => {
    const path = join(dir, 'follow.log');
    await writeFile(path, 'old line\n');
    const controller = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      for await (const line of splitLines(followChunks(path, 9, controller.signal))) {
        seen.push(line);
        if (seen.length === 3) controller.abort();
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await appendFile(path, 'one\n');
    await new Promise((resolve) => setTimeout(resolve, 400));
    await truncate(path, 0);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await appendFile(path, 'two\nthree\n');
    await reading;
    expect(seen).toEqual(['one', 'two', 'three']);
  });

  it('reads a file that replaced the followed one (deleted and recreated) from its start, even a longer one', async () => {
    const path = join(dir, 'replaced.log');
    await writeFile(path, 'old\n');
    const controller = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      for await (const line of splitLines(followChunks(path, 4, controller.signal))) {
        seen.push(line);
        if (seen.length === 2) controller.abort();
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await rm(path);
    // Longer than what was read of the old file: a size check alone would skip its first bytes.
    await writeFile(path, 'first line of the new file\nsecond\n');
    await reading;
    expect(seen).toEqual(['first line of the new file', 'second']);
  });
});

describe('merge', () => {
  it('interleaves sources as they yield and finishes when all do', async () => {
    async function* slow(prefix: string, n: number, ms: number): AsyncGenerator<string> {
      for (let i = 0; i < n; i++) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        yield `${prefix}${i}`;
      }
    }
    const out = await collect(merge([slow('a', 3, 5), slow('b', 2, 12)]));
    expect(out.sort()).toEqual(['a0', 'a1', 'a2', 'b0', 'b1']);
  });
});
