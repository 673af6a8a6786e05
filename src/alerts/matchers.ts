/**
 * Alertmanager-style label matchers: `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`.
 * Regexes are anchored at both ends (as in Alertmanager) and bounded in size; label names follow the
 * Prometheus rule `[a-zA-Z_][a-zA-Z0-9_]*`. A value may be unquoted when it has no space, quote, comma
 * or brace. Everything that is not a matcher is an InputError naming the field and the text.
 */
import { InputError } from '../core/index.ts';

export type MatchOp = '=' | '!=' | '=~' | '!~';

export interface Matcher {
  name: string;
  op: MatchOp;
  value: string;
  /** The anchored regex of `=~` and `!~`. */
  regex?: RegExp | undefined;
}

/** The longest regex a matcher may hold (a bounded pattern keeps matching cheap). */
export const MAX_REGEX_LENGTH = 512;
/** The longest matcher text. */
export const MAX_MATCHER_LENGTH = 1000;
/** The longest label value a matcher looks at (intake keeps values to 1,024 characters as well). */
export const MAX_MATCHED_VALUE = 1024;
/** Unbounded quantifiers (`*`, `+`, `{n,}`) a regex may hold: each multiplies the backtracking. */
export const MAX_UNBOUNDED = 3;

/**
 * Why a regex is not safe for a backtracking engine (JS), or undefined: what RE2 (Alertmanager's engine)
 * refuses (backreferences, lookarounds) and what makes backtracking exponential: a quantified group
 * that holds a quantifier or an alternation (`(a+)+`, `(a*)*`, `(a|a)*`); more than MAX_UNBOUNDED
 * unbounded quantifiers (polynomial blow-up on long values).
 */
export function unsafeRegex(pattern: string): string | undefined {
  if (/\\[1-9]|\\k</.test(pattern)) return 'backreferences are not supported (RE2)';
  if (/\(\?<?[=!]/.test(pattern)) return 'lookarounds are not supported (RE2)';
  // Walk groups: per open group, whether it holds a quantifier or an alternation.
  const stack: boolean[] = [];
  let unbounded = 0;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      continue;
    }
    if (c === '(') {
      stack.push(false);
      continue;
    }
    const quantifier = quantifierAt(pattern, i);
    if (c === '|' && stack.length > 0) stack[stack.length - 1] = true;
    if (c === ')') {
      const risky = stack.pop() ?? false;
      const next = quantifierAt(pattern, i + 1);
      if (next && next.repeats && risky)
        return 'a repeated group holds a quantifier or an alternation (nested quantifiers backtrack exponentially)';
      if (risky && stack.length > 0) stack[stack.length - 1] = true;
      continue;
    }
    if (quantifier) {
      if (stack.length > 0 && quantifier.repeats) stack[stack.length - 1] = true;
      if (quantifier.unbounded && ++unbounded > MAX_UNBOUNDED)
        return `more than ${MAX_UNBOUNDED} unbounded quantifiers (* + {n,})`;
      i += quantifier.length - 1;
    }
  }
  return undefined;
}

