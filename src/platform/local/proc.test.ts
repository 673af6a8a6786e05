import { describe, expect, it } from 'vitest';
import { isSameProcess, parseProcStat, procStatSync, startTimeToIso } from './proc.ts';

describe('/proc parsing', () => {
  it('reads state, group, CPU ticks and start time past a command name with spaces and parentheses', () => {
    const fields = ['S', '1', '4242', '4242', '0', '-1', '4194560', '100', '0', '0', '0', '150', '25'];
    const rest = [...fields, '0', '0', '20', '0', '1', '0', '987654', '1000000', '200'];
    const stat = parseProcStat(`4242 (game (v1) srv) ${rest.join(' ')}\n`);
    expect(stat).toEqual({ state: 'S', pgrp: 4242, cpuTicks: 175, startTime: '987654' });
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  it('knows this process, and a different start time is another process', () => {
    const own = procStatSync(process.pid);
    expect(own).toBeDefined();
    expect(isSameProcess(own, own!.startTime)).toBe(true);
    expect(isSameProcess(own, String(Number(own!.startTime) + 1))).toBe(false);
    expect(isSameProcess({ ...own!, state: 'Z' }, own!.startTime)).toBe(false);
    const started = Date.parse(startTimeToIso(own!.startTime)!);
    expect(Math.abs(started - (Date.now() - process.uptime() * 1000))).toBeLessThan(5000);
  });
});
