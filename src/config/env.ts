import { z } from 'zod';

/**
 * The only place that reads `process.env` for gameops's own settings. Secret references (`env:NAME`)
 * in the config file read the environment through the same snapshot, passed down explicitly.
 */
const envSchema = z.object({
  GAMEOPS_CONFIG: z.string().min(1).optional(),
  DATABASE_URL: z.string().min(1).optional(),
  GAMEOPS_DATA_DIR: z.string().min(1).optional(),
  GAMEOPS_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  NO_COLOR: z.string().optional(),
  FORCE_COLOR: z.string().optional(),
});

export type GameopsEnv = z.infer<typeof envSchema> & {
  readonly all: Readonly<Record<string, string | undefined>>;
};

export function readEnv(source: NodeJS.ProcessEnv = process.env): GameopsEnv {
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`environment variable ${String(issue?.path[0])}: ${issue?.message ?? 'invalid'}`);
  }
  return { ...parsed.data, all: { ...source } };
}
