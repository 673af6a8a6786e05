/**
 * The audit log seen by people: recording config changes, and rendering records and verification
 * results for the CLI. The log itself (append, list, verify) is `Store.audit` (src/store/audit.ts).
 */
import type { AuditRecord, AuditVerification } from '../store/index.ts';

export { recordConfigLoad } from './config.ts';

/** One line per record: `seq  at  actor  action  target  data` (data as compact JSON). */
export function auditRows(records: AuditRecord[]): string[][] {
  return records.map((r) => [
    String(r.seq),
    r.at,
    `${r.actor.name} (${r.actor.id}, ${r.actor.role})`,
    r.action,
    r.target,
    Object.keys(r.data).length === 0 ? '' : JSON.stringify(r.data),
  ]);
}

/** The header of {@link auditRows}. */
export const AUDIT_COLUMNS = ['SEQ', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'DATA'];

/** What `gameops audit verify` prints: one summary line, then one line per problem. */
export function renderVerification(result: AuditVerification): string {
  const head = result.head
    ? `head seq ${result.head.seq}, hash ${result.head.hash.slice(0, 16)}…`
    : 'no head';
  if (result.ok) return `audit log intact: ${result.records} records verified (${head})`;
  const lines = [
    `audit log NOT intact: ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'} in ${result.records} records (${head})`,
  ];
  for (const p of result.problems) lines.push(`  ${p.seq === 0 ? '-' : `#${p.seq}`}: ${p.problem}`);
  return lines.join('\n');
}
