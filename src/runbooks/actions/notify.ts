/**
 * Notifications of runbook `notify` steps: one configured channel per message, delivered over HTTP (a
 * generic webhook with a bearer token, or a Slack incoming webhook) or SMTP (nodemailer).
 *
 * Every destination is checked before anything is sent: it must resolve only to public addresses, unless
 * its host is listed in `notifications.allowPrivate` (then loopback, private and link-local addresses are
 * allowed for it); the connection goes to exactly the addresses checked, no redirect is followed, the
 * response is read up to 64 KiB and the whole delivery has a deadline. Slack webhook URLs and SMTP URLs are
 * secrets: errors name their host only.
 */
import type { LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { z } from 'zod';
import type { GameopsConfig } from '../../config/index.ts';
import { checkDestination, pinnedLookup, type Resolve } from '../../connectors/outbound.ts';
import {
  InputError,
  maskSecrets,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
  errorMessage,
  type Secret,
} from '../../core/index.ts';
import type { ActionDefinition } from '../model.ts';
import { servicesOf } from './services.ts';

const MAX_RESPONSE_BYTES = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_MESSAGE_CHARS = 10_000;

type Channel = GameopsConfig['notifications']['channels'][number];

export interface Delivery {
  channel: string;
  kind: Channel['kind'];
  /** Where it went, without path or credentials: `hooks.slack.com`, `smtp.example.com:587`. */
  destination: string;
  /** HTTP status, or the SMTP server's answer. */
  response: string;
}

export interface Notifier {
  /** The configured channel names. */
  channels(): string[];
  /**
   * Delivers `message` to the channel named `channel`.
   * @throws NotFoundError for an unknown channel, NotAllowedError for a refused destination,
   *   UnavailableError when delivery fails or times out.
   */
  send(channel: string, message: string, signal?: AbortSignal): Promise<Delivery>;
  /** The engine's `notify` option: a message without a channel goes to the run log only (nothing sent). */
  notify(channel: string | undefined, message: string, signal: AbortSignal): Promise<void>;
}

export interface NotifierOptions {
  /** @default the system resolver */
  resolve?: Resolve;
  /** @default 10 s */
  timeoutMs?: number;
}

/** A notifier over `config.notifications`. Nothing is opened until a message is sent. */
export function createNotifier(config: GameopsConfig, options: NotifierOptions = {}): Notifier {
  const channels = config.notifications.channels;
  const allowPrivate = config.notifications.allowPrivate;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const meta = { service: config.service.name, environment: config.service.environment };

  async function destination(url: URL, channel: string): Promise<LookupAddress[]> {
    const checked = await checkDestination(url.hostname, {
      allowPrivate,
      ...(options.resolve ? { resolve: options.resolve } : {}),
      allowHint: (host) => `list "${host}" in notifications.allowPrivate to send there`,
    });
    if (!checked.ok) throw new NotAllowedError(`notification channel "${channel}": ${checked.why}`);
    return checked.addresses;
  }

  async function send(name: string, message: string, signal?: AbortSignal): Promise<Delivery> {
    const channel = channels.find((c) => c.name === name);
    if (!channel)
      throw new NotFoundError(
        `no notification channel named "${name}" (configured: ${channels.map((c) => c.name).join(', ') || 'none'})`,
      );
    if (message.length === 0) throw new InputError('message: empty');
    const text = message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
    const deadline = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, deadline]) : deadline;
    const secrets: Secret[] = [];
    try {
      switch (channel.kind) {
        case 'webhook': {
          const url = parseUrl(channel.url, name);
          if (channel.token) secrets.push(channel.token);
          const addresses = await destination(url, name);
          const headers: Record<string, string> = {};
          if (channel.token) headers['authorization'] = `Bearer ${channel.token.reveal()}`;
          const body = { text, channel: name, ...meta, at: new Date().toISOString() };
          const status = await postJson(url, body, headers, addresses, combined);
          return { channel: name, kind: 'webhook', destination: url.host, response: status };
        }
        case 'slack': {
          secrets.push(channel.webhookUrl);
          const url = parseUrl(channel.webhookUrl.reveal(), name);
          const addresses = await destination(url, name);
          const status = await postJson(url, { text }, {}, addresses, combined);
          return { channel: name, kind: 'slack', destination: url.host, response: status };
        }
        case 'discord': {
          secrets.push(channel.webhookUrl);
          const url = parseUrl(channel.webhookUrl.reveal(), name);
          const addresses = await destination(url, name);
          const body = { content: text.slice(0, 2000), allowed_mentions: { parse: [] } };
          const status = await postJson(url, body, {}, addresses, combined);
          return { channel: name, kind: 'discord', destination: url.host, response: status };
        }
        case 'email': {
          secrets.push(channel.smtpUrl);
          return await sendMail(channel, name, text, combined);
        }
      }
    } catch (err) {
      if (signal?.aborted && err === signal.reason) throw err;
      if (err instanceof NotAllowedError || err instanceof InputError || err instanceof NotFoundError)
        throw err;
      const why = deadline.aborted ? `no answer within ${timeoutMs} ms` : errorMessage(err);
      throw new UnavailableError(
        maskSecrets(`notification channel "${name}" (${channel.kind}): delivery failed: ${why}`, secrets),
      );
    }
  }

  async function sendMail(
    channel: Extract<Channel, { kind: 'email' }>,
    name: string,
    text: string,
    signal: AbortSignal,
  ): Promise<Delivery> {
    let url: URL;
    try {
      url = new URL(channel.smtpUrl.reveal());
    } catch {
      throw new InputError(
        `notification channel "${name}": smtpUrl is not a URL (smtp://user:pass@host:587)`,
      );
    }
    if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:')
      throw new InputError(`notification channel "${name}": smtpUrl must be smtp:// or smtps://`);
    const addresses = await destination(url, name);
    const secure = url.protocol === 'smtps:';
    const port = url.port ? Number(url.port) : secure ? 465 : 587;
    const nodemailer = await import('nodemailer');
    const transport = nodemailer.createTransport({
      // The address checked, never a second DNS answer; TLS still verifies the certificate for the name.
      host: addresses[0]!.address,
      port,
      secure,
      name: 'gameops',
      ...(url.username
        ? { auth: { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) } }
        : {}),
      tls: { servername: url.hostname },
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    });
    const abort = (): void => transport.close();
    signal.addEventListener('abort', abort, { once: true });
    try {
      const info = await transport.sendMail({
        from: channel.from,
        to: channel.to,
        subject: `[gameops] ${meta.service} (${meta.environment}): ${text.split('\n')[0]!.slice(0, 120)}`,
        text,
      });
      return {
        channel: name,
        kind: 'email',
        destination: `${url.hostname}:${port}`,
        response: String(info.response ?? 'sent'),
      };
    } finally {
      signal.removeEventListener('abort', abort);
      transport.close();
    }
  }

  return {
    channels: () => channels.map((c) => c.name),
    send,
    async notify(channel, message, signal) {
      if (channel === undefined) return;
      await send(channel, message, signal);
    },
  };
}

