/**
 * kubeconfig files pointing at a stand-in, written 0600 into a temp directory. The stand-in speaks plain
 * HTTP, which @kubernetes/client-node only allows with `insecure-skip-tls-verify: true`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { StandIn } from './server.ts';

export interface KubeconfigOptions {
  /** Name of the context for the stand-in. @default 'standin' */
  context?: string;
  /** Make another context (pointing at a closed port, with a bogus token) the current one. */
  currentIsElsewhere?: boolean;
  /** Use this token instead of the stand-in's. */
  token?: string;
  /** Point the stand-in context at this server instead (e.g. a closed port). */
  server?: string;
}

export interface KubeconfigFile {
  path: string;
  dir: string;
  context: string;
  remove(): Promise<void>;
}

export async function writeKubeconfig(
  standIn: StandIn,
  options: KubeconfigOptions = {},
): Promise<KubeconfigFile> {
  const dir = await mkdtemp(join(tmpdir(), 'gameops-kubeconfig-'));
  const context = options.context ?? 'standin';
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    preferences: {},
    clusters: [
      {
        name: 'standin',
        cluster: { server: options.server ?? standIn.url, 'insecure-skip-tls-verify': true },
      },
      { name: 'elsewhere', cluster: { server: 'http://127.0.0.1:9', 'insecure-skip-tls-verify': true } },
    ],
    users: [
      { name: 'gameops', user: { token: options.token ?? standIn.token } },
      { name: 'someone-else', user: { token: 'not-the-stand-in-token' } },
    ],
    contexts: [
      { name: context, context: { cluster: 'standin', user: 'gameops', namespace: standIn.namespace } },
      { name: 'elsewhere', context: { cluster: 'elsewhere', user: 'someone-else' } },
    ],
    'current-context': options.currentIsElsewhere ? 'elsewhere' : context,
  };
  const path = join(dir, 'kubeconfig');
  await writeFile(path, stringify(doc), { mode: 0o600 });
  return { path, dir, context, remove: () => rm(dir, { recursive: true, force: true }) };
}
