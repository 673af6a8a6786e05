import { describe, expect, it } from 'vitest';
import type { Plan, RunbookInfo, RunEvent, RunView } from '../runbooks/model.ts';
import { parseParamPairs, readParamsFile } from './commands/run.ts';
import { findStep, parseStatuses } from './commands/runs.ts';
import {
  isSettled,
  paramRows,
  ProgressDisplay,
  renderOutcome,
  renderPlan,
  renderRun,
  renderRunbook,
  renderRunbookList,
  renderRunList,
  runExitCode,
  runOutcome,
  schemaTypeText,
  shellArg,
  unblockCommands,
} from './run-render.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ESC = '\x1b';
const NOW = new Date('2026-03-02T10:00:10Z');
const alice = { id: 'token:aaaaaaaaaaaa', name: 'alice', role: 'operator' as const, kind: 'token' as const };
const HASH = 'a'.repeat(64);

/** True when `text` holds an escape, a bell or a right-to-left override (raw, not escaped). */
function hasControl(text: string | undefined): boolean {
  return [ESC, '\x07', '\u202e'].some((c) => (text ?? '').includes(c));
}

function run(overrides: Partial<RunView> = {}): RunView {
  return {
    id: 'r-1',
    runbook: 'high-cpu',
    version: '1',
    status: 'waiting',
    trigger: 'cli',
    requestedBy: alice,
    createdAt: '2026-03-02T10:00:00Z',
    startedAt: '2026-03-02T10:00:01Z',
    params: { replicas: 4, password: '********' },
    definitionHash: 'f'.repeat(64),
    steps: [
      {
        id: 'rank',
        kind: 'action',
        status: 'succeeded',
        attempt: 1,
        fence: 1,
        startedAt: '2026-03-02T10:00:01Z',
        finishedAt: '2026-03-02T10:00:03Z',
      },
      {
        id: 'approve',
        kind: 'approval',
        status: 'waiting',
        attempt: 1,
        fence: 2,
        approval: {
          planHash: HASH,
          requestedAt: '2026-03-02T10:00:03Z',
          expiresAt: '2026-03-02T11:00:03Z',
          covers: [
            {
              id: 'scale',
              kind: 'action',
              title: 'Scale up',
              action: 'fleet.scale',
              effect: 'mutating',
              target: 'deployment game/game-server',
              args: { replicas: 4 },
              needs: ['approve'],
              approvedBy: 'approve',
            },
          ],
        },
      },
      { id: 'scale', kind: 'action', status: 'pending', attempt: 0, fence: 0 },
    ],
    ...overrides,
  };
}

