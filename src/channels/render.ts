/**
 * What each kind of channel receives for one message: pure functions of the message and its context, so
 * the payload shapes and the escaping are tested without a network.
 *
 * Chat services get the subject as a heading unless the text already begins with it (a runbook's
 * `notify` message is one text whose first line is its subject), links in their own markup, and the
 * service, environment and severity in a footer. Nothing in the text can mention everyone or plant a link:
 * Slack markup is escaped, `@channel`/`@here`/`@all`/`@everyone` are broken with a zero-width space (for
 * Slack-compatible servers such as Mattermost that read them in plain text), Discord mentions are switched
 * off, and `[`, `]`, `(` and `)` are backslash-escaped so that no `[innocent text](https://evil)` link
 * renders where Markdown links do (Discord, Mattermost, Rocket.Chat).
 */
import { createHash } from 'node:crypto';
import type { Link, OutboundMessage, Severity } from '../ops/contracts.ts';

/** Who sends, and when: the parts of a payload that do not come from the message. */
export interface RenderContext {
  /** service.name and service.environment of the config. */
  service: string;
  environment: string;
  /** The channel's configured name. */
  channel: string;
  sentAt: Date;
}

/** Slack's limit on a section's text. */
const SLACK_SECTION_CHARS = 3000;
/** Slack truncates message text above 40,000 characters; stay well below. */
const SLACK_TEXT_CHARS = 35_000;
const DISCORD_CONTENT_CHARS = 2000;
const DISCORD_TITLE_CHARS = 256;
const DISCORD_DESCRIPTION_CHARS = 4096;
const EMAIL_SUBJECT_CHARS = 250;

const DISCORD_COLOURS: Record<Severity, number> = {
  P1: 0xd32f2f,
  P2: 0xf57c00,
  P3: 0xfbc02d,
  P4: 0x1976d2,
};
const DISCORD_GREY = 0x607d8b;

/** `text` cut to `max` characters (UTF-16 units), ending in `…` when cut, never splitting a surrogate pair. */
export function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

/** The text with the subject in front of it, unless it already starts with the subject. */
function headed(
  message: OutboundMessage,
  heading: (subject: string) => string,
  esc: (s: string) => string,
): string {
  const text = message.text.trim();
  if (text === '') return heading(esc(message.subject));
  if (text.startsWith(message.subject)) return esc(text);
  return `${heading(esc(message.subject))}\n${esc(text)}`;
}

/** `P1 · test-game (production) · INC-7`: the one-line context of a message. */
function footer(message: OutboundMessage, ctx: RenderContext): string {
  return [message.severity, `${ctx.service} (${ctx.environment})`, message.incidentId]
    .filter((part): part is string => part !== undefined)
    .join(' · ');
}

// ---------------------------------------------------------------------------------------------------
// generic webhook

/**
 * The generic webhook's JSON body. Absent optional fields are left out; `deliveryId` is the same on every
 * retry (receivers deduplicate on it, or on the `X-Gameops-Delivery` header).
 */
export function webhookBody(message: OutboundMessage, ctx: RenderContext): Record<string, unknown> {
  return {
    deliveryId: message.deliveryId,
    kind: message.kind,
    subject: message.subject,
    text: message.text,
    severity: message.severity,
    incidentId: message.incidentId,
    pageId: message.pageId,
    recipient: message.recipient,
    links: message.links,
    service: ctx.service,
    environment: ctx.environment,
    channel: ctx.channel,
    sentAt: ctx.sentAt.toISOString(),
  };
}

// ---------------------------------------------------------------------------------------------------
// Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)

/** Slack mrkdwn escaping: `&`, `<` and `>` are the only control characters (`<!channel>`, `<url|title>`). */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * `[`, `]`, `(` and `)` backslash-escaped (and a backslash before one of them or before another backslash,
 * so that text cannot cancel the escape): Markdown cannot make a link of untrusted text.
 */
export function escapeLinkMarkup(text: string): string {
  return text.replace(/\\(?=[\\[\]()])|[[\]()]/g, '\\$&');
}

/** `@channel`, `@here`, `@all` and `@everyone` shown but inert: a zero-width space after the `@`. */
function defuseSlackMentions(text: string): string {
  return text.replace(/@(channel|here|all|everyone)\b/gi, '@\u200b$1');
}

/** Untrusted text for a Slack-compatible payload: mrkdwn escaped, no link markup, no mass mention. */
function slackText(text: string): string {
  return defuseSlackMentions(escapeLinkMarkup(escapeMrkdwn(text)));
}

/** A URL that cannot end a `<url|title>` early. */
function slackUrl(url: string): string {
  return new URL(url).href.replace(/\|/g, '%7C').replace(/</g, '%3C').replace(/>/g, '%3E');
}

function slackLinks(links: Link[]): string {
  return links.map((l) => `<${slackUrl(l.url)}|${slackText(l.title)}>`).join(' · ');
}

export type SlackBlock =
  | { type: 'section'; text: { type: 'mrkdwn'; text: string } }
  | { type: 'context'; elements: Array<{ type: 'mrkdwn'; text: string }> };

