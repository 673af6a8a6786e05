/**
 * Keeps the garbage of a backup's byte pipelines from piling up. Every chunk that streams through a
 * backup (a read from the dump's pipe, zstd's output, age's sealed chunks, a file read back for a
 * verification) is a fresh Buffer whose memory lives outside V8's heap, and is garbage a moment
 * later. V8 collects such buffers with the young generation, but it starts that collection by itself
 * only after about 64 MB of them (or once its 16 MB semi-space is full of JavaScript objects, which a
 * pipeline that moves large buffers hardly allocates): a streaming backup held that much dead buffer
 * memory at all times, a third of its peak RSS. A young-generation collection after every
 * {@link GARBAGE_STEP} bytes instead bounds it to about that much; with little alive in the young
 * generation it takes well under a millisecond.
 *
 * The collection is V8's `gc({ type: 'minor' })`, taken once from a fresh context while `--expose-gc`
 * is set (and unset again, so that no other context gets a global `gc`). Where that is not possible,
 * nothing is done: V8's own heuristics apply, as before.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes streamed between two young-generation collections. */
export const GARBAGE_STEP = 4 * 1024 * 1024;

type Collect = (options: { type: 'minor'; execution: 'sync' }) => void;

let collect: Collect | null | undefined;
let sinceCollect = 0;

function minorCollector(): Collect | null {
  const exposed: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return exposed as Collect;
  try {
    setFlagsFromString('--expose-gc');
    try {
      const gc: unknown = runInNewContext('gc');
      return typeof gc === 'function' ? (gc as Collect) : null;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  } catch {
    return null;
  }
}

/**
 * Counts `bytes` that went through a pipeline (their buffers are garbage soon); collects the young
 * generation every {@link GARBAGE_STEP} bytes.
 */
export function streamed(bytes: number): void {
  sinceCollect += bytes;
  if (sinceCollect < GARBAGE_STEP) return;
  sinceCollect = 0;
  collect ??= minorCollector();
  collect?.({ type: 'minor', execution: 'sync' });
}
