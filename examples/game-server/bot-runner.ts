/**
 * Simulated players for the reference game server (and any server speaking the same protocol). Each bot
 * logs in, walks about and chats at a human rate, shows each notice (maintenance, announcement) once, answers a drain by
 * saving and leaving, and reconnects elsewhere (with bounded, jittered backoff) when a server closes or
 * refuses it, or goes silent: bots ping, and a server that has said nothing (no message, no pong) for two
 * ping intervals is taken for dead. The default number of reconnection attempts spans about a minute, so
 * a run against a single server that restarts carries on. `bots.ts` is the command line over this; tests
 * use it directly.
 */
import { EventEmitter } from 'node:events';
import { WebSocket, type RawData } from 'ws';
import {
  CloseCode,
  rawText,
  serverMessageSchema,
  type Announcement,
  type ServerMessage,
} from './protocol.ts';

export interface BotOptions {
  players: number;
  /** How long the run lasts, ramp included. */
  durationMs: number;
  /** WebSocket URLs (`ws://host:port/play`); bot i starts on `urls[i % urls.length]`. */
  urls: string[];
  /** Logins are spread evenly over this long. @default 0 */
  rampMs?: number;
  /** Moves per second per bot. @default 4 */
  moveRate?: number;
  /** Mean time between a bot's chat messages. @default 30 s */
  chatIntervalMs?: number;
  /** Bot names are `<prefix>-<i>`. @default `bot-<pid>` */
  namePrefix?: string;
  /** Reconnection attempts per bot in a row before it gives up. @default 20 (about 40 to 80 s of backoff) */
  maxReconnects?: number;
  /** How long the first reconnection waits; doubles each time, up to 5 s, with jitter. @default 250 */
  backoffMs?: number;
  /**
   * Each bot pings its server this often; a server that has sent nothing (no message, no pong) for two
   * intervals is taken for dead: the connection is dropped and the bot reconnects. @default 5000
   */
  pingIntervalMs?: number;
  /** Human log lines (a notice's text, once; a bot giving up). */
  log?: (line: string) => void;
  random?: () => number;
}

export interface BotSummary {
  players: number;
  durationSeconds: number;
  /** Bots that logged in at least once. */
  connected: number;
  logins: number;
  /** Logins refused, in total and by reason. */
  refused: number;
  refusedByReason: Record<string, number>;
  /** Notices received (all bots), of every kind. */
  noticesSeen: number;
  /** Notices received by kind: `maintenance` (the gate) and `announcement` (`POST /ops/notice`). */
  noticesByKind: Record<string, number>;
  /** Bots that received a drain and left. */
  drained: number;
  reconnects: number;
  /** Bots that exhausted their reconnection attempts. */
  gaveUp: number;
  /** Connections that could not be opened (refused, reset, timed out). */
  connectFailures: number;
  /** Connections dropped because the server went silent (no message or pong for two ping intervals). */
  timeouts: number;
  /** Protocol errors: `error` messages from the server and messages that did not validate. */
  errors: number;
  /** Bots logged in when the run ended. */
  onlineAtEnd: number;
  messagesSent: number;
  messagesReceived: number;
  messagesPerSecond: number;
  snapshotsReceived: number;
  chatReceived: number;
}

export type BotEvent =
  | { type: 'login'; bot: number; url: string }
  | { type: 'notice'; bot: number; kind: 'maintenance'; enabled: boolean; message: string | null }
  | {
      type: 'notice';
      bot: number;
      kind: 'announcement';
      message: string;
      startsAt: string | null;
      endsAt: string | null;
    }
  | { type: 'drain'; bot: number; message: string }
  | { type: 'refused'; bot: number; reason: string }
  | { type: 'closed'; bot: number; code: number; url: string }
  | { type: 'error'; bot: number; message: string }
  | { type: 'timeout'; bot: number; url: string; silentMs: number }
  | { type: 'gave-up'; bot: number };

interface Bot {
  readonly index: number;
  readonly name: string;
  ws: WebSocket | undefined;
  url: string;
  urlIndex: number;
  online: boolean;
  everOnline: boolean;
  leaving: boolean;
  attempts: number;
  done: boolean;
  nextMoveAt: number;
  nextChatAt: number;
  heading: number;
  retryTimer: NodeJS.Timeout | undefined;
  /** When (performance.now()) the server last said anything on the current connection. */
  lastHeard: number;
}

