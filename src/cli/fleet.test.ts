import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTestConfig } from '../../test/support/config.ts';
import {
  connectPlayer,
  writeMiniFleetConfig,
  writeReferenceFleetConfig,
  type ReferenceFleetConfig,
} from '../../test/support/fleet.ts';
import { destroyFleet } from '../platform/local/test-support.ts';

const MAIN = join(import.meta.dirname, 'main.ts');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI as a separate process. `onStderr` sees stderr as it comes (and may signal the child). */
function gameops(
  args: string[],
  options: { onStderr?: (text: string, child: ReturnType<typeof spawn>) => void } = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      options.onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface StatusJson {
  instances: Array<{
    name: string;
    ready: boolean;
    version: string;
    opsUrl?: string;
    game?: { playersOnline: number };
    gameProblem?: string;
  }>;
  totals: { instances: number; ready: number; playersOnline: number; notAnswering: number };
  versions: string[];
  gate: { closed: boolean; message?: string };
}

describe('gameops fleet (local platform, real game-server processes)', () => {
  let config: { path: string; dataDir: string; token: string };
  const fleet = (...args: string[]) => gameops(['fleet', ...args, '--config', config.path]);
  const status = async (): Promise<StatusJson> =>
    JSON.parse((await fleet('status', '--json')).stdout) as StatusJson;
  beforeAll(async () => {
    config = await writeMiniFleetConfig();
  });
  afterAll(async () => {
    // Every game server this file started is stopped: through gameops, then by the pids of the state.
    await fleet('scale', '0', '--yes');
    await destroyFleet(config.dataDir);
  });

  it('a port held by another program refuses the scale before starting anything: exit 3, port named', async () => {
    const basePort = Number(/basePort: (\d+)/.exec(readFileSync(config.path, 'utf8'))?.[1]);
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(basePort, '127.0.0.1', resolve));
    try {
      const res = await fleet('scale', '1');
      expect(res.code, res.stderr).toBe(3);
      expect(res.stderr).toContain(String(basePort));
      expect((await status()).totals.instances).toBe(0);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  it('status of a fleet with no instance: says so, exit 2', async () => {
    const res = await fleet('status');
    expect(res.code).toBe(2);
    expect(res.stdout).toContain('No game-server instances.');
    expect(res.stdout).toMatch(/Instances: 0\/0 ready/);
  });

  it('scales up, printing progress on stderr and the result on stdout', async () => {
    const res = await fleet('scale', '2');
    expect(res.stderr, res.stdout).toMatch(/scale to 2 on local fleet/);
    expect(res.stderr).toMatch(/^\[\d[^\]]*\] scale: /m);
    expect(res.stdout).toMatch(/scale done in .*: 2 instances on v1/);
    expect(res.code).toBe(0);
    const s = await status();
    expect(s.totals).toMatchObject({ instances: 2, ready: 2 });
  });

  it('status: the table, totals, gate and autoscaler; exit 0 when all are ready and answering', async () => {
    const res = await fleet('status');
    expect(res.stdout).toMatch(
      /^NAME\s+PHASE\s+READY\s+RESTARTS\s+VERSION\s+NODE\s+AGE\s+PLAYERS\s+TICK-P99$/m,
    );
    expect(res.stdout).toMatch(/^game-0\s+running\s+yes\s+0\s+v1\s/m);
    expect(res.stdout).toMatch(/^game-1\s+running\s+yes\s+0\s+v1\s/m);
    expect(res.stdout).toMatch(/Instances: 2\/2 ready · Players online: 0 · Versions: v1/);
    expect(res.stdout).toContain('Gate: open');
    expect(res.stdout).toContain('Autoscaler: none');
    expect(res.code, res.stdout).toBe(0);
    expect(res.stdout).not.toContain('\u001b[');
  });

  it('status --json is the fleet status document; -l selects by label', async () => {
    const s = await status();
    expect(s.instances.map((i) => i.name)).toEqual(['game-0', 'game-1']);
    expect(s.versions).toEqual(['v1']);
    expect(s.instances[0]?.game?.playersOnline).toBe(0);
    const none = await fleet('status', '--json', '-l', 'no-such-label=x');
    expect((JSON.parse(none.stdout) as StatusJson).totals.instances).toBe(0);
    expect(none.code).toBe(2);
    const bad = await fleet('status', '-l', 'novalue');
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('--selector: "novalue" is not key=value');
  });

  it.each([['-1'], ['1001'], ['2.5'], ['abc'], ['1e3']])(
    'scale %s: exit 3 naming the argument, nothing changed',
    async (replicas) => {
      const res = await fleet('scale', replicas);
      expect(res.code).toBe(3);
      expect(res.stderr).toContain(`replicas: "${replicas}" is not an integer from 0 to 1000`);
      expect((await status()).totals.instances).toBe(2);
    },
  );

  it('scale 0 without --yes is refused and says why', async () => {
    const res = await fleet('scale', '0');
    expect(res.code).toBe(3);
    expect(res.stderr).toMatch(/stops every game server.*--yes/);
    expect((await status()).totals.instances).toBe(2);
  });

  it('top: nodes then instances with CPU and memory; --json has the figures', async () => {
    const res = await fleet('top');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^NODE\s+CPU\(m\)\s+CPU%\s+MEMORY\s+MEMORY%$/m);
    expect(res.stdout).toMatch(/^INSTANCE\s+CPU\(m\)\s+CPU%\s+MEMORY$/m);
    expect(res.stdout).toMatch(/^game-[01]\s+\d+\s+[\d.]+%\s+[\d.]+ (KiB|MiB|GiB)$/m);
    const report = JSON.parse((await fleet('top', '--json')).stdout) as {
      instances: Array<{ name: string; memoryBytes: number }>;
    };
    expect(report.instances.map((i) => i.name).sort()).toEqual(['game-0', 'game-1']);
    expect(report.instances[0]?.memoryBytes).toBeGreaterThan(1024 * 1024);
  });

  it('logs: one instance with --tail, several prefixed, --count per instance', async () => {
    const s = await status();
    const opsUrl = s.instances.find((i) => i.name === 'game-1')?.opsUrl;
    const wrote = await fetch(`${opsUrl}/ops/test/log-errors?n=3`, {
      method: 'POST',
      headers: { authorization: `Bearer ${config.token}` },
    });
    expect(wrote.status).toBe(200);

    const one = await fleet('logs', 'game-1', '--tail', '2');
    expect(one.code).toBe(0);
    const lines = one.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).toMatch(/^\{"time":/);

    const all = await fleet('logs', '--tail', '1');
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/^\[game-0\] \{/m);
    expect(all.stdout).toMatch(/^\[game-1\] \{/m);

    const counted = await fleet('logs', '--count', '"level":"ERROR"');
    expect(counted.code).toBe(0);
    expect(counted.stdout).toMatch(/^game-0\s+0$/m);
    expect(counted.stdout).toMatch(/^game-1\s+3$/m);
    expect(counted.stdout).toMatch(/^3 lines containing/m);
    const json = JSON.parse((await fleet('logs', '--count', 'ERROR', '--json')).stdout) as {
      perInstance: Record<string, number>;
      total: number;
    };
    expect(json.perInstance).toEqual({ 'game-0': 0, 'game-1': 3 });
  });

  it('logs of an unknown instance: exit 3 with the platform’s message', async () => {
    const res = await fleet('logs', 'game-9');
    expect(res.code).toBe(3);
    expect(res.stderr).toContain('no instance named "game-9"');
    const bad = await fleet('logs', '--since', 'yesterday');
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('--since: "yesterday" is not a duration');
  });

  it('logs --follow prints new lines as they come and stops cleanly on Ctrl-C', async () => {
    const s = await status();
    const opsUrl = s.instances.find((i) => i.name === 'game-0')?.opsUrl;
    let interrupted = false;
    const child = spawn(
      process.execPath,
      [MAIN, 'fleet', 'logs', 'game-0', '-f', '--tail', '0', '--config', config.path],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      child.on('close', resolve);
      // One new line every 300 ms until two have come through (the follow starts at the end of the
      // log whenever the CLI gets there, so lines written before that are rightly not shown).
      const timer = setInterval(() => {
        void fetch(`${opsUrl}/ops/test/log-errors?n=1`, {
          method: 'POST',
          headers: { authorization: `Bearer ${config.token}` },
        })
          .then((r) => r.arrayBuffer())
          .catch(() => undefined);
      }, 300);
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (!interrupted && (stdout.match(/test error/g) ?? []).length >= 2) {
          interrupted = true;
          clearInterval(timer);
          child.kill('SIGINT');
        }
      });
      setTimeout(() => {
        clearInterval(timer);
        child.kill('SIGKILL');
      }, 25_000);
    });
    expect(interrupted, stderr).toBe(true);
    expect(code).toBe(0);
    expect(stderr).toContain('SIGINT received');
  });

  it('diagnostics: an unknown instance or a bad kind/--seconds is exit 3, nothing stored', async () => {
    const unknown = await fleet('diagnostics', 'game-7', 'stack-dump');
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('no instance named "game-7"');
    const kind = await fleet('diagnostics', 'game-0', 'core-dump');
    expect(kind.code).toBe(3);
    expect(kind.stderr).toMatch(/value 'core-dump' is invalid for argument 'kind'/);
    const seconds = await fleet('diagnostics', 'game-0', 'cpu-profile', '--seconds', '61');
    expect(seconds.code).toBe(3);
    expect(seconds.stderr).toContain('--seconds: "61" is not an integer from 1 to 60');
    const notCpu = await fleet('diagnostics', 'game-0', 'stack-dump', '--seconds', '5');
    expect(notCpu.code).toBe(3);
  });

  it('a rollout that does not finish: exit 2, the error, the last progress, the state left and how to recover', async () => {
    const res = await fleet('set-version', 'broken', '--timeout', '4s');
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('set-version broken FAILED');
    expect(res.stderr).toMatch(/^last progress: /m);
    expect(res.stderr).toMatch(/^fleet left with: \d+ instances/m);
    // The local adapter puts the instance it replaced back on the old version; a paused Kubernetes
    // rollout needs the rollback. Either way the message says which.
    expect(res.stderr).toMatch(
      /to roll back: gameops fleet rollback|every instance runs v1 again, as before/,
    );
    const s = await status();
    expect(s.versions).toEqual(['v1']);
    expect(s.totals.ready).toBe(2);
  });

  it('set-version rolls every instance and rollback goes back; an unknown version is refused (exit 3)', async () => {
    const unknown = await fleet('set-version', 'v9');
    expect(unknown.code).toBe(3);
    const bad = await fleet('set-version', 'v 1');
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('version: "v 1" is not a version');
    const res = await fleet('set-version', 'v2', '--json');
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ rollout: { version: 'v2', previousVersion: 'v1' } });
    expect((await status()).versions).toEqual(['v2']);
    const back = await fleet('rollback');
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(/rollback done in .*: 2 instances on v1 \(was v2\)/);
    expect((await status()).versions).toEqual(['v1']);
  });

  it('Ctrl-C during a wait stops it, prints the state the fleet was left in, exit 130', async () => {
    const res = await gameops(['fleet', 'set-version', 'slow', '--config', config.path], {
      onStderr: (text, child) => {
        if (/\] set-version: /.test(text) && !child.killed) child.kill('SIGINT');
      },
    });
    expect(res.code, res.stderr).toBe(130);
    expect(res.stderr).toContain('SIGINT received');
    expect(res.stderr).toMatch(/set-version slow interrupted after/);
    expect(res.stderr).toMatch(/^fleet left with: \d+ instances, \d+ ready/m);
    const back = await fleet('set-version', 'v1');
    expect(back.code, back.stderr).toBe(0);
    expect((await status()).versions).toEqual(['v1']);
  });
});

