import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../core/index.ts';
import { countLinesMatching, fileChunks, splitLines } from './lines.ts';

/** Yields `text` as Buffers cut at the given offsets. */
async function* chunked(bytes: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let from = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    if (cut <= from || cut >= bytes.length) continue;
    yield bytes.subarray(from, cut);
    from = cut;
  }
  if (from < bytes.length) yield bytes.subarray(from);
}

/** Yields the chunks through one reused buffer, as fileChunks does, to prove nothing keeps a reference. */
async function* reused(bytes: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  const scratch = Buffer.alloc(bytes.length + 1);
  for await (const piece of chunked(bytes, cuts)) {
    piece.copy(scratch);
    yield scratch.subarray(0, piece.length);
    scratch.fill(0x23);
  }
}

function naiveCount(text: string, pattern: string): number {
  if (text === '') return 0;
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.filter((line) => line.includes(pattern)).length;
}

function naiveLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
}

async function collect(source: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of source) out.push(line);
  return out;
}

const logText = fc
  .array(
    fc.oneof(
      fc.constantFrom('ERROR', 'ERR', 'OR', 'E', '\n', '\r\n', 'x', 'RRO', '€', '{"level":"ERROR"}'),
      fc.string({ maxLength: 6 }),
    ),
    { maxLength: 60 },
  )
  .map((parts) => parts.join(''));

describe('countLinesMatching', () => {
  it('counts like a line-by-line scan for any text, pattern and chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        logText,
        fc.constantFrom('ERROR', 'E', 'RR', 'ERROR"}', '€', '\r'),
        fc.array(fc.nat({ max: 400 }), { maxLength: 30 }),
        async (text, pattern, cuts) => {
          const bytes = Buffer.from(text, 'utf8');
          const expected = naiveCount(text, pattern);
          const plain = await countLinesMatching(chunked(bytes, cuts), pattern);
          expect(plain).toEqual({ count: expected, bytes: bytes.length });
          const shared = await countLinesMatching(reused(bytes, cuts), pattern);
          expect(shared.count).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('counts a pattern split across one-byte chunks and a last line without newline', async () => {
    const bytes = Buffer.from('a ERROR b\nnothing\nERRORERROR\ntail ERROR');
    const cuts = Array.from({ length: bytes.length }, (_, i) => i);
    expect(await countLinesMatching(chunked(bytes, cuts), 'ERROR')).toEqual({
      count: 3,
      bytes: bytes.length,
    });
  });

  it('reads a Node stream', async () => {
    const stream = Readable.from([Buffer.from('x ERROR\ny\n'), Buffer.from('ERR'), Buffer.from('OR\n')]);
    expect((await countLinesMatching(stream, 'ERROR')).count).toBe(2);
  });

  it('refuses an empty pattern or one with a newline', async () => {
    await expect(countLinesMatching(chunked(Buffer.from('a'), []), '')).rejects.toBeInstanceOf(InputError);
    await expect(countLinesMatching(chunked(Buffer.from('a'), []), 'a\nb')).rejects.toBeInstanceOf(
      InputError,
    );
  });

  it('stops when the signal aborts', async () => {
    const controller = new AbortController();
    async function* endless(): AsyncGenerator<Buffer> {
      for (let i = 0; ; i++) {
        if (i === 3) controller.abort(new Error('enough'));
        yield Buffer.from('ERROR\n');
      }
    }
    await expect(countLinesMatching(endless(), 'ERROR', controller.signal)).rejects.toThrow('enough');
  });
});

describe('splitLines', () => {
  it('splits like String.split for any text and chunking', async () => {
    await fc.assert(
      fc.asyncProperty(logText, fc.array(fc.nat({ max: 400 }), { maxLength: 30 }), async (text, cuts) => {
        const bytes = Buffer.from(text, 'utf8');
        expect(await collect(splitLines(reused(bytes, cuts)))).toEqual(naiveLines(text));
      }),
      { numRuns: 1000 },
    );
  });

  it('cuts long lines at a character boundary without buffering the rest', async () => {
    const long = 'é'.repeat(10); // 20 bytes
    const bytes = Buffer.from(`short\n${long}\nnext`);
    const lines = await collect(splitLines(chunked(bytes, [3, 9, 12, 15]), { maxLineBytes: 7 }));
    expect(lines).toEqual(['short', 'ééé…', 'next']);
  });

  it('keeps memory bounded on a gigantic line', async () => {
    async function* huge(): AsyncGenerator<Buffer> {
      const block = Buffer.alloc(1024 * 1024, 0x61);
      for (let i = 0; i < 64; i++) yield block;
      yield Buffer.from('\nafter\n');
    }
    const lines = await collect(splitLines(huge(), { maxLineBytes: 100 }));
    expect(lines).toEqual([`${'a'.repeat(100)}…`, 'after']);
  });
});

describe('fileChunks', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gameops-lines-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a byte range of a file in chunks', async () => {
    const file = join(dir, 'a.log');
    const text = Array.from({ length: 1000 }, (_, i) => (i % 10 === 0 ? `ERROR ${i}` : `ok ${i}`)).join('\n');
    await writeFile(file, text);
    const all = await countLinesMatching(fileChunks(file, { chunkBytes: 7 }), 'ERROR');
    expect(all).toEqual({ count: 100, bytes: Buffer.byteLength(text) });
    const start = text.indexOf('ok 501');
    const part = await countLinesMatching(fileChunks(file, { start, end: text.indexOf('ok 601') }), 'ERROR');
    expect(part.count).toBe(10);
  });
});