export interface BotRun {
  /** Every {@link BotEvent}, as `'event'`. */
  readonly events: EventEmitter<{ event: [BotEvent] }>;
  /** Figures so far. */
  summary(): BotSummary;
  /** Resolves with the final summary when the run ends (duration elapsed or `stop()`). */
  readonly done: Promise<BotSummary>;
  /** Ends the run now: online bots leave, connections close. */
  stop(): Promise<BotSummary>;
}

const MAX_BACKOFF_MS = 5000;
/** Default reconnection attempts in a row: with the backoff capped at 5 s, about 40 to 80 s of trying. */
export const DEFAULT_MAX_RECONNECTS = 20;
export const DEFAULT_PING_INTERVAL_MS = 5000;
const ACTIVITY_INTERVAL_MS = 50;
const CLOSE_WAIT_MS = 5000;

/** Distinct notices remembered so each is logged once; past this the oldest is forgotten. */
const MAX_NOTICES_REMEMBERED = 1000;

/**
 * C0 and C1 controls, and the invisible characters that rearrange what a terminal shows (bidi marks,
 * embeddings, overrides and isolates; line and paragraph separators): the set gameops's own output
 * escapes (src/cli/render.ts), kept here because the example server does not depend on gameops.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** Text from a server made safe for a terminal: control and direction characters shown as escapes. */
