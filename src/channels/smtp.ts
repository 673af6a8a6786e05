/**
 * One email through SMTP (nodemailer), to a checked address, and what the server's answer means for a retry.
 *
 * nodemailer connects to the address that was checked (never a second DNS answer) while TLS still verifies
 * the certificate for the configured host name. The attempt's signal ends the conversation at once; the
 * connection, greeting and socket timeouts make sure a server that never greets cannot hold it either.
 */
import type { LookupAddress } from 'node:dns';
import type { SMTPTransportOptions } from 'nodemailer';
import { isTransientNetworkError } from './http.ts';

/** Where to send through and how to log in, from a channel's `smtpUrl`. */
export interface SmtpTarget {
  host: string;
  port: number;
  /** smtps:// (TLS from the first byte); smtp:// upgrades with STARTTLS when the server offers it. */
  secure: boolean;
  auth?: { user: string; pass: string } | undefined;
}

/** `smtp://user:pass@host:587` or `smtps://…` → the target, or why it cannot be used (never quoting it). */
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
  let auth: SmtpTarget['auth'];
  try {
    if (url.username)
      auth = { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) };
  } catch {
    return { problem: 'smtpUrl has a badly percent-encoded user or password' };
  }
  return { host: url.hostname, port: url.port ? Number(url.port) : secure ? 465 : 587, secure, auth };
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

/** Sends `mail` and answers the server's reply to the message (`250 2.0.0 queued as …`). */
export async function sendOnce(
  target: SmtpTarget,
  addresses: LookupAddress[],
  mail: Mail,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ response: string; rejected: string[] }> {
  const nodemailer = await import('nodemailer');
  const options: SMTPTransportOptions = {
    host: addresses[0]!.address,
    port: target.port,
    secure: target.secure,
    servername: target.host,
    tls: { servername: target.host },
    ...(target.auth ? { auth: target.auth } : {}),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  };
  const transport = nodemailer.createTransport(options);
  try {
    const info = await transport.sendMail({ ...mail, signal });
    const rejected: string[] = info.rejected;
    return { response: info.response, rejected };
  } finally {
    transport.close();
  }
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
