/**
 * The configured notification channels (`notifications.channels`) and one delivery attempt through one of
 * them. Retries, escalation and the record of attempts belong to the caller (src/oncall); an attempt says
 * whether trying again can help and, when the peer said, after how long.
 *
 * Every destination is checked before anything is sent: it must resolve only to public addresses unless
 * its host is listed in `notifications.allowPrivate`, and the connection goes to exactly the addresses
 * checked (no DNS-rebinding bypass), for HTTP and SMTP alike. Webhook URLs, tokens, signing keys and SMTP
 * credentials never appear in an outcome: errors name the host only and are masked besides.
 */
import type { LookupAddress } from 'node:dns';
import { performance } from 'node:perf_hooks';
import type { GameopsConfig } from '../config/index.ts';
import { addressesOf, checkDestination, systemResolve, type Resolve } from '../connectors/outbound.ts';
import {
  errorMessage,
  maskSecrets,
  secret,
  systemClock,
  VERSION,
  type Clock,
  type ErrorCode,
  type Secret,
} from '../core/index.ts';
import type { AttemptOutcome, ChannelKind, OutboundMessage } from '../ops/contracts.ts';
import { classifyAnswer, configProblem, isTransientNetworkError, postOnce, snippet } from './http.ts';
import { checkMessage } from './message.ts';
import { urlSecrets } from './redact.ts';
import { discordPayload, emailParts, slackPayload, webhookBody, type RenderContext } from './render.ts';
import { signatureHeader } from './signature.ts';
import { isTransientSmtpError, parseSmtpUrl, sendOnce, SMTP_TLS_OPTIONAL, startTlsRefused } from './smtp.ts';

type Channel = GameopsConfig['notifications']['channels'][number];

/** Why an attempt failed, in the error taxonomy's terms (for callers that turn an outcome into an error). */
export type AttemptFailureCode = Extract<ErrorCode, 'input' | 'not_found' | 'not_allowed' | 'unavailable'>;

/**
 * A failed attempt. `code`: `not_found` an unknown channel, `input` a message or channel configuration
 * that cannot be sent, `not_allowed` a refused destination, `unavailable` the peer failed or refused.
 */
export type AttemptFailure = Extract<AttemptOutcome, { ok: false }> & { code: AttemptFailureCode };

/** An AttemptOutcome whose failures also carry their {@link AttemptFailureCode}. */
export type ChannelOutcome = Extract<AttemptOutcome, { ok: true }> | AttemptFailure;

/** The configured channels, and one attempt at delivering a message through one of them. */
export interface Channels {
  /** The configured channel names, in config order. */
  names: () => string[];
  /** The kind of a configured channel; undefined for an unknown name. */
  kind: (name: string) => ChannelKind | undefined;
  /**
   * One attempt; never throws for delivery problems (unknown channel/refused destination → ok:false,
   * retryable:false). Only the caller's own `signal` aborting ends it with its reason thrown: the message
   * may or may not have arrived, and a later attempt with the same deliveryId lets the receiver deduplicate.
   */
  attempt: (channel: string, message: OutboundMessage, signal?: AbortSignal) => Promise<ChannelOutcome>;
}

export interface ChannelsOptions {
  /** @default the system resolver */
  resolve?: Resolve;
  /** The deadline of one attempt, from resolving the host to the end of the answer. @default oncall.delivery.timeout (10 s) */
  timeoutMs?: number;
  /** For `sentAt`, signature timestamps, email dates and Retry-After dates. @default the system clock */
  clock?: Clock;
}

