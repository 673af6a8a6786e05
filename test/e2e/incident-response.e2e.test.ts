/**
 * Issue #5, "Done when", on real processes: alerts posted to a real Alertmanager reach a real
 * `gameops serve` through its webhook receiver and open three P1 incidents (one per group). The on-call
 * person (alice) is paged by email (an SMTP server in this process) and by a signed webhook (an HTTP
 * receiver in this process): the mail server refuses the first incident's messages, so those pages move
 * on to her next channel, the webhook. Nobody acknowledges the first: it escalates to the backup (bob),
 * then is acknowledged from the CLI (`incident ack`); the second is acknowledged through the signed link
 * in the email (GET shows a form, POST acknowledges), the third by its page (`oncall ack`). None
 * escalates further. The war room reminds its Incident Commander (dave) about the status update when
 * due; resolving the alert in Alertmanager resolves the incident, and `gameops incident postmortem`
 * prints the timeline in Markdown.
 *
 * Real time throughout (real servers talk to each other), with short delays in the config: escalation
 * 0s → primary, 5s → backup, 14s → carol; status updates every 10s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySignature } from '../../src/channels/index.ts';
import { openStore } from '../../src/store/index.ts';
import { createToken } from '../support/auth.ts';
import {
  freePort,
  postAlerts,
  randomSecret,
  startAlertmanager,
  type AlertmanagerHandle,
} from '../harness/index.ts';
import {
  alertmanagerConfig,
  gameops,
  startServe,
  startSmtp,
  startWebhookSink,
  waitFor,
  writePrivate,
  type ReceivedHook,
  type ReceivedMail,
  type ServeProcess,
  type SmtpSink,
  type WebhookSink,
} from './ops.support.ts';

/** Escalation levels of the test policy, in ms after the page opened. */
const BACKUP_AFTER_MS = 5_000;
const THIRD_AFTER_MS = 14_000;

interface IncidentSummary {
  id: string;
  title: string;
  status: string;
  severity: string;
}

interface PageSummary {
  id: string;
  status: string;
  level: number;
  createdAt: string;
  acknowledgedAt?: string;
}

let dir: string;
let smtp: SmtpSink;
let hooks: WebhookSink;
let alertmanager: AlertmanagerHandle;
let serve: ServeProcess;
let configPath: string;
let adminToken: string;
let signingSecret: string;

