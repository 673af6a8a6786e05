/**
 * The `kubernetes` component of a backup set: the platform's config through the platform port
 * (`exportConfigObjects` / `applyConfigObjects`): every ConfigMap and Secret of the namespace on
 * Kubernetes, the game config file locally.
 *
 * One object, `objects.json`: canonical JSON (objects sorted by kind and name, keys sorted), values
 * base64 as the port gives them. Secrets are never written unless the set is encrypted: the service says
 * so (`encrypted`) only when age recipients are configured, and the codec encrypts every object.
 *
 * Verification (in the manifest, which is not encrypted): counts per kind and, per object, its kind,
 * name, number of keys and a SHA-256 of its canonical JSON **salted** with a random per-set salt, so that
 * the manifest gives no unsalted hash of a Secret's values to test guesses against offline or to match
 * across sets. Values are never logged, nor put in any message.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { GameopsError, InputError, UnavailableError, errorMessage } from '../../core/index.ts';
import type { ConfigObject, Platform } from '../../platform/port.ts';
import type {
  ComponentBackup,
  ComponentDrill,
  ComponentReadContext,
  ComponentWriteContext,
  DrillCheck,
  ManifestComponent,
} from '../types.ts';

export const PLATFORM_CONFIG_OBJECT = 'objects.json';
const FORMAT = 'gameops-platform-config/1';
/** objects.json is read into memory: a namespace's config is small (a ConfigMap is at most 1 MiB). */
const MAX_OBJECTS_BYTES = 256 * 1024 * 1024;
const KINDS = ['ConfigMap', 'Secret', 'File'] as const;

const configObjectSchema = z
  .object({
    kind: z.enum(KINDS),
    name: z.string().min(1).max(4096),
    type: z.string().min(1).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    binaryKeys: z.array(z.string()).optional(),
    data: z.record(z.string(), z.string()),
  })
  .strict();

const fileSchema = z.object({ format: z.literal(FORMAT), objects: z.array(configObjectSchema) }).strict();