/** A failure while attempting; turned into an outcome at the end of the attempt. */
class AttemptFailed extends Error {
  readonly code: AttemptFailureCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  constructor(code: AttemptFailureCode, retryable: boolean, message: string, retryAfterMs?: number) {
    super(message);
    this.code = code;
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

/** One attempt in progress: its deadline and what its error may not show. */
interface Attempt {
  /** The caller's signal and the deadline together. */
  signal: AbortSignal;
  deadline: AbortSignal;
  /** When the deadline falls, as a `performance.now()` time. */
  deadlineAt: number;
  secrets: Array<Secret | undefined>;
  destination: string | undefined;
}

const USER_AGENT = `gameops/${VERSION}`;

/** Channels over `config.notifications`. Nothing is opened until an attempt is made. */
export function createChannels(config: GameopsConfig, options: ChannelsOptions = {}): Channels {
  const byName = new Map<string, Channel>(config.notifications.channels.map((c) => [c.name, c]));
  const allowPrivate = config.notifications.allowPrivate;
  const resolve = options.resolve ?? systemResolve;
  const timeoutMs = options.timeoutMs ?? config.oncall.delivery.timeout;
  const clock = options.clock ?? systemClock;

  /** The failure for an error thrown while talking to the peer (the caller's own abort is rethrown later). */
  function failed(err: unknown, a: Attempt, transient: (err: unknown) => boolean): AttemptFailed {
    if (err instanceof AttemptFailed) return err;
    if (a.deadline.aborted) return new AttemptFailed('unavailable', true, `no answer within ${timeoutMs} ms`);
    const problem = configProblem(err);
    if (problem !== undefined) return new AttemptFailed('input', false, problem);
    return new AttemptFailed('unavailable', transient(err), errorMessage(err));
  }

  /** The addresses `host` may be reached at, resolved once: the connection goes to exactly these. */
  async function destination(host: string, a: Attempt): Promise<LookupAddress[]> {
    let addresses: LookupAddress[];
    try {
      addresses = await untilAborted(addressesOf(host, resolve), a.signal);
    } catch (err) {
      if (a.signal.aborted) throw failed(err, a, () => true);
      // Whatever the resolver says (no such name, no answer), a later attempt may get another answer.
      const code = (err as { code?: unknown } | null)?.code;
      throw new AttemptFailed(
        'unavailable',
        true,
        `cannot resolve ${host} (${typeof code === 'string' ? code : errorMessage(err)})`,
      );
    }
    const checked = await checkDestination(host, {
      allowPrivate,
      resolve: () => Promise.resolve(addresses),
      allowHint: (h) => `list "${h}" in notifications.allowPrivate to send there`,
    });
    if (!checked.ok) throw new AttemptFailed('not_allowed', false, checked.why);
    return checked.addresses;
  }

  /** POSTs a JSON body, classifying the answer. */
  async function post(url: URL, body: string, headers: Record<string, string>, a: Attempt): Promise<string> {
    a.destination = url.host;
    const addresses = await destination(url.hostname, a);
    let answer;
    try {
      answer = await postOnce(
        url,
        Buffer.from(body, 'utf8'),
        { ...headers, 'content-type': 'application/json', 'user-agent': USER_AGENT },
        addresses,
        a.signal,
      );
    } catch (err) {
      throw failed(err, a, isTransientNetworkError);
    }
    const verdict = classifyAnswer(answer, clock.now().getTime(), (text) => maskSecrets(text, a.secrets));
    if (!verdict.ok)
      throw new AttemptFailed('unavailable', verdict.retryable, verdict.error, verdict.retryAfterMs);
    return verdict.response;
  }

  async function deliver(channel: Channel, message: OutboundMessage, a: Attempt): Promise<string> {
    const now = clock.now();
    const ctx: RenderContext = {
      service: config.service.name,
      environment: config.service.environment,
      channel: channel.name,
      sentAt: now,
    };
    switch (channel.kind) {
      case 'webhook': {
        a.secrets.push(channel.token, channel.signingSecret);
        const url = httpUrl(channel.url, 'url', a, false);
        const body = JSON.stringify(webhookBody(message, ctx));
        const headers: Record<string, string> = {
          'x-gameops-delivery': message.deliveryId,
          'idempotency-key': message.deliveryId,
        };
        if (channel.signingSecret)
          headers['x-gameops-signature'] = signatureHeader(
            channel.signingSecret.reveal(),
            body,
            now.getTime(),
          );
        if (channel.token) headers['authorization'] = `Bearer ${channel.token.reveal()}`;
        return post(url, body, headers, a);
      }
      case 'slack': {
        a.secrets.push(channel.webhookUrl);
        const url = httpUrl(channel.webhookUrl.reveal(), 'webhookUrl', a, true);
        return post(url, JSON.stringify(slackPayload(message, ctx)), {}, a);
      }
      case 'discord': {
        a.secrets.push(channel.webhookUrl);
        const url = httpUrl(channel.webhookUrl.reveal(), 'webhookUrl', a, true);
        return post(url, JSON.stringify(discordPayload(message, ctx)), {}, a);
      }
      case 'email': {
        a.secrets.push(channel.smtpUrl);
        const target = parseSmtpUrl(channel.smtpUrl.reveal());
        if ('problem' in target) throw new AttemptFailed('input', false, target.problem);
        if (target.auth) a.secrets.push(secret(target.auth.pass, 'smtpUrl'));
        const to = message.recipient?.email ? [message.recipient.email] : channel.to;
        if (to.length === 0)
          throw new AttemptFailed(
            'input',
            false,
            `nowhere to send: ${message.recipient ? `${message.recipient.name} (${message.recipient.id}) has no email address` : 'the message has no recipient'} and the channel has no "to"`,
          );
        a.destination = `${target.host}:${target.port}`;
        const addresses = await destination(target.host, a);
        const parts = emailParts(message, ctx, channel.from);
        try {
          const sent = await sendOnce(
            target,
            addresses,
            { from: channel.from, to, date: now, ...parts },
            a.deadlineAt,
            a.signal,
          );
          return sent.rejected.length > 0
            ? `${sent.response} (refused: ${sent.rejected.join(', ')})`
            : sent.response;
        } catch (err) {
          const refused = startTlsRefused(err);
          if (refused !== undefined && !a.signal.aborted)
            throw new AttemptFailed(
              'input',
              false,
              `${target.host} does not offer STARTTLS (it answered ${refused}): neither the login nor the message is sent in plain text; add ?${SMTP_TLS_OPTIONAL} to the smtpUrl to allow that`,
            );
          throw failed(err, a, isTransientSmtpError);
        }
      }
    }
  }

  async function attempt(
    name: string,
    message: OutboundMessage,
    signal?: AbortSignal,
  ): Promise<ChannelOutcome> {
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);
    const channel = byName.get(name);
    if (!channel)
      return {
        ok: false,
        code: 'not_found',
        retryable: false,
        error: `no notification channel named "${name}" (configured: ${[...byName.keys()].join(', ') || 'none'})`,
        durationMs: elapsed(),
      };
    const checked = checkMessage(message);
    if (!checked.ok)
      return {
        ok: false,
        code: 'input',
        retryable: false,
        error: `notification channel "${name}": ${checked.why}`,
        durationMs: elapsed(),
      };
    signal?.throwIfAborted();
    const deadline = AbortSignal.timeout(timeoutMs);
    const a: Attempt = {
      signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
      deadline,
      deadlineAt: performance.now() + timeoutMs,
      secrets: [],
      destination: undefined,
    };
    try {
      const response = await deliver(channel, checked.message, a);
      return {
        ok: true,
        destination: a.destination ?? name,
        response: clean(response, a.secrets),
        durationMs: elapsed(),
      };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const f =
        err instanceof AttemptFailed ? err : new AttemptFailed('unavailable', true, errorMessage(err));
      return {
        ok: false,
        code: f.code,
        retryable: f.retryable,
        ...(f.retryAfterMs !== undefined ? { retryAfterMs: f.retryAfterMs } : {}),
        error: clean(`notification channel "${name}": ${f.message}`, a.secrets),
        ...(a.destination !== undefined ? { destination: a.destination } : {}),
        durationMs: elapsed(),
      };
    }
  }

  return {
    names: () => [...byName.keys()],
    kind: (name) => byName.get(name)?.kind,
    attempt,
  };
}

/**
 * An http(s) URL of a channel, its path, query and their parts added to what errors may not show, in
 * every form a peer may echo them (redact.ts): a Slack or Discord webhook's path is its credential
 * (`wholeUrlSecret`); a generic webhook's may hold one too.
 */
function httpUrl(text: string, field: string, a: Attempt, wholeUrlSecret: boolean): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AttemptFailed('input', false, `${field} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new AttemptFailed('input', false, `${field} must be http:// or https://`);
  if (url.username !== '' || url.password !== '')
    throw new AttemptFailed('input', false, `${field}: credentials in the URL are not allowed`);
  a.secrets.push(...urlSecrets(url, field, wholeUrlSecret));
  return url;
}

/** One line, secrets masked. */
function clean(text: string, secrets: Array<Secret | undefined>): string {
  return snippet(maskSecrets(text, secrets), 500);
}

/** `promise`, or the signal's reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', abort, { once: true });
    promise.finally(() => signal.removeEventListener('abort', abort)).then(resolve, reject);
  });
}
