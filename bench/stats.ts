/** Figures the benchmarks print: median, and one line of median/min/max. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function fmt(ms: number): string {
  return `${ms.toFixed(1)} ms`;
}

export function stats(xs: number[]): string {
  return `median ${fmt(median(xs))}  min ${fmt(Math.min(...xs))}  max ${fmt(Math.max(...xs))}  (n=${xs.length})`;
}