export interface SlackPayload {
  /** The whole message in mrkdwn: what Slack shows in notifications and what Mattermost shows. */
  text: string;
  /** Only for structured messages (pages, messages with links or a severity). */
  blocks?: SlackBlock[];
}

/** The Slack incoming webhook payload. */
export function slackPayload(message: OutboundMessage, ctx: RenderContext): SlackPayload {
  const body = headed(message, (s) => `*${s}*`, slackText);
  const links = message.links?.length ? slackLinks(message.links) : undefined;
  const text = cut(links ? `${body}\n${links}` : body, SLACK_TEXT_CHARS);
  const structured = message.kind === 'page' || links !== undefined || message.severity !== undefined;
  if (!structured) return { text };
  const blocks: SlackBlock[] = [
    { type: 'section', text: { type: 'mrkdwn', text: cut(body, SLACK_SECTION_CHARS) } },
  ];
  if (links)
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: cut(links, SLACK_SECTION_CHARS) } });
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: escapeMrkdwn(footer(message, ctx)) }] });
  return { text, blocks };
}

// ---------------------------------------------------------------------------------------------------
// Discord webhook

export interface DiscordEmbed {
  title: string;
  description: string;
  color: number;
  footer: { text: string };
  timestamp: string;
}

export interface DiscordPayload {
  content: string;
  embeds?: DiscordEmbed[];
  /** Always `{ parse: [] }`: no text of an alert can ping @everyone, @here, a role or a user. */
  allowed_mentions: { parse: [] };
}

/** `@everyone` and `@here` shown but inert, even on a Discord-compatible server ignoring allowed_mentions. */
function defuseMentions(text: string): string {
  return text.replace(/@(everyone|here)/g, '@\u200b$1');
}

function discordLink(link: Link): string {
  const title = link.title.replace(/([[\]\\])/g, '\\$1');
  const url = new URL(link.url).href.replace(/\(/g, '%28').replace(/\)/g, '%29');
  return `[${title}](${url})`;
}

/** The Discord webhook payload: `content` up to 2,000 characters, links and context in an embed. */
export function discordPayload(message: OutboundMessage, ctx: RenderContext): DiscordPayload {
  const content = cut(
    headed(
      message,
      (s) => `**${s}**`,
      (s) => defuseMentions(escapeLinkMarkup(s)),
    ),
    DISCORD_CONTENT_CHARS,
  );
  const structured =
    message.kind === 'page' || Boolean(message.links?.length) || message.severity !== undefined;
  if (!structured) return { content, allowed_mentions: { parse: [] } };
  const embed: DiscordEmbed = {
    title: cut(defuseMentions(message.subject), DISCORD_TITLE_CHARS),
    description: cut((message.links ?? []).map(discordLink).join('\n'), DISCORD_DESCRIPTION_CHARS),
    color: message.severity ? DISCORD_COLOURS[message.severity] : DISCORD_GREY,
    footer: { text: footer(message, ctx) },
    timestamp: ctx.sentAt.toISOString(),
  };
  return { content, embeds: [embed], allowed_mentions: { parse: [] } };
}

// ---------------------------------------------------------------------------------------------------
// email

export interface EmailParts {
  subject: string;
  text: string;
  /** `<…@domain>`, the same for every retry of one delivery id, so mail clients show one message. */
  messageId: string;
  headers: Record<string, string>;
}

/**
 * A Message-ID for a delivery id: the id itself where it is a valid dot-atom, otherwise its safe characters
 * plus a hash of the whole (so two ids differing only in unsafe characters stay distinct).
 */
export function messageIdFor(deliveryId: string, from: string): string {
  const domain = /@([A-Za-z0-9.-]+)$/.exec(from)?.[1] ?? 'gameops.invalid';
  const safe = deliveryId
    .replace(/[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]/g, '_')
    .replace(/\.{2,}/g, '.')
    .replace(/^\.|\.$/g, '_');
  const local =
    safe === deliveryId && safe.length <= 64
      ? safe
      : `${safe.slice(0, 48)}.${createHash('sha256').update(deliveryId).digest('hex').slice(0, 16)}`;
  return `<${local}@${domain}>`;
}

/** Subject, plain-text body, Message-ID and extra headers of the email for a message. */
export function emailParts(message: OutboundMessage, ctx: RenderContext, from: string): EmailParts {
  const tag = message.severity ? `[gameops] ${message.severity}` : '[gameops]';
  const subject = cut(`${tag} ${ctx.service} (${ctx.environment}): ${message.subject}`, EMAIL_SUBJECT_CHARS);
  const lines = [
    headed(
      message,
      (s) => s,
      (s) => s,
    ),
  ];
  if (message.links?.length) lines.push('', ...message.links.map((l) => `${l.title}: ${l.url}`));
  lines.push('', '-- ', footer(message, ctx), `Delivery ${message.deliveryId}`);
  const headers: Record<string, string> = {
    'X-Gameops-Delivery': message.deliveryId,
    // RFC 3834: vacation responders and ticket systems do not answer an automatic message.
    'Auto-Submitted': 'auto-generated',
  };
  if (message.severity === 'P1' || message.severity === 'P2') headers['Importance'] = 'high';
  return { subject, text: lines.join('\n'), messageId: messageIdFor(message.deliveryId, from), headers };
}
