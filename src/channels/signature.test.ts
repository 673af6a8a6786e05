import { describe, expect, it } from 'vitest';
import { signatureHeader, verifySignature } from './index.ts';

const KEY = 'whsec-test-key-3b9f';
const NOW = Date.parse('2026-03-01T12:00:00Z');
const BODY = '{"deliveryId":"p1.0.0.alice.ops","text":"game-1 down"}';

describe('webhook signature', () => {
  it('is t=<unix seconds>,v1=<hex HMAC-SHA256 of t.body> and verifies', () => {
    const header = signatureHeader(KEY, BODY, NOW);
    expect(header).toMatch(/^t=1772366400,v1=[0-9a-f]{64}$/);
    expect(verifySignature(KEY, header, BODY, NOW)).toBe(true);
    expect(verifySignature(KEY, header, Buffer.from(BODY), NOW + 60_000)).toBe(true);
  });

  it('detects a changed body, a wrong key and a changed timestamp', () => {
    const header = signatureHeader(KEY, BODY, NOW);
    expect(verifySignature(KEY, header, BODY.replace('down', 'up'), NOW)).toBe(false);
    expect(verifySignature('another-key', header, BODY, NOW)).toBe(false);
    expect(verifySignature(KEY, header.replace('t=1772366400', 't=1772366460'), BODY, NOW)).toBe(false);
  });

  it('rejects a timestamp outside the tolerance either way (replays, wrong clocks)', () => {
    const header = signatureHeader(KEY, BODY, NOW);
    expect(verifySignature(KEY, header, BODY, NOW + 5 * 60_000)).toBe(true);
    expect(verifySignature(KEY, header, BODY, NOW + 5 * 60_000 + 1000)).toBe(false);
    expect(verifySignature(KEY, header, BODY, NOW - 6 * 60_000)).toBe(false);
    expect(verifySignature(KEY, header, BODY, NOW + 20 * 60_000, 30 * 60_000)).toBe(true);
  });

  it('accepts any of several v1 values (a key being rotated)', () => {
    const good = signatureHeader(KEY, BODY, NOW).split(',v1=')[1]!;
    expect(verifySignature(KEY, `t=1772366400,v1=${'0'.repeat(64)},v1=${good}`, BODY, NOW)).toBe(true);
  });

  it('fails closed on an empty secret, a NaN or infinite clock or tolerance, and a negative tolerance', () => {
    const old = signatureHeader(KEY, BODY, NOW - 30 * 86_400_000);
    expect(verifySignature(KEY, old, BODY, NOW, Number.NaN)).toBe(false);
    expect(verifySignature(KEY, old, BODY, NOW, Infinity)).toBe(false);
    expect(verifySignature(KEY, old, BODY, Number.NaN)).toBe(false);
    expect(verifySignature(KEY, old, BODY, Infinity)).toBe(false);
    const fresh = signatureHeader(KEY, BODY, NOW);
    expect(verifySignature(KEY, fresh, BODY, NOW, -1)).toBe(false);
    expect(verifySignature(KEY, fresh, BODY, NOW, 0)).toBe(true);
    // Anyone can compute an HMAC with an empty key: a receiver whose secret is unset accepts nothing.
    expect(verifySignature('', signatureHeader('', 'forged', NOW), 'forged', NOW)).toBe(false);
  });

  it.each([
    [undefined],
    [''],
    ['v1=abc'],
    ['t=1772366400'],
    ['t=abc,v1=' + '0'.repeat(64)],
    ['t=1772366400,v1=zz'],
    ['garbage'],
  ])('a malformed header %j is false', (header) => {
    expect(verifySignature(KEY, header, BODY, NOW)).toBe(false);
  });
});