describe('run renderers', () => {
  it('names the command that unblocks each kind of wait', () => {
    expect(unblockCommands(run())).toEqual([
      'gameops runs approve r-1 approve     # or: gameops runs reject r-1 approve',
    ]);
    const manual = run({
      steps: [{ id: 'check-dashboards', kind: 'manual', status: 'waiting', attempt: 1, fence: 1 }],
    });
    expect(unblockCommands(manual)[0]).toMatch(/^gameops runs complete r-1 check-dashboards --note/);
    const verify = run({
      status: 'needs-verification',
      steps: [{ id: 'kill', kind: 'action', status: 'needs-verification', attempt: 1, fence: 3 }],
    });
    expect(unblockCommands(verify)[0]).toMatch(/^gameops runs verify r-1 kill --done/);
    expect(unblockCommands(run({ status: 'paused' }))).toEqual(['gameops runs resume r-1']);
    // A decided approval is not offered again.
    const decided = run();
    decided.steps[1]!.approval!.decision = 'approved';
    expect(unblockCommands(decided)).toEqual([]);
  });

  it('quotes ids that need it in printed commands', () => {
    expect(shellArg('r-1')).toBe('r-1');
    expect(shellArg("it's")).toBe(`'it'\\''s'`);
    expect(shellArg('a b')).toBe(`'a b'`);
  });

  it('maps run outcomes to exit codes (4: waiting for a person)', () => {
    expect(runExitCode(run({ status: 'succeeded', steps: [] }))).toBe(0);
    expect(
      runExitCode(
        run({
          status: 'succeeded',
          steps: [{ id: 'c', kind: 'check', status: 'warned', attempt: 1, fence: 1 }],
        }),
      ),
    ).toBe(1);
    expect(runExitCode(run({ status: 'failed' }))).toBe(2);
    expect(runExitCode(run({ status: 'cancelled' }))).toBe(2);
    // daily-check: every check continues on failure, so the run succeeds; a failed check still exits 2.
    const failedCheck = run({
      status: 'succeeded',
      steps: [
        {
          id: 'redis',
          kind: 'check',
          status: 'failed',
          attempt: 1,
          fence: 1,
          error: { code: 'check_failed', message: 'down' },
        },
        { id: 'disk', kind: 'check', status: 'warned', attempt: 1, fence: 1 },
        { id: 'record', kind: 'action', status: 'succeeded', attempt: 1, fence: 1 },
      ],
    });
    expect(runExitCode(failedCheck)).toBe(2);
    expect(runOutcome(failedCheck)).toBe('fail');
    expect(renderOutcome(failedCheck, new Date(failedCheck.createdAt))).toMatch(
      /succeeded \(1 step failed\)/,
    );
    // The engine's outcome, when the view carries it, is taken as it is.
    expect(runExitCode({ ...run({ status: 'succeeded', steps: [] }), outcome: 'warn' })).toBe(1);
    expect(runExitCode({ ...failedCheck, outcome: 'fail' })).toBe(2);
    for (const status of ['waiting', 'needs-verification', 'paused'] as const)
      expect(runExitCode(run({ status }))).toBe(4);
    expect(runExitCode(run({ status: 'queued' }))).toBe(0);
    expect(isSettled('running')).toBe(false);
    expect(isSettled('paused')).toBe(true);
  });

  it('shows a run with its steps, the approval hash and the exact covered targets and args', () => {
    const text = renderRun(run(), NOW);
    expect(text).toContain('Run r-1');
    expect(text).toContain('WAITING');
    expect(text).toMatch(/rank\s+action\s+✓ succeeded\s+1\s+2\.0s/);
    expect(text).toContain(`plan hash: ${HASH}`);
    expect(text).toContain('target: deployment game/game-server');
    expect(text).toContain('args: {"replicas":4}');
    expect(text).toContain('"password":"********"');
    expect(text).toContain('gameops runs approve r-1 approve');
  });

  it("shows each step's key outputs compactly (slow-queries' long queries), escaped and cut", () => {
    const evil = `x${ESC}]52;c;ZWNobyBoaQ==\x07y`;
    const queries = Array.from({ length: 8 }, (_, i) => ({
      id: 100 + i,
      user: i === 0 ? evil : 'game',
      host: '10.0.0.5:41234',
      time: 120 - i,
      statement: `SELECT * FROM player_sessions WHERE   started_at < NOW() ${'AND x = 1 '.repeat(20)}`,
      statementDigest: 'a'.repeat(64),
    }));
    const view = run({
      status: 'succeeded',
      finishedAt: '2026-03-02T10:01:00Z',
      steps: [
        {
          id: 'find',
          kind: 'action',
          status: 'succeeded',
          attempt: 1,
          fence: 1,
          output: { thresholdSeconds: 30, queries },
        },
        { id: 'count', kind: 'check', status: 'succeeded', attempt: 1, fence: 2, output: 3 },
        { id: 'quiet', kind: 'action', status: 'succeeded', attempt: 1, fence: 3 },
      ],
    });
    for (const text of [renderRun(view, NOW), renderOutcome(view, NOW)]) {
      expect(text).toContain('Outputs:');
      expect(text).toContain('  find:');
      expect(text).toContain('thresholdSeconds=30');
      expect(text).toContain('queries (8):');
      expect(text).toMatch(
        /- id=101 user=game host=10\.0\.0\.5:41234 time=119 statement="SELECT \* FROM player_sessions WHERE started_at < NOW\(\) AND/,
      );
      expect(text).toContain('more line(s) (--json shows all)');
      expect(text).toContain('  count: 3');
      expect(text).not.toContain('quiet:');
      expect(hasControl(text)).toBe(false);
      for (const line of text.split('\n')) expect(line.length).toBeLessThanOrEqual(200);
    }
  });

  it('an undecided approval of a run that ended is closed, not open', () => {
    const cancelled = renderRun(run({ status: 'cancelled', finishedAt: '2026-03-02T10:05:00Z' }), NOW);
    expect(cancelled).toContain('Approval approve: closed (run cancelled)');
    expect(cancelled).not.toMatch(/Approval approve: open/);
    expect(renderRun(run(), NOW)).toContain('Approval approve: open, requested');
  });

  it('escapes control characters from outside text (titles, errors, logs, args)', () => {
    const evil = `x${ESC}]52;c;ZWNobyBoaQ==\x07y\u202e`;
    const view = run({
      reason: evil,
      params: { note: evil },
      steps: [
        {
          id: 'rank',
          kind: 'action',
          status: 'failed',
          attempt: 2,
          fence: 4,
          error: { code: 'unavailable', message: evil },
        },
      ],
      status: 'failed',
    });
    for (const text of [renderRun(view, NOW), renderOutcome(view, NOW), renderRunList([view], NOW)])
      expect(hasControl(text)).toBe(false);
    const info: RunbookInfo = {
      name: 'evil',
      version: '1',
      title: evil,
      description: evil,
      source: { kind: 'file', path: `/x/${evil}.yaml` },
      paramsJsonSchema: { properties: { a: { type: 'string', description: evil } } },
      runBy: ['operator'],
      tags: [evil],
      steps: [{ id: 's', kind: 'action', title: evil, action: 'noop', effect: 'read-only' }],
    };
    expect(hasControl(renderRunbook(info))).toBe(false);
    expect(hasControl(renderRunbookList([info]))).toBe(false);
    const display = new ProgressDisplay({ write: () => undefined, tty: false });
    const logLine = display.line({
      seq: 1,
      runId: 'r',
      at: NOW.toISOString(),
      type: 'log',
      stepId: 's',
      message: evil,
    });
    expect(hasControl(logLine)).toBe(false);
  });

  it('prints a failed run with its errors and how to retry from the failed step', () => {
    const view = run({
      status: 'failed',
      finishedAt: '2026-03-02T10:00:09Z',
      reason: 'step scale failed',
      steps: [
        { id: 'rank', kind: 'action', status: 'succeeded', attempt: 1, fence: 1 },
        {
          id: 'scale',
          kind: 'action',
          status: 'failed',
          attempt: 3,
          fence: 5,
          error: { code: 'unavailable', message: 'the API server did not answer' },
        },
      ],
    });
    const text = renderOutcome(view, NOW);
    expect(text).toContain('Run r-1 failed after 8.0s: step scale failed');
    expect(text).toContain('scale: unavailable: the API server did not answer');
    expect(text).toContain('gameops runs retry r-1 --from scale');
    expect(renderOutcome(run(), NOW)).toContain('gameops runs approve r-1 approve');
  });

  it('describes parameters from their JSON Schema', () => {
    expect(schemaTypeText({ type: 'integer', minimum: 1, maximum: 1000 })).toBe('integer 1..1000');
    expect(schemaTypeText({ enum: ['a', 'b'] })).toBe('"a"|"b"');
    expect(schemaTypeText({ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER })).toBe(
      'integer 0..',
    );
    expect(schemaTypeText({ type: 'integer', maximum: Number.MAX_SAFE_INTEGER })).toBe('integer');
    expect(schemaTypeText({ type: 'array', items: { type: 'string' } })).toBe('string[]');
    expect(schemaTypeText({ anyOf: [{ type: 'number' }, { type: 'null' }] })).toBe('number|null');
    expect(
      paramRows({
        type: 'object',
        required: ['seconds'],
        properties: {
          seconds: { type: 'integer', description: 'profile length' },
          replicas: { type: 'integer', default: 3 },
          note: { type: 'string' },
        },
      }),
    ).toEqual([
      ['seconds', 'integer', 'required', 'profile length'],
      ['replicas', 'integer', 'default 3', ''],
      ['note', 'string', 'optional', ''],
    ]);
  });

  it('shows a runbook with parameters, steps and who may approve', () => {
    const info: RunbookInfo = {
      name: 'high-cpu',
      version: '1',
      title: 'High CPU',
      description: 'Find the hottest instance and scale up.',
      source: { kind: 'builtin' },
      paramsJsonSchema: { type: 'object', properties: { replicas: { type: 'integer', default: 4 } } },
      runBy: ['responder'],
      tags: ['troubleshooting'],
      steps: [
        { id: 'rank', kind: 'action', title: 'Rank by CPU', action: 'fleet.top', effect: 'read-only' },
        {
          id: 'approve',
          kind: 'approval',
          title: 'Approve the scale-up',
          covers: ['scale'],
          approvers: ['operator'],
          fourEyes: true,
          expiresInMs: 3_600_000,
        },
        { id: 'scale', kind: 'action', title: 'Scale up', action: 'fleet.scale', effect: 'mutating' },
      ],
    };
    const text = renderRunbook(info);
    expect(text).toContain('high-cpu v1: High CPU');
    expect(text).toContain('Run by: responder (and higher roles)');
    expect(text).toMatch(/replicas\s+integer\s+default 4/);
    expect(text).toMatch(/scale\s+action\s+fleet\.scale\s+mutating\s+Scale up/);
    expect(text).toContain(
      'approve: covers scale; approvers: operator or higher; four-eyes: someone other than the requester; expires after 1h',
    );
  });

  it('prints a dry-run plan: targets, args, pending, approvals with rules, compensation', () => {
    const plan: Plan = {
      runbook: 'high-cpu',
      version: '1',
      hash: 'c'.repeat(64),
      params: { replicas: 4 },
      steps: [
        {
          id: 'rank',
          kind: 'action',
          title: 'Rank',
          action: 'fleet.top',
          effect: 'read-only',
          idempotent: true,
          target: 'fleet local',
          args: { top: 3 },
          needs: [],
        },
        {
          id: 'approve',
          kind: 'approval',
          title: 'Approve',
          needs: ['rank'],
          approval: { covers: ['scale'], approvers: ['operator'], fourEyes: true, expiresInMs: 600_000 },
        },
        {
          id: 'scale',
          kind: 'action',
          title: 'Scale',
          action: 'fleet.scale',
          effect: 'mutating',
          idempotent: false,
          pending: 'uses steps.rank.output',
          approvedBy: 'approve',
          compensation: {
            action: 'fleet.scale',
            target: 'deployment game/game-server',
            args: { replicas: 2 },
          },
          needs: ['approve'],
        },
        { id: 'notify', kind: 'notify', title: 'Tell', skip: true, needs: ['scale'] },
      ],
    };
    const text = renderPlan(plan);
    expect(text).toContain('Plan for high-cpu v1');
    expect(text).toContain('target: fleet local');
    expect(text).toContain('args: {"top":3}');
    expect(text).toContain('mutating, not idempotent');
    expect(text).toContain('resolved when it runs: uses steps.rank.output');
    expect(text).toContain('needs approval: approve');
    expect(text).toContain('on failure: fleet.scale on deployment game/game-server {"replicas":2}');
    expect(text).toContain('(skipped: its condition is false)');
    // The runbook's own word for ordering.
    expect(text).toContain('needs: scale');
    expect(text).not.toContain('after: scale');
    expect(text).toContain(
      'Approval approve must allow: scale; approvers: operator or higher; four-eyes: someone other than the requester; expires after 10m',
    );
    expect(text).toContain('On failure, compensated (in reverse order): scale');
    expect(text).toContain('Dry run: nothing was run.');
  });

  it('progress: one line per transition with symbols and durations, logs indented, replays ignored', () => {
    const out: string[] = [];
    const display = new ProgressDisplay({ write: (t) => out.push(t), tty: false });
    const ev = (seq: number, e: Partial<RunEvent>): RunEvent => ({
      seq,
      runId: 'r-1',
      at: new Date(Date.parse('2026-03-02T10:00:00Z') + seq * 1000).toISOString(),
      type: 'step',
      ...e,
    });
    display.event(ev(1, { type: 'run', status: 'running' }));
    display.event(ev(2, { stepId: 'rank', status: 'running' }));
    display.event(ev(3, { type: 'log', stepId: 'rank', message: 'game-1 93%' }));
    display.event(ev(5, { stepId: 'rank', status: 'succeeded' }));
    display.event(ev(3, { type: 'log', stepId: 'rank', message: 'replayed' }));
    display.event(ev(6, { stepId: 'approve', status: 'waiting', message: 'needs an operator' }));
    display.event(ev(7, { type: 'run', status: 'waiting' }));
    expect(out.join('')).toBe(
      [
        'run running',
        '  ▶ rank running',
        '      [rank] game-1 93%',
        '  ✓ rank succeeded (3.0s)',
        '  ⏸ approve waiting: needs an operator',
        'run waiting',
        '',
      ].join('\n'),
    );
    expect(display.lastSeq).toBe(7);
  });

  it('progress on a terminal keeps a live status line and clears it', () => {
    const out: string[] = [];
    const display = new ProgressDisplay({ write: (t) => out.push(t), tty: true });
    display.event({
      seq: 1,
      runId: 'r',
      at: '2026-03-02T10:00:00Z',
      type: 'step',
      stepId: 'profile',
      status: 'running',
    });
    display.tick(Date.parse('2026-03-02T10:00:05Z'));
    expect(out.join('')).toContain('running: profile 5.0s');
    display.event({
      seq: 2,
      runId: 'r',
      at: '2026-03-02T10:00:07Z',
      type: 'step',
      stepId: 'profile',
      status: 'succeeded',
    });
    const all = out.join('');
    expect(all).toContain('\r\x1b[2K  ✓ profile succeeded (7.0s)\n');
    // Nothing runs any more: the status line is not drawn again.
    expect(all.endsWith('succeeded (7.0s)\n')).toBe(true);
    display.event({
      seq: 3,
      runId: 'r',
      at: '2026-03-02T10:00:08Z',
      type: 'step',
      stepId: 'dump',
      status: 'running',
    });
    display.tick(Date.parse('2026-03-02T10:00:08.500Z'));
    expect(out.join('').endsWith('(7.0s)\n  ▶ dump running\n')).toBe(true);
    display.tick(Date.parse('2026-03-02T10:00:10Z'));
    expect(out.join('').endsWith('running: dump 2.0s')).toBe(true);
    display.clear();
    expect(out.join('').endsWith('\r\x1b[2K')).toBe(true);
  });
});

