/**
 * One email through SMTP (nodemailer), to a checked address, and what the server's answer means for a retry.
 *
 * nodemailer connects to the address that was checked (never a second DNS answer) while TLS still verifies
 * the certificate for the configured host name. The attempt's signal ends the conversation at once; the
 * connection, greeting and socket timeouts make sure a server that never greets cannot hold it either.
 */
import type { LookupAddress } from 'node:dns';
import { performance } from 'node:perf_hooks';
import type { SMTPTransportOptions } from 'nodemailer';
import { isTransientNetworkError } from './http.ts';

/** Where to send through and how to log in, from a channel's `smtpUrl`. */
export interface SmtpTarget {
  host: string;
  port: number;
  /** smtps:// (TLS from the first byte); smtp:// upgrades with STARTTLS. */
  secure: boolean;
  /**
   * smtp:// only: STARTTLS is required, so that neither the login nor the message crosses the network in
   * plain text when the server does not offer it (or someone on the path strips the offer). Off for a
   * loopback host (`localhost`, `127.x.x.x`, `[::1]`: a relay on the same machine) and with `?tls=optional`.
   */
  requireTls: boolean;
  auth?: { user: string; pass: string } | undefined;
}

/** The smtpUrl parameter that allows plain text when the server offers no STARTTLS. */
export const SMTP_TLS_OPTIONAL = 'tls=optional';

/** A host that is this machine: mail to it never crosses a network. */
function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || /^127(\.\d{1,3}){3}$/.test(h) || h === '[::1]';
}

/**
 * `smtp://user:pass@host:587` or `smtps://…` → the target, or why it cannot be used (never quoting it).
 * One parameter is understood: `?tls=optional` (smtp:// only) sends in plain text when the server offers
 * no STARTTLS; `?tls=required` is the default.
 */
export function parseSmtpUrl(text: string): SmtpTarget | { problem: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { problem: 'smtpUrl is not a URL (smtp://user:pass@host:587)' };
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:')
    return { problem: 'smtpUrl must be smtp:// or smtps://' };
  if (url.hostname === '') return { problem: 'smtpUrl has no host' };
  const secure = url.protocol === 'smtps:';
  let tls = 'required';
  for (const [key, value] of url.searchParams) {
    if (key !== 'tls')
      return { problem: `smtpUrl has an unknown parameter "${cutName(key)}" (only ${SMTP_TLS_OPTIONAL})` };
    if (value !== 'required' && value !== 'optional')
      return { problem: 'smtpUrl parameter tls must be "required" or "optional"' };
    if (secure && value === 'optional')
      return { problem: 'smtpUrl: tls=optional is for smtp:// (smtps:// is TLS from the first byte)' };
    tls = value;
  }
  let auth: SmtpTarget['auth'];
  try {
    if (url.username)
      auth = { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) };
  } catch {
    return { problem: 'smtpUrl has a badly percent-encoded user or password' };
  }
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : secure ? 465 : 587,
    secure,
    requireTls: !secure && tls === 'required' && !isLoopbackHost(url.hostname),
    auth,
  };
}

/** A parameter name as shown in an error: printable, short. */
function cutName(name: string): string {
  const shown = name.replace(/[^\x21-\x7e]/g, '?');
  return shown.length > 30 ? `${shown.slice(0, 29)}…` : shown;
}

export interface Mail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  messageId: string;
  date: Date;
  headers: Record<string, string>;
}

/**
 * Sends `mail` and answers the server's reply to the message (`250 2.0.0 queued as …`). The addresses are
 * tried in order while nothing has been said yet: a refused or unreachable address, or one that does not
 * greet in its share of the time left, moves on to the next, all before `deadlineAt` (a
 * `performance.now()` time). Once a server has greeted, its answer is the outcome.
 */
export async function sendOnce(
  target: SmtpTarget,
  addresses: LookupAddress[],
  mail: Mail,
  deadlineAt: number,
  signal: AbortSignal,
): Promise<{ response: string; rejected: string[] }> {
  const nodemailer = await import('nodemailer');
  for (let i = 0; ; i += 1) {
    const left = Math.max(1, Math.round(deadlineAt - performance.now()));
    const last = i === addresses.length - 1;
    // Connecting and the greeting get a share of the time left, so that a silent first address leaves
    // time for the next one.
    const setup = last ? left : Math.max(1, Math.floor(left / (addresses.length - i)));
    const options: SMTPTransportOptions = {
      host: addresses[i]!.address,
      port: target.port,
      secure: target.secure,
      requireTLS: target.requireTls,
      servername: target.host,
      tls: { servername: target.host },
      ...(target.auth ? { auth: target.auth } : {}),
      connectionTimeout: setup,
      greetingTimeout: setup,
      socketTimeout: left,
    };
    const transport = nodemailer.createTransport(options);
    try {
      const info = await transport.sendMail({ ...mail, signal });
      const rejected: string[] = info.rejected;
      return { response: info.response, rejected };
    } catch (err) {
      if (last || signal.aborted || !beforeGreeting(err)) throw err;
    } finally {
      transport.close();
    }
  }
}

/** An error from before the server said anything: nothing was sent, another address may do better. */
function beforeGreeting(err: unknown): boolean {
  const { command, syscall, timeoutType } = (err ?? {}) as {
    command?: unknown;
    syscall?: unknown;
    timeoutType?: unknown;
  };
  if (command !== 'CONN') return false;
  return syscall === 'connect' || timeoutType === 'CONNECT_TIMEOUT' || timeoutType === 'GREETING_TIMEOUT';
}

/** The server refused STARTTLS (or did not offer it) while it was required: a reply, not a broken line. */
export function startTlsRefused(err: unknown): number | undefined {
  const { command, responseCode } = (err ?? {}) as { command?: unknown; responseCode?: unknown };
  return command === 'STARTTLS' && typeof responseCode === 'number' ? responseCode : undefined;
}

/** What an SMTP failure means: a 4xx reply or a broken connection may pass later, a 5xx reply will not. */
export function isTransientSmtpError(err: unknown): boolean {
  const { responseCode, code } = (err ?? {}) as { responseCode?: unknown; code?: unknown };
  if (typeof responseCode === 'number' && responseCode >= 400 && responseCode < 600)
    return responseCode < 500;
  switch (code) {
    case 'ECONNECTION':
    case 'ETIMEDOUT':
    case 'ESOCKET':
    case 'EDNS':
    case 'EPROTOCOL': {
      // A certificate the server presents now it will present in a minute too.
      const message = (err as { message?: unknown }).message;
      return !(typeof message === 'string' && /certificate/i.test(message));
    }
    case 'EAUTH':
    case 'ENOAUTH':
    case 'EENVELOPE':
    case 'EMESSAGE':
    case 'ETLS':
    case 'EREQUIRETLS':
    case 'ECONFIG':
      return false;
    default:
      return isTransientNetworkError(err);
  }
}
