/**
 * A JSON column read back: its value, or `fallback` when the column is NULL or does not parse (a row
 * written by hand or by an older version is shown, not refused).
 */
export function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}
