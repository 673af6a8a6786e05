import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutboundMessage } from '../ops/contracts.ts';
import { createChannels, type ChannelOutcome, type Channels } from './index.ts';
import { urlSecretForms } from './redact.ts';
import { startReceiver, testConfig, type Receiver } from './test-support.ts';

const SLACK_TOKEN = 'SECRETTOKEN1234567890abcd';
const SLACK_PATH = `/services/T0/B0/${SLACK_TOKEN}`;
const DISCORD_TOKEN = 'DISCORDSECRETtoken0987';
const DISCORD_PATH = `/api/webhooks/123/${DISCORD_TOKEN}`;
const SEGMENT = 'SEGSECRET';
const QUERY = 'QUERYSECRET99';

const message: OutboundMessage = { deliveryId: 'd1', kind: 'notice', subject: 's', text: 't' };

/** Every run of at least 6 characters of `secret` that appears in `text` (a prefix surviving a cut, say). */
function leaked(text: string, secret: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 6 <= secret.length; i += 1)
    if (text.includes(secret.slice(i, i + 6))) found.push(secret.slice(i, i + 6));
  return found;
}

function errorOf(outcome: ChannelOutcome): string {
  if (outcome.ok) throw new Error('expected a failure');
  return outcome.error;
}

describe('what an outcome never shows of a webhook URL, whatever the peer echoes', () => {
  let receiver: Receiver;
  let channels: Channels;

  beforeAll(async () => {
    receiver = await startReceiver({
      // The secret path starts around character 180 of the answer: cut at 200 before masking, a prefix
      // of the token would survive.
      [SLACK_PATH]: (req, res) => res.writeHead(500).end(`${'x'.repeat(165)} Cannot POST ${req.url ?? ''}`),
      [`${SLACK_PATH}%2Ddecoded`]: (req, res) =>
        res.writeHead(500).end(`no route ${decodeURIComponent(req.url ?? '')} (${SLACK_TOKEN}-decoded)`),
      [DISCORD_PATH]: (req, res) => res.writeHead(404).end(`Cannot POST ${(req.url ?? '').split('?')[0]!}`),
      [`/h/ook/${SEGMENT}`]: (req, res) => {
        const url = new URL(req.url ?? '', 'http://x');
        const echo = JSON.stringify({ error: 'bad url', url: `http://x${req.url ?? ''}` }).replace(
          /\//g,
          '\\/',
        );
        res.writeHead(401).end(`${echo} token=${url.searchParams.get('token') ?? ''} path=${url.pathname}`);
      },
      '/alerts/incoming': (_req, res) => res.writeHead(400).end('alerts/incoming wants a "text" field'),
    });
    const base = receiver.base;
    channels = createChannels(
      testConfig(
        [
          'notifications:',
          '  allowPrivate: ["127.0.0.1"]',
          '  channels:',
          '    - { name: slack, kind: slack, webhookUrl: "env:SLACK" }',
          '    - { name: slack-decoded, kind: slack, webhookUrl: "env:SLACK_DECODED" }',
          '    - { name: discord, kind: discord, webhookUrl: "env:DISCORD" }',
          `    - { name: hook, kind: webhook, url: "${base}/h/ook/${SEGMENT}?token=${QUERY}" }`,
          `    - { name: plain, kind: webhook, url: "${base}/alerts/incoming" }`,
        ],
        {
          SLACK: `${base}${SLACK_PATH}`,
          // %2D is "-": the peer echoes the decoded form.
          SLACK_DECODED: `${base}${SLACK_PATH}%2Ddecoded`,
          DISCORD: `${base}${DISCORD_PATH}?wait=true`,
        },
      ),
      { timeoutMs: 3000 },
    );
  });

  afterAll(async () => {
    await receiver?.close();
  });

  it('Slack: the echoed path is masked before the answer is cut, so no prefix of the token survives', async () => {
    const error = errorOf(await channels.attempt('slack', message));
    expect(error).toMatch(/^notification channel "slack": answered HTTP 500: x+ Cannot POST /);
    expect(leaked(error, SLACK_TOKEN)).toEqual([]);
    const decoded = errorOf(await channels.attempt('slack-decoded', message));
    expect(decoded).toContain('answered HTTP 500: no route ');
    expect(leaked(decoded, SLACK_TOKEN)).toEqual([]);
  });

  it('Discord: an echo of the path alone (without the query) is masked', async () => {
    const error = errorOf(await channels.attempt('discord', message));
    expect(error).toMatch(/^notification channel "discord": answered HTTP 404: Cannot POST /);
    expect(leaked(error, DISCORD_TOKEN)).toEqual([]);
  });

  it('a generic webhook: a token-like path segment and a query value, JSON-escaped or alone, are masked', async () => {
    const error = errorOf(await channels.attempt('hook', message));
    expect(error).toContain('answered HTTP 401: {"error":"bad url","url":"');
    expect(leaked(error, SEGMENT)).toEqual([]);
    expect(leaked(error, QUERY)).toEqual([]);
    // Route words stay readable.
    const plain = errorOf(await channels.attempt('plain', message));
    expect(plain).toContain('alerts/incoming wants a "text" field');
  });

  it('lists the forms of a URL to mask, longest first', () => {
    const forms = urlSecretForms(
      new URL(`https://hooks.example.com/h/ook/${SEGMENT}?token=${QUERY}&a=b`),
      false,
    );
    expect(forms).toContain(SEGMENT);
    expect(forms).toContain(QUERY);
    expect(forms).toContain(`\\/h\\/ook\\/${SEGMENT}`);
    expect(forms).not.toContain('ook');
    expect(forms).not.toContain('b');
    expect([...forms].sort((x, y) => y.length - x.length)).toEqual(forms);
    const slack = urlSecretForms(new URL('https://hooks.slack.com/services/T00/B00/tokentoken'), true);
    expect(slack).toContain('services');
    expect(slack).toContain('tokentoken');
    expect(urlSecretForms(new URL('https://x.example/alerts/incoming'), false)).not.toContain('incoming');
  });
});
