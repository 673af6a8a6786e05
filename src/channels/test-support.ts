/**
 * Real local peers for channel tests: an HTTP receiver on a loopback address with a handler per path, an
 * SMTP server (smtp-server), a TCP server that accepts connections and never says anything, and a config
 * built from YAML lines.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { parseConfigText, readEnv, type GameopsConfig } from '../config/index.ts';

export interface Received {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  /** The raw body, as sent (signatures are over these bytes). */
  body: string;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

export interface Receiver {
  host: string;
  port: number;
  /** `http://<host>:<port>` */
  base: string;
  received: Received[];
  /** Requests to `path` so far. */
  at(path: string): Received[];
  close(): Promise<void>;
}

/**
 * An HTTP receiver on `host` (default 127.0.0.1) and `port` (default: a free one). Handlers are chosen by
 * path without the query; a path without a handler answers 204.
 */
export async function startReceiver(
  handlers: Record<string, Handler> = {},
  options: { host?: string; port?: number } = {},
): Promise<Receiver> {
  const host = options.host ?? '127.0.0.1';
  const received: Received[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '';
      received.push({ method: req.method ?? '', path, headers: req.headers, body });
      const handler = handlers[path.split('?')[0]!];
      if (handler) handler(req, res, body);
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host,
    port,
    base: `http://${host}:${port}`,
    received,
    at: (path) => received.filter((r) => r.path === path),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A TCP server on `host` and `port` (default: a free one) that accepts every connection and never sends a byte (a hung peer). */
export async function startSilentServer(
  host = '127.0.0.1',
  port = 0,
): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createTcpServer((socket) => {
    count += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(port, host, () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => count,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A config of `service: test-game (test)` plus `yaml`, secrets read from `env`. */
export function testConfig(yaml: string | string[], env: Record<string, string> = {}): GameopsConfig {
  const text = Array.isArray(yaml) ? yaml.join('\n') : yaml;
  return parseConfigText(
    `service: { name: test-game, environment: test }\n${text}\n`,
    'test.yaml',
    readEnv(env),
  ).config;
}

/** The SMTP test server's password for user `pager`. */
export const PASS = 'smtp-pass-9d8c';

export interface Mail {
  from: string;
  to: string[];
  raw: string;
}

function smtpError(message: string, responseCode: number): Error {
  return Object.assign(new Error(message), { responseCode });
}

/**
 * An SMTP server in the test process (smtp-server): plain text (no STARTTLS to negotiate), login optional
 * but checked when given (user `pager`, password {@link PASS}; each login's user name is kept in `logins`);
 * `busy@…` is refused for now (451), `nobody@…` for good (550).
 */
export async function startSmtp(
  host = '127.0.0.1',
  port = 0,
): Promise<{ port: number; mails: Mail[]; logins: string[]; close: () => Promise<void> }> {
  const mails: Mail[] = [];
  const logins: string[] = [];
  const options: SMTPServerOptions = {
    secure: false,
    authOptional: true,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth(auth, _session, callback) {
      logins.push(auth.username ?? '');
      if (auth.username === 'pager' && auth.password === PASS) callback(null, { user: 'pager' });
      else callback(smtpError('Invalid username or password', 535));
    },
    onRcptTo(address, _session, callback) {
      if (address.address.startsWith('busy@')) callback(smtpError('Mailbox busy, try again later', 451));
      else if (address.address.startsWith('nobody@')) callback(smtpError('No such user here', 550));
      else callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const from = session.envelope.mailFrom;
        mails.push({
          from: from ? from.address : '',
          to: session.envelope.rcptTo.map((a) => a.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback(null, `queued as T${mails.length}`);
      });
    },
  };
  const server = new SMTPServer(options);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.server.address() as AddressInfo).port,
    mails,
    logins,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
