import { describe, expect, it } from 'vitest';
import type { CheckRun } from '../checks/index.ts';
import { printable, renderRunMarkdown, renderRunText } from './render.ts';

const hostile = 'ok\u001b[2K\r\u001b[1Adatabase  ok  forged\u001b]52;c;ZXZpbA==\u0007|`x`';

function runWith(summary: string): CheckRun {
  return {
    id: '00000000-0000-4000-8000-000000000000',
    kind: 'daily',
    service: 'game\u001b[31m',
    environment: 'prod',
    trigger: 'cli',
    status: 'fail',
    startedAt: '2026-11-26T09:00:00.000Z',
    finishedAt: '2026-11-26T09:00:00.100Z',
    durationMs: 100,
    results: [
      {
        name: 'alerts',
        status: 'fail',
        summary,
        durationMs: 5,
        values: {},
        findings: [{ status: 'fail', subject: `Evil${hostile}`, message: hostile }],
      },
    ],
  };
}

describe('rendering reports from untrusted text', () => {
  it.each([
    ['\u001b[2K', '\\x1b[2K'],
    ['a\rb\nc', 'a\\x0db\\x0ac'],
    ['\u009b31m', '\\x9b31m'],
    ['plain text — ünïcode 한국어', 'plain text — ünïcode 한국어'],
  ])('printable(%j) = %j', (input, expected) => {
    expect(printable(input)).toBe(expected);
  });

  it('never writes a control character to the terminal', () => {
    const text = renderRunText(runWith(hostile));
    // eslint-disable-next-line no-control-regex
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(text).toContain('\\x1b]52;c;');
  });

  it('keeps Markdown tables intact and free of control characters', () => {
    const md = renderRunMarkdown(runWith(hostile));
    // eslint-disable-next-line no-control-regex
    expect(md).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    const row = md.split('\n').find((l) => l.startsWith('| alerts |'));
    expect(row?.split(/(?<!\\)\|/).length).toBe(5);
  });
});

describe('printable', () => {
  it.each([
    ['bidi override (Trojan Source)', 'user\u202Egnp.exe', 'user\\u202egnp.exe'],
    ['bidi isolate', 'a\u2066b\u2069c', 'a\\u2066b\\u2069c'],
    ['line separator', 'one\u2028two', 'one\\u2028two'],
    ['C1 control', 'x\u009by', 'x\\x9by'],
    ['plain text and emoji untouched', 'héllo 🎮 게임', 'héllo 🎮 게임'],
  ])('%s', (_what, input, shown) => {
    expect(printable(input)).toBe(shown);
  });
});
