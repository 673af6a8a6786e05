import type { CheckResult } from './types.ts';

/**
 * Reads figures from the previous result of the same check. Results come back from the store as JSON, possibly
 * written by an older gameops or by a run that errored, so every value is checked before use.
 */
export function previousNumber(previous: CheckResult | undefined, key: string): number | undefined {
  const value = previous?.values[key];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function previousString(previous: CheckResult | undefined, key: string): string | undefined {
  const value = previous?.values[key];
  return typeof value === 'string' ? value : undefined;
}