/** A JSON request to the gameops API with the test's admin token. */
async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${serve.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${adminToken}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

async function incidents(): Promise<IncidentSummary[]> {
  return (await api<{ incidents: IncidentSummary[] }>('GET', '/api/incidents?limit=1000')).incidents;
}

async function pagesOf(incidentId: string): Promise<PageSummary[]> {
  return (await api<{ pages?: PageSummary[] }>('GET', `/api/incidents/${incidentId}`)).pages ?? [];
}

/** Whether a mail is about `incidentId` (INC-1, not INC-10). */
function mentions(mail: ReceivedMail, incidentId: string): boolean {
  const pattern = new RegExp(`\\b${incidentId}\\b`);
  return pattern.test(mail.subject) || pattern.test(mail.text);
}

/** Emails delivered to `person` about `incidentId`. */
function mailsTo(person: string, incidentId: string): ReceivedMail[] {
  return smtp.messages.filter((m) => m.to.includes(`${person}@example.test`) && mentions(m, incidentId));
}

/** Webhook deliveries to `person` about `incidentId` (the body names the recipient and the incident). */
function hooksTo(person: string, incidentId: string, kind = 'page'): ReceivedHook[] {
  return hooks.requests.filter((r) => {
    const body = r.json as { kind?: string; incidentId?: string; recipient?: { id?: string } } | undefined;
    return body?.kind === kind && body.incidentId === incidentId && body.recipient?.id === person;
  });
}

/** Pages that reached `person` about `incidentId` on any channel. */
function pagesTo(person: string, incidentId: string): Array<ReceivedMail | ReceivedHook> {
  return [
    ...mailsTo(person, incidentId).filter((m) => !/status update|you are/.test(m.subject)),
    ...hooksTo(person, incidentId),
  ];
}

function diagnostics(): string {
  return [
    `mails: ${smtp.messages.map((m) => `${m.to.join(',')}: ${m.subject}`).join(' | ')}`,
    `hooks: ${hooks.requests.map((r) => r.body.slice(0, 200)).join(' | ')}`,
    `--- gameops log ---\n${serve.logTail(40)}`,
  ].join('\n');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gameops-e2e-incident-'));
  const dataDir = join(dir, 'data');
  // The mail server refuses everything about the first incident: its pages must move on to the webhook.
  [smtp, hooks] = await Promise.all([
    startSmtp({ reject: (mail) => mail.subject.includes('(instance=game-1)') }),
    startWebhookSink(),
  ]);
  const port = await freePort();
  signingSecret = randomSecret();
  const secrets = join(dir, 'secrets');
  const smtpUrl = writePrivate(secrets, 'smtp-url', `smtp://127.0.0.1:${smtp.port}`);
  const hookSecret = writePrivate(secrets, 'hook-secret', signingSecret);
  configPath = writePrivate(
    dir,
    'gameops.yaml',
    `service: { name: e2e-game, environment: test }
server: { publicUrl: "http://127.0.0.1:${port}" }
database: { dataDir: "${dataDir}" }
notifications:
  allowPrivate: ['127.0.0.1']
  channels:
    - { name: mail, kind: email, smtpUrl: "file:${smtpUrl}", from: gameops@example.test }
    - { name: hook, kind: webhook, url: "${hooks.url}", signingSecret: "file:${hookSecret}" }
people:
  - { id: alice, name: Alice, email: alice@example.test, contacts: [mail, hook] }
  - { id: bob, name: Bob, email: bob@example.test, contacts: [mail, hook] }
  - { id: carol, name: Carol, email: carol@example.test, contacts: [mail, hook] }
  - { id: dave, name: Dave, email: dave@example.test, contacts: [mail, hook] }
oncall:
  schedules:
    - name: game-ops
      timezone: Asia/Seoul
      layers:
        - { name: primary, rotation: weekly, handoff: { weekday: monday, time: "10:00" }, start: "2026-01-05", participants: [alice] }
        - { name: backup, rotation: weekly, handoff: { weekday: monday, time: "10:00" }, start: "2026-01-05", participants: [bob] }
  policies:
    - name: e2e
      levels:
        - { after: 0s, targets: [{ schedule: game-ops }] }
        - { after: ${BACKUP_AFTER_MS / 1000}s, targets: [{ schedule: game-ops, layer: backup }] }
        - { after: ${THIRD_AFTER_MS / 1000}s, targets: [{ person: carol }] }
  defaultPolicy: e2e
  delivery: { attempts: 3, firstRetry: 200ms, maxRetry: 1s, timeout: 5s }
incidents:
  severities:
    P1: { description: Whole service down, respondWithin: 0s, warRoom: true, statusUpdateEvery: 10s, policy: e2e }
alerts:
  routes:
    - { name: server-down, matchers: ['alertname="ServerDown"'], severity: P1, policy: e2e }
`,
  );
  // Tokens exist before serve starts: the responder's for Alertmanager, an admin's for the test's reads.
  const store = await openStore({ dataDir });
  let responderToken: string;
  try {
    responderToken = await createToken(store, 'responder', 'alertmanager');
    adminToken = await createToken(store, 'admin', 'e2e-admin');
  } finally {
    await store.close();
  }
  const credentialsFile = writePrivate(secrets, 'alertmanager-token', responderToken);
  alertmanager = await startAlertmanager({
    configYaml: alertmanagerConfig({
      gameopsUrl: `http://127.0.0.1:${port}`,
      credentialsFile,
      groupBy: ['alertname', 'instance'],
      groupInterval: '1s',
    }),
  });
  serve = await startServe({ config: configPath, port, logFile: join(dir, 'serve.log') });
}, 120_000);