describe('run command arguments', () => {
  it('-p values are JSON when they parse, else strings', () => {
    expect(
      parseParamPairs([
        'replicas=4',
        'dry=true',
        'ids=[1,2]',
        'reason=slow login',
        'v="4"',
        'empty=',
        'eq=a=b',
      ]),
    ).toEqual({ replicas: 4, dry: true, ids: [1, 2], reason: 'slow login', v: '4', empty: '', eq: 'a=b' });
  });

  it('-p refuses pairs without a name, naming them', () => {
    expect(() => parseParamPairs(['replicas'])).toThrow(/-p: "replicas" is not key=value/);
    expect(() => parseParamPairs(['=4'])).toThrow(/"=4" is not key=value/);
    expect(() => parseParamPairs(['a.b=1'])).toThrow(/"a.b=1"/);
    expect(() => parseParamPairs([`x${ESC}[2J=1`])).toThrow(/x\\x1b\[2J=1/);
    for (const key of ['__proto__', 'constructor', 'prototype'])
      expect(() => parseParamPairs([`${key}={"polluted":true}`])).toThrow(
        `-p: "${key}" cannot be a parameter name (__proto__, constructor and prototype are refused)`,
      );
  });

  it('--params-file reads YAML or JSON mappings and names the file when it cannot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-params-'));
    writeFileSync(join(dir, 'p.yaml'), 'replicas: 4\nreason: slow\n');
    writeFileSync(join(dir, 'p.json'), '{"replicas": 5}');
    writeFileSync(join(dir, 'list.yaml'), '- 1\n- 2\n');
    writeFileSync(join(dir, 'bad.json'), '{replicas');
    expect(await readParamsFile(join(dir, 'p.yaml'))).toEqual({ replicas: 4, reason: 'slow' });
    expect(await readParamsFile(join(dir, 'p.json'))).toEqual({ replicas: 5 });
    await expect(readParamsFile(join(dir, 'list.yaml'))).rejects.toThrow(/list.yaml: must hold a mapping/);
    await expect(readParamsFile(join(dir, 'bad.json'))).rejects.toThrow(/bad.json: not valid JSON/);
    await expect(readParamsFile(join(dir, 'missing.yaml'))).rejects.toThrow(/missing.yaml: cannot read it/);
    writeFileSync(join(dir, 'proto.json'), '{"__proto__": {"x": 1}}');
    await expect(readParamsFile(join(dir, 'proto.json'))).rejects.toThrow(
      /"__proto__" cannot be a parameter name/,
    );
  });

  it('--status takes known statuses only; an unknown step names the run’s steps', () => {
    expect(parseStatuses('failed, waiting')).toEqual(['failed', 'waiting']);
    expect(() => parseStatuses('failed,done')).toThrow(/--status: "done" is not a run status/);
    expect(() => findStep(run(), 'scael')).toThrow(
      /run r-1 has no step "scael" \(its steps: rank, approve, scale\)/,
    );
  });
});
