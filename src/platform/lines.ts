/**
 * Streaming line tools shared by the platform adapters. Nothing here holds more than one chunk (plus a
 * bounded remainder) in memory, whatever the size of the input: a log of gigabytes is counted or split
 * as it is read.
 *
 * A line is what lies between two `\n` bytes (a `\r` before the `\n` is part of the line for counting
 * and dropped by {@link splitLines}); the last line counts even without a final newline.
 */
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { InputError } from '../core/index.ts';

const NEWLINE = 0x0a;

/** What {@link countLinesMatching} found. */
export interface MatchCount {
  /** Lines containing the pattern (a line with several occurrences counts once). */
  count: number;
  /** Bytes read. */
  bytes: number;
}

/** A source of bytes: a Node stream or any async iterable of Buffers (e.g. {@link fileChunks}). */
export type ByteSource = AsyncIterable<Buffer> | Readable;

/**
 * Checks a pattern for {@link countLinesMatching}: a non-empty plain substring without a newline (a
 * pattern spanning a newline could never be inside one line).
 * @throws InputError
 */
export function linePattern(pattern: string): Buffer {
  if (pattern.length === 0) throw new InputError('the pattern to count is empty');
  if (pattern.includes('\n')) throw new InputError('the pattern to count contains a newline');
  return Buffer.from(pattern, 'utf8');
}

/**
 * Counts the lines of `source` that contain `pattern` (a plain substring, case-sensitive), chunk by chunk
 * with `Buffer.indexOf`: no string is made per line and nothing but the chunk in hand and up to
 * `pattern.length - 1` bytes of the previous one is kept. Lines split across chunks and a last line
 * without a newline are handled. Chunks may be reused by the source once the next one is requested.
 * @throws InputError for an empty pattern or one with a newline; the signal's reason when aborted.
 */
export async function countLinesMatching(
  source: ByteSource,
  pattern: string,
  signal?: AbortSignal,
): Promise<MatchCount> {
  const counter = new LineMatchCounter(linePattern(pattern));
  signal?.throwIfAborted();
  for await (const chunk of source as AsyncIterable<Buffer | string>) {
    signal?.throwIfAborted();
    counter.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
  }
  return { count: counter.count, bytes: counter.bytes };
}

/**
 * The state machine behind {@link countLinesMatching}, for callers that feed chunks themselves. After
 * the last chunk, `count` is final: a line is counted when its first occurrence of the pattern is seen,
 * so the last line needs no newline.
 */
export class LineMatchCounter {
  count = 0;
  bytes = 0;
  readonly #pattern: Buffer;
  /** The current line was counted already: skip to its end. */
  #counted = false;
  /** The last bytes (at most pattern length − 1) of the current, unfinished, uncounted line. */
  #carry: Buffer = Buffer.alloc(0);

  constructor(pattern: Buffer) {
    if (pattern.length === 0 || pattern.includes(NEWLINE)) {
      throw new InputError('the pattern must be non-empty and without a newline');
    }
    this.#pattern = pattern;
  }

