import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError, UnavailableError } from '../core/index.ts';
import { bootstrap, shutdown, type Resources } from './index.ts';
import {
  invalidRunbooks,
  openRunbooks,
  runbooksDir,
  secretMasker,
  validateRunbooks,
  workRunbooks,
} from './runbooks.ts';

const PASSWORD = 'Tr0ub4dor-and-3';
const TOKEN = 'am-bearer-9f8e7d6c';

/** A config file in a fresh directory; `runbooks` is the YAML of its runbooks block. */
function configFile(extra: string[] = []): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-app-runbooks-'));
  writeFileSync(join(dir, 'pw'), PASSWORD, { mode: 0o600 });
  writeFileSync(join(dir, 'tok'), TOKEN, { mode: 0o600 });
  const path = join(dir, 'gameops.yaml');
  writeFileSync(
    path,
    [
      'service: { name: app-runbooks, environment: test }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      `mysql: { host: 127.0.0.1, user: ops, password: "file:${join(dir, 'pw')}" }`,
      `alertmanager: { url: "http://127.0.0.1:9093", username: ops, password: "file:${join(dir, 'pw')}" }`,
      `prometheus: { url: "http://127.0.0.1:9090", bearerToken: "file:${join(dir, 'tok')}" }`,
      ...extra,
    ].join('\n'),
  );
  return { dir, path };
}

describe('secretMasker', () => {
  it('masks every secret of the config: Secret objects, values inside strings and keys, header forms', async () => {
    const { path } = configFile();
    const resources = await bootstrap({ configPath: path, store: 'none', logLevel: 'silent' });
    try {
      const mask = secretMasker(resources.config);
      const basic = Buffer.from(`ops:${PASSWORD}`).toString('base64');
      const masked = mask({
        secret: resources.config.mysql?.password,
        text: `connecting with ${PASSWORD} to the box`,
        nested: [{ header: `Authorization: Basic ${basic}` }, `Bearer ${TOKEN}`],
        [`key-${PASSWORD}`]: 1,
        n: 4,
        ok: true,
        nothing: null,
        at: new Date('2026-03-02T10:00:00Z'),
      });
      const text = JSON.stringify(masked);
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(basic);
      expect(masked).toMatchObject({
        secret: '********',
        text: 'connecting with ******** to the box',
        nested: [{ header: 'Authorization: ********' }, '********'],
        'key-********': 1,
        n: 4,
        ok: true,
        nothing: null,
        at: '2026-03-02T10:00:00.000Z',
      });
      const circular: Record<string, unknown> = { a: 1 };
      circular.self = circular;
      expect(mask(circular)).toEqual({ a: 1, self: '[circular]' });
    } finally {
      await shutdown(resources);
    }
  });
});