afterAll(async () => {
  await serve?.stop();
  await alertmanager?.stop();
  await Promise.all([smtp?.close(), hooks?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('incident response end to end (Alertmanager → gameops serve → email and webhook)', () => {
  it('opens, pages, escalates, stops on acknowledgement, reminds, resolves and writes the post-mortem', async () => {
    const alertStart = new Date(Date.now() - 1_000);
    const alert = (instance: string) => ({
      labels: { alertname: 'ServerDown', instance, severity: 'critical', service: 'e2e-game' },
      annotations: { summary: `${instance} does not answer` },
      startsAt: alertStart,
    });
    await postAlerts(alertmanager.url, [alert('game-1'), alert('game-2'), alert('game-3')]);

    // Three groups (by instance) → three P1 incidents, each paging the primary on call: alice.
    const [first, second, third] = await waitFor(
      'three incidents opened from the alerts',
      async () => {
        const list = await incidents();
        // Titled by the group (alertname and the grouping labels); the first alert's summary is the summary.
        const [a, b, c] = [1, 2, 3].map((n) =>
          list.find((i) => i.title === `ServerDown (instance=game-${n})`),
        );
        return a && b && c ? ([a, b, c] as const) : undefined;
      },
      { detail: diagnostics },
    );
    expect([first.severity, second.severity, third.severity]).toEqual(['P1', 'P1', 'P1']);
    expect(await incidents()).toHaveLength(3);
    // The war room of the second gets an Incident Commander: dave (status-update reminders go to them).
    await api('POST', `/api/incidents/${second.id}/roles`, { role: 'commander', person: 'dave' });

    // alice is paged by email for the second; for the first the mail server refuses the message (550),
    // so the page moves on to her next contact channel, the signed webhook.
    const aliceMail = await waitFor(
      `alice paged by email for ${second.id}`,
      () => mailsTo('alice', second.id).find((m) => m.subject.endsWith(`[${second.id} P1] ${second.title}`)),
      { detail: diagnostics },
    );
    await waitFor(`alice paged by webhook for ${first.id}`, () => hooksTo('alice', first.id)[0], {
      detail: diagnostics,
    });
    expect(smtp.rejected.some((m) => m.to.includes('alice@example.test') && mentions(m, first.id))).toBe(
      true,
    );
    for (const request of hooks.requests) {
      const header = request.headers['x-gameops-signature'];
      const signature = typeof header === 'string' ? header : undefined;
      expect(verifySignature(signingSecret, signature, request.body, Date.now())).toBe(true);
      expect(verifySignature('not-the-secret', signature, request.body, Date.now())).toBe(false);
      expect(request.headers['x-gameops-delivery']).toBeTruthy();
    }

    // The second is acknowledged through the signed link in alice's email: a GET (what a link scanner
    // does) only shows a confirmation form; the POST acknowledges.
    const link = /http:\/\/127\.0\.0\.1:\d+\/api\/ack\/[A-Za-z0-9._~-]+/.exec(aliceMail.text)?.[0];
    expect(link, aliceMail.text).toBeDefined();
    const form = await fetch(link!, { signal: AbortSignal.timeout(10_000) });
    expect(form.status).toBe(200);
    expect(form.headers.get('content-type')).toMatch(/text\/html/);
    expect(await form.text()).toMatch(/<form[^>]*method="post"/i);
    expect((await pagesOf(second.id)).map((p) => p.status)).toEqual(['triggered']);
    // As a browser submits the form: an empty urlencoded body.
    const posted = await fetch(link!, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
      signal: AbortSignal.timeout(10_000),
    });
    expect(posted.status).toBe(200);
    const secondPages = await pagesOf(second.id);
    expect(secondPages.map((p) => p.status)).toEqual(['acknowledged']);
    const secondLevelAtAck = secondPages[0]!.level;

    // The third is acknowledged by page from the CLI: `gameops oncall ack <page>`.
    await waitFor(`alice paged for ${third.id}`, () => mailsTo('alice', third.id)[0], {
      detail: diagnostics,
    });
    const thirdPage = (await pagesOf(third.id))[0]!;
    const pageAck = await gameops(['oncall', 'ack', thirdPage.id, '--config', configPath]);
    expect(pageAck.code, pageAck.stderr).toBe(0);
    const thirdPages = await pagesOf(third.id);
    expect(thirdPages.map((p) => p.status)).toEqual(['acknowledged']);
    const thirdLevelAtAck = thirdPages[0]!.level;

    // Nobody acknowledges the first: bob (backup) is paged after the escalation delay.
    const firstPage = (await pagesOf(first.id))[0]!;
    const bobHook = await waitFor(`bob paged for ${first.id}`, () => hooksTo('bob', first.id)[0], {
      timeoutMs: BACKUP_AFTER_MS + 15_000,
      detail: diagnostics,
    });
    expect(bobHook.at - Date.parse(firstPage.createdAt)).toBeGreaterThanOrEqual(BACKUP_AFTER_MS - 1_000);

    // Acknowledged from the CLI (which goes through serve's API): the escalation stops there.
    const acked = await gameops(['incident', 'ack', first.id, '--config', configPath]);
    expect(acked.code, acked.stderr).toBe(0);
    const firstPages = await pagesOf(first.id);
    expect(firstPages.map((p) => p.status)).toEqual(['acknowledged']);
    expect(firstPages[0]!.level).toBe(1);

    // The war room reminds its Incident Commander about the status update (every 10 s for P1).
    const reminder = await waitFor(
      `a status-update reminder to dave for ${second.id}`,
      () => mailsTo('dave', second.id).find((m) => /status update due/.test(m.subject)),
      { timeoutMs: 25_000, detail: diagnostics },
    );
    expect(reminder.text).toContain(`gameops incident update ${second.id}`);

    // Past the third level's time (and a tick and a delivery more): nobody further was paged.
    const quietUntil = Date.parse(firstPage.createdAt) + THIRD_AFTER_MS + 3_000;
    await waitFor('the third level time to pass', () => Date.now() > quietUntil, { timeoutMs: 30_000 });
    for (const id of [first.id, second.id, third.id]) expect(pagesTo('carol', id)).toEqual([]);
    if (secondLevelAtAck === 0) expect(pagesTo('bob', second.id)).toEqual([]);
    if (thirdLevelAtAck === 0) expect(pagesTo('bob', third.id)).toEqual([]);
    expect(hooksTo('bob', first.id)).toHaveLength(1);

    // Alertmanager resolves the alert (endsAt in the past) → the incident resolves with it.
    await postAlerts(alertmanager.url, [{ ...alert('game-1'), endsAt: new Date(Date.now() - 500) }]);
    await waitFor(
      `${first.id} resolved by the resolved alert`,
      async () => (await incidents()).find((i) => i.id === first.id && i.status === 'resolved'),
      { timeoutMs: 20_000, detail: diagnostics },
    );
    for (const other of [second, third])
      expect((await incidents()).find((i) => i.id === other.id)?.status).not.toBe('resolved');

    // The post-mortem, generated from the timeline.
    const postmortem = await gameops(['incident', 'postmortem', first.id, '--config', configPath]);
    expect(postmortem.code, postmortem.stderr).toBe(0);
    const markdown = postmortem.stdout;
    expect(markdown).toMatch(/^# /m);
    expect(markdown).toContain(first.id);
    expect(markdown).toMatch(/^## .*Timeline/im);
    const timeline = markdown.slice(markdown.search(/^## .*Timeline/im));
    expect(timeline).toMatch(/ServerDown|game-1 does not answer/);
    expect(timeline).toMatch(/fired/i);
    expect(timeline).toMatch(/Paged Alice/);
    expect(timeline).toMatch(/Paged Bob/);
    expect(timeline).toMatch(/acknowledged/i);
    expect(timeline).toMatch(/resolved/i);
  }, 90_000);
});
