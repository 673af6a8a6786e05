/**
 * Kubernetes resource quantities (`250m`, `1`, `123456Ki`, `1Gi`, `12345n`, `1e3`, `1.5G`) and Go
 * durations (`15.024s`, `1m0s`), as metrics.k8s.io and the node API write them. The API server is
 * external input: anything that is not a well-formed quantity is `undefined`, never a guess.
 */

const BINARY: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

const DECIMAL: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

// sign, digits (with an optional fraction), then a binary suffix, a decimal exponent or a decimal suffix.
const QUANTITY =
  /^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|n|u|m|k|M|G|T|P|E)?$/;

/** The value of a quantity in base units (cores for CPU, bytes for memory), or undefined if malformed. */
export function parseQuantity(text: string): number | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return undefined;
  const m = QUANTITY.exec(text);
  if (!m) return undefined;
  const sign = m[1] === '-' ? -1 : 1;
  const number = Number(m[2]);
  const suffix = m[3] ?? '';
  let factor: number;
  if (suffix in BINARY) factor = BINARY[suffix]!;
  else if (/^[eE][+-]?[0-9]+$/.test(suffix)) factor = 10 ** Number(suffix.slice(1));
  else factor = DECIMAL[suffix]!;
  const value = sign * number * factor;
  return Number.isFinite(value) ? value : undefined;
}

/** CPU quantity → millicores (`250m` → 250, `1` → 1000, `12345678n` → 12.345678). */
export function cpuMillicores(text: string): number | undefined {
  const cores = parseQuantity(text);
  if (cores === undefined || cores < 0) return undefined;
  // Round away binary floating-point noise (0.1 * 1e3 = 100.00000000000001) at a nanocore.
  return Math.round(cores * 1e9) / 1e6;
}

/** Memory quantity → bytes, rounded up as Kubernetes' Quantity.Value() does (`1Ki` → 1024, `1.5` → 2). */
export function memoryBytes(text: string): number | undefined {
  const bytes = parseQuantity(text);
  if (bytes === undefined || bytes < 0) return undefined;
  // Values like 1.1 * 1e9 carry float noise; treat anything within 1e-9 of an integer as that integer.
  const nearest = Math.round(bytes);
  return Math.abs(bytes - nearest) < 1e-6 ? nearest : Math.ceil(bytes);
}

const DURATION_UNITS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ns: 1e-6,
};

/** A Go `time.Duration` string (`15.024s`, `1m0s`, `500ms`, `0s`, `0`) → milliseconds, or undefined. */
export function parseGoDuration(text: string): number | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return undefined;
  if (text === '0') return 0;
  const part = /([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(h|ms|m|s|us|µs|μs|ns)/y;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    part.lastIndex = at;
    const m = part.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    at = part.lastIndex;
  }
  return total;
}
