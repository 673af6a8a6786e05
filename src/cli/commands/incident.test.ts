import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, openRunbooks, shutdown, type Resources } from '../../app/index.ts';
import type { Ops } from '../../app/ops.ts';
import { createIncidentService, type IncidentView, type PostmortemView } from '../../incidents/index.ts';
import { FakePager } from '../../incidents/test-support.ts';
import { cliConfig, gameops, serveForCli } from '../../../test/support/cli.ts';
import { renderIncident } from './incident.ts';

function config(): { dir: string; path: string } {
  return cliConfig('gameops-incident-cli-', (dir) =>
    [
      'service: { name: test-game, environment: test }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      'runbooks: { timezone: Asia/Seoul }',
      'people:',
      '  - { id: alice, name: Alice }',
      '  - { id: bob, name: Bob }',
      '',
    ].join('\n'),
  );
}

describe('gameops incident, in-process (real process)', () => {
  it('declare, list, ack, role, check, note, update draft, timeline CSV; unknown ids and people exit 3', async () => {
    const { path } = config();
    const declared = await gameops([
      '-c',
      path,
      'incident',
      'declare',
      'Login down',
      '--severity',
      'p1',
      '--commander',
      'alice',
      '--no-page',
      '--json',
    ]);
    expect(declared.code).toBe(0);
    expect(JSON.parse(declared.stdout)).toMatchObject({ id: 'INC-1', severity: 'P1', status: 'declared' });

    const listed = await gameops(['-c', path, 'incident', 'list']);
    expect(listed.stdout).toMatch(/INC-1\s+P1\s+declared\s+\S+ \S+\s+Alice\s+Login down/);

    expect((await gameops(['-c', path, 'incident', 'ack', 'inc-1'])).code).toBe(0);
    const role = await gameops(['-c', path, 'incident', 'role', '1', 'comms', 'bob', '--json']);
    expect(JSON.parse(role.stdout)).toMatchObject({
      status: 'investigating',
      roles: { commander: { id: 'alice' }, communications: { id: 'bob' } },
    });
    expect((await gameops(['-c', path, 'incident', 'check', '1', 'first15Minutes-1'])).stdout).toContain(
      '[x] first15Minutes-1  Establish the blast radius',
    );
    const noted = await gameops(['-c', path, 'incident', 'note', '1', '=cmd|calc \u001b[31mred']);
    expect(noted.stdout).toBe('noted on INC-1\n');
    const p2 = await gameops(['-c', path, 'incident', 'list', '--severity', 'p1', '--json']);
    expect((JSON.parse(p2.stdout) as { incidents: IncidentView[] }).incidents.map((i) => i.id)).toEqual([
      'INC-1',
    ]);
    const badDeclare = await gameops(['-c', path, 'incident', 'declare', 'x', '--severity', 'p9']);
    expect(badDeclare.code).toBe(3);
    expect(badDeclare.stderr).toContain('severity "p9" is not one of P1, P2, P3, P4');

    // Human output counts escalation levels from 1, like `gameops oncall pages` (JSON stays 0-based).
    const view = JSON.parse(declared.stdout) as IncidentView;
    const page = { dedupKey: 'incident:INC-1', subject: 'Login down', severity: 'P1' as const, round: 0 };
    const shownLevels = renderIncident(
      {
        ...view,
        pages: [
          { ...page, id: 'pg-1', status: 'acknowledged', level: 0, createdAt: view.createdAt },
          { ...page, id: 'pg-2', status: 'triggered', level: 2, createdAt: view.createdAt },
        ],
      },
      'UTC',
    );
    expect(shownLevels).toMatch(/pg-1\s+acknowledged\s+1\s+Login down/);
    expect(shownLevels).toMatch(/pg-2\s+triggered\s+3\s+Login down/);
    const draft = await gameops(['-c', path, 'incident', 'update', '1']);
    expect(draft.stdout).toContain('[INC-1 P1] status update: Login down');
    expect(draft.stdout).toContain('\\x1b[31mred');
    expect(draft.stdout).not.toContain('\u001b');
    const csv = await gameops(['-c', path, 'incident', 'timeline', '1', '--format', 'csv']);
    expect(csv.stdout).toContain(`'=cmd|calc`);

    const missing = await gameops(['-c', path, 'incident', 'show', 'INC-99']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('gameops: no incident INC-99');
    const nobody = await gameops(['-c', path, 'incident', 'role', '1', 'scribe', 'zed']);
    expect(nobody.code).toBe(3);
    expect(nobody.stderr).toContain('"zed" is not a person in config people (known: alice, bob)');
    const badSeverity = await gameops(['-c', path, 'incident', 'severity', '1', 'P9']);
    expect(badSeverity.code).toBe(3);
    expect(badSeverity.stderr).toContain('severity "P9" is not one of P1, P2, P3, P4');
  });

  it('postmortem prints Markdown with its version; --edit-file saves, a stale base exits 3', async () => {
    const { dir, path } = config();
    await gameops(['-c', path, 'incident', 'declare', 'Shop lag', '-s', 'P3', '--no-page']);
    await gameops(['-c', path, 'incident', 'resolve', '1']);
    const printed = await gameops(['-c', path, 'incident', 'postmortem', '1']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(
      /^# Incident Post-Mortem: INC-1\n\n<!-- gameops:postmortem INC-1 version 1 -->/,
    );
    expect(printed.stdout).toContain('## Timeline');
    const file = join(dir, 'pm.md');
    writeFileSync(
      file,
      printed.stdout.replace(/## Lessons Learned\n[^#]*/, '## Lessons Learned\n1. Cache the shop index\n\n'),
    );
    const saved = await gameops(['-c', path, 'incident', 'postmortem', '1', '--edit-file', file]);
    expect(saved.stdout).toContain('saved the post-mortem of INC-1 as version 2 (edited: Lessons Learned)');
    const stale = await gameops(['-c', path, 'incident', 'postmortem', '1', '--edit-file', file]);
    expect(stale.code).toBe(3);
    expect(stale.stderr).toContain('is at version 2, not 1');
    const item = await gameops([
      '-c',
      path,
      'incident',
      'postmortem',
      '1',
      '--add-item',
      'Add shop latency alert',
      '--owner',
      'alice',
      '--due',
      '2026-12-01',
    ]);
    expect(item.code).toBe(0);
    const regenerated = await gameops(['-c', path, 'incident', 'postmortem', '1', '--regenerate', '--json']);
    const pm = JSON.parse(regenerated.stdout) as PostmortemView;
    expect(pm.version).toBe(3);
    expect(pm.markdown).toContain('1. Cache the shop index');
    expect(pm.markdown).toContain(
      '- [ ] Add shop latency alert (Owner: Alice, Due: 2026-12-01, Status: open)',
    );
    expect(readFileSync(file, 'utf8')).toContain('version 1');
  });
});

describe('gameops incident through a server (GAMEOPS_URL)', () => {
  let resources: Resources;
  let close: () => Promise<void>;
  let env: Record<string, string>;
  let path: string;

  beforeAll(async () => {
    ({ path } = config());
    resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    const incidents = createIncidentService({
      config: resources.config,
      store: resources.store!,
      clock: resources.clock,
      log: resources.log,
      pager: new FakePager(),
      runs: () => openRunbooks(resources),
    });
    resources.ops = { incidents } as unknown as Ops;
    ({ env, close } = await serveForCli(resources, 'responder', 'carol'));
  });
  afterAll(async () => {
    await close();
    resources.ops = undefined;
    await shutdown(resources);
  });

  it('declares, shows and exports over the API as the token’s actor; errors keep their exit code', async () => {
    const declared = await gameops(
      ['-c', path, 'incident', 'declare', 'Match lag', '-s', 'P2', '--json'],
      env,
    );
    expect(declared.code).toBe(0);
    const view = JSON.parse(declared.stdout) as IncidentView;
    expect(view).toMatchObject({ id: 'INC-1', createdBy: { name: 'carol' } });
    const shown = await gameops(['-c', path, 'incident', 'show', 'INC-1'], env);
    expect(shown.stdout).toContain('INC-1  P2  declared  Match lag');
    await gameops(['-c', path, 'incident', 'note', 'INC-1', '+1 from the EU region'], env);
    const md = await gameops(['-c', path, 'incident', 'timeline', 'INC-1', '--format', 'markdown'], env);
    expect(md.stdout).toContain('**note** +1 from the EU region (carol)');
    const missing = await gameops(['-c', path, 'incident', 'timeline', 'INC-7', '--format', 'csv'], env);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('no incident INC-7');
    const bad = await gameops(['-c', path, 'incident', 'status', 'INC-1', 'declared'], env);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('INC-1 is declared; it cannot go to declared');
  });
});
