/**
 * Bytes, rate and ETA of backup phases (dump, upload, download, restore) for the CLI and the API. Time
 * comes from the injected clock; updates are throttled so a fast stream does not flood the terminal.
 */
import { formatBytes } from '../checks/thresholds.ts';
import { formatDuration, type Clock } from '../core/index.ts';
import type { Progress } from './types.ts';

/** The state of the current phase. */
export interface ProgressSnapshot {
  phase: string;
  bytes: number;
  /** Known for downloads and restores (the manifest has the sizes). */
  totalBytes?: number;
  /** Over the last few seconds (a sliding window), 0 until two instants are known. */
  rateBytesPerSec: number;
  /** Remaining time at the current rate, when the total is known and the rate is not 0. */
  etaMs?: number;
  note?: string;
  /** ISO time of the snapshot. */
  at: string;
}

interface Sample {
  ms: number;
  bytes: number;
}

/**
 * A {@link Progress} that measures. `onUpdate` is called on every phase change and otherwise at most
 * every `everyMs` (default 1000) on the injected clock, when bytes are added or a note is set. The rate is
 * measured over the last `windowMs` (default 5000).
 */
export function createProgressMeter(
  clock: Clock,
  onUpdate: (s: ProgressSnapshot) => void,
  options: { everyMs?: number; windowMs?: number } = {},
): Progress & { snapshot(): ProgressSnapshot } {
  const everyMs = options.everyMs ?? 1000;
  const windowMs = options.windowMs ?? 5000;
  // A sample at most every tenth of the window keeps the list short however small the chunks are.
  const sampleEveryMs = Math.max(1, windowMs / 10);
  let phase = 'start';
  let bytes = 0;
  let totalBytes: number | undefined;
  let note: string | undefined;
  let samples: Sample[] = [];
  let lastUpdate = Number.NEGATIVE_INFINITY;

  const record = (ms: number): void => {
    const last = samples.at(-1);
    if (last === undefined || ms - last.ms >= sampleEveryMs) samples.push({ ms, bytes });
    else if (ms === last.ms) last.bytes = bytes;
    // Drop samples older than the window but keep one at or before its start, as the base of the rate.
    while (samples.length > 2 && (samples[1] as Sample).ms <= ms - windowMs) samples.shift();
  };

  const snapshot = (): ProgressSnapshot => {
    const now = clock.now();
    const ms = now.getTime();
    const base = samples[0];
    const span = base === undefined ? 0 : ms - base.ms;
    const rate = base !== undefined && span > 0 ? ((bytes - base.bytes) * 1000) / span : 0;
    const s: ProgressSnapshot = { phase, bytes, rateBytesPerSec: rate, at: now.toISOString() };
    if (totalBytes !== undefined) {
      s.totalBytes = totalBytes;
      if (rate > 0) s.etaMs = (Math.max(0, totalBytes - bytes) * 1000) / rate;
    }
    if (note !== undefined) s.note = note;
    return s;
  };

  const emit = (force: boolean): void => {
    const ms = clock.now().getTime();
    if (!force && ms - lastUpdate < everyMs) return;
    lastUpdate = ms;
    onUpdate(snapshot());
  };

  return {
    phase(name: string, total?: number): void {
      phase = name;
      bytes = 0;
      totalBytes = total;
      note = undefined;
      samples = [];
      record(clock.now().getTime());
      emit(true);
    },
    add(n: number): void {
      bytes += n;
      record(clock.now().getTime());
      emit(false);
    },
    note(text: string): void {
      note = text;
      emit(false);
    },
    snapshot,
  };
}

/** One line: `upload 1.2 GiB of 3.4 GiB, 85 MiB/s, ETA 26s` (with the note after ` · `). */
export function formatProgress(s: ProgressSnapshot): string {
  let line = `${s.phase} ${formatBytes(s.bytes)}`;
  if (s.totalBytes !== undefined) line += ` of ${formatBytes(s.totalBytes)}`;
  line += `, ${formatBytes(s.rateBytesPerSec)}/s`;
  if (s.etaMs !== undefined) line += `, ETA ${formatDuration(s.etaMs)}`;
  if (s.note !== undefined) line += ` · ${s.note}`;
  return line;
}