describe('gameops fleet with reference game servers: gate, drain, diagnostics', () => {
  let config: ReferenceFleetConfig;
  const fleet = (...args: string[]) => gameops(['fleet', ...args, '--config', config.path]);
  const status = async (): Promise<StatusJson> =>
    JSON.parse((await fleet('status', '--json')).stdout) as StatusJson;
  const opsStatus = async (opsUrl: string) =>
    (await (
      await fetch(`${opsUrl}/ops/status`, { headers: { authorization: `Bearer ${config.token}` } })
    ).json()) as { maintenance: { enabled: boolean; message: string | null }; playersOnline: number };

  beforeAll(async () => {
    config = await writeReferenceFleetConfig({ prefix: 'fleetcli' });
    const up = await fleet('scale', '2');
    expect(up.code, up.stderr).toBe(0);
  });
  afterAll(async () => {
    await fleet('scale', '0', '--yes');
    await destroyFleet(config.dataDir);
  });

  it('gate close reaches the game servers, gate shows it, gate open reopens', async () => {
    const closed = await fleet(
      'gate',
      'close',
      '--message',
      'Back at 10:00',
      '--starts-at',
      '2030-01-01T09:00:00Z',
    );
    expect(closed.stdout).toContain('Gate: CLOSED');
    expect(closed.stdout).toContain('Told 2/2 running instances');
    expect(closed.code).toBe(0);
    const s = await status();
    expect(s.gate).toMatchObject({ closed: true, message: 'Back at 10:00' });
    for (const i of s.instances)
      expect((await opsStatus(i.opsUrl!)).maintenance).toMatchObject({
        enabled: true,
        message: 'Back at 10:00',
      });
    const shown = await fleet('gate');
    expect(shown.stdout).toMatch(/Gate: CLOSED.*"Back at 10:00"/);
    expect(JSON.parse((await fleet('gate', '--json')).stdout)).toMatchObject({ closed: true });

    const opened = await fleet('gate', 'open', '--json');
    expect(opened.code).toBe(0);
    expect(JSON.parse(opened.stdout)).toMatchObject({ status: 'ok', gate: { closed: false } });
    for (const i of s.instances) expect((await opsStatus(i.opsUrl!)).maintenance.enabled).toBe(false);
  });

  it('gate close: bad input is refused before anything changes', async () => {
    const noMessage = await fleet('gate', 'close');
    expect(noMessage.code).toBe(3);
    expect(noMessage.stderr).toContain("required option '--message <text>' not specified");
    const badTime = await fleet('gate', 'close', '--message', 'x', '--starts-at', 'tomorrow');
    expect(badTime.code).toBe(3);
    expect(badTime.stderr).toContain('--starts-at: "tomorrow" is not an ISO 8601 time');
    expect((await status()).gate.closed).toBe(false);
  });

  it('a new instance started by scale gets the closed gate re-applied', async () => {
    await fleet('gate', 'close', '--message', 'maintenance');
    try {
      const res = await fleet('scale', '3', '--json');
      expect(res.code, res.stderr).toBe(0);
      const outcome = JSON.parse(res.stdout) as { rollout: { replicas: number }; gate?: { status: string } };
      expect(outcome.rollout.replicas).toBe(3);
      expect(outcome.gate?.status).toBe('ok');
      const s = await status();
      const third = s.instances.find((i) => i.name === 'game-2');
      expect((await opsStatus(third!.opsUrl!)).maintenance.enabled).toBe(true);
    } finally {
      await fleet('gate', 'open');
    }
    const down = await fleet('scale', '2');
    expect(down.code).toBe(0);
    expect((await status()).totals.instances).toBe(2);
  });

  it('drain: players are asked to leave; waits until the servers are empty, printing players remaining', async () => {
    const s = await status();
    const game0 = s.instances.find((i) => i.name === 'game-0')!;
    const wsUrl = `${game0.opsUrl!.replace(/^http/, 'ws')}/play`;
    const players = await Promise.all([
      connectPlayer(wsUrl, 'alice', 1500),
      connectPlayer(wsUrl, 'bob', 2500),
    ]);
    try {
      expect((await opsStatus(game0.opsUrl!)).playersOnline).toBe(2);
      const res = await fleet('drain', '--deadline', '20s', '--message', 'saving');
      expect(res.stderr).toMatch(/players remaining: 2\n/);
      expect(res.stderr).toMatch(/players remaining: 0\n/);
      expect(res.stdout).toContain('Drained: no players left');
      expect(res.stdout).toMatch(/^game-0\s+yes\s+0$/m);
      expect(res.code).toBe(0);
    } finally {
      for (const p of players) p.terminate();
    }
    // A drained instance is expected to be restarted: restart them so later tests have live servers.
    const restarted = await fleet('restart', '--max-unavailable', '2');
    expect(restarted.code, restarted.stderr).toBe(0);
    expect(restarted.stdout).toMatch(/restart done/);
    expect((await opsStatus(game0.opsUrl!)).playersOnline).toBe(0);
  });

  it('diagnostics: stores the artefact and prints path, size and a sha256 that matches the file', async () => {
    const res = await fleet('diagnostics', 'game-0', 'stack-dump', '--json');
    expect(res.code, res.stderr).toBe(0);
    const artefact = JSON.parse(res.stdout) as { path: string; bytes: number; sha256: string };
    const file = readFileSync(artefact.path);
    expect(file.length).toBe(artefact.bytes);
    expect(createHash('sha256').update(file).digest('hex')).toBe(artefact.sha256);
    const human = await fleet('diagnostics', 'game-1', 'cpu-profile', '--seconds', '1');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^sha256: {2}[0-9a-f]{64}$/m);
    expect(human.stdout).toMatch(/^path: {4}\/.*game-1-.*\.cpuprofile$/m);
  });
});

