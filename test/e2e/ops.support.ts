/**
 * The moving parts of the incident-response end-to-end tests (test/e2e/incident-response.e2e.test.ts,
 * test/e2e/alert-intake.e2e.test.ts) and the alert-intake benchmark (bench/alert-intake.ts): a real
 * `gameops serve` process, the CLI as a process, an SMTP server and a webhook receiver that record what
 * gameops sends them, and polling.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { SMTPServer } from 'smtp-server';
import { logTail, spawnServer, stopServer, waitUntilReady, type ServerProcess } from '../harness/proc.ts';
import { runProcess, type ProcessResult } from '../support/process.ts';

/** The CLI's entry point (run from source, like bin/gameops does on an edited tree). */
export const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** The environment gameops processes run with: this PATH and HOME, nothing of the caller's GAMEOPS_*. */
function gameopsEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? tmpdir(),
    NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'gameops-e2e-ncc'),
    ...extra,
  };
}

/** A running `gameops serve`. */
export interface ServeProcess {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly process: ServerProcess;
  /** SIGKILL: no clean shutdown, as in a crash. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
  /** The last lines of its log (stdout and stderr). */
  logTail(lines?: number): string;
}

/**
 * Starts `gameops serve --port <port> --config <config>` and waits until `/healthz` answers. Its output
 * is appended to `logFile`, so a restarted server's log follows the first one's.
 */
export async function startServe(options: {
  config: string;
  port: number;
  logFile: string;
  env?: Record<string, string>;
}): Promise<ServeProcess> {
  const url = `http://127.0.0.1:${options.port}`;
  const server = await spawnServer({
    name: 'gameops serve',
    command: process.execPath,
    args: [MAIN, 'serve', '--port', String(options.port), '--config', options.config],
    logFile: options.logFile,
    env: gameopsEnv(options.env),
  });
  await waitUntilReady(server, async () => {
    const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
    await response.body?.cancel();
    return response.status === 200;
  });
  return {
    url,
    port: options.port,
    process: server,
    kill: async () => {
      if (server.exited()) return;
      process.kill(server.pid, 'SIGKILL');
      await server.exit;
    },
    stop: () => stopServer(server),
    logTail: (lines = 60) => logTail(options.logFile, lines),
  };
}

export type CliResult = ProcessResult;

/** Runs the gameops CLI as a separate process (argument array, no shell). */
export function gameops(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runProcess(process.execPath, [MAIN, ...args], { env: gameopsEnv(env) });
}

/**
 * Polls `probe` every `everyMs` until it returns a value other than undefined/false, or throws after
 * `timeoutMs` with `what` and the probe's last error.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; everyMs?: number; detail?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let last = '';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}${last ? ` (last error: ${last})` : ''}${options.detail ? `\n${options.detail()}` : ''}`,
      );
    await delay(options.everyMs ?? 200);
  }
}

// ---------------------------------------------------------------------------------------------------
// SMTP: an in-process server that keeps every message

/** One message as the SMTP server received it, decoded enough for assertions. */
export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** The text/plain part, transfer-decoded. */
  text: string;
  raw: string;
}

export interface SmtpSink {
  readonly port: number;
  readonly messages: ReceivedMail[];
  /** Messages refused by the `reject` option. */
  readonly rejected: ReceivedMail[];
  close(): Promise<void>;
}

/**
 * An SMTP server on 127.0.0.1 (no TLS, no auth) that records every message it accepts. A message for
 * which `reject` returns true is refused at the end of DATA with a permanent `550` (and not recorded in
 * `messages` but in `rejected`).
 */
export async function startSmtp(
  options: { reject?: (mail: ReceivedMail) => boolean } = {},
): Promise<SmtpSink> {
  const messages: ReceivedMail[] = [];
  const rejected: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const parsed = parseMail(raw);
        const mail: ReceivedMail = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          subject: decodeHeader(parsed.headers['subject'] ?? ''),
          headers: parsed.headers,
          text: parsed.text,
          raw,
        };
        if (options.reject?.(mail)) {
          rejected.push(mail);
          callback(Object.assign(new Error('mailbox unavailable'), { responseCode: 550 }));
          return;
        }
        messages.push(mail);
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    messages,
    rejected,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Headers (unfolded, names lower-cased) and body of one MIME entity. */
