import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Clock } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import type { AuditRecord, Store } from '../store/index.ts';

/**
 * Audits the config file in use: appends `config.load` (target `config:<absolute path>`, data
 * `{ path, sha256 }`) when the file's bytes differ from those of the last `config.load` of the same path,
 * so an edited config shows up once, with who started gameops on it and when. Nothing is recorded when
 * gameops runs without a config file. Returns the record appended, if any.
 */
export async function recordConfigLoad(
  store: Store,
  file: string | undefined,
  actor: Actor,
  clock: Clock,
): Promise<AuditRecord | undefined> {
  if (file === undefined) return undefined;
  const path = resolve(file);
  const sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
  const target = `config:${path}`;
  const [last] = await store.audit.list({ action: 'config.load', target, limit: 1 });
  if (last?.data.sha256 === sha256) return undefined;
  return store.audit.append(
    {
      actor,
      action: 'config.load',
      target,
      data: { path, sha256, ...(last ? { previousSha256: last.data.sha256 } : {}) },
    },
    clock.now(),
  );
}
