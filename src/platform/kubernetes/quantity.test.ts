import { describe, expect, it } from 'vitest';
import { cpuMillicores, memoryBytes, parseGoDuration, parseQuantity } from './quantity.ts';

describe('parseQuantity', () => {
  it.each([
    ['250m', 0.25],
    ['1', 1],
    ['0', 0],
    ['123456Ki', 123456 * 1024],
    ['1Gi', 2 ** 30],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['2Ei', 2 * 2 ** 60],
    ['12345n', 12345e-9],
    ['5u', 5e-6],
    ['1k', 1000],
    ['1.5G', 1.5e9],
    ['1M', 1e6],
    ['3T', 3e12],
    ['1E', 1e18],
    ['1e3', 1000],
    ['1E3', 1000],
    ['12e-3', 0.012],
    ['.5', 0.5],
    ['1.', 1],
    ['+2', 2],
    ['-1', -1],
  ])('%s → %s', (text, value) => {
    expect(parseQuantity(text)).toBeCloseTo(value, 12);
  });

  it.each([
    '',
    ' ',
    'abc',
    '1KiB',
    '1 Gi',
    '1k2',
    'Mi',
    '1.2.3',
    '--1',
    '1e',
    '1e3Ki',
    'm',
    '0x10',
    '1,5',
    '9'.repeat(65),
  ])('refuses %j', (text) => {
    expect(parseQuantity(text)).toBeUndefined();
  });
});

describe('cpuMillicores', () => {
  it.each([
    ['250m', 250],
    ['1', 1000],
    ['2.5', 2500],
    ['0.1', 100],
    ['12345678n', 12.345678],
    ['100u', 0.1],
    ['3920m', 3920],
    ['0', 0],
  ])('%s → %s millicores', (text, value) => {
    expect(cpuMillicores(text)).toBe(value);
  });

  it('refuses negative and malformed CPU', () => {
    expect(cpuMillicores('-1')).toBeUndefined();
    expect(cpuMillicores('fast')).toBeUndefined();
  });
});

describe('memoryBytes', () => {
  it.each([
    ['1Ki', 1024],
    ['128974848', 128974848],
    ['129e6', 129_000_000],
    ['129M', 129_000_000],
    ['123Mi', 123 * 1024 * 1024],
    ['15242892Ki', 15242892 * 1024],
    ['1.1G', 1_100_000_000],
    ['1.5', 2],
    ['0', 0],
  ])('%s → %s bytes', (text, value) => {
    expect(memoryBytes(text)).toBe(value);
  });

  it('refuses negative and malformed memory', () => {
    expect(memoryBytes('-1Ki')).toBeUndefined();
    expect(memoryBytes('lots')).toBeUndefined();
  });
});

describe('parseGoDuration', () => {
  it.each([
    ['15.024s', 15_024],
    ['30s', 30_000],
    ['1m0s', 60_000],
    ['500ms', 500],
    ['0s', 0],
    ['0', 0],
    ['1h2m3.5s', 3_723_500],
    ['1.5us', 0.0015],
    ['2µs', 0.002],
    ['10ns', 0.00001],
  ])('%s → %s ms', (text, ms) => {
    expect(parseGoDuration(text)).toBeCloseTo(ms, 9);
  });

  it.each(['', '5', 's', '1x', '1m ms', '-1s', '1s '])('refuses %j', (text) => {
    expect(parseGoDuration(text)).toBeUndefined();
  });
});
