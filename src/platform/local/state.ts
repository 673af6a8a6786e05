/**
 * The fleet's state file, `<dataDir>/fleet/state.json`: what every gameops process needs to adopt the
 * game servers another one started. Written atomically (0600); read back through a zod schema, since a
 * file on disk is external input. A corrupted file is an UnavailableError (gameops's own file is broken:
 * not the caller's input) naming the file and the field, and nothing is started or stopped because of it.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { UnavailableError } from '../../core/index.ts';
import { FileProblem, readBoundedFile, writeFileAtomic } from './files.ts';

export const STATE_FILE = 'state.json';
const MAX_STATE_BYTES = 8 * 1024 * 1024;
export const MAX_REPLICAS = 1000;

const versionName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/);
const isoDate = z.string().refine((s) => Number.isFinite(Date.parse(s)), 'an ISO 8601 date');
const pid = z
  .number()
  .int()
  .min(1)
  .max(2 ** 22);
const startTime = z.string().regex(/^\d{1,20}$/, 'clock ticks after boot');

const exitSchema = z.strictObject({
  /** The process that exited. */
  pid,
  at: isoDate,
  code: z.number().int().nullable(),
  signal: z.string().max(20).nullable(),
  /** For people: "exited with code 1", "killed by SIGKILL", "gone (exit status unknown)". */
  reason: z.string().max(500),
});

/** An operation working on an instance; the supervisor leaves the instance alone while it lives. */
const ownerSchema = z.strictObject({ pid, startTime, operation: z.string().max(50) });

const instanceSchema = z.strictObject({
  index: z
    .number()
    .int()
    .min(0)
    .max(MAX_REPLICAS - 1),
  /** The version this instance runs (or ran last, and is restarted with). */
  version: versionName,
  /** The current process, when one was started and has not been seen dead. */
  pid: pid.optional(),
  /** Its start time (/proc/<pid>/stat field 22): guards against pid reuse. */
  startTime: startTime.optional(),
  /** When gameops started the current process (by the injected clock; for the backoff reset). */
  spawnedAt: isoDate.optional(),
  /** Restarts after crashes (operator restarts do not count). */
  restarts: z.number().int().min(0),
  /** Consecutive crashes; the backoff doubles with each and resets after a stable run. */
  failures: z.number().int().min(0),
  /** While backing off: when the supervisor may start it again. */
  nextAttemptAt: isoDate.optional(),
  lastExit: exitSchema.optional(),
  /** Why the last start failed, when it did (program not found, port taken…). */
  problem: z.string().max(500).optional(),
  owner: ownerSchema.optional(),
  /**
   * A start about to happen, recorded before the process is spawned and cleared with its pid in the same
   * state-lock hold. Seen by anyone else, it means that start was interrupted (its gameops died between
   * the spawn and the write): a process it left is looked for and adopted before starting another.
   */
  starting: z.strictObject({ at: isoDate, by: z.strictObject({ pid, startTime }) }).optional(),
});

export const stateSchema = z.strictObject({
  schema: z.literal(1),
  /** The version new instances run: the fleet's current version. */
  version: versionName,
  /** The version before the last setVersion/rollback: what `rollback` goes to. */
  previousVersion: versionName.optional(),
  replicas: z.number().int().min(0).max(MAX_REPLICAS),
  instances: z.array(instanceSchema).max(MAX_REPLICAS * 2),
  updatedAt: isoDate,
});

export type FleetState = z.infer<typeof stateSchema>;
export type InstanceState = z.infer<typeof instanceSchema>;
export type InstanceExit = z.infer<typeof exitSchema>;
export type Owner = z.infer<typeof ownerSchema>;

/** The state before anything was started: the config's version and replicas. */
export function initialState(version: string, replicas: number, now: Date): FleetState {
  return { schema: 1, version, replicas, instances: [], updatedAt: now.toISOString() };
}

/**
 * Reads the state file; undefined when there is none yet.
 * @throws UnavailableError when it is unreadable or invalid (naming the file and the first bad field).
 */
export async function readState(fleetDir: string): Promise<FleetState | undefined> {
  const file = join(fleetDir, STATE_FILE);
  let text: string | undefined;
  try {
    text = await readBoundedFile(file, MAX_STATE_BYTES);
  } catch (err) {
    throw corrupted(file, err instanceof FileProblem ? err.message : String(err));
  }
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupted(file, `is not JSON (${(err as Error).message})`);
  }
  const parsed = stateSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue?.path.length ? issue.path.join('.') : '(top level)';
    throw corrupted(file, `${at}: ${issue?.message ?? 'invalid'}`);
  }
  const indexes = parsed.data.instances.map((i) => i.index);
  if (new Set(indexes).size !== indexes.length) throw corrupted(file, 'instances: an index appears twice');
  return parsed.data;
}

export async function writeState(fleetDir: string, state: FleetState): Promise<void> {
  const sorted = { ...state, instances: [...state.instances].sort((a, b) => a.index - b.index) };
  await writeFileAtomic(join(fleetDir, STATE_FILE), `${JSON.stringify(sorted, null, 1)}\n`);
}

function corrupted(file: string, problem: string): UnavailableError {
  return new UnavailableError(
    `the fleet state file ${file} is unusable: ${problem}. Nothing was started or stopped. ` +
      'Fix or remove it (removing it forgets the running game servers: stop them first).',
    { details: { file } },
  );
}