describe('openRunbooks', () => {
  let resources: Resources | undefined;
  afterEach(async () => {
    if (resources) await shutdown(resources);
    resources = undefined;
  });

  it('opens one engine per resources bag, with runbooks.dir relative to the config file', async () => {
    const { dir, path } = configFile(['runbooks: { dir: books }']);
    mkdirSync(join(dir, 'books'));
    writeFileSync(join(dir, 'books', 'hello.yaml'), 'name: hello\nsteps:\n  - id: say\n    action: noop\n');
    resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    expect(runbooksDir(resources.loaded)).toBe(join(dir, 'books'));
    const [a, b] = await Promise.all([openRunbooks(resources), openRunbooks(resources)]);
    expect(a).toBe(b);
    expect(resources.engine).toBe(a);
    const names = (await a.runbooks({ id: 'local:t', name: 't', role: 'viewer', kind: 'local' })).map(
      (r) => r.name,
    );
    expect(names).toEqual([
      'backup',
      'backup-drill',
      'backup-prune',
      'backup-restore',
      'backup-verify',
      'daily-check',
      'db-maintenance',
      'hello',
      'high-cpu',
      'maintenance',
      'maintenance-reopen',
      'memory-leak',
      'slow-queries',
    ]);
    await shutdown(resources);
    expect(resources.engine).toBeUndefined();
  });

  it('loads the valid runbook files beside an invalid one, keeping its problems with file:line', async () => {
    const { dir, path } = configFile(['runbooks: { dir: books }']);
    mkdirSync(join(dir, 'books'));
    const file = join(dir, 'books', 'broken.yaml');
    writeFileSync(file, 'name: broken\nsteps:\n  - id: say\n    action: no.such.action\n');
    writeFileSync(join(dir, 'books', 'good.yaml'), 'name: good\nsteps:\n  - id: say\n    action: noop\n');
    writeFileSync(
      join(dir, 'books', 'calls-broken.yaml'),
      'name: outer\nsteps:\n  - id: sub\n    runbook: broken\n',
    );
    resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    const engine = await openRunbooks(resources);
    const admin = { id: 'local:t', name: 't', role: 'admin' as const, kind: 'local' as const };
    const names = (await engine.runbooks(admin)).map((r) => r.name);
    expect(names).toContain('good');
    expect(names).toContain('daily-check');
    expect(names).not.toContain('broken');
    expect(names).not.toContain('outer');
    const invalid = await invalidRunbooks(resources);
    expect(invalid.map((f) => f.file).sort()).toEqual([
      join(dir, 'books', 'broken.yaml'),
      join(dir, 'books', 'calls-broken.yaml'),
    ]);
    expect(invalid.find((f) => f.file === file)?.problems[0]?.text).toContain(`${file}:4`);
    // Starting (or planning) it names its problems instead of "unknown runbook".
    for (const attempt of [
      engine.start({ runbook: 'broken', params: {}, trigger: 'cli' }, admin),
      engine.plan({ runbook: 'broken', params: {} }, admin),
      engine.runbook('broken', admin),
    ]) {
      const err = await attempt.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toContain('runbook "broken" is invalid and was not loaded');
      expect((err as Error).message).toContain(`${file}:4`);
    }
    // serve's worker starts with it.
    await expect(workRunbooks(resources, AbortSignal.abort())).resolves.toBeUndefined();
    // validate is still strict.
    const strict = await validateRunbooks(resources);
    expect(strict.problems.map((p) => p.text).join('\n')).toContain(`${file}:4`);
  });

  it("examples/gameops.yaml's runbooks.dir is examples/runbooks, and every runbook there is valid", async () => {
    const file = join(import.meta.dirname, '..', '..', 'examples', 'gameops.yaml');
    const { parse } = await import('yaml');
    const config = parse(readFileSync(file, 'utf8')) as { runbooks?: { dir?: string } };
    expect(config.runbooks?.dir).toBe('./runbooks');
    const loaded = { file, config } as unknown as Resources['loaded'];
    expect(runbooksDir(loaded)).toBe(join(import.meta.dirname, '..', '..', 'examples', 'runbooks'));
    const result = await validateRunbooks({ loaded });
    expect(result.problems).toEqual([]);
    expect(result.runbooks.map((r) => r.name)).toEqual(['announce-maintenance', 'restart-game']);
  });

  it('needs the store, and says why it is missing', async () => {
    const { path } = configFile();
    resources = await bootstrap({ configPath: path, store: 'none', logLevel: 'silent' });
    const err = await openRunbooks(resources).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('runbooks need the store');
  });

  it('validate: without files it needs runbooks.dir', async () => {
    const { path } = configFile();
    resources = await bootstrap({ configPath: path, store: 'none', logLevel: 'silent' });
    await expect(validateRunbooks(resources)).rejects.toThrow(/runbooks\.dir is not set/);
  });

  it('validate: duplicate names across files and unknown sub-runbooks are problems with their files', async () => {
    const { dir, path } = configFile();
    resources = await bootstrap({ configPath: path, store: 'none', logLevel: 'silent' });
    const one = join(dir, 'one.yaml');
    const two = join(dir, 'two.yaml');
    writeFileSync(one, 'name: same\nsteps:\n  - id: a\n    action: noop\n');
    writeFileSync(two, 'name: same\nsteps:\n  - id: a\n    runbook: nowhere\n');
    const result = await validateRunbooks(resources, [one, two, join(dir, 'missing.yaml')]);
    const texts = result.problems.map((p) => p.text).join('\n');
    expect(texts).toContain('missing.yaml');
    expect(texts).toMatch(/already defined/);
  });
});