function splitEntity(raw: string): { headers: Record<string, string>; body: string } {
  const cut = raw.search(/\r?\n\r?\n/);
  const head = cut < 0 ? raw : raw.slice(0, cut);
  const body = cut < 0 ? '' : raw.slice(cut).replace(/^\r?\n\r?\n/, '');
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body };
}

function transferDecode(body: string, encoding: string | undefined): string {
  switch ((encoding ?? '').toLowerCase()) {
    case 'base64':
      return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
    case 'quoted-printable':
      return Buffer.from(
        body
          .replace(/=\r?\n/g, '')
          .replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
        'latin1',
      ).toString('utf8');
    default:
      return body;
  }
}

/** The message's headers and its first text/plain part (nodemailer sends multipart/alternative with HTML). */
function parseMail(raw: string): { headers: Record<string, string>; text: string } {
  const top = splitEntity(raw);
  const findText = (entity: { headers: Record<string, string>; body: string }): string | undefined => {
    const type = entity.headers['content-type'] ?? 'text/plain';
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
    if (/^multipart\//i.test(type) && boundary) {
      for (const part of entity.body.split(`--${boundary}`).slice(1)) {
        if (part.startsWith('--')) break;
        const found = findText(splitEntity(part.replace(/^\r?\n/, '')));
        if (found !== undefined) return found;
      }
      return undefined;
    }
    if (/^text\/plain/i.test(type))
      return transferDecode(entity.body, entity.headers['content-transfer-encoding']);
    return undefined;
  };
  return { headers: top.headers, text: findText(top) ?? '' };
}

/** RFC 2047 encoded words (`=?UTF-8?Q?…?=`, `=?UTF-8?B?…?=`) in a header. */
function decodeHeader(value: string): string {
  return value
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([QB])\?([^?]*)\?=/gi, (_, _charset: string, kind: string, text: string) =>
      kind.toUpperCase() === 'B'
        ? Buffer.from(text, 'base64').toString('utf8')
        : Buffer.from(
            text
              .replace(/_/g, ' ')
              .replace(/=([0-9A-F]{2})/gi, (__, hex: string) => String.fromCharCode(parseInt(hex, 16))),
            'latin1',
          ).toString('utf8'),
    );
}

// ---------------------------------------------------------------------------------------------------
// Webhook receiver: an in-process HTTP server that keeps every request

export interface ReceivedHook {
  at: number;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: unknown;
}

export interface WebhookSink {
  /** `http://127.0.0.1:<port>/hook` */
  readonly url: string;
  readonly requests: ReceivedHook[];
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 that answers 204 to everything and records each request. */
export async function startWebhookSink(): Promise<WebhookSink> {
  const requests: ReceivedHook[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(body) as unknown;
      } catch {
        json = undefined;
      }
      requests.push({
        at: Date.now(),
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        json,
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------------
// Files

/** Writes `text` into `dir/name` readable by its owner only, and returns the path. */
export function writePrivate(dir: string, name: string, text: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

/** An Alertmanager config whose one receiver is gameops's webhook endpoint. */
export function alertmanagerConfig(options: {
  gameopsUrl: string;
  credentialsFile: string;
  groupBy: string[];
  groupInterval: string;
  repeatInterval?: string;
}): string {
  return `# Written by the gameops e2e tests: every alert goes to gameops.
route:
  receiver: gameops
  group_by: ${JSON.stringify(options.groupBy)}
  group_wait: 0s
  group_interval: ${options.groupInterval}
  repeat_interval: ${options.repeatInterval ?? '1h'}
receivers:
  - name: gameops
    webhook_configs:
      - url: ${options.gameopsUrl}/api/alerts/alertmanager
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials_file: ${options.credentialsFile}
`;
}
