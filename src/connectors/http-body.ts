/** A response body was larger than the caller allows; the stream has been cancelled. */
export class BodyTooLargeError extends Error {}

/**
 * Reads a fetch response body as UTF-8, giving up (and cancelling the stream) past `maxBytes`, so a broken
 * or hostile server cannot exhaust memory.
 * @throws BodyTooLargeError past `maxBytes`.
 */
export async function readCapped(response: Response, maxBytes: number): Promise<string> {
  if (!response.body) return '';
  // fetch bodies are byte streams; the DOM typings leave the chunk type open.
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new BodyTooLargeError();
      }
      parts.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.releaseLock();
  }
  parts.push(decoder.decode());
  return parts.join('');
}
