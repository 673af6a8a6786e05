/**
 * The local platform's config objects (for backups): the game config file exported as one `File` and
 * written back atomically with its mode kept. No game server needs to run for this.
 */
import { chmod, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError, UnavailableError, systemClock } from '../../core/index.ts';
import type { ConfigObject } from '../port.ts';
import { createLocalPlatform, type LocalPlatform } from './index.ts';
import { destroyFleet, freePortBlock, localConfig, tempDataDir } from './test-support.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function platform(): Promise<LocalPlatform> {
  const dataDir = await tempDataDir();
  cleanups.push(() => destroyFleet(dataDir));
  const p = createLocalPlatform({
    config: localConfig({ basePort: await freePortBlock(2), replicas: 0 }),
    dataDir,
    clock: systemClock,
  });
  cleanups.push(() => p.close());
  return p;
}

const file = (p: LocalPlatform): string => join(p.fleetDir, 'game-config.json');
const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

describe('local platform: config objects', () => {
  it('exports nothing before the config file exists; applying creates it 0600', async () => {
    const p = await platform();
    expect(await p.exportConfigObjects()).toEqual([]);
    const content = '{"motd":"ünïcode ✓"}\n';
    const object: ConfigObject = {
      kind: 'File',
      name: 'game-config.json',
      data: { 'game-config.json': b64(content) },
    };
    expect(await p.applyConfigObjects([object])).toEqual({ created: 1, replaced: 0 });
    expect(await readFile(file(p), 'utf8')).toBe(content);
    expect((await stat(file(p))).mode & 0o777).toBe(0o600);
    expect(await p.exportConfigObjects()).toEqual([object]);
    expect(await p.readConfig()).toEqual({ motd: 'ünïcode ✓' });
  });

  it('round trip: the exact bytes come back, the mode of the replaced file is kept, no temp file is left', async () => {
    const p = await platform();
    await p.patchConfig({ motd: 'hello', maintenance_mode: 'false' });
    await chmod(file(p), 0o640);
    const saved = await p.exportConfigObjects();
    const before = await readFile(file(p));
    await p.patchConfig({ motd: 'changed', extra: 'x' });
    await chmod(file(p), 0o640);
    expect(await p.applyConfigObjects(saved)).toEqual({ created: 0, replaced: 1 });
    expect(await readFile(file(p))).toEqual(before);
    expect((await stat(file(p))).mode & 0o777).toBe(0o640);
    expect((await readdir(p.fleetDir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses what it cannot hold, naming it, before writing anything', async () => {
    const p = await platform();
    await p.patchConfig({ motd: 'keep' });
    const before = await readFile(file(p), 'utf8');
    const cases: Array<[unknown, string]> = [
      [[{ kind: 'ConfigMap', name: 'game-config.json', data: {} }], 'ConfigMap'],
      [[{ kind: 'File', name: 'other.json', data: { 'other.json': b64('{}') } }], 'other.json'],
      [[{ kind: 'File', name: 'game-config.json', data: { 'game-config.json': '***' } }], 'not base64'],
      [[{ kind: 'File', name: 'game-config.json', data: { 'game-config.json': b64('nope') } }], 'not JSON'],
      [
        [{ kind: 'File', name: 'game-config.json', data: { 'game-config.json': b64('{"a":1}') } }],
        'string values',
      ],
      [
        [
          { kind: 'File', name: 'game-config.json', data: { 'game-config.json': b64('{}') } },
          { kind: 'File', name: 'game-config.json', data: { 'game-config.json': b64('{}') } },
        ],
        'one config object',
      ],
    ];
    for (const [objects, words] of cases) {
      const err = await p.applyConfigObjects(objects as ConfigObject[]).catch((e: unknown) => e);
      expect(err, words).toBeInstanceOf(InputError);
      expect((err as Error).message).toContain(words);
    }
    expect(await readFile(file(p), 'utf8')).toBe(before);
  });

  it('refuses a symlink in place of the config file (export and apply)', async () => {
    const p = await platform();
    await p.patchConfig({ motd: 'x' });
    const elsewhere = join(p.fleetDir, 'elsewhere.json');
    await writeFile(elsewhere, '{"motd":"planted"}');
    await rm(file(p));
    await symlink(elsewhere, file(p));
    const exported = await p.exportConfigObjects().catch((e: unknown) => e);
    expect(exported).toBeInstanceOf(UnavailableError);
    expect((exported as Error).message).toContain('symbolic link');
    const applied = await p
      .applyConfigObjects([
        { kind: 'File', name: 'game-config.json', data: { 'game-config.json': b64('{}') } },
      ])
      .catch((e: unknown) => e);
    expect(applied).toBeInstanceOf(UnavailableError);
    expect(await readFile(elsewhere, 'utf8')).toBe('{"motd":"planted"}');
  });
});
