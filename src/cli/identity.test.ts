import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { bearer, serveToken } from '../../test/support/auth.ts';
import { gameops } from '../../test/support/cli.ts';
import { writeTestConfig } from '../../test/support/config.ts';

const MAIN = join(import.meta.dirname, 'main.ts');

async function startServe(
  path: string,
): Promise<{ address: string; child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--config', path], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const address = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m?.[1]) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`serve exited early: ${stderr}`)));
  });
  return { address, child, exited };
}

describe('gameops tokens and audit (real process, embedded store)', () => {
  it('creates a token printing only it on stdout, lists, revokes, and audits it all', async () => {
    const { path } = writeTestConfig('', { withServices: false });
    const created = await gameops([
      'tokens',
      'create',
      '--name',
      'alice',
      '--role',
      'operator',
      '--expires',
      '30d',
      '--config',
      path,
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^gops_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n$/);
    const id = created.stdout.slice(5, 17);
    expect(created.stderr).toContain(`created token ${id} (alice, operator, expires `);

    const list = await gameops(['tokens', 'list', '--config', path]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^ID +NAME +ROLE +STATE`));
    expect(list.stdout).toMatch(new RegExp(`${id} +alice +operator +active`));
    expect(list.stdout).not.toContain(created.stdout.trim());
    const json = JSON.parse((await gameops(['tokens', 'list', '--json', '--config', path])).stdout) as {
      tokens: Array<{ id: string; createdBy: string }>;
    };
    expect(json.tokens[0]).toMatchObject({ id, createdBy: `local:${userInfo().username}` });

    const revoked = await gameops(['tokens', 'revoke', id, '--config', path]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`revoked token ${id} (alice, operator)`);

    const audit = await gameops(['audit', 'list', '--json', '--config', path]);
    const records = (
      JSON.parse(audit.stdout) as { records: Array<{ action: string; actor: { id: string } }> }
    ).records;
    expect(records.map((r) => r.action)).toEqual(['config.load', 'token.create', 'token.revoke']);
    expect(records.every((r) => r.actor.id === `local:${userInfo().username}`)).toBe(true);
    const table = await gameops(['audit', 'list', '--action', 'token.*', '--since', '1h', '--config', path]);
    expect(table.stdout).toMatch(/^SEQ +AT +ACTOR +ACTION +TARGET +DATA\n/);
    expect(table.stdout).toContain(`token.revoke  token:${id}`);
    expect(table.stdout).not.toContain('config.load');

    const verify = await gameops(['audit', 'verify', '--config', path]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(
      /^audit log intact: 3 records verified \(head seq 3, hash [0-9a-f]{16}…\)\nhead: 3:[0-9a-f]{64}\n {2}keep it outside gameops; later: gameops audit verify --expect <that head>\n$/,
    );
  });

  it('audit verify exits 1 naming an edited record', async () => {
    const { path, dir } = writeTestConfig('', { withServices: false });
    await gameops(['tokens', 'create', '--name', 'a', '--role', 'viewer', '--config', path]);
    await gameops(['tokens', 'create', '--name', 'b', '--role', 'viewer', '--config', path]);
    const intact = await gameops(['audit', 'verify', '--config', path]);
    const head = /^head: (\d+:[0-9a-f]{64})$/m.exec(intact.stdout)?.[1];
    expect(head, intact.stdout).toBeDefined();
    const expected = await gameops(['audit', 'verify', '--expect', head!, '--config', path]);
    expect(expected.code, expected.stderr).toBe(0);
    expect(expected.stdout).toContain(`expected record ${head!.split(':')[0]} is in the chain`);
    const gone = await gameops(['audit', 'verify', '--expect', `9:${'a'.repeat(64)}`, '--config', path]);
    expect(gone.code).toBe(1);
    expect(gone.stdout).toContain(`the head is at ${head!.split(':')[0]}, before the expected record 9`);
    const db = new DatabaseSync(join(dir, 'data', 'gameops.db'));
    try {
      db.prepare(`UPDATE audit_log SET data = '{"name":"mallory","role":"admin"}' WHERE seq = 2`).run();
    } finally {
      db.close();
    }
    const verify = await gameops(['audit', 'verify', '--config', path]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain('audit log NOT intact: 1 problem in 3 records');
    expect(verify.stdout).toContain("#2: record 2's content was changed");
    const json = JSON.parse((await gameops(['audit', 'verify', '--json', '--config', path])).stdout) as {
      ok: boolean;
      problems: Array<{ seq: number }>;
    };
    expect(json).toMatchObject({ ok: false, problems: [{ seq: 2 }] });
  });

  it('acts as GAMEOPS_TOKEN when set: a viewer may not manage tokens; a bad token is refused', async () => {
    const { path } = writeTestConfig('', { withServices: false });
    const viewer = (
      await gameops(['tokens', 'create', '--name', 'vic', '--role', 'viewer', '--config', path])
    ).stdout.trim();
    const refused = await gameops(['tokens', 'list', '--config', path], { GAMEOPS_TOKEN: viewer });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('vic (viewer) may not manage API tokens: needs admin');
    const audit = await gameops(['audit', 'list', '--config', path], { GAMEOPS_TOKEN: viewer });
    expect(audit.stderr).toContain('vic (viewer) may not read the audit log: needs operator or admin');
    const bad = await gameops(['tokens', 'list', '--config', path], { GAMEOPS_TOKEN: 'gops_nope' });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('GAMEOPS_TOKEN is not a gameops token (expected gops_...)');
    const unknown = await gameops(['tokens', 'list', '--config', path], {
      GAMEOPS_TOKEN: `gops_000000000000_${'A'.repeat(43)}`,
    });
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('GAMEOPS_TOKEN is not a valid token here');
    expect(bad.stderr).not.toContain('gops_nope');
  });

  it('refuses bad usage naming the option', async () => {
    const { path } = writeTestConfig('', { withServices: false });
    const role = await gameops(['tokens', 'create', '--name', 'x', '--role', 'root', '--config', path]);
    expect(role.code).toBe(3);
    expect(role.stderr).toContain("option '--role <role>' argument 'root' is invalid");
    const expires = await gameops([
      'tokens',
      'create',
      '--name',
      'x',
      '--role',
      'viewer',
      '--expires',
      'never',
      '--config',
      path,
    ]);
    expect(expires.stderr).toContain('--expires: "never" is not a duration');
    const revoke = await gameops(['tokens', 'revoke', 'abc', '--config', path]);
    expect(revoke.stderr).toContain('"abc" is not a token id');
    const since = await gameops(['audit', 'list', '--since', 'yesterday', '--config', path]);
    expect(since.stderr).toContain('--since: "yesterday" is neither an ISO date-time nor a duration');
  });

  it('while serve holds the store, goes through its API with the local admin token it published', async () => {
    const { path, dir } = writeTestConfig('', { withServices: false });
    const dataDir = join(dir, 'data');
    const serve = await startServe(path);
    try {
      expect(existsSync(join(dataDir, 'serve.json'))).toBe(true);
      const info = await fetch(`${serve.address}/api`, { headers: bearer(serveToken(dataDir)) });
      expect(info.status).toBe(200);
      expect((await fetch(`${serve.address}/api`)).status).toBe(401);

      const created = await gameops([
        'tokens',
        'create',
        '--name',
        'bob',
        '--role',
        'responder',
        '--config',
        path,
      ]);
      expect(created.code, created.stderr).toBe(0);
      const bobToken = created.stdout.trim();
      const list = await gameops(['tokens', 'list', '--json', '--config', path]);
      const names = (JSON.parse(list.stdout) as { tokens: Array<{ name: string; createdBy: string }> })
        .tokens;
      expect(names.find((t) => t.name === 'bob')?.createdBy).toMatch(/^token:[0-9a-f]{12}$/);
      expect(names.filter((t) => t.name === 'local-admin')).toHaveLength(1);

      // GAMEOPS_TOKEN goes to the server too; there, a responder may not list tokens.
      const asBob = await gameops(['tokens', 'list', '--config', path], { GAMEOPS_TOKEN: bobToken });
      expect(asBob.code).toBe(3);
      expect(asBob.stderr).toContain('bob (responder) may not GET /api/tokens: needs admin');

      const verify = await gameops(['audit', 'verify', '--config', path]);
      expect(verify.code, verify.stderr).toBe(0);
      expect(verify.stdout).toContain('audit log intact');
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
    expect(existsSync(join(dataDir, 'serve.json')), 'removed at clean shutdown').toBe(false);
    // serve is gone: the CLI opens the store itself again.
    const after = await gameops(['audit', 'list', '--action', 'token.*', '--json', '--config', path]);
    const actions = (
      JSON.parse(after.stdout) as { records: Array<{ action: string; actor: { name: string } }> }
    ).records;
    expect(actions.map((r) => [r.action, r.actor.name])).toEqual([
      ['token.create', userInfo().username],
      // bob's token, created through the API with serve's local admin token: the OS user running serve.
      ['token.create', userInfo().username],
      // serve revokes its local admin token when it stops cleanly.
      ['token.revoke', userInfo().username],
    ]);
  });
});
