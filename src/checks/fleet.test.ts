import { describe, expect, it } from 'vitest';
import { restartDeltas } from './fleet.ts';

describe('restartDeltas (restarts since the last check)', () => {
  it.each([
    ['first check: a baseline, no delta', [{ name: 'game-0', restarts: 3 }], undefined, [undefined]],
    ['no change', [{ name: 'game-0', restarts: 3 }], { 'game-0': 3 }, [0]],
    ['two more restarts', [{ name: 'game-0', restarts: 5 }], { 'game-0': 3 }, [2]],
    ['a new instance counts all its restarts', [{ name: 'game-9', restarts: 2 }], { 'game-0': 3 }, [2]],
    [
      'recreated under the same name (counter went down)',
      [{ name: 'game-0', restarts: 1 }],
      { 'game-0': 7 },
      [1],
    ],
    [
      'several instances, each against its own previous count',
      [
        { name: 'a', restarts: 0 },
        { name: 'b', restarts: 4 },
      ],
      { a: 0, b: 1 },
      [0, 3],
    ],
  ] as const)('%s', (_title, instances, previous, expected) => {
    expect(restartDeltas(instances, previous).map((d) => d.delta)).toEqual(expected);
  });
});