function parseUrl(text: string, channel: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InputError(`notification channel "${channel}": its URL is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InputError(`notification channel "${channel}": its URL must be http:// or https://`);
  if (url.username !== '' || url.password !== '')
    throw new InputError(`notification channel "${channel}": credentials in the URL are not allowed`);
  return url;
}

/** POSTs JSON to `url` at exactly `addresses`; no redirect followed; the answer read up to 64 KiB. */
async function postJson(
  url: URL,
  body: unknown,
  headers: Record<string, string>,
  addresses: LookupAddress[],
  signal: AbortSignal,
): Promise<string> {
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(url, {
      method: 'POST',
      headers: {
        ...headers,
        'content-type': 'application/json',
        'content-length': String(payload.length),
        'user-agent': 'gameops',
      },
      lookup: pinnedLookup(addresses),
      agent: false,
      signal,
    });
    req.once('response', resolve);
    req.once('error', reject);
    req.end(payload);
  });
  const status = res.statusCode ?? 0;
  const text = await readCapped(res, MAX_RESPONSE_BYTES);
  if (status >= 300 && status < 400)
    throw new Error(`answered a redirect (HTTP ${status}); redirects are not followed`);
  if (status < 200 || status >= 300)
    throw new Error(`answered HTTP ${status}${text ? `: ${oneLine(text).slice(0, 200)}` : ''}`);
  return `HTTP ${status}`;
}

async function readCapped(res: IncomingMessage, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      res.destroy();
      throw new Error(`answered more than ${max / 1024} KiB; not read further`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function oneLine(text: string): string {
  return text.replace(/[\r\n\t]+/g, ' ').replace(/[^\x20-\x7e\u00a0-\uffff]/g, '?');
}

const sendArgs = z.strictObject({
  channel: z.string().min(1).max(100).describe('A channel of notifications.channels.'),
  message: z.string().min(1).max(MAX_MESSAGE_CHARS),
});

const sendAction: ActionDefinition<z.infer<typeof sendArgs>, Delivery> = {
  name: 'notify.send',
  description: 'Sends a message to a configured notification channel (webhook, Slack, email).',
  effect: 'mutating',
  idempotent: false,
  args: sendArgs,
  target: (args) => `notification channel ${args.channel}`,
  async run(args, ctx) {
    const delivery = await servicesOf(ctx).notifier.send(args.channel, args.message, ctx.signal);
    ctx.log(`delivered to ${delivery.destination}: ${delivery.response}`);
    return delivery;
  },
};

/** The notification actions. */
export const notifyActions: ActionDefinition[] = [sendAction];
