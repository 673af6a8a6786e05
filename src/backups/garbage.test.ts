import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { GARBAGE_STEP, streamed } from './garbage.ts';

describe('streamed: young-generation collections along a backup pipeline', () => {
  it('collects every GARBAGE_STEP bytes without exposing gc to any context', () => {
    const hadGlobalGc = 'gc' in globalThis;
    // Dead buffers, as a pipeline leaves them; collections in between must not disturb live ones.
    const live = Buffer.alloc(1024, 7);
    for (let i = 0; i < 4; i++) {
      const chunk = Buffer.alloc(64 * 1024, i);
      streamed(chunk.length);
      streamed(GARBAGE_STEP);
    }
    expect(live.every((b) => b === 7)).toBe(true);
    expect('gc' in globalThis).toBe(hadGlobalGc);
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});
