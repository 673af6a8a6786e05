import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Plan, RunbookInfo, RunSummary, RunView } from '../runbooks/model.ts';

/** The real entry point, as a person runs it. */
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'gameops');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function gameops(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, {
      cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const GATED = `name: gated
title: A gated change
runBy: [operator]
params:
  ok: { type: boolean, default: false, description: "whether the final check passes" }
  replicas: { type: integer, default: 3, minimum: 1, maximum: 10 }
steps:
  - id: look
    action: noop
    args: { message: "looking at \${{ params.replicas }}" }
  - id: approve
    approval: { covers: [change], fourEyes: true, approvers: [operator] }
  - id: change
    action: noop
    args: { message: "changing to \${{ params.replicas }}" }
  - id: verify
    assert:
      - { value: "\${{ params.ok }}", op: truthy, message: "ok is not set" }
`;

const TICK = `name: tick
runBy: [operator]
steps:
  - id: read
    manual: { instructions: "Read the dashboard", evidence: required }
  - id: after
    action: noop
    args: { message: "after the tick" }
`;

const SLOW = `name: slow
runBy: [operator]
steps:
  - id: nap
    action: sleep
    args: { ms: 600000 }
`;

/** A config with the test runbooks in runbooks.dir, in a fresh directory. */
function workspace(): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-runs-cli-'));
  mkdirSync(join(dir, 'runbooks'));
  writeFileSync(join(dir, 'runbooks', 'gated.yaml'), GATED);
  writeFileSync(join(dir, 'runbooks', 'tick.yaml'), TICK);
  writeFileSync(join(dir, 'runbooks', 'slow.yaml'), SLOW);
  const config = join(dir, 'gameops.yaml');
  writeFileSync(
    config,
    [
      'service: { name: runs-cli, environment: test }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      'runbooks: { dir: runbooks }',
    ].join('\n'),
  );
  return { dir, config };
}

function json<T>(res: Result): T {
  try {
    return JSON.parse(res.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${res.code}):\n${res.stdout}\n${res.stderr}`);
  }
}

describe('gameops runbooks | run | runs (real process, in-process engine)', { timeout: 120_000 }, () => {
  let ws: { dir: string; config: string };
  let bob: string;
  const g = (args: string[], env?: Record<string, string>) =>
    gameops([...args, '--config', ws.config], ws.dir, env);

  beforeAll(async () => {
    ws = workspace();
    const created = await g(['tokens', 'create', '--name', 'bob', '--role', 'operator']);
    expect(created.code, created.stderr).toBe(0);
    bob = created.stdout.trim();
  });

  it('lists and shows runbooks (built-in and from runbooks.dir)', async () => {
    const list = await g(['runbooks', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/gated\s+1\s+\S+gated\.yaml\s+operator\s+4\s+A gated change/);
    expect(list.stdout).toContain('daily-check');
    const names = json<RunbookInfo[]>(await g(['runbooks', 'list', '--json'])).map((r) => r.name);
    expect(names).toEqual(
      expect.arrayContaining(['gated', 'tick', 'high-cpu', 'memory-leak', 'slow-queries']),
    );
    const show = await g(['runbooks', 'show', 'gated']);
    expect(show.stdout).toMatch(/replicas\s+integer 1\.\.10\s+default 3/);
    expect(show.stdout).toMatch(/change\s+action\s+noop\s+read-only/);
    expect(show.stdout).toContain('approve: covers change; approvers: operator or higher; four-eyes');
    const unknown = await g(['runbooks', 'show', 'nope']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('unknown runbook "nope"');
  });

  it('validates runbook files, naming file:line of each problem (exit 1)', async () => {
    const good = await g(['runbooks', 'validate']);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain('3 runbook(s) valid');
    const bad = join(ws.dir, 'bad.yaml');
    writeFileSync(bad, 'name: bad\nsteps:\n  - id: one\n    action: fleet.scael\n');
    const res = await g(['runbooks', 'validate', bad]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain(`${bad}:4`);
    expect(res.stdout).toContain('fleet.scael');
    const asJson = json<{ problems: Array<{ line: number }> }>(
      await g(['runbooks', 'validate', bad, '--json']),
    );
    expect(asJson.problems[0]?.line).toBe(4);
  });

  it('an invalid file in runbooks.dir is set aside with a warning; starting it names its problems', async () => {
    const broken = join(ws.dir, 'runbooks', 'broken.yaml');
    writeFileSync(broken, 'name: broken\nsteps:\n  - id: one\n    action: fleet.scael\n');
    try {
      const list = await g(['runbooks', 'list']);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain('gated');
      expect(list.stderr).toContain(`runbook file ${broken} is invalid and was not loaded`);
      expect(list.stderr).toContain(`${broken}:4`);
      const run = await g(['run', 'broken']);
      expect(run.code).toBe(3);
      expect(run.stderr).toContain('runbook "broken" is invalid and was not loaded');
      expect(run.stderr).toContain(`${broken}:4`);
      const check = await g(['config', 'check']);
      expect(check.code).toBe(1);
      expect(check.stderr).toContain(`${broken}:4`);
    } finally {
      rmSync(broken);
    }
  });

  it('--dry-run prints the plan with exact targets and args and runs nothing', async () => {
    const res = await g(['run', 'gated', '--dry-run', '-p', 'replicas=5']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain('Plan for gated v1');
    expect(res.stdout).toContain('args: {"message":"changing to 5"}');
    expect(res.stdout).toContain('needs approval: approve');
    expect(res.stdout).toContain(
      'Approval approve must allow: change; approvers: operator or higher; four-eyes',
    );
    expect(res.stdout).toContain('Dry run: nothing was run.');
    const plan = json<Plan>(await g(['run', 'gated', '--dry-run', '-p', 'replicas=5', '--json']));
    expect(plan.steps.find((s) => s.id === 'change')?.args).toEqual({ message: 'changing to 5' });
    expect(json<RunSummary[]>(await g(['runs', 'list', '--json']))).toEqual([]);
  });

  it('refuses bad parameters and unknown runbooks before running (exit 3, naming them)', async () => {
    const bad = await g(['run', 'gated', '-p', 'replicas=99']);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('params.replicas');
    const malformed = await g(['run', 'gated', '-p', 'replicas']);
    expect(malformed.code).toBe(3);
    expect(malformed.stderr).toContain('-p: "replicas" is not key=value');
    const unknown = await g(['run', 'nope']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('unknown runbook "nope"');
  });

  it('runs to an approval (exit 4 with the command), four-eyes via GAMEOPS_TOKEN, then retry --from', async () => {
    const run = await g(['run', 'gated', '-p', 'replicas=4']);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/✓ look succeeded \(\d/);
    expect(run.stderr).toContain('      [look] looking at 4');
    const id = /Run (\S+) is waiting/.exec(run.stdout)?.[1];
    expect(id).toBeDefined();
    expect(run.stdout).toContain(`gameops runs approve ${id} approve`);

    const show = json<RunView>(await g(['runs', 'show', id!, '--json']));
    const hash = show.steps.find((s) => s.id === 'approve')?.approval?.planHash;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    const human = await g(['runs', 'show', id!]);
    expect(human.stdout).toContain(`plan hash: ${hash}`);
    expect(human.stdout).toContain('args: {"message":"changing to 4"}');

    const noTty = await g(['runs', 'approve', id!, 'approve']);
    expect(noTty.code).toBe(3);
    expect(noTty.stderr).toContain('pass --yes');
    const self = await g(['runs', 'approve', id!, 'approve', '--yes']);
    expect(self.code).toBe(3);
    expect(self.stderr).toContain('needs four eyes');

    const approved = await g(['runs', 'approve', id!, 'approve', '--yes', '--comment', 'ok'], {
      GAMEOPS_TOKEN: bob,
    });
    // The approval shows what it allows, then the run goes on and its last check fails (ok is false).
    expect(approved.stdout).toContain(`plan hash: ${hash}`);
    expect(approved.stderr).toContain('approve succeeded: approved by bob');
    expect(approved.stderr).not.toContain('[look]');
    expect(approved.code, approved.stderr).toBe(2);
    expect(approved.stdout).toContain(`gameops runs retry ${id} --from verify`);

    const retried = await g(['runs', 'retry', id!, '--from', 'verify', '-p', 'ok=true', '--json']);
    expect(retried.code, retried.stderr).toBe(0);
    const done = json<RunView>(retried);
    expect(done.status).toBe('succeeded');
    expect(done.params).toMatchObject({ ok: true, replicas: 4 });
    const unknownStep = await g(['runs', 'retry', id!, '--from', 'nope']);
    expect(unknownStep.code).toBe(3);
    expect(unknownStep.stderr).toContain('no step nope');
  });

  it('manual steps: complete with evidence; cancel; list filters', async () => {
    const run = await g(['run', 'tick']);
    expect(run.code).toBe(4);
    const id = /Run (\S+) is waiting/.exec(run.stdout)![1]!;
    expect(run.stdout).toContain(`gameops runs complete ${id} read`);
    const noEvidence = await g(['runs', 'complete', id, 'read', '--note', 'looked']);
    expect(noEvidence.code).toBe(3);
    expect(noEvidence.stderr).toMatch(/evidence/);
    const done = await g([
      'runs',
      'complete',
      id,
      'read',
      '--note',
      'looked',
      '--evidence',
      'https://grafana.example/d/1',
    ]);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain('[after] after the tick');

    const other = await g(['run', 'tick', '--detach']);
    expect(other.code).toBe(0);
    const otherId = other.stdout.trim();
    const cancelled = await g(['runs', 'cancel', otherId, '--reason', 'not needed', '--json']);
    expect(json<RunView>(cancelled).status).toBe('cancelled');
    const list = json<RunSummary[]>(
      await g(['runs', 'list', '--runbook', 'tick', '--status', 'cancelled', '--json']),
    );
    expect(list.map((r) => r.id)).toEqual([otherId]);
    const badStatus = await g(['runs', 'list', '--status', 'done']);
    expect(badStatus.code).toBe(3);
    expect(badStatus.stderr).toContain('--status: "done" is not a run status');
  });
  it('Ctrl-C stops following (exit 130) and says how to go on; an unknown run is named', async () => {
    const child = spawn(BIN, ['run', 'slow', '--config', ws.config], {
      cwd: ws.dir,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('▶ nap running')) resolve();
      });
      child.on('close', () => resolve());
    });
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    const id = /run (\S+) of slow/.exec(stderr)?.[1];
    expect(stderr).toContain(`stopped following run ${id}`);
    expect(stderr).toContain(`gameops runs follow ${id}`);
    const cancelled = await g(['runs', 'cancel', id!, '--json']);
    expect(json<RunView>(cancelled).status).toBe('cancelled');
    const unknown = await g(['runs', 'show', 'r-nope']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('r-nope');
  });
});

describe(
  'the same commands while gameops serve holds the store (through the API)',
  { timeout: 120_000 },
  () => {
    let ws: { dir: string; config: string };
    let serve: ChildProcess;
    let exited: Promise<number | null>;
    let bob: string;
    const g = (args: string[], env?: Record<string, string>) =>
      gameops([...args, '--config', ws.config], ws.dir, env);

    beforeAll(async () => {
      ws = workspace();
      const created = await g(['tokens', 'create', '--name', 'bob', '--role', 'operator']);
      bob = created.stdout.trim();
      serve = spawn(BIN, ['serve', '--port', '0', '--config', ws.config], {
        cwd: ws.dir,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', GAMEOPS_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      exited = new Promise((resolve) => serve.on('exit', (code) => resolve(code)));
      let stderr = '';
      await new Promise<void>((resolve, reject) => {
        serve.stderr!.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (stderr.includes('listening on') && existsSync(join(ws.dir, 'data', 'serve.json'))) resolve();
        });
        serve.on('exit', () => reject(new Error(`serve exited: ${stderr}`)));
      });
    });
    afterAll(async () => {
      serve.kill('SIGTERM');
      expect(await exited).toBe(0);
    });

    it('runs, waits for an approval, is approved by someone else, and retries, all through the API', async () => {
      const run = await g(['run', 'gated', '-p', 'replicas=2']);
      expect(run.code, run.stderr).toBe(4);
      // serve's local admin token acts as the OS user running serve.
      expect(run.stderr).toContain(`started by ${userInfo().username} (http://127.0.0.1:`);
      const id = /Run (\S+) is waiting/.exec(run.stdout)![1]!;
      const self = await g(['runs', 'approve', id, 'approve', '--yes']);
      expect(self.code).toBe(3);
      expect(self.stderr).toContain('needs four eyes');
      const approved = await g(['runs', 'approve', id, 'approve', '--yes'], { GAMEOPS_TOKEN: bob });
      expect(approved.code, approved.stderr).toBe(2);
      expect(approved.stderr).toContain('approved by bob');
      const retried = await g(['runs', 'retry', id, '--from', 'verify', '-p', 'ok=true']);
      expect(retried.code, retried.stderr).toBe(0);
      expect(retried.stdout).toContain(`Run ${id} succeeded`);
      const followed = await g(['runs', 'follow', id]);
      expect(followed.code).toBe(0);
      expect(followed.stderr).toContain('[look] looking at 2');
      const dry = await g(['run', 'gated', '--dry-run']);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toContain('args: {"message":"changing to 3"}');
      const list = json<RunSummary[]>(await g(['runs', 'list', '--json']));
      expect(list.map((r) => r.id)).toEqual([id]);
      const unknown = await g(['run', 'nope']);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr).toContain('unknown runbook "nope"');
    });

    it('--detach returns at once and the server runs it', async () => {
      const started = await g(['run', 'tick', '--detach', '--json']);
      expect(started.code).toBe(0);
      const view = json<RunView>(started);
      const followed = await g(['runs', 'follow', view.id]);
      expect(followed.code).toBe(4);
      expect(followed.stdout).toContain(`gameops runs complete ${view.id} read`);
      const cancelled = await g(['runs', 'cancel', view.id]);
      expect(cancelled.code, cancelled.stderr).toBe(0);
      expect(cancelled.stdout).toContain('CANCELLED');
    });
  },
);
