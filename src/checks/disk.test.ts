import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { smallFilesystem, type SmallFilesystemHandle } from '../../test/harness/index.ts';
import { systemClock } from '../core/index.ts';
import { runDailyCheck } from './daily.ts';
import { diskCheck } from './disk.ts';
import { testConfig } from './test-support.ts';
import type { CheckResult } from './types.ts';

async function check(disk: Record<string, unknown>): Promise<CheckResult> {
  const run = await runDailyCheck({
    config: testConfig({ thresholds: { disk } }),
    clock: systemClock,
    trigger: 'cli',
    checks: [diskCheck],
  });
  return run.results[0]!;
}

describe('disk check on a small real filesystem', () => {
  let fs: SmallFilesystemHandle;
  beforeAll(async () => {
    fs = await smallFilesystem(8);
  });
  afterEach(async () => {
    await fs.clear();
  });
  afterAll(async () => {
    await fs.stop();
  });

  it('fails for a configured path filled above 90 %', async () => {
    const reached = await fs.fill(92);
    const result = await check({ paths: [fs.path] });
    expect(result.status).toBe('fail');
    expect(result.findings).toEqual([
      expect.objectContaining({
        status: 'fail',
        subject: fs.path,
        threshold: 90,
        value: expect.any(Number) as number,
      }),
    ]);
    expect(result.findings[0]?.value as number).toBeGreaterThanOrEqual(reached);
    expect(result.findings[0]?.message).toMatch(/^9\d(\.\d)? % used, .* free of 8\.0 MiB$/);
    expect(result.summary).toMatch(new RegExp(`^1 filesystem; fullest ${fs.path} 9\\d(\\.\\d)? %`));
    const [measured] = result.values['filesystems'] as Array<Record<string, unknown>>;
    expect(measured).toMatchObject({ path: fs.path, mountPoint: fs.path, status: 'fail' });
  });

  it('warns between 80 and 90 % and is ok below', async () => {
    await fs.fill(84);
    expect((await check({ paths: [fs.path] })).status).toBe('warn');
    await fs.clear();
    await fs.fill(30);
    const result = await check({ paths: [fs.path] });
    expect(result.status).toBe('ok');
    expect(result.findings).toEqual([]);
  });

  it('uses the configured thresholds', async () => {
    await fs.fill(30);
    const result = await check({ paths: [fs.path], warnPercent: 10, failPercent: 20 });
    expect(result.status).toBe('fail');
  });

  it('a configured path that does not exist is an error naming it; the others are still measured', async () => {
    const result = await check({ paths: [fs.path, '/nonexistent/gameops-disk'] });
    expect(result.status).toBe('error');
    expect(result.error?.message).toBe('disk path /nonexistent/gameops-disk does not exist');
    expect(result.findings).toContainEqual(
      expect.objectContaining({ status: 'error', subject: '/nonexistent/gameops-disk' }),
    );
    expect((result.values['filesystems'] as unknown[]).length).toBe(1);
    expect(result.summary).toContain('1 not measurable');
  });
});

describe('disk check with discovery', () => {
  it('measures every real filesystem when no path is configured', async () => {
    const result = await check({});
    expect(['ok', 'warn', 'fail']).toContain(result.status);
    const filesystems = result.values['filesystems'] as Array<{ mountPoint: string; fsType: string }>;
    expect(filesystems.some((f) => f.mountPoint === '/')).toBe(true);
    expect(filesystems.some((f) => ['proc', 'sysfs', 'cgroup', 'cgroup2'].includes(f.fsType))).toBe(false);
  });
});
