/**
 * A log file deleted while its game server runs (by hand, or by a clean-up job): the server keeps
 * writing to the unlinked file, so nothing would be readable, the disk never freed and a follower would
 * wait forever. The supervisor notices, moves what the deleted file holds into a new log file and empties
 * it; a follower picks up the new file.
 */
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readStateFile, setup, useCleanups, waitFor } from './fleet-test-kit.ts';
import { writeErrorLines } from './test-support.ts';

useCleanups();

describe('local platform: a log file deleted under a running game server', () => {
  it('is recreated by the supervisor with what the server wrote since, and the deleted one emptied', async () => {
    const { platform, dataDir, token } = await setup({ replicas: 1 });
    await platform.scale(1);
    const [instance] = await platform.instances();
    const log = join(dataDir, 'fleet', 'logs', 'game-0.log');
    const { pid } = (await readStateFile(dataDir)).instances[0]!;
    await rm(log);
    await writeErrorLines(instance!.opsUrl!, token, 3);
    await platform.superviseOnce();
    expect((await platform.countLines({ pattern: '"level":"ERROR"' })).total).toBe(3);
    // The unlinked file the server still writes to no longer holds those bytes.
    expect((await stat(`/proc/${pid}/fd/1`)).size).toBe(0);
    await writeErrorLines(instance!.opsUrl!, token, 2);
    await platform.superviseOnce();
    expect((await platform.countLines({ pattern: '"level":"ERROR"' })).total).toBe(5);
    expect((await stat(log)).mode & 0o777).toBe(0o600);
    await platform.scale(0);
  }, 30_000);

  it('a follower goes on with the new file', async () => {
    const { platform, dataDir, token } = await setup({ replicas: 1 });
    await platform.scale(1);
    const [instance] = await platform.instances();
    const controller = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const line of platform.logs({ follow: true, signal: controller.signal }))
        seen.push(line.line);
    })();
    await waitFor('the follower to be reading', async () =>
      seen.some((l) => l.includes('"msg":"listening"')) ? true : undefined,
    );
    await writeErrorLines(instance!.opsUrl!, token, 1);
    await waitFor('the first line', async () => (seen.length >= 1 ? true : undefined));
    await rm(join(dataDir, 'fleet', 'logs', 'game-0.log'));
    await writeErrorLines(instance!.opsUrl!, token, 2);
    await platform.superviseOnce();
    await waitFor('the lines written after the deletion', async () =>
      seen.filter((l) => l.includes('"level":"ERROR"')).length >= 3 ? true : undefined,
    );
    controller.abort();
    await following;
    await platform.scale(0);
  }, 30_000);
});