const verificationSchema = z.object({
  format: z.literal(FORMAT),
  salt: z.string().regex(/^[0-9a-f]{32}$/),
  counts: z.object({
    ConfigMap: z.number().int().min(0),
    Secret: z.number().int().min(0),
    File: z.number().int().min(0),
    total: z.number().int().min(0),
  }),
  objects: z.array(
    z.object({
      kind: z.enum(KINDS),
      name: z.string(),
      keys: z.number().int().min(0),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});

/** What the manifest records for a drill to compare with. */
export type PlatformConfigVerification = z.infer<typeof verificationSchema>;

/** JSON with object keys sorted at every level: the same objects always give the same bytes. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function byKindAndName(a: ConfigObject, b: ConfigObject): number {
  const ka = `${a.kind}\u0000${a.name}`;
  const kb = `${b.kind}\u0000${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function objectHash(salt: string, object: ConfigObject): string {
  return createHash('sha256').update(salt, 'utf8').update(canonicalJson(object), 'utf8').digest('hex');
}

function describeObject(object: { kind: string; name: string }): string {
  return `${object.kind} ${object.name}`;
}

function countsOf(objects: readonly ConfigObject[]): PlatformConfigVerification['counts'] {
  const counts = { ConfigMap: 0, Secret: 0, File: 0, total: objects.length };
  for (const o of objects) counts[o.kind]++;
  return counts;
}

/**
 * Backs up the platform's config as one object, `objects.json`.
 * @param options.encrypted whether the set's objects are encrypted (age recipients configured)
 * @throws InputError "Secrets are always encrypted…" when `encrypted` is false and there is any Secret
 *   (nothing is written); the platform's errors (NotAllowedError naming what RBAC refused…) as they are
 */
export async function backupPlatformConfig(
  platform: Platform,
  ctx: ComponentWriteContext,
  options: { encrypted: boolean },
): Promise<ComponentBackup> {
  ctx.signal.throwIfAborted();
  ctx.progress.phase('export');
  const objects = [...(await platform.exportConfigObjects())].sort(byKindAndName);
  const counts = countsOf(objects);
  if (!options.encrypted && counts.Secret > 0) {
    throw new InputError(
      `Secrets are always encrypted: set backups.encryption.recipients (${platform.describe()} has ${counts.Secret} Secret${counts.Secret === 1 ? '' : 's'}; nothing was written)`,
    );
  }
  ctx.signal.throwIfAborted();
  const salt = randomBytes(16).toString('hex');
  const body = Buffer.from(`${canonicalJson({ format: FORMAT, objects })}\n`, 'utf8');
  ctx.progress.phase('dump', body.length);
  const record = await ctx.write(PLATFORM_CONFIG_OBJECT, Readable.from([body]));
  ctx.progress.add(body.length);
  ctx.progress.note(`${counts.ConfigMap} ConfigMaps, ${counts.Secret} Secrets, ${counts.File} files`);
  ctx.log.info({ component: 'kubernetes', ...counts, bytes: record.plainSize }, 'platform config backed up');
  const verification: PlatformConfigVerification = {
    format: FORMAT,
    salt,
    counts,
    objects: objects.map((o) => ({
      kind: o.kind,
      name: o.name,
      keys: Object.keys(o.data).length,
      sha256: objectHash(salt, o),
    })),
  };
  return {
    tool: { name: `gameops platform port (${platform.kind})`, version: FORMAT },
    source: { platform: platform.describe() },
    verification,
    notes: [
      'per-object SHA-256 values are salted with a random per-set salt (no plain hash of a Secret in the manifest)',
    ],
  };
}

async function readObject(ctx: ComponentReadContext, name: string): Promise<Buffer> {
  if (!ctx.objects.some((o) => o.name === name))
    throw new UnavailableError(`backup set ${ctx.setId}: the kubernetes component has no object ${name}`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of ctx.read(name) as AsyncIterable<Buffer | string>) {
      ctx.signal.throwIfAborted();
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (size > MAX_OBJECTS_BYTES)
        throw new UnavailableError(`object ${name} is larger than ${MAX_OBJECTS_BYTES} bytes`);
      chunks.push(buf);
      ctx.progress.add(buf.length);
    }
  } catch (err) {
    if (err instanceof GameopsError || ctx.signal.aborted) throw err;
    throw new UnavailableError(
      `cannot read object ${name} of backup set ${ctx.setId}: ${errorMessage(err)}`,
      {
        cause: err,
      },
    );
  }
  return Buffer.concat(chunks, size);
}

function parseObjects(bytes: Buffer, setId: string): ConfigObject[] {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new UnavailableError(`object ${PLATFORM_CONFIG_OBJECT} of backup set ${setId} is not JSON`);
  }
  const parsed = fileSchema.safeParse(value);
  if (!parsed.success) {
    // Paths only: the issues' messages could quote a value.
    const where = parsed.error.issues
      .slice(0, 3)
      .map((i) => i.path.join('.'))
      .join(', ');
    throw new UnavailableError(
      `object ${PLATFORM_CONFIG_OBJECT} of backup set ${setId} is not a ${FORMAT} document (at ${where})`,
    );
  }
  return parsed.data.objects;
}

function verificationOf(backup: ManifestComponent): PlatformConfigVerification {
  const parsed = verificationSchema.safeParse(backup.verification);
  if (!parsed.success)
    throw new UnavailableError(
      `the manifest's kubernetes component has no valid ${FORMAT} verification record`,
    );
  return parsed.data;
}

/** Each object against the verification record (hash and key count), then the counts. */
function compare(objects: readonly ConfigObject[], verification: PlatformConfigVerification): DrillCheck[] {
  const checks: DrillCheck[] = [];
  const found = new Map(objects.map((o) => [describeObject(o), o]));
  for (const expected of verification.objects) {
    const subject = describeObject(expected);
    const actual = found.get(subject);
    found.delete(subject);
    const actualHash = actual ? objectHash(verification.salt, actual) : 'missing';
    checks.push({
      subject,
      expected: `${expected.keys} keys, sha256 ${expected.sha256.slice(0, 16)}…`,
      actual: actual
        ? `${Object.keys(actual.data).length} keys, sha256 ${actualHash.slice(0, 16)}…`
        : 'missing',
      ok: actual !== undefined && actualHash === expected.sha256,
    });
  }
  for (const [subject] of found) {
    checks.push({ subject, expected: 'absent', actual: 'present', ok: false, note: 'not in the manifest' });
  }
  const counts = countsOf(objects);
  for (const kind of [...KINDS, 'total'] as const) {
    checks.push({
      subject: `${kind} count`,
      expected: String(verification.counts[kind]),
      actual: String(counts[kind]),
      ok: verification.counts[kind] === counts[kind],
    });
  }
  return checks;
}

/**
 * Restores the platform's config: reads `objects.json`, checks every object against the manifest, then
 * applies them all through the port (create, or replace the current object of that name).
 * @throws UnavailableError naming the first object that differs from the manifest (nothing applied);
 *   the platform's errors (InputError, NotAllowedError…) naming the object
 */
export async function restorePlatformConfig(
  backup: ManifestComponent,
  platform: Platform,
  ctx: ComponentReadContext,
): Promise<{ created: number; replaced: number }> {
  const verification = verificationOf(backup);
  ctx.progress.phase('download', backup.objects.find((o) => o.name === PLATFORM_CONFIG_OBJECT)?.plainSize);
  const objects = parseObjects(await readObject(ctx, PLATFORM_CONFIG_OBJECT), ctx.setId);
  const bad = compare(objects, verification).find((c) => !c.ok);
  if (bad) {
    throw new UnavailableError(
      `backup set ${ctx.setId}: ${bad.subject} differs from the manifest (expected ${bad.expected}, found ${bad.actual}); nothing was applied`,
    );
  }
  ctx.signal.throwIfAborted();
  ctx.progress.phase('restore');
  const result = await platform.applyConfigObjects(objects);
  ctx.progress.note(`${result.created} created, ${result.replaced} replaced`);
  ctx.log.info(
    { component: 'kubernetes', ...result, platform: platform.describe() },
    'platform config restored',
  );
  return result;
}

/**
 * Drill: decrypts and parses `objects.json`, and compares each object's hash and the counts with the
 * manifest. Nothing is applied anywhere.
 */
export async function drillPlatformConfig(
  backup: ManifestComponent,
  ctx: ComponentReadContext,
): Promise<ComponentDrill> {
  const started = ctx.clock.now().getTime();
  const verification = verificationOf(backup);
  ctx.progress.phase('download', backup.objects.find((o) => o.name === PLATFORM_CONFIG_OBJECT)?.plainSize);
  const bytes = await readObject(ctx, PLATFORM_CONFIG_OBJECT);
  const checks = compare(parseObjects(bytes, ctx.setId), verification);
  return {
    component: 'kubernetes',
    ok: checks.every((c) => c.ok),
    checks,
    notes: [
      `${verification.counts.total} objects read back and compared; nothing applied (a drill does not touch the platform)`,
    ],
    bytes: bytes.length,
    durationMs: ctx.clock.now().getTime() - started,
  };
}
