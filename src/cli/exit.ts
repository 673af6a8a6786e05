/** CLI exit codes, documented in `gameops --help` and the README. */
export const ExitCode = {
  ok: 0,
  warn: 1,
  fail: 2,
  /** Could not run: bad config, bad usage, store in use, server could not start. */
  couldNotRun: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = `
Exit codes:
  0  all checks ok (or nothing to check)
  1  warnings
  2  failures or errors (a dependency down or not answering is an error)
  3  could not run: bad config, bad usage, or the store/server could not start`;
