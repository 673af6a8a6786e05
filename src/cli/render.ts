import { styleText } from 'node:util';
import { formatDuration } from '../core/index.ts';
import type { CheckRun, CheckStatus } from '../checks/index.ts';

type Style = Parameters<typeof styleText>[0];
const STATUS_STYLE: Record<CheckStatus, Style> = {
  ok: 'green',
  warn: 'yellow',
  fail: 'red',
  error: ['red', 'bold'],
  skipped: 'gray',
};

/** Colour only when writing to a terminal that wants it (NO_COLOR / FORCE_COLOR respected by Node). */
export function painter(stream: NodeJS.WriteStream): (style: Style, text: string) => string {
  return (style, text) => styleText(style, text, { stream, validateStream: true });
}

/**
 * Shows control characters as escapes. Text in a report comes from outside (alert annotations anyone
 * who can post to Alertmanager controls, SQL statements from the processlist): raw, it could erase
 * lines, forge rows or write the clipboard (OSC 52) on the reader's terminal.
 */
export function printable(text: string): string {
  return text.replace(CONTROL_CHARS, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * C0 and C1 controls, and the invisible characters that rearrange or break what a terminal shows: bidi
 * embeddings, overrides and isolates (a log line could display reversed text, "Trojan Source"), and the
 * Unicode line and paragraph separators.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** Lays out rows in columns (cells made printable); the last column is not padded. */
export function table(
  header: string[],
  cells: string[][],
  paint?: (col: number, cell: string) => string,
): string {
  const rows = cells.map((r) => r.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[], styled: boolean): string =>
    cells
      .map((c, i) => {
        const padded = i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0);
        return styled && paint ? paint(i, padded) : padded;
      })
      .join('  ')
      .trimEnd();
  return [line(header, false), ...rows.map((r) => line(r, true))].join('\n');
}

/** The human report of a daily-check run. */
export function renderRunText(
  run: CheckRun,
  paint: (style: Style, text: string) => string = (_s, t) => t,
): string {
  const status = (s: CheckStatus, text: string = s): string => paint(STATUS_STYLE[s], text);
  const out: string[] = [];
  out.push(
    `${paint('bold', 'gameops daily check')} · ${printable(run.service)} (${printable(run.environment)}) · ${run.startedAt} · ${formatDuration(run.durationMs)}`,
    '',
  );
  out.push(
    table(
      ['CHECK', 'STATUS', 'TIME', 'SUMMARY'],
      run.results.map((r) => [r.name, r.status, formatDuration(r.durationMs), r.summary]),
      (col, cell) => (col === 1 ? status(cell.trim() as CheckStatus, cell) : cell),
    ),
  );
  const findings = run.results.flatMap((r) =>
    r.findings.filter((f) => f.status !== 'ok').map((f) => ({ check: r.name, ...f })),
  );
  if (findings.length > 0) {
    out.push('', paint('bold', 'Findings'));
    out.push(
      table(
        ['CHECK', 'STATUS', 'SUBJECT', 'DETAIL'],
        findings.map((f) => [f.check, f.status, f.subject, f.message]),
        (col, cell) => (col === 1 ? status(cell.trim() as CheckStatus, cell) : cell),
      ),
    );
  }
  out.push('', `Overall: ${status(run.status, run.status.toUpperCase())}  (run ${run.id})`);
  return out.join('\n');
}

const MD_ICON: Record<CheckStatus, string> = {
  ok: '✅ ok',
  warn: '⚠️ warn',
  fail: '❌ fail',
  error: '🛑 error',
  skipped: '⏭️ skipped',
};

function mdCell(text: string): string {
  return printable(text.replaceAll('\n', ' ')).replaceAll('|', '\\|').replaceAll('`', "'");
}

/** Markdown for pasting into a ticket or a chat. */
export function renderRunMarkdown(run: CheckRun): string {
  const out: string[] = [];
  out.push(
    `### Daily check: ${mdCell(run.service)} (${mdCell(run.environment)}): ${MD_ICON[run.status]}`,
    '',
  );
  out.push(
    `Run \`${run.id}\` at ${run.startedAt}, ${formatDuration(run.durationMs)}, triggered by ${run.trigger}.`,
    '',
  );
  out.push('| Check | Status | Summary |', '| --- | --- | --- |');
  for (const r of run.results) out.push(`| ${r.name} | ${MD_ICON[r.status]} | ${mdCell(r.summary)} |`);
  const findings = run.results.flatMap((r) =>
    r.findings.filter((f) => f.status !== 'ok').map((f) => ({ check: r.name, ...f })),
  );
  if (findings.length > 0) {
    out.push('', '#### Findings', '');
    for (const f of findings)
      out.push(`- **${f.check}** ${MD_ICON[f.status]} \`${mdCell(f.subject)}\`: ${mdCell(f.message)}`);
  }
  return out.join('\n');
}
