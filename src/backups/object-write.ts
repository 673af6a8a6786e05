/**
 * `ComponentWriteContext.write` in terms of its `open`, shared by the backup service and the component
 * test support so that both write whole objects the same way.
 */
import type { Readable } from 'node:stream';
import type { ComponentWriteContext, ObjectRecord } from './types.ts';

/**
 * Copies `source` into the new object `name` opened with `open`, with backpressure (each chunk is written
 * before the next is read). When reading `source` or writing fails, the object is aborted (nothing of it
 * is kept) before the error is rethrown.
 * @throws what `source` or the writer threw.
 */
export async function writeWholeObject(
  open: ComponentWriteContext['open'],
  name: string,
  source: Readable | AsyncIterable<Uint8Array>,
): Promise<ObjectRecord> {
  const writer = open(name);
  try {
    for await (const chunk of source as AsyncIterable<Uint8Array>) await writer.write(chunk);
  } catch (err) {
    await writer.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  return writer.end();
}
