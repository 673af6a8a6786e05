/**
 * Container logs kept by the stand-in's "kubelet": per pod and container, a list of segments, each a
 * run of lines written at one moment. A segment may be virtual (`count` lines made on demand), so a test
 * can give a pod a log of millions of lines without holding them.
 */

export interface LogSegment {
  /** When the lines were written (ms since the epoch). */
  at: number;
  count: number;
  line(index: number): string;
}

interface LogState {
  segments: LogSegment[];
  followers: Set<(segment: LogSegment | null) => void>;
  ended: boolean;
}

export class LogStore {
  readonly #logs = new Map<string, LogState>();

  #state(key: string): LogState {
    let state = this.#logs.get(key);
    if (!state) {
      state = { segments: [], followers: new Set(), ended: false };
      this.#logs.set(key, state);
    }
    return state;
  }

  append(key: string, segment: LogSegment): void {
    if (segment.count <= 0) return;
    const state = this.#state(key);
    state.segments.push(segment);
    for (const follower of state.followers) follower(segment);
  }

  appendLines(key: string, lines: readonly string[], at = Date.now()): void {
    const copy = [...lines];
    this.append(key, { at, count: copy.length, line: (i) => copy[i]! });
  }

  /** The segments from `sinceMs` on (inclusive), then cut to the last `tail` lines. */
  select(key: string, sinceMs: number | undefined, tail: number | undefined): LogSegment[] {
    const segments = this.#state(key).segments.filter((s) => sinceMs === undefined || s.at >= sinceMs);
    if (tail === undefined) return segments;
    let skip = segments.reduce((n, s) => n + s.count, 0) - tail;
    const out: LogSegment[] = [];
    for (const s of segments) {
      if (skip >= s.count) {
        skip -= s.count;
        continue;
      }
      if (skip > 0) {
        const from = skip;
        out.push({ at: s.at, count: s.count - from, line: (i) => s.line(i + from) });
        skip = 0;
      } else out.push(s);
    }
    return out;
  }

  lineCount(key: string): number {
    return this.#state(key).segments.reduce((n, s) => n + s.count, 0);
  }

  /** Calls `listener` with every later segment, and with `null` when the container's log ends. */
  follow(key: string, listener: (segment: LogSegment | null) => void): () => void {
    const state = this.#state(key);
    if (state.ended) {
      listener(null);
      return () => {};
    }
    state.followers.add(listener);
    return () => state.followers.delete(listener);
  }

  /** The container is gone: followers are told, the log is dropped. */
  end(key: string): void {
    const state = this.#logs.get(key);
    if (!state) return;
    state.ended = true;
    for (const follower of state.followers) follower(null);
    state.followers.clear();
    this.#logs.delete(key);
  }
}

export function logKey(podUid: string, container: string): string {
  return `${podUid}/${container}`;
}

/** One JSON log line as the simulated game server writes it. */
export function jsonLine(
  at: number,
  level: string,
  msg: string,
  extra: Record<string, unknown> = {},
): string {
  return JSON.stringify({ time: new Date(at).toISOString(), level, msg, ...extra });
}
