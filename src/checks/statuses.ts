/**
 * Check outcomes. `ok`, `warn`, `fail` come from thresholds; `error` means the check could not
 * measure (dependency down, hung, refused); `skipped` means the check is not configured.
 */
export const CheckStatus = {
  ok: 'ok',
  warn: 'warn',
  fail: 'fail',
  error: 'error',
  skipped: 'skipped',
} as const;
export type CheckStatus = (typeof CheckStatus)[keyof typeof CheckStatus];

const SEVERITY: Record<CheckStatus, number> = { skipped: 0, ok: 1, warn: 2, fail: 3, error: 4 };

/** The worse of two statuses (error > fail > warn > ok > skipped). */
export function worst(a: CheckStatus, b: CheckStatus): CheckStatus {
  return SEVERITY[b] > SEVERITY[a] ? b : a;
}

/** The worst status of a list; `skipped` for an empty list. */
export function worstOf(statuses: Iterable<CheckStatus>): CheckStatus {
  let out: CheckStatus = CheckStatus.skipped;
  for (const s of statuses) out = worst(out, s);
  return out;
}

/** CLI exit code for an overall status: 0 ok, 1 warnings, 2 failures or errors. (3 = could not run.) */
export function exitCodeFor(status: CheckStatus): 0 | 1 | 2 {
  switch (status) {
    case 'ok':
    case 'skipped':
      return 0;
    case 'warn':
      return 1;
    case 'fail':
    case 'error':
      return 2;
  }
}
