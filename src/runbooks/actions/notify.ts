/**
 * Notifications of runbook `notify` steps: one configured channel per message (a generic webhook, a
 * Slack-compatible or Discord webhook, or email), delivered in one attempt through src/channels, which
 * checks the destination (public addresses only unless listed in `notifications.allowPrivate`, the
 * connection pinned to the addresses checked), follows no redirect, reads at most 64 KiB of the answer,
 * keeps to a deadline and never shows a webhook URL, token or SMTP password in an error.
 */
import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { createChannels, type AttemptFailure, type ChannelKind, type Resolve } from '../../channels/index.ts';
import type { GameopsConfig } from '../../config/index.ts';
import {
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
  assertNever,
  type Clock,
  type GameopsError,
} from '../../core/index.ts';
import type { ActionDefinition } from '../model.ts';
import { servicesOf } from './services.ts';

const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_MESSAGE_CHARS = 10_000;
const MAX_SUBJECT_CHARS = 200;

export interface Delivery {
  channel: string;
  kind: ChannelKind;
  /** Where it went, without path or credentials: `hooks.slack.com`, `smtp.example.com:587`. */
  destination: string;
  /** HTTP status, or the SMTP server's answer. */
  response: string;
}

/** The runbook step a message comes from: its delivery id is derived from it. */
export interface NotifyStepRef {
  runId: string;
  stepId: string;
}

export interface Notifier {
  /** The configured channel names. */
  channels(): string[];
  /**
   * Delivers `message` to the channel named `channel` (one attempt; a runbook step is retried as a step).
   * With `step`, the delivery id is {@link stepDeliveryId}: the same on every attempt and re-run of that
   * step, so that the receiver recognises (and may deduplicate) a message it already has; without, a new one.
   * @throws NotFoundError for an unknown channel, NotAllowedError for a refused destination, InputError
   *   for an empty message or a channel that cannot be used as configured, UnavailableError when delivery
   *   fails or times out (`details.retryable` says whether trying again may help).
   */
  send(channel: string, message: string, signal?: AbortSignal, step?: NotifyStepRef): Promise<Delivery>;
  /** The engine's `notify` option: a message without a channel goes to the run log only (nothing sent). */
  notify(
    channel: string | undefined,
    message: string,
    signal: AbortSignal,
    step?: NotifyStepRef,
  ): Promise<void>;
}

/** A delivery id is printable ASCII without spaces, at most 200 characters (src/channels/message.ts). */
const DELIVERY_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * The delivery id of a runbook step's message: `runbook.<runId>.<stepId>`, or `runbook.<hash>` when that
 * would not be a usable delivery id (too long, or not printable ASCII).
 */
export function stepDeliveryId(step: NotifyStepRef): string {
  const id = `runbook.${step.runId}.${step.stepId}`;
  if (DELIVERY_ID.test(id)) return id;
  const hash = createHash('sha256').update(`${step.runId}\n${step.stepId}`).digest('hex').slice(0, 40);
  return `runbook.${hash}`;
}

export interface NotifierOptions {
  /** @default the system resolver */
  resolve?: Resolve;
  /** @default 10 s */
  timeoutMs?: number;
  /** For the time the message says it was sent. @default the system clock */
  clock?: Clock;
}

/** A notifier over `config.notifications`. Nothing is opened until a message is sent. */
export function createNotifier(config: GameopsConfig, options: NotifierOptions = {}): Notifier {
  const channels = createChannels(config, {
    ...(options.resolve ? { resolve: options.resolve } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });

  async function send(
    name: string,
    message: string,
    signal?: AbortSignal,
    step?: NotifyStepRef,
  ): Promise<Delivery> {
    const kind = channels.kind(name);
    if (!kind)
      throw new NotFoundError(
        `no notification channel named "${name}" (configured: ${channels.names().join(', ') || 'none'})`,
      );
    if (message.length === 0) throw new InputError('message: empty');
    const text = message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
    const outcome = await channels.attempt(
      name,
      {
        deliveryId: step ? stepDeliveryId(step) : `notify-${randomUUID()}`,
        kind: 'notification',
        subject: subjectOf(text),
        text,
      },
      signal,
    );
    if (!outcome.ok) throw errorOf(outcome);
    return { channel: name, kind, destination: outcome.destination, response: outcome.response };
  }

  return {
    channels: () => channels.names(),
    send,
    async notify(channel, message, signal, step) {
      if (channel === undefined) return;
      await send(channel, message, signal, step);
    },
  };
}

/** The first line that says something: chat services show it as the heading, email as the subject. */
function subjectOf(text: string): string {
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== '');
  if (line === undefined) return 'message from a runbook';
  return line.length > MAX_SUBJECT_CHARS ? `${line.slice(0, MAX_SUBJECT_CHARS - 1)}…` : line;
}

/** A failed attempt as the error taxonomy's error. */
function errorOf(failure: AttemptFailure): GameopsError {
  const details = {
    retryable: failure.retryable,
    ...(failure.retryAfterMs !== undefined ? { retryAfterMs: failure.retryAfterMs } : {}),
    ...(failure.destination !== undefined ? { destination: failure.destination } : {}),
  };
  switch (failure.code) {
    case 'not_found':
      return new NotFoundError(failure.error, { details });
    case 'not_allowed':
      return new NotAllowedError(failure.error, { details });
    case 'input':
      return new InputError(failure.error, { details });
    case 'unavailable':
      return new UnavailableError(failure.error, { details });
    default:
      return assertNever(failure.code);
  }
}

const sendArgs = z.strictObject({
  channel: z.string().min(1).max(100).describe('A channel of notifications.channels.'),
  message: z.string().min(1).max(MAX_MESSAGE_CHARS),
});

const sendAction: ActionDefinition<z.infer<typeof sendArgs>, Delivery> = {
  name: 'notify.send',
  description: 'Sends a message to a configured notification channel (webhook, Slack, Discord, email).',
  effect: 'mutating',
  idempotent: false,
  args: sendArgs,
  target: (args) => `notification channel ${args.channel}`,
  async run(args, ctx) {
    const delivery = await servicesOf(ctx).notifier.send(args.channel, args.message, ctx.signal, {
      runId: ctx.runId,
      stepId: ctx.stepId,
    });
    ctx.log(`delivered to ${delivery.destination}: ${delivery.response}`);
    return delivery;
  },
};

/** The notification actions. */
export const notifyActions: ActionDefinition[] = [sendAction];
