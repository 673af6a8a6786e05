import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../core/index.ts';
import {
  formatMatcher,
  matchesAll,
  matcherMatches,
  parseMatcher,
  unsafeRegex,
  MAX_REGEX_LENGTH,
} from './matchers.ts';

describe('label matchers', () => {
  it.each([
    ['severity="critical"', { name: 'severity', op: '=', value: 'critical' }],
    ['severity = "critical"', { name: 'severity', op: '=', value: 'critical' }],
    ['env!="dev"', { name: 'env', op: '!=', value: 'dev' }],
    ['instance=~"eu-.*"', { name: 'instance', op: '=~', value: 'eu-.*' }],
    ['instance!~"eu-.*"', { name: 'instance', op: '!~', value: 'eu-.*' }],
    ['team=ops', { name: 'team', op: '=', value: 'ops' }],
    ['msg="say \\"hi\\" \\\\ ok"', { name: 'msg', op: '=', value: 'say "hi" \\ ok' }],
    ['empty=""', { name: 'empty', op: '=', value: '' }],
    ['_x1="a=b"', { name: '_x1', op: '=', value: 'a=b' }],
  ])('parses %s', (text, expected) => {
    expect(parseMatcher(text, 'm')).toMatchObject(expected);
  });

  it.each([
    ['severity', 'is not a matcher'],
    ['="x"', 'is not a matcher'],
    ['1abc="x"', 'not a valid label name'],
    ['a-b="x"', 'not a valid label name'],
    ['a="x', 'no closing double quote'],
    ['a="x"y', 'after the closing double quote'],
    ['a="x\\q"', 'unknown escape'],
    ['a=two words', 'unquoted value'],
    ['a=~"(unclosed"', 'not a valid regex'],
    [`a=~"${'x'.repeat(MAX_REGEX_LENGTH + 1)}"`, 'regex is longer'],
  ])('refuses %s, naming the field', (text, problem) => {
    let error: unknown;
    try {
      parseMatcher(text, 'alerts.routes[2].matchers[0]');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).message).toContain('alerts.routes[2].matchers[0]');
    expect((error as InputError).message).toContain(problem);
  });

  it('anchors regexes and treats a missing label as empty, as Alertmanager does', () => {
    const eu = parseMatcher('instance=~"eu-.*"', 'm');
    expect(matcherMatches(eu, { instance: 'eu-1' })).toBe(true);
    expect(matcherMatches(eu, { instance: 'xeu-1' })).toBe(false);
    expect(matcherMatches(parseMatcher('a=~"b|c"', 'm'), { a: 'bc' })).toBe(false);
    expect(matcherMatches(parseMatcher('a!=""', 'm'), {})).toBe(false);
    expect(matcherMatches(parseMatcher('a=""', 'm'), {})).toBe(true);
    expect(matchesAll([eu, parseMatcher('env!="dev"', 'm')], { instance: 'eu-2', env: 'prod' })).toBe(true);
    expect(matchesAll([], { anything: 'x' })).toBe(true);
  });

  it('never throws anything but InputError on arbitrary input, and formats back to what it parsed', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.anything()), (input) => {
        try {
          const m = parseMatcher(input, 'f');
          const again = parseMatcher(formatMatcher(m), 'f');
          expect({ ...again, regex: undefined }).toEqual({ ...m, regex: undefined });
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
        }
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,10}$/),
        fc.constantFrom('=', '!=', '=~', '!~'),
        fc.string({ maxLength: 30 }),
        (name, op, value) => {
          try {
            const m = parseMatcher(formatMatcher({ name, op, value }), 'f');
            expect(m.value).toBe(value);
          } catch (err) {
            // Only a value that is not a valid regex may be refused.
            expect(err).toBeInstanceOf(InputError);
            expect(op === '=~' || op === '!~').toBe(true);
          }
        },
      ),
    );
  });

  it.each([
    ['(a+)+', 'nested'],
    ['(a*)*', 'nested'],
    ['(a|a)*', 'alternation'],
    ['(.*,)*x', 'nested'],
    ['((ab)+c){2,}', 'nested'],
    ['(?=a).*', 'lookaround'],
    ['(?<!a)b', 'lookaround'],
    ['\\k<x>', 'backreference'],
    ['.*-.*-.*-.*-prod', 'unbounded'],
  ])('refuses the regex %s, which is not RE2-safe (%s), naming the matcher', (re) => {
    expect(unsafeRegex(re)).toBeDefined();
    expect(() => parseMatcher(`instance=~"${re.replace(/\\/g, '\\\\')}"`, 'routes[2].matchers[0]')).toThrow(
      /routes\[2\]\.matchers\[0\]: .* is refused/,
    );
  });

  it.each([
    'eu-.*',
    '(foo|bar)-.*',
    'db-[0-9]+',
    'x{2,5}',
    '(ab){2}',
    '.*foo.*bar.*',
    '(eu|us)?-prod',
    '[(a+)+]',
  ])('accepts the linear-enough regex %s', (re) => {
    expect(unsafeRegex(re)).toBeUndefined();
  });

  it('looks at no more than 1,024 characters of a label value', () => {
    const m = parseMatcher('instance=~"eu-.*-.*-prod"', 'm');
    expect(matcherMatches(m, { instance: `eu-${'a-'.repeat(16_000)}prod` })).toBe(false);
    expect(matcherMatches(parseMatcher('instance=~"a.*"', 'm'), { instance: 'a'.repeat(50_000) })).toBe(true);
  });
});
