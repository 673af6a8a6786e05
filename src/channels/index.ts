/**
 * Notification channels: one message through one configured channel (generic webhook, Slack-compatible
 * incoming webhook, Discord webhook, email over SMTP), with the retry timing and the webhook signature
 * that on-call paging and webhook receivers use.
 */
export { createChannels } from './channels.ts';
export type {
  Channels,
  ChannelsOptions,
  ChannelOutcome,
  AttemptFailure,
  AttemptFailureCode,
} from './channels.ts';
export { retryDelayMs, parseRetryAfter, discordRetryAfter, RETRY_AFTER_CAP_MS } from './retry.ts';
export { verifySignature, signatureHeader, SIGNATURE_HEADER, DELIVERY_HEADER } from './signature.ts';
export { MAX_RESPONSE_BYTES } from './http.ts';
export { outboundMessageSchema } from './message.ts';
export type { AttemptOutcome, ChannelKind, OutboundMessage, Link } from '../ops/contracts.ts';
export type { Resolve } from '../connectors/outbound.ts';
