/**
 * JSON-lines logs on stdout: one object per line with `time` (ISO 8601), `level` as an upper-case word
 * (`DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`) and `msg`. `ERROR` is kept for real errors, so counting lines
 * that contain `ERROR` counts errors (docs/game-server-contract.md, "Lifecycle").
 */
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export interface LogOptions {
  level: 'debug' | 'info' | 'warn' | 'error';
  /** Fields on every line, e.g. `{ instance: 'game-0' }`. */
  base?: Record<string, unknown>;
  /** Where lines go (default stdout, written synchronously so nothing is lost at exit). */
  destination?: NodeJS.WritableStream | pino.DestinationStream;
  /** The wall clock, for the `time` field. */
  now?: () => Date;
}

export function createLogger(options: LogOptions): Logger {
  const now = options.now ?? (() => new Date());
  return pino(
    {
      level: options.level,
      base: options.base ?? {},
      messageKey: 'msg',
      timestamp: () => `,"time":"${now().toISOString()}"`,
      formatters: { level: (label) => ({ level: label.toUpperCase() }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
