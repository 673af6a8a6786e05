/**
 * Label selectors as the API server parses them (`?labelSelector=`): equality (`a=b`, `a==b`, `a!=b`),
 * set (`a in (x,y)`, `a notin (x)`), existence (`a`, `!a`), comma-separated and all required.
 */

export type Requirement =
  | { key: string; op: 'eq' | 'neq'; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists' };

export class SelectorError extends Error {}

const KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function checkKey(key: string, text: string): string {
  if (!KEY.test(key) || key.length > 316)
    throw new SelectorError(`unable to parse requirement: invalid label key "${key}" in "${text}"`);
  return key;
}

function checkValue(value: string, text: string): string {
  if (!VALUE.test(value) || value.length > 63)
    throw new SelectorError(`unable to parse requirement: invalid label value "${value}" in "${text}"`);
  return value;
}

/** Splits on commas that are not inside parentheses. */
function splitTop(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

export function parseSelector(text: string | null | undefined): Requirement[] {
  if (text === null || text === undefined || text.trim() === '') return [];
  return splitTop(text).map((raw) => {
    const part = raw.trim();
    if (part === '') throw new SelectorError(`unable to parse requirement: empty requirement in "${text}"`);
    const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(part);
    if (set) {
      const values = set[3]!.split(',').map((v) => checkValue(v.trim(), text));
      return { key: checkKey(set[1]!, text), op: set[2] as 'in' | 'notin', values };
    }
    const eq = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part);
    if (eq) {
      return {
        key: checkKey(eq[1]!, text),
        op: eq[2] === '!=' ? 'neq' : 'eq',
        value: checkValue(eq[3]!, text),
      };
    }
    if (part.startsWith('!')) return { key: checkKey(part.slice(1).trim(), text), op: 'notexists' };
    return { key: checkKey(part, text), op: 'exists' };
  });
}

export function matches(
  requirements: readonly Requirement[],
  labels: Record<string, string> | undefined,
): boolean {
  const l = labels ?? {};
  return requirements.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'eq':
        return has && v === r.value;
      case 'neq':
        return !has || v !== r.value;
      case 'in':
        return has && r.values.includes(v!);
      case 'notin':
        return !has || !r.values.includes(v!);
      case 'exists':
        return has;
      case 'notexists':
        return !has;
    }
  });
}

/** `matchLabels` as a selector string, for Scale.status.selector. */
export function matchLabelsToString(matchLabels: Record<string, string>): string {
  return Object.entries(matchLabels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}
