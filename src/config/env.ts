import { z } from 'zod';
import { InputError } from '../core/index.ts';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const EMPTY = 'is set but empty; unset it or give it a value';

/**
 * The only place that reads `process.env` for gameops's own settings. Secret references (`env:NAME`)
 * in the config file read the environment through the same snapshot, passed down explicitly.
 */
const envSchema = z.object({
  GAMEOPS_CONFIG: z.string().min(1, EMPTY).optional(),
  DATABASE_URL: z.string().min(1, EMPTY).optional(),
  GAMEOPS_DATA_DIR: z.string().min(1, EMPTY).optional(),
  /** An API token the CLI acts as (instead of the local OS user as admin); see src/identity/local.ts. */
  GAMEOPS_TOKEN: z.string().min(1, EMPTY).optional(),
  /** A gameops server the CLI's run commands use (with GAMEOPS_TOKEN) instead of the local store. */
  GAMEOPS_URL: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  GAMEOPS_LOG_LEVEL: z
    .enum(LOG_LEVELS, {
      error: (issue) =>
        `must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(String(issue.input).slice(0, 40))})`,
    })
    .optional(),
  NO_COLOR: z.string().optional(),
  FORCE_COLOR: z.string().optional(),
});

export type GameopsEnv = z.infer<typeof envSchema> & {
  readonly all: Readonly<Record<string, string | undefined>>;
};

/**
 * Reads gameops's settings from the environment.
 * @throws InputError naming the variable when one is set but empty or not a valid value (the value
 *   itself is not repeated: DATABASE_URL may hold a password).
 */
export function readEnv(source: NodeJS.ProcessEnv = process.env): GameopsEnv {
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue?.path[0] ?? '(unknown)');
    const message = issue?.message ?? 'is not valid';
    throw new InputError(`environment variable ${variable} ${message}`, { details: { variable } });
  }
  return { ...parsed.data, all: { ...source } };
}