  push(chunk: Buffer): void {
    const pattern = this.#pattern;
    const m = pattern.length;
    const length = chunk.length;
    this.bytes += length;
    if (length === 0) return;
    let pos = 0;
    if (!this.#counted && this.#carry.length > 0) {
      // An occurrence that starts in the previous chunk and ends in this one.
      const joined = Buffer.concat([this.#carry, chunk.subarray(0, m - 1)]);
      const at = joined.indexOf(pattern);
      if (at >= 0 && at < this.#carry.length) {
        this.count++;
        this.#counted = true;
      }
    }
    for (;;) {
      if (this.#counted) {
        const nl = chunk.indexOf(NEWLINE, pos);
        if (nl < 0) {
          this.#carry = EMPTY;
          return;
        }
        this.#counted = false;
        pos = nl + 1;
        continue;
      }
      const at = chunk.indexOf(pattern, pos);
      if (at < 0) break;
      this.count++;
      this.#counted = true;
      pos = at + m;
    }
    // Not inside a counted line: keep the tail of the unfinished line for a match across the boundary.
    if (m === 1) return;
    const lastNl = chunk.lastIndexOf(NEWLINE);
    if (lastNl >= 0) {
      this.#carry = Buffer.from(chunk.subarray(Math.max(lastNl + 1, length - (m - 1))));
    } else if (length >= m - 1) {
      this.#carry = Buffer.from(chunk.subarray(length - (m - 1)));
    } else {
      const joined = Buffer.concat([this.#carry, chunk]);
      this.#carry = joined.subarray(Math.max(0, joined.length - (m - 1)));
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** Options for {@link splitLines}. */
export interface SplitLinesOptions {
  /**
   * Longest line kept, in bytes; the rest of a longer line is skipped (never buffered) and the line is
   * yielded cut at a character boundary with `…` appended. @default 65536
   */
  maxLineBytes?: number;
  signal?: AbortSignal;
}

export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
const ELLIPSIS = '…';

/**
 * Splits a byte stream into lines (UTF-8 strings without the `\n` or a trailing `\r`), as they arrive.
 * Memory is bounded by one chunk plus `maxLineBytes`. A last line without a newline is yielded; an empty
 * input yields nothing.
 */
export async function* splitLines(
  source: ByteSource,
  options: SplitLinesOptions = {},
): AsyncGenerator<string> {
  const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (!Number.isSafeInteger(max) || max < 1) throw new InputError('maxLineBytes must be a positive integer');
  const signal = options.signal;
  /** Pieces of the current line (copies: the source may reuse its chunks). */
  let parts: Buffer[] = [];
  let kept = 0;
  let truncated = false;
  signal?.throwIfAborted();
  for await (const raw of source as AsyncIterable<Buffer | string>) {
    signal?.throwIfAborted();
    const chunk = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
    let pos = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, pos);
      const end = nl < 0 ? chunk.length : nl;
      if (!truncated && end > pos) {
        const room = max - kept;
        if (end - pos > room) {
          if (room > 0) parts.push(Buffer.from(chunk.subarray(pos, pos + room)));
          kept = max;
          truncated = true;
        } else {
          // A whole line inside this chunk needs no copy when nothing is pending.
          parts.push(
            nl >= 0 && parts.length === 0 ? chunk.subarray(pos, end) : Buffer.from(chunk.subarray(pos, end)),
          );
          kept += end - pos;
        }
      }
      if (nl < 0) break;
      yield finish(parts, truncated);
      signal?.throwIfAborted();
      parts = [];
      kept = 0;
      truncated = false;
      pos = nl + 1;
    }
  }
  if (parts.length > 0 || truncated) yield finish(parts, truncated);
}

function finish(parts: Buffer[], truncated: boolean): string {
  let line = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  if (truncated) return line.subarray(0, utf8Boundary(line)).toString('utf8') + ELLIPSIS;
  if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
  return line.toString('utf8');
}

/** The length of `buf` without a trailing incomplete UTF-8 sequence. */
function utf8Boundary(buf: Buffer): number {
  let end = buf.length;
  // Back up over continuation bytes (10xxxxxx) to the lead byte, at most 3.
  let back = 0;
  while (back < 3 && end - back - 1 >= 0 && (buf[end - back - 1]! & 0xc0) === 0x80) back++;
  const leadAt = end - back - 1;
  if (leadAt < 0) return end;
  const lead = buf[leadAt]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (need > back + 1) end = leadAt;
  return end;
}

/** Options for {@link fileChunks}. */
export interface FileChunksOptions {
  /** Byte offset to start at. @default 0 */
  start?: number;
  /** Byte offset to stop before (the file may grow while it is read). @default the end of the file */
  end?: number;
  /** Bytes per read. @default 1 MiB */
  chunkBytes?: number;
  signal?: AbortSignal;
}

/**
 * Reads a file chunk by chunk into ONE reused buffer: each yielded Buffer is valid only until the next
 * is requested (the consumers here copy what they keep). Stops at `end` or at the end of the file.
 */
export async function* fileChunks(path: string, options: FileChunksOptions = {}): AsyncGenerator<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(options.chunkBytes ?? 1024 * 1024);
    let position = options.start ?? 0;
    const end = options.end ?? Number.POSITIVE_INFINITY;
    while (position < end) {
      options.signal?.throwIfAborted();
      const want = Math.min(buffer.length, end - position);
      const { bytesRead } = await handle.read(buffer, 0, want, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}