describe('gameops fleet: help and configuration', () => {
  it('--help of every subcommand is useful and says that local game servers outlive gameops', async () => {
    const top = await gameops(['fleet', '--help']);
    expect(top.code).toBe(0);
    for (const sub of [
      'status',
      'top',
      'logs',
      'scale',
      'restart',
      'set-version',
      'rollback',
      'gate',
      'drain',
      'diagnostics',
    ])
      expect(top.stdout).toContain(sub);
    expect(top.stdout).toContain('keep running when gameops exits');
    const scale = await gameops(['fleet', 'scale', '--help']);
    expect(scale.stdout).toContain('Exit codes:');
    expect(scale.stdout).toContain('130');
    expect(scale.stdout).toContain('--yes');
    const close = await gameops(['fleet', 'gate', 'close', '--help']);
    expect(close.code).toBe(0);
    expect(close.stdout).toContain('--starts-at');
  });

  it('without a platform section: exit 3 saying what to add', async () => {
    const { path } = writeTestConfig('', { withServices: false });
    const res = await gameops(['fleet', 'status', '--config', path]);
    expect(res.code).toBe(3);
    expect(res.stderr).toContain('add a `platform:` section');
  });
});

describe('fleet rendering (pure)', () => {
  it('escapes control characters from the platform and the game servers, and picks the exit code', async () => {
    const { renderStatus, statusExitCode, formatBytes } = await import('./fleet-render.ts');
    const base = {
      phase: 'running' as const,
      restarts: 0,
      startedAt: '2026-11-26T09:00:00.000Z',
      version: 'v1',
      node: 'host',
      opsUrl: 'http://127.0.0.1:1',
      labels: {},
    };
    const status = {
      platform: 'local',
      target: 'local fleet',
      instances: [
        { ...base, name: 'game-0', ready: true },
        { ...base, name: 'game-1', ready: false, reason: 'exited\u001b[2J\u0007 with code 1' },
      ],
      totals: { instances: 2, ready: 1, playersOnline: 0, notAnswering: 0 },
      versions: ['v1'],
      gate: { closed: true, message: 'bye\u001b]52;c;AAAA\u0007', startsAt: undefined },
      autoscaler: {
        enabled: false,
        currentReplicas: 2,
        desiredReplicas: 2,
        metrics: [],
        conditions: [],
      },
    };
    const text = renderStatus(status, new Date('2026-11-26T09:01:00.000Z'));
    expect([...text].filter((c) => c !== '\n' && c.charCodeAt(0) < 0x20)).toEqual([]);
    expect(text).toContain('exited\\x1b[2J\\x07 with code 1');
    expect(text).toContain('Gate: CLOSED');
    expect(text).toMatch(/^game-0\s+running\s+yes\s+0\s+v1\s+host\s+1m00s\s+-\s+-$/m);
    expect(statusExitCode(status)).toBe(1);
    expect(statusExitCode({ ...status, totals: { ...status.totals, ready: 2 } })).toBe(0);
    expect(statusExitCode({ ...status, totals: { ...status.totals, ready: 0 } })).toBe(2);
    expect([formatBytes(512), formatBytes(1536), formatBytes(50 * 1024 * 1024)]).toEqual([
      '512 B',
      '1.5 KiB',
      '50 MiB',
    ]);
  });
});