/** The quantifier starting at `i` (with its lazy `?`), if any. */
function quantifierAt(
  pattern: string,
  i: number,
): { length: number; repeats: boolean; unbounded: boolean } | undefined {
  const c = pattern[i];
  let found: { length: number; repeats: boolean; unbounded: boolean };
  if (c === '*' || c === '+') found = { length: 1, repeats: true, unbounded: true };
  else if (c === '?') found = { length: 1, repeats: false, unbounded: false };
  else if (c === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i, i + 24));
    if (!m) return undefined;
    const unbounded = m[2] !== undefined && m[3] === '';
    found = { length: m[0].length, repeats: unbounded || Number(m[3] ?? m[1]) > 1, unbounded };
  } else return undefined;
  if (pattern[i + found.length] === '?') found.length++;
  return found;
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const MATCHER = /^\s*([^\s=!~"]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$/s;

/**
 * Parses one matcher.
 * @param field what to name in errors, e.g. `alerts.routes[0].matchers[1]` or `--match`.
 * @throws InputError naming the field and what is wrong.
 */
export function parseMatcher(text: unknown, field: string): Matcher {
  const fail = (problem: string): InputError =>
    new InputError(`${field}: ${problem}`, {
      details: { field, ...(typeof text === 'string' ? { value: text.slice(0, 200) } : {}) },
    });
  if (typeof text !== 'string') throw fail('must be a string such as severity="critical"');
  if (text.length > MAX_MATCHER_LENGTH) throw fail(`is longer than ${MAX_MATCHER_LENGTH} characters`);
  const shown = JSON.stringify(text.slice(0, 100));
  const m = MATCHER.exec(text);
  if (!m)
    throw fail(
      `${shown} is not a matcher; write name="value", name!="value", name=~"regex" or name!~"regex"`,
    );
  const [, name = '', op = '=', raw = ''] = m;
  if (!LABEL_NAME.test(name))
    throw fail(
      `${JSON.stringify(name)} is not a valid label name (letters, digits and _; not starting with a digit)`,
    );
  const value = parseValue(raw, fail);
  const matcher: Matcher = { name, op: op as MatchOp, value };
  if (op === '=~' || op === '!~') {
    if (value.length > MAX_REGEX_LENGTH)
      throw fail(`the regex is longer than ${MAX_REGEX_LENGTH} characters`);
    const unsafe = unsafeRegex(value);
    if (unsafe !== undefined) throw fail(`${JSON.stringify(value.slice(0, 100))} is refused: ${unsafe}`);
    try {
      matcher.regex = new RegExp(`^(?:${value})$`, 's');
    } catch (err) {
      throw fail(`${JSON.stringify(value.slice(0, 100))} is not a valid regex: ${(err as Error).message}`);
    }
  }
  return matcher;
}

function parseValue(raw: string, fail: (problem: string) => InputError): string {
  if (raw.startsWith('"')) {
    let out = '';
    for (let i = 1; i < raw.length; i++) {
      const c = raw[i];
      if (c === '"') {
        if (i !== raw.length - 1) throw fail('text after the closing double quote of the value');
        return out;
      }
      if (c !== '\\') {
        out += c;
        continue;
      }
      const next = raw[++i];
      if (next === 'n') out += '\n';
      else if (next === '\\' || next === '"') out += next;
      else throw fail(`unknown escape \\${next ?? ''} in the value (use \\", \\\\ or \\n)`);
    }
    throw fail('the value has no closing double quote');
  }
  if (/[\s"',{}]/.test(raw))
    throw fail('an unquoted value may not hold spaces, quotes, commas or braces; quote it: name="a value"');
  return raw;
}

/** Parses a list of matchers, naming each by its index under `field`. */
export function parseMatchers(texts: readonly unknown[], field: string): Matcher[] {
  return texts.map((text, i) => parseMatcher(text, `${field}[${i}]`));
}

/** Whether one matcher accepts the labels (a missing label is the empty string, as in Alertmanager). */
export function matcherMatches(matcher: Matcher, labels: Record<string, string>): boolean {
  const given = labels[matcher.name] ?? '';
  // Bounded input keeps even a polynomial regex cheap.
  const value = given.length > MAX_MATCHED_VALUE ? given.slice(0, MAX_MATCHED_VALUE) : given;
  switch (matcher.op) {
    case '=':
      return value === matcher.value;
    case '!=':
      return value !== matcher.value;
    case '=~':
      return matcher.regex?.test(value) ?? false;
    case '!~':
      return !(matcher.regex?.test(value) ?? false);
  }
}

/** Whether all matchers accept the labels (no matchers: everything matches). */
export function matchesAll(matchers: readonly Matcher[], labels: Record<string, string>): boolean {
  return matchers.every((m) => matcherMatches(m, labels));
}

/** The matcher as text, the way it parses back (`name="value"`). */
export function formatMatcher(matcher: Matcher): string {
  const quoted = matcher.value.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\n');
  return `${matcher.name}${matcher.op}"${quoted}"`;
}
