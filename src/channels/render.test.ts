import { describe, expect, it } from 'vitest';
import type { OutboundMessage } from '../ops/contracts.ts';
import {
  cut,
  discordPayload,
  emailParts,
  escapeMrkdwn,
  messageIdFor,
  slackPayload,
  webhookBody,
  type RenderContext,
} from './render.ts';

const ctx: RenderContext = {
  service: 'test-game',
  environment: 'test',
  channel: 'chat',
  sentAt: new Date('2026-03-01T12:00:00Z'),
};

const page: OutboundMessage = {
  deliveryId: 'pg_1.0.0.alice.chat',
  kind: 'page',
  subject: 'INC-7: login <errors> & timeouts',
  text: 'Login error rate 12% on eu-1 <!channel> @everyone',
  severity: 'P1',
  incidentId: 'INC-7',
  pageId: 'pg_1',
  recipient: { id: 'alice', name: 'Alice', email: 'alice@example.com' },
  links: [
    { title: 'Acknowledge', url: 'https://ops.example.com/api/ack/tok|en>' },
    { title: 'Incident [INC-7]', url: 'https://ops.example.com/incidents/INC-7?tab=(timeline)' },
  ],
};

const note: OutboundMessage = {
  deliveryId: 'notify-1',
  kind: 'notification',
  subject: 'run r1 waits for approval',
  text: 'run r1 waits for approval\nstep: restart <game-1>',
};

describe('Slack payload', () => {
  it('escapes &, < and > so text cannot mention @channel or forge a link', () => {
    expect(escapeMrkdwn('a & b <!channel> <http://x|y>')).toBe(
      'a &amp; b &lt;!channel&gt; &lt;http://x|y&gt;',
    );
  });

  it('a page: mrkdwn text with the subject in bold and links as <url|title>, plus blocks', () => {
    const links =
      '<https://ops.example.com/api/ack/tok%7Cen%3E|Acknowledge> · <https://ops.example.com/incidents/INC-7?tab=(timeline)|Incident \\[INC-7\\]>';
    const body =
      '*INC-7: login &lt;errors&gt; &amp; timeouts*\nLogin error rate 12% on eu-1 &lt;!channel&gt; @\u200beveryone';
    expect(slackPayload(page, ctx)).toEqual({
      text: `${body}\n${links}`,
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text: body } },
        { type: 'section', text: { type: 'mrkdwn', text: links } },
        { type: 'context', elements: [{ type: 'mrkdwn', text: 'P1 · test-game (test) · INC-7' }] },
      ],
    });
  });

  it('a plain notification whose text starts with its subject: just {text}', () => {
    expect(slackPayload(note, ctx)).toEqual({
      text: 'run r1 waits for approval\nstep: restart &lt;game-1&gt;',
    });
  });

  it('hostile text can neither plant a disguised link nor mention everyone (Mattermost reads both)', () => {
    const hostile: OutboundMessage = {
      ...note,
      subject: 'disk [full](https://evil.example/login)',
      text: 'click [here](https://evil.example) \\[x\\](y) @channel @HERE @all @everyone, not @alice or @allison',
    };
    expect(slackPayload(hostile, ctx).text).toBe(
      '*disk \\[full\\]\\(https://evil.example/login\\)*\n' +
        'click \\[here\\]\\(https://evil.example\\) \\\\\\[x\\\\\\]\\(y\\) ' +
        '@\u200bchannel @\u200bHERE @\u200ball @\u200beveryone, not @alice or @allison',
    );
  });

  it('keeps a section within Slack’s 3,000 characters', () => {
    const long = slackPayload({ ...page, text: 'x'.repeat(5000) }, ctx);
    const section = long.blocks![0]!;
    expect(section.type === 'section' && section.text.text.length).toBe(3000);
    expect(section.type === 'section' && section.text.text.endsWith('…')).toBe(true);
  });
});

