import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findExecutable } from './executables.ts';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
});

describe('findExecutable', () => {
  it('finds a program on PATH, and one only in the extra directories', async () => {
    expect(await findExecutable('sh')).toMatch(/\/sh$/);
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-exec-'));
    dirs.push(dir);
    await fsp.writeFile(path.join(dir, 'only-here'), '#!/bin/sh\n', { mode: 0o755 });
    await fsp.writeFile(path.join(dir, 'not-executable'), 'x', { mode: 0o644 });
    expect(await findExecutable('only-here', [dir])).toBe(path.join(dir, 'only-here'));
    expect(await findExecutable('only-here')).toBeUndefined();
    expect(await findExecutable('not-executable', [dir])).toBeUndefined();
  });
});