export function printable(text: string): string {
  return text.replace(CONTROL_CHARS, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

export function startBots(options: BotOptions): BotRun {
  if (options.urls.length === 0) throw new Error('give at least one --url');
  const random = options.random ?? Math.random;
  const moveEveryMs = 1000 / (options.moveRate ?? 4);
  const chatEveryMs = options.chatIntervalMs ?? 30_000;
  const prefix = options.namePrefix ?? `bot-${process.pid}`;
  const maxReconnects = options.maxReconnects ?? DEFAULT_MAX_RECONNECTS;
  const pingIntervalMs = options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
  const backoffMs = options.backoffMs ?? 250;
  const rampMs = options.rampMs ?? 0;
  const rawLog = options.log ?? (() => undefined);
  // What servers send (notices, drain messages) is outside text: escaped before it reaches a terminal.
  const log = (line: string): void => rawLog(printable(line));
  const events = new EventEmitter<{ event: [BotEvent] }>();
  const started = performance.now();
  const noticesLogged = new Set<string>();
  const counts = {
    logins: 0,
    refused: 0,
    refusedByReason: {} as Record<string, number>,
    noticesSeen: 0,
    noticesByKind: {} as Record<string, number>,
    drained: 0,
    reconnects: 0,
    gaveUp: 0,
    connectFailures: 0,
    timeouts: 0,
    errors: 0,
    sent: 0,
    received: 0,
    snapshots: 0,
    chat: 0,
  };
  let stopping = false;
  let endedAt: number | undefined;

  const bots: Bot[] = Array.from({ length: options.players }, (_, index) => ({
    index,
    name: `${prefix}-${index}`,
    ws: undefined,
    url: options.urls[index % options.urls.length]!,
    urlIndex: index % options.urls.length,
    online: false,
    everOnline: false,
    leaving: false,
    attempts: 0,
    done: false,
    nextMoveAt: 0,
    nextChatAt: 0,
    heading: random() * 2 * Math.PI,
    retryTimer: undefined,
    lastHeard: 0,
  }));

  const emit = (event: BotEvent): void => {
    events.emit('event', event);
  };

  function send(bot: Bot, message: Record<string, unknown>): void {
    if (bot.ws?.readyState !== WebSocket.OPEN) return;
    bot.ws.send(JSON.stringify(message));
    counts.sent += 1;
  }

  function connect(bot: Bot): void {
    if (stopping || bot.done) return;
    const ws = new WebSocket(bot.url, { handshakeTimeout: 5000, perMessageDeflate: false });
    bot.ws = ws;
    bot.leaving = false;
    ws.on('open', () => {
      bot.lastHeard = performance.now();
      send(bot, { type: 'login', name: bot.name });
    });
    ws.on('pong', () => {
      bot.lastHeard = performance.now();
    });
    ws.on('message', (data: RawData, isBinary) => {
      bot.lastHeard = performance.now();
      onMessage(bot, data, isBinary);
    });
    ws.on('error', () => {
      // The 'close' that follows decides what to do; a handshake that failed is a connect failure.
      if (!bot.online && ws.readyState !== WebSocket.OPEN) counts.connectFailures += 1;
    });
    ws.on('close', (code) => onClose(bot, ws, code));
  }

  function onMessage(bot: Bot, data: RawData, isBinary: boolean): void {
    counts.received += 1;
    let message: ServerMessage;
    try {
      if (isBinary) throw new Error('binary frame');
      message = serverMessageSchema.parse(JSON.parse(rawText(data)));
    } catch (err) {
      counts.errors += 1;
      emit({ type: 'error', bot: bot.index, message: `invalid message from the server: ${String(err)}` });
      return;
    }
    const now = performance.now();
    switch (message.type) {
      case 'welcome':
        bot.online = true;
        if (!bot.everOnline) bot.everOnline = true;
        bot.attempts = 0;
        counts.logins += 1;
        bot.nextMoveAt = now + random() * moveEveryMs;
        bot.nextChatAt = now + random() * chatEveryMs;
        emit({ type: 'login', bot: bot.index, url: bot.url });
        if (message.maintenance.enabled)
          noticed(bot, message.maintenance.enabled, message.maintenance.message);
        return;
      case 'snapshot':
        counts.snapshots += 1;
        return;
      case 'chat':
        counts.chat += 1;
        return;
      case 'notice':
        if (message.kind === 'announcement') announced(bot, message);
        else noticed(bot, message.enabled, message.message);
        return;
      case 'drain':
        if (bot.leaving) return;
        bot.leaving = true;
        counts.drained += 1;
        emit({ type: 'drain', bot: bot.index, message: message.message });
        // Save and leave at once: the server saves on `leave` and answers `bye`.
        send(bot, { type: 'leave' });
        return;
      case 'bye':
        return;
      case 'refused':
        counts.refused += 1;
        counts.refusedByReason[message.reason] = (counts.refusedByReason[message.reason] ?? 0) + 1;
        emit({ type: 'refused', bot: bot.index, reason: message.reason });
        return;
      case 'error':
        counts.errors += 1;
        emit({ type: 'error', bot: bot.index, message: message.message });
        return;
    }
  }

  function countNotice(kind: string): void {
    counts.noticesSeen += 1;
    counts.noticesByKind[kind] = (counts.noticesByKind[kind] ?? 0) + 1;
  }

  /** Logs a notice's text once for the whole run, however many bots received it. */
  function logOnce(key: string, line: string): void {
    if (noticesLogged.has(key)) return;
    // Bounded: a server announcing something new every second must not grow the run's memory.
    if (noticesLogged.size >= MAX_NOTICES_REMEMBERED)
      noticesLogged.delete(noticesLogged.values().next().value!);
    noticesLogged.add(key);
    log(line);
  }

  function noticed(bot: Bot, enabled: boolean, text: string | null): void {
    countNotice('maintenance');
    logOnce(
      `maintenance:${enabled}:${text ?? ''}`,
      `notice: maintenance ${enabled ? 'on' : 'off'}${text ? `: ${text}` : ''}`,
    );
    emit({ type: 'notice', bot: bot.index, kind: 'maintenance', enabled, message: text });
  }

  function announced(bot: Bot, notice: Announcement): void {
    countNotice('announcement');
    const when = [notice.startsAt && `from ${notice.startsAt}`, notice.endsAt && `until ${notice.endsAt}`]
      .filter(Boolean)
      .join(' ');
    logOnce(
      `announcement:${notice.message}:${notice.startsAt ?? ''}:${notice.endsAt ?? ''}`,
      `notice: announcement: ${notice.message}${when ? ` (${when})` : ''}`,
    );
    emit({
      type: 'notice',
      bot: bot.index,
      kind: 'announcement',
      message: notice.message,
      startsAt: notice.startsAt,
      endsAt: notice.endsAt,
    });
  }

  function onClose(bot: Bot, ws: WebSocket, code: number): void {
    if (bot.ws !== ws) return;
    bot.ws = undefined;
    bot.online = false;
    emit({ type: 'closed', bot: bot.index, code, url: bot.url });
    if (stopping || bot.done) {
      settle();
      return;
    }
    bot.attempts += 1;
    if (bot.attempts > maxReconnects) {
      bot.done = true;
      counts.gaveUp += 1;
      emit({ type: 'gave-up', bot: bot.index });
      log(`${bot.name}: gave up after ${maxReconnects} reconnection attempts (last close code ${code})`);
      // Nobody left to play: the run ends early.
      if (bots.every((b) => b.done)) void stop();
      return;
    }
    // Somewhere else when there is somewhere else: refused, drained or closed servers are moved away from.
    const moveOn = code !== CloseCode.normal || bot.leaving || options.urls.length > 1;
    if (moveOn) {
      bot.urlIndex = (bot.urlIndex + 1) % options.urls.length;
      bot.url = options.urls[bot.urlIndex]!;
    }
    const delay = Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** (bot.attempts - 1)) * (0.5 + random() / 2);
    counts.reconnects += 1;
    bot.retryTimer = setTimeout(() => connect(bot), delay);
  }

  // One timer pings every open connection and drops those whose server has gone silent.
  const heartbeat = setInterval(() => {
    const now = performance.now();
    for (const bot of bots) {
      const ws = bot.ws;
      if (ws?.readyState !== WebSocket.OPEN) continue;
      const silentMs = now - bot.lastHeard;
      if (silentMs >= 2 * pingIntervalMs) {
        counts.timeouts += 1;
        emit({ type: 'timeout', bot: bot.index, url: bot.url, silentMs: Math.round(silentMs) });
        ws.terminate(); // its 'close' reconnects
        continue;
      }
      ws.ping();
    }
  }, pingIntervalMs);

  // One timer drives every bot's activity (cheaper than a timer per bot).
  const activity = setInterval(() => {
    const now = performance.now();
    for (const bot of bots) {
      if (!bot.online || bot.leaving) continue;
      if (now >= bot.nextMoveAt) {
        bot.heading += (random() - 0.5) * 0.8;
        const speed = 2 + random() * 3;
        send(bot, {
          type: 'move',
          dx: Math.round(Math.cos(bot.heading) * speed * 100) / 100,
          dy: Math.round(Math.sin(bot.heading) * speed * 100) / 100,
        });
        bot.nextMoveAt = now + moveEveryMs * (0.5 + random());
      }
      if (now >= bot.nextChatAt) {
        const scope = random() < 0.1 ? 'all' : 'near';
        send(bot, { type: 'chat', text: `hello from ${bot.name}`, scope });
        bot.nextChatAt = now + chatEveryMs * (0.5 + random());
      }
    }
  }, ACTIVITY_INTERVAL_MS);

  const rampTimers = bots.map((bot) =>
    setTimeout(() => connect(bot), options.players > 1 ? (rampMs * bot.index) / (options.players - 1) : 0),
  );

  let resolveDone: (summary: BotSummary) => void = () => undefined;
  const done = new Promise<BotSummary>((resolve) => {
    resolveDone = resolve;
  });
  let settleWaiter: (() => void) | undefined;
  function settle(): void {
    if (settleWaiter && bots.every((b) => b.ws === undefined)) settleWaiter();
  }

  function summary(): BotSummary {
    const elapsed = ((endedAt ?? performance.now()) - started) / 1000;
    return {
      players: options.players,
      durationSeconds: Math.round(elapsed * 10) / 10,
      connected: bots.filter((b) => b.everOnline).length,
      logins: counts.logins,
      refused: counts.refused,
      refusedByReason: { ...counts.refusedByReason },
      noticesSeen: counts.noticesSeen,
      noticesByKind: { ...counts.noticesByKind },
      drained: counts.drained,
      reconnects: counts.reconnects,
      gaveUp: counts.gaveUp,
      connectFailures: counts.connectFailures,
      timeouts: counts.timeouts,
      errors: counts.errors,
      onlineAtEnd: bots.filter((b) => b.online).length,
      messagesSent: counts.sent,
      messagesReceived: counts.received,
      messagesPerSecond: elapsed > 0 ? Math.round((counts.sent + counts.received) / elapsed) : 0,
      snapshotsReceived: counts.snapshots,
      chatReceived: counts.chat,
    };
  }

  let stopped: Promise<BotSummary> | undefined;
  function stop(): Promise<BotSummary> {
    stopped ??= (async () => {
      clearTimeout(durationTimer);
      clearInterval(activity);
      clearInterval(heartbeat);
      for (const timer of rampTimers) clearTimeout(timer);
      const final = { ...summary(), onlineAtEnd: bots.filter((b) => b.online).length };
      stopping = true;
      for (const bot of bots) {
        clearTimeout(bot.retryTimer);
        if (bot.online) send(bot, { type: 'leave' });
        bot.ws?.close(CloseCode.normal);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_WAIT_MS);
        settleWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
        settle();
      });
      for (const bot of bots) bot.ws?.terminate();
      endedAt = performance.now();
      const result = { ...final, durationSeconds: Math.round(((endedAt - started) / 1000) * 10) / 10 };
      resolveDone(result);
      return result;
    })();
    return stopped;
  }

  const durationTimer = setTimeout(() => void stop(), options.durationMs);
  return { events, summary, done, stop };
}
