import { pino, type Logger } from 'pino';

export type { Logger };

/** Paths whose values never reach a log line, whatever the caller passes. */
const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'secret',
  '*.secret',
];

/**
 * Structured JSON logs to stderr (stdout stays for command output). Secret objects print masked on
 * their own; the redaction list is a second net for plain strings under known keys.
 */
export function createLogger(level: string = 'info'): Logger {
  return pino(
    {
      level,
      base: { app: 'gameops' },
      redact: { paths: REDACT, censor: '********' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: 2, sync: true }),
  );
}
