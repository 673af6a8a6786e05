/** CLI exit codes, documented in `gameops --help` and the README. */
export const ExitCode = {
  ok: 0,
  warn: 1,
  fail: 2,
  /** Could not run: bad config, bad usage, store in use, server could not start. */
  couldNotRun: 3,
  /** A run is waiting for a person (an approval, a manual step, a verification, a resume). */
  waiting: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = `
Exit codes:
  0  all checks ok (or nothing to check)
  1  warnings
  2  failures or errors (a dependency down or not answering is an error)
  3  could not run: bad config, bad usage, or the store/server could not start
  4  a run is waiting for a person (approval, manual step, verification); the command that continues it
     is printed`;

/** Exit codes of `gameops run` and `gameops runs …`. */
export const RUN_EXIT_CODES_HELP = `
Exit codes:
  0  the run succeeded and every check passed (or, with --detach, was started; for runs
     approve/complete/...: done)
  1  the run succeeded with warnings (a check step warned)
  2  the run failed or was cancelled, or a step failed although the run went on (a check with
     onFailure: continue, e.g. any daily-check check)
  3  could not run or refused: bad usage or parameters, unknown runbook/run/step, not allowed, the
     approval no longer matches (the plan changed) or expired
  4  the run is waiting for a person (approval, manual step, verification, paused); the command that
     continues it is printed
  130 interrupted (Ctrl-C): gameops stopped following; the run goes on (or resumes later)`;