describe('Discord payload', () => {
  it('a page: content with a bold subject, links in an embed, mentions switched off', () => {
    expect(discordPayload(page, ctx)).toEqual({
      content:
        '**INC-7: login <errors> & timeouts**\nLogin error rate 12% on eu-1 <!channel> @\u200beveryone',
      embeds: [
        {
          title: 'INC-7: login <errors> & timeouts',
          description:
            '[Acknowledge](https://ops.example.com/api/ack/tok|en%3E)\n[Incident \\[INC-7\\]](https://ops.example.com/incidents/INC-7?tab=%28timeline%29)',
          color: 0xd32f2f,
          footer: { text: 'P1 · test-game (test) · INC-7' },
          timestamp: '2026-03-01T12:00:00.000Z',
        },
      ],
      allowed_mentions: { parse: [] },
    });
  });

  it('content never exceeds 2,000 characters; a plain notification has no embed', () => {
    const long = discordPayload({ ...note, text: `${note.subject}\n${'y'.repeat(3000)}` }, ctx);
    expect(long.content).toHaveLength(2000);
    expect(long.content.endsWith('…')).toBe(true);
    expect(long.embeds).toBeUndefined();
    expect(long.allowed_mentions).toEqual({ parse: [] });
    expect(discordPayload({ ...note, text: '@here hello' }, ctx).content).toBe(
      '**run r1 waits for approval**\n@\u200bhere hello',
    );
  });

  it('hostile text cannot plant a disguised link: [ ] ( ) are escaped, and so is a backslash before them', () => {
    const hostile: OutboundMessage = {
      ...note,
      subject: 'disk [full](https://evil.example/login)',
      text: 'click [here](https://evil.example) or \\[x\\](y)',
    };
    expect(discordPayload(hostile, ctx).content).toBe(
      '**disk \\[full\\]\\(https://evil.example/login\\)**\n' +
        'click \\[here\\]\\(https://evil.example\\) or \\\\\\[x\\\\\\]\\(y\\)',
    );
  });
});

describe('generic webhook body', () => {
  it('carries every field of the message plus where and when it was sent', () => {
    expect(webhookBody(page, { ...ctx, channel: 'ops' })).toEqual({
      deliveryId: 'pg_1.0.0.alice.chat',
      kind: 'page',
      subject: page.subject,
      text: page.text,
      severity: 'P1',
      incidentId: 'INC-7',
      pageId: 'pg_1',
      recipient: { id: 'alice', name: 'Alice', email: 'alice@example.com' },
      links: page.links,
      service: 'test-game',
      environment: 'test',
      channel: 'ops',
      sentAt: '2026-03-01T12:00:00.000Z',
    });
    expect(Object.keys(JSON.parse(JSON.stringify(webhookBody(note, ctx))) as object)).not.toContain(
      'severity',
    );
  });
});

describe('email', () => {
  it('subject with severity, service and environment; links and the delivery id in the text', () => {
    const parts = emailParts(page, ctx, 'gameops@example.com');
    expect(parts.subject).toBe('[gameops] P1 test-game (test): INC-7: login <errors> & timeouts');
    expect(parts.text).toBe(
      [
        'INC-7: login <errors> & timeouts',
        'Login error rate 12% on eu-1 <!channel> @everyone',
        '',
        'Acknowledge: https://ops.example.com/api/ack/tok|en>',
        'Incident [INC-7]: https://ops.example.com/incidents/INC-7?tab=(timeline)',
        '',
        '-- ',
        'P1 · test-game (test) · INC-7',
        'Delivery pg_1.0.0.alice.chat',
      ].join('\n'),
    );
    expect(parts.messageId).toBe('<pg_1.0.0.alice.chat@example.com>');
    expect(parts.headers).toEqual({
      'X-Gameops-Delivery': 'pg_1.0.0.alice.chat',
      'Auto-Submitted': 'auto-generated',
      Importance: 'high',
    });
    expect(emailParts(note, ctx, 'gameops@example.com').subject).toBe(
      '[gameops] test-game (test): run r1 waits for approval',
    );
  });

  it('Message-ID: the same for the same delivery id, always a valid msg-id, distinct for distinct ids', () => {
    expect(messageIdFor('p.1', 'a@b.example')).toBe(messageIdFor('p.1', 'a@b.example'));
    const odd = messageIdFor('page:1/<x>..y', 'a@b.example');
    expect(odd).toMatch(/^<[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@b\.example>$/);
    expect(odd).not.toBe(messageIdFor('page:1/<x>..z', 'a@b.example'));
    expect(messageIdFor('page:1/(x)', 'a@b.example')).not.toBe(messageIdFor('page:1/[x]', 'a@b.example'));
  });
});

describe('cut', () => {
  it('cuts to the limit with an ellipsis and never splits a surrogate pair', () => {
    expect(cut('abcdef', 4)).toBe('abc…');
    expect(cut('abc', 4)).toBe('abc');
    expect(cut('ab😀cd', 4)).toBe('ab…');
  });
});
