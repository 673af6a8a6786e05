import { describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import { createProgressMeter, formatProgress, type ProgressSnapshot } from './progress.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function meter(options?: { everyMs?: number; windowMs?: number }) {
  const clock = new ManualClock('2026-11-26T17:00:00Z');
  const updates: ProgressSnapshot[] = [];
  const progress = createProgressMeter(clock, (s) => updates.push(s), options);
  return { clock, updates, progress };
}

describe('createProgressMeter', () => {
  it('reports on every phase change and at most every everyMs on the injected clock', () => {
    const { clock, updates, progress } = meter({ everyMs: 1000 });
    progress.phase('dump');
    expect(updates).toHaveLength(1);
    expect(updates[0]).toMatchObject({
      phase: 'dump',
      bytes: 0,
      rateBytesPerSec: 0,
      at: '2026-11-26T17:00:00.000Z',
    });
    for (let i = 0; i < 100; i++) {
      clock.advance(50); // 100 chunks over 5 s: about five updates, not 100
      progress.add(MiB);
    }
    expect(updates.length).toBeGreaterThanOrEqual(5);
    expect(updates.length).toBeLessThanOrEqual(6);
    for (let i = 2; i < updates.length; i++) {
      const gap =
        Date.parse((updates[i] as ProgressSnapshot).at) - Date.parse((updates[i - 1] as ProgressSnapshot).at);
      expect(gap).toBeGreaterThanOrEqual(1000);
    }
    progress.phase('upload', 10 * MiB);
    expect(updates.at(-1)).toMatchObject({ phase: 'upload', bytes: 0, totalBytes: 10 * MiB });
    expect(progress.snapshot().bytes).toBe(0);
  });

  it('measures the rate over a sliding window and gives an ETA when the total is known', () => {
    const { clock, progress } = meter({ windowMs: 5000 });
    progress.phase('download', 1000 * MiB);
    // 10 s at 10 MiB/s, then 10 s at 50 MiB/s: the window only sees the recent rate.
    for (let i = 0; i < 100; i++) {
      clock.advance(100);
      progress.add(MiB);
    }
    expect(progress.snapshot().rateBytesPerSec).toBeCloseTo(10 * MiB, -5);
    for (let i = 0; i < 100; i++) {
      clock.advance(100);
      progress.add(5 * MiB);
    }
    const s = progress.snapshot();
    expect(s.bytes).toBe(600 * MiB);
    expect(s.rateBytesPerSec / MiB).toBeGreaterThan(45);
    expect(s.rateBytesPerSec / MiB).toBeLessThanOrEqual(50.01);
    // 400 MiB left at ~50 MiB/s
    expect((s.etaMs ?? 0) / 1000).toBeGreaterThan(7.5);
    expect((s.etaMs ?? 0) / 1000).toBeLessThan(9);
  });

  it('has no rate and no ETA before time passes, and no ETA without a total', () => {
    const { clock, progress } = meter();
    progress.phase('dump');
    progress.add(123);
    expect(progress.snapshot()).toMatchObject({ bytes: 123, rateBytesPerSec: 0 });
    expect(progress.snapshot().etaMs).toBeUndefined();
    clock.advance(2000);
    progress.add(2 * MiB);
    expect(progress.snapshot().rateBytesPerSec).toBeGreaterThan(0);
    expect(progress.snapshot().etaMs).toBeUndefined();
  });

  it('keeps the latest note with the phase', () => {
    const { clock, updates, progress } = meter({ everyMs: 1000 });
    progress.phase('dump');
    clock.advance(1500);
    progress.note('gamedb.players: 1.2M rows');
    expect(updates.at(-1)?.note).toBe('gamedb.players: 1.2M rows');
    progress.phase('upload');
    expect(updates.at(-1)?.note).toBeUndefined();
  });
});

describe('formatProgress', () => {
  it('renders bytes of total, rate and ETA', () => {
    expect(
      formatProgress({
        phase: 'upload',
        bytes: 1.2 * GiB,
        totalBytes: 3.4 * GiB,
        rateBytesPerSec: 85 * MiB,
        etaMs: 26_000,
        at: '2026-11-26T17:00:00.000Z',
      }),
    ).toBe('upload 1.2 GiB of 3.4 GiB, 85 MiB/s, ETA 26s');
    expect(
      formatProgress({
        phase: 'dump',
        bytes: 512,
        rateBytesPerSec: 0,
        note: 'gamedb.players',
        at: '2026-11-26T17:00:00.000Z',
      }),
    ).toBe('dump 512 B, 0 B/s · gamedb.players');
  });
});
