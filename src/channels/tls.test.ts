import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import type { OutboundMessage } from '../ops/contracts.ts';
import { createChannels, type Resolve } from './index.ts';
import { PASS, testConfig } from './test-support.ts';

const run = promisify(execFile);
const loopback: Resolve = () => Promise.resolve([{ address: '127.0.0.1', family: 4 }]);

const message: OutboundMessage = {
  deliveryId: 'tls-1',
  kind: 'page',
  subject: 'INC-3: store latency',
  text: 'p99 above 2 s',
};

/**
 * TLS peers with a self-signed certificate (made with openssl) for the host names the channels use: the
 * certificate is refused (not retried), and the TLS server name sent is the configured host even though the
 * connection goes to the checked address.
 */
describe('channels over TLS (self-signed peers)', () => {
  const clock = new ManualClock('2026-03-01T12:00:00Z');
  let dir: string;
  let key: Buffer;
  let cert: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gameops-channels-tls-'));
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=hooks.test',
      '-addext',
      'subjectAltName=DNS:hooks.test,DNS:mail.test',
    ]);
    key = await readFile(join(dir, 'key.pem'));
    cert = await readFile(join(dir, 'cert.pem'));
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('https webhook: an untrusted certificate is not retried; SNI names the configured host', async () => {
    const names: string[] = [];
    let requests = 0;
    const context = createSecureContext({ key, cert });
    const server = createHttpsServer(
      {
        key,
        cert,
        SNICallback: (servername, callback) => {
          names.push(servername);
          callback(null, context);
        },
      },
      (_req, res) => {
        requests += 1;
        res.writeHead(204).end();
      },
    );
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (server.address() as AddressInfo).port;
      const config = testConfig([
        'notifications:',
        '  allowPrivate: [hooks.test]',
        `  channels: [{ name: hook, kind: webhook, url: "https://hooks.test:${port}/x" }]`,
      ]);
      const outcome = await createChannels(config, { clock, resolve: loopback }).attempt('hook', message);
      expect(outcome).toMatchObject({ ok: false, code: 'unavailable', retryable: false });
      expect(!outcome.ok && outcome.error).toMatch(/self[- ]signed certificate/);
      expect(names).toEqual(['hooks.test']);
      expect(requests).toBe(0);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('smtps: an untrusted certificate is not retried; SNI names the configured host, not the address', async () => {
    const names: string[] = [];
    let mails = 0;
    const context = createSecureContext({ key, cert });
    const server = new SMTPServer({
      secure: true,
      key,
      cert,
      authOptional: true,
      logger: false,
      SNICallback: (servername, callback) => {
        names.push(servername);
        callback(null, context);
      },
      onData(stream, _session, callback) {
        mails += 1;
        stream.resume();
        stream.on('end', () => callback());
      },
    });
    server.on('error', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (server.server.address() as AddressInfo).port;
      const config = testConfig(
        [
          'notifications:',
          '  allowPrivate: [mail.test]',
          '  channels: [{ name: mail, kind: email, smtpUrl: "env:SMTPS_URL", from: "gameops@example.com", to: [oncall@example.com] }]',
        ],
        { SMTPS_URL: `smtps://pager:${PASS}@mail.test:${port}` },
      );
      const outcome = await createChannels(config, { clock, resolve: loopback, timeoutMs: 2000 }).attempt(
        'mail',
        message,
      );
      expect(outcome).toMatchObject({ ok: false, retryable: false, destination: `mail.test:${port}` });
      expect(!outcome.ok && outcome.error).toMatch(/certificate/);
      expect(JSON.stringify(outcome)).not.toContain(PASS);
      expect(names).toEqual(['mail.test']);
      expect(mails).toBe(0);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
