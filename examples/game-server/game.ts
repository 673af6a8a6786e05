/**
 * The game: player connections, the authoritative tick loop, maintenance mode and drain.
 *
 * Inputs from players are validated when they arrive and queued with their arrival time; each tick
 * applies them in batches of `inputBatchSize`, dropping those older than `inputBudgetMs` (runbook §7.2:
 * tick_rate 30, batch_size 100, max_latency 50ms), and stops taking batches once half the tick period is
 * used so the loop keeps its rate under a flood (what is left waits for the next tick, or ages out).
 * Each tick also sends snapshots to a slice of the players, so every player gets `snapshotRate` per
 * second and the work is spread evenly over ticks. Nothing on the tick path waits for MySQL or Redis.
 *
 * Connections are watched: every `pingIntervalMs` each gets a WebSocket ping, and one that misses two
 * pongs in a row is cut (a vanished player does not stay online, nor block their own reconnection); a
 * client that does not read what it is sent gets no more snapshots or chat past MAX_BUFFERED_BYTES and is
 * closed (4007) when it stays there SLOW_CLIENT_MS. Bad input from players is their problem, not the
 * server's: it is logged at WARN (rate-limited) and counted in `game_bad_messages_total`.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { GameServerConfig } from './config.ts';
import type { Logger } from './log.ts';
import { TickLoop, TickWindow, type Percentiles, type TickInfo } from './loop.ts';
import type { GameMetrics } from './metrics.ts';
import type { EndReason } from './persistence.ts';
import {
  clientMessageSchema,
  CloseCode,
  describeIssue,
  rawText,
  LOGIN_TIMEOUT_MS,
  MAX_FRAME_BYTES,
  MAX_MALFORMED,
  NEAR_RADIUS,
  REFUSAL_CLOSE_CODE,
  SNAPSHOT_MAX_PLAYERS,
  type ChatInput,
  type MaintenanceState,
  type MoveInput,
  type RefusalReason,
  type ServerMessage,
} from './protocol.ts';
import { World, type Avatar } from './world.ts';

/** What the game needs from persistence (persistence.ts implements it). */
export interface GameStore {
  sessionStarted(id: string, player: string, startedAt: Date): void;
  sessionEnded(session: SessionRecord, reason: EndReason, at: Date): void;
  /** Saves a position; resolves true once it is written, false if it is dropped or never written. */
  savePlayer(player: string, x: number, y: number): Promise<boolean>;
  loadPlayer(player: string): Promise<{ x: number; y: number } | undefined>;
  /** Writes not yet in the databases (queued or being written). */
  pendingWrites(): number;
}

interface SessionRecord {
  id: string;
  player: string;
  startedAt: Date;
}

interface Connection {
  readonly id: number;
  readonly ws: WebSocket;
  /** Which tick slice sends this player's snapshots. */
  readonly group: number;
  state: 'new' | 'joining' | 'playing' | 'closed';
  name: string | undefined;
  avatar: Avatar | undefined;
  session: SessionRecord | undefined;
  tokens: number;
  refilledAt: number;
  malformed: number;
  loginTimer: NodeJS.Timeout | undefined;
  /** Pings sent since the last pong. */
  missedPongs: number;
  /** Called on the next pong (or when the socket closes), for liveness probes. */
  readonly onPong: Set<() => void>;
  /** Since when (monotonic ms) the socket's unsent data has been over MAX_BUFFERED_BYTES. */
  slowSince: number | undefined;
  /** Cuts the socket if its close handshake does not finish in time. */
  killTimer: NodeJS.Timeout | undefined;
}

interface QueuedInput {
  conn: Connection;
  at: number;
  /** `leave` is queued too, so it comes after the player's earlier inputs (and is never dropped). */
  input: MoveInput | ChatInput | { type: 'leave' };
}

export interface DrainState {
  startedAt: string;
  deadline: string;
  message: string;
}

export interface GameStatus {
  instance: string;
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  playersOnline: number;
  /** Session and position writes not yet in MySQL/Redis: a player who left is saved once this is 0. */
  pendingWrites: number;
  sessions: number;
  sessionsTotal: number;
  acceptingLogins: boolean;
  maintenance: MaintenanceState;
  draining: boolean;
  drain: DrainState | null;
  shuttingDown: boolean;
  tickRate: number;
  ticksPerSecond: number;
  tickLagMs: Percentiles;
  tickDurationMs: Percentiles;
  tickCpuMs: Percentiles;
  windowSeconds: number;
}

export interface GameOptions {
  config: GameServerConfig;
  log: Logger;
  metrics: GameMetrics;
  store: GameStore;
  /** Wall clock. */
  now?: () => Date;
  /** Monotonic milliseconds. */
  monotonic?: () => number;
  random?: () => number;
}

/** Back-pressure: a player whose socket has this much unsent data gets no snapshot, chat or error reply. */
export const MAX_BUFFERED_BYTES = 256 * 1024;
/** Nothing at all is queued past this (notices, drain and bye included): memory per client is bounded. */
export const HARD_BUFFERED_BYTES = 1024 * 1024;
/** A client over MAX_BUFFERED_BYTES for this long is not reading: it is closed with 4007. */
export const SLOW_CLIENT_MS = 5000;
/** A duplicate login waits this long for the online session to answer a ping before taking it over. */
export const DUPLICATE_PROBE_MS = 2000;
/** A socket closed by the server is cut if its close handshake has not finished after this long. */
const CLOSE_GRACE_MS = 1000;
/**
 * How long a leaving player's `bye` waits for their position to be written: within it the bye says
 * `saved: true`; past it `saved: false` (the write stays queued). Below the shutdown's 1 s socket wait,
 * so a shutdown's byes go out before the sockets are cut.
 */
const BYE_SAVE_WAIT_MS = 750;
/** At most this many WARN lines about bad input per BAD_INPUT_LOG_WINDOW_MS (the rest are counted). */
const BAD_INPUT_LOG_LINES = 20;
const BAD_INPUT_LOG_WINDOW_MS = 10_000;
/** Queued inputs beyond this are dropped (reason `overflow`): a second's worth from a full server. */
const queueCap = (config: GameServerConfig): number => config.maxPlayers * config.maxInputsPerSecond;

/** Broadcast chat messages waiting per snapshot group; older ones are dropped past this. */
const MAX_OUTBOX = 100;

const round1 = (value: number): number => Math.round(value * 10) / 10;

export class Game {
  readonly #config: GameServerConfig;
  readonly #log: Logger;
  readonly #metrics: GameMetrics;
  readonly #store: GameStore;
  readonly #now: () => Date;
  readonly #monotonic: () => number;
  readonly #random: () => number;
  readonly #world = new World();
  readonly #wss: WebSocketServer;
  readonly #loop: TickLoop;
  readonly #window: TickWindow;
  readonly #groups: number;
  /** Chat to everyone waiting for each snapshot group's turn (spreads a broadcast over the ticks). */
  #outbox: string[][];
  readonly #startedAt: Date;
  readonly #conns = new Map<number, Connection>();
  readonly #byName = new Map<string, Connection>();
  readonly #playing = new Set<Connection>();
  #queue: QueuedInput[] = [];
  #nextId = 1;
  #sessionsTotal = 0;
  #maintenance: MaintenanceState = { enabled: false, message: null, startsAt: null };
  #drain: (DrainState & { deadlineMs: number }) | undefined;
  #drainTimer: NodeJS.Timeout | undefined;
  #shuttingDown: Promise<void> | undefined;
  readonly #emptyWaiters = new Set<() => void>();
  #heartbeat: NodeJS.Timeout | undefined;
  #badInputWindow = { startedAt: -Infinity, lines: 0, suppressed: 0 };

  constructor(options: GameOptions) {
    this.#config = options.config;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#store = options.store;
    this.#now = options.now ?? (() => new Date());
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
    this.#startedAt = this.#now();
    this.#groups = Math.max(1, Math.round(this.#config.tickRate / this.#config.snapshotRate));
    this.#outbox = Array.from({ length: this.#groups }, () => []);
    this.#window = new TickWindow(this.#config.tickRate * this.#config.statsWindowSeconds);
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
    });
    this.#loop = new TickLoop({
      rate: this.#config.tickRate,
      now: this.#monotonic,
      onTick: (info) => this.#tick(info),
      onTickDone: (info, durationMs, cpuMs) => {
        this.#window.record(info.startedAt, info.lagMs, durationMs, cpuMs);
        this.#metrics.ticks.inc();
        this.#metrics.tickLag.observe(info.lagMs / 1000);
        this.#metrics.tickDuration.observe(durationMs / 1000);
      },
      onSkip: (skipped) => {
        this.#metrics.ticksSkipped.inc(skipped);
        this.#log.warn({ skipped }, `tick loop fell more than 1 s behind; skipped ${skipped} ticks`);
      },
    });
  }

  /** Starts the tick loop and the connection heartbeat. */
  start(): void {
    this.#loop.start();
    this.#heartbeat = setInterval(() => this.#ping(), this.#config.pingIntervalMs);
  }

  get running(): boolean {
    return this.#loop.running;
  }

  get playersOnline(): number {
    return this.#playing.size;
  }

  onlinePlayers(): Iterable<string> {
    return this.#byName.keys();
  }

  // ----------------------------------------------------------------------------------------------------
  // Status, maintenance, drain

  #refusal(): RefusalReason | undefined {
    if (this.#shuttingDown !== undefined || this.#drain !== undefined) return 'draining';
    if (this.#maintenance.enabled) return 'maintenance';
    return undefined;
  }

  status(): GameStatus {
    const drain = this.#drain;
    return {
      instance: this.#config.instance,
      version: this.#config.version,
      startedAt: this.#startedAt.toISOString(),
      uptimeSeconds: Math.round((this.#now().getTime() - this.#startedAt.getTime()) / 100) / 10,
      playersOnline: this.#playing.size,
      pendingWrites: this.#store.pendingWrites(),
      sessions: this.#conns.size,
      sessionsTotal: this.#sessionsTotal,
      acceptingLogins: this.#refusal() === undefined,
      maintenance: { ...this.#maintenance },
      draining: drain !== undefined,
      drain: drain ? { startedAt: drain.startedAt, deadline: drain.deadline, message: drain.message } : null,
      shuttingDown: this.#shuttingDown !== undefined,
      tickRate: this.#config.tickRate,
      ticksPerSecond: Math.round(this.#window.ticksPerSecond() * 100) / 100,
      tickLagMs: this.#window.lag(),
      tickDurationMs: this.#window.duration(),
      tickCpuMs: this.#window.cpu(),
      windowSeconds: this.#config.statsWindowSeconds,
    };
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown !== undefined;
  }

  /** Sets maintenance mode; a change is announced to every player. Returns whether anything changed. */
  setMaintenance(next: {
    enabled: boolean;
    message?: string | undefined;
    startsAt?: string | undefined;
  }): boolean {
    const state: MaintenanceState = {
      enabled: next.enabled,
      message: next.message ?? null,
      startsAt: next.startsAt ?? null,
    };
    const current = this.#maintenance;
    if (
      current.enabled === state.enabled &&
      current.message === state.message &&
      current.startsAt === state.startsAt
    )
      return false;
    this.#maintenance = state;
    this.#metrics.maintenanceEnabled.set(state.enabled ? 1 : 0);
    this.#log.info(
      { maintenance: state, players: this.#playing.size },
      state.enabled ? 'maintenance mode on: new logins refused' : 'maintenance mode off',
    );
    this.#broadcast({ type: 'notice', kind: 'maintenance', ...state });
    return true;
  }

  /**
   * Sends every logged-in player an announcement (`POST /ops/notice`), e.g. maintenance ahead; logins
   * stay open and nothing else changes. Returns how many players it was sent to (a player whose client
   * has stopped reading, over the hard send cap, is not counted).
   */
  announce(notice: { message: string; startsAt?: string | undefined; endsAt?: string | undefined }): number {
    const text = JSON.stringify({
      type: 'notice',
      kind: 'announcement',
      message: notice.message,
      startsAt: notice.startsAt ?? null,
      endsAt: notice.endsAt ?? null,
    } satisfies ServerMessage);
    let delivered = 0;
    for (const conn of this.#playing) if (this.#sendText(conn, text, false)) delivered++;
    this.#log.info(
      { players: this.#playing.size, delivered, startsAt: notice.startsAt, endsAt: notice.endsAt },
      `announcement sent to ${delivered} players`,
    );
    return delivered;
  }

  /**
   * Starts draining (or brings the deadline forward): logins are refused, players are asked to leave, and
   * those still here at the deadline are saved and disconnected.
   */
  drain(options: { message?: string | undefined; deadlineSeconds: number }): void {
    const nowMs = this.#now().getTime();
    const deadlineMs = nowMs + options.deadlineSeconds * 1000;
    if (this.#drain && this.#drain.deadlineMs <= deadlineMs) return;
    this.#drain = {
      startedAt: this.#drain?.startedAt ?? new Date(nowMs).toISOString(),
      deadline: new Date(deadlineMs).toISOString(),
      deadlineMs,
      message: options.message ?? this.#drain?.message ?? 'This server is closing: please save and leave.',
    };
    this.#metrics.draining.set(1);
    this.#log.info(
      { deadline: this.#drain.deadline, players: this.#playing.size },
      'draining: new logins refused, players asked to leave',
    );
    this.#announceDrain();
    clearTimeout(this.#drainTimer);
    this.#drainTimer = setTimeout(() => this.#kickAll('kicked', CloseCode.kicked), deadlineMs - nowMs);
  }

  #announceDrain(): void {
    const drain = this.#drain;
    if (!drain) return;
    const secondsLeft = Math.max(0, Math.round((drain.deadlineMs - this.#now().getTime()) / 1000));
    this.#broadcast({ type: 'drain', message: drain.message, deadline: drain.deadline, secondsLeft });
  }

  /** Saves and disconnects every player; closes connections that have not logged in. */
  #kickAll(reason: EndReason, code: CloseCode): void {
    const kicked = this.#playing.size;
    for (const conn of [...this.#conns.values()]) {
      const saved = this.#endSession(conn, reason);
      if (saved) this.#byeOnceSaved(conn, reason, saved, code, reason);
      else this.#close(conn, code, reason);
    }
    if (kicked > 0) this.#log.info({ kicked, reason }, `disconnected ${kicked} players (${reason})`);
  }

  /** Resolves when no player is online. */
  #whenEmpty(): Promise<void> {
    if (this.#playing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#emptyWaiters.add(resolve));
  }

  /**
   * Shuts the game down: refuses logins, asks players to leave within `drainSeconds`, then saves and
   * disconnects the rest (end reason `shutdown`) and stops the loop. Every session has ended when it
   * resolves.
   */
  shutdown(drainSeconds: number): Promise<void> {
    this.#shuttingDown ??= (async () => {
      const deadlineMs = this.#now().getTime() + drainSeconds * 1000;
      this.#log.info({ players: this.#playing.size, drainSeconds }, 'shutting down: draining players');
      clearTimeout(this.#drainTimer);
      this.#drain = {
        startedAt: this.#drain?.startedAt ?? this.#now().toISOString(),
        deadline: new Date(deadlineMs).toISOString(),
        deadlineMs,
        message: 'The server is shutting down: please save and leave.',
      };
      this.#metrics.draining.set(1);
      if (drainSeconds > 0 && this.#playing.size > 0) {
        this.#announceDrain();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.#whenEmpty(),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, drainSeconds * 1000);
          }),
        ]);
        clearTimeout(timer);
      }
      this.#kickAll('shutdown', CloseCode.goingAway);
      this.#loop.stop();
      clearInterval(this.#heartbeat);
    })();
    return this.#shuttingDown;
  }

  /** Waits (at most `ms`) for the sockets' close handshakes, then cuts what is left. */
  async closeSockets(ms: number): Promise<void> {
    const open = [...this.#wss.clients];
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(
        open.map(
          (ws) =>
            new Promise<void>((resolve) => {
              if (ws.readyState === WebSocket.CLOSED) resolve();
              else ws.once('close', () => resolve());
            }),
        ),
      ),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
    clearTimeout(timer);
    clearInterval(this.#heartbeat);
    for (const ws of this.#wss.clients) ws.terminate();
    this.#wss.close();
  }

  // ----------------------------------------------------------------------------------------------------
  // Connections

  /** Handles an HTTP upgrade to `/play`. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.#shuttingDown !== undefined) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws));
  }

  #accept(ws: WebSocket): void {
    const id = this.#nextId++;
    const conn: Connection = {
      id,
      ws,
      group: id % this.#groups,
      state: 'new',
      name: undefined,
      avatar: undefined,
      session: undefined,
      tokens: this.#config.maxInputsPerSecond,
      refilledAt: this.#monotonic(),
      malformed: 0,
      loginTimer: undefined,
      missedPongs: 0,
      onPong: new Set(),
      slowSince: undefined,
      killTimer: undefined,
    };
    this.#conns.set(id, conn);
    this.#metrics.sessionsOpen.set(this.#conns.size);
    ws.on('message', (data, isBinary) => {
      try {
        this.#onMessage(conn, data, isBinary);
      } catch (err) {
        this.#metrics.errors.inc({ kind: 'internal' });
        this.#log.error({ err, conn: conn.id }, 'internal error handling a player message');
      }
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports protocol violations (oversized frame, bad opcode) here and closes the socket itself.
      this.#metrics.badMessages.inc();
      this.#badInput(
        { conn: conn.id, player: conn.name, problem: err.message, code: err.code },
        'malformed frame from a player; connection closed',
      );
    });
    ws.on('pong', () => {
      conn.missedPongs = 0;
      for (const wake of [...conn.onPong]) wake();
    });
    ws.on('close', () => this.#onClose(conn));
    if (this.#conns.size > this.#config.maxPlayers) {
      this.#refuse(conn, 'full', `the server is full (${this.#config.maxPlayers} players)`);
      return;
    }
    conn.loginTimer = setTimeout(() => {
      if (conn.state === 'new') this.#close(conn, CloseCode.loginTimeout, 'no login in time');
    }, LOGIN_TIMEOUT_MS);
  }

  #onClose(conn: Connection): void {
    clearTimeout(conn.loginTimer);
    clearTimeout(conn.killTimer);
    for (const wake of [...conn.onPong]) wake();
    if (conn.malformed > 1)
      this.#badInput(
        { conn: conn.id, player: conn.name, malformed: conn.malformed },
        `${conn.malformed} malformed messages from a player in all; connection closed`,
      );
    // The socket is gone: nobody to tell whether the save was written (it is counted in pendingWrites).
    if (conn.state === 'playing')
      void this.#endSession(conn, this.#shuttingDown !== undefined ? 'shutdown' : 'disconnect');
    if (conn.name !== undefined && this.#byName.get(conn.name) === conn) this.#byName.delete(conn.name);
    conn.state = 'closed';
    this.#conns.delete(conn.id);
    this.#metrics.sessionsOpen.set(this.#conns.size);
  }

  #onMessage(conn: Connection, data: RawData, isBinary: boolean): void {
    if (conn.state === 'closed') return;
    // Rate limit before parsing: a flood costs a subtraction per frame.
    const now = this.#monotonic();
    const rate = this.#config.maxInputsPerSecond;
    conn.tokens = Math.min(rate, conn.tokens + ((now - conn.refilledAt) * rate) / 1000);
    conn.refilledAt = now;
    if (conn.tokens < 1) {
      this.#metrics.inputsDropped.inc({ reason: 'rate' });
      return;
    }
    conn.tokens -= 1;
    if (isBinary) {
      this.#malformed(conn, 'binary frames are not accepted; send JSON text');
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(rawText(data));
    } catch {
      this.#malformed(conn, 'not JSON');
      return;
    }
    const parsed = clientMessageSchema.safeParse(json);
    if (!parsed.success) {
      this.#malformed(conn, describeIssue(parsed.error));
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case 'login':
        if (conn.state !== 'new') {
          this.#malformed(conn, 'already logged in');
          return;
        }
        void this.#login(conn, message.name);
        return;
      case 'move':
      case 'chat':
        if (conn.state !== 'playing') {
          this.#malformed(conn, `log in before sending ${message.type}`);
          return;
        }
        if (this.#queue.length >= queueCap(this.#config)) {
          this.#metrics.inputsDropped.inc({ reason: 'overflow' });
          return;
        }
        this.#queue.push({ conn, at: now, input: message });
        return;
      case 'leave':
        if (conn.state === 'playing') this.#queue.push({ conn, at: now, input: message });
        else this.#leave(conn);
        return;
    }
  }

  /**
   * Bad input is answered (`error`) and counted. Before login the first one closes the connection (a
   * client that cannot log in properly has nothing to say); after login only the first per connection is
   * logged, and the 20th closes it. Never ERROR: the client is at fault, not the server.
   */
  #malformed(conn: Connection, problem: string): void {
    conn.malformed += 1;
    this.#metrics.badMessages.inc();
    this.#send(conn, { type: 'error', message: problem }, true);
    if (conn.state === 'new') {
      this.#badInput({ conn: conn.id, problem }, 'malformed message before login; connection closed');
      this.#close(conn, CloseCode.policy, 'malformed message before login');
      return;
    }
    if (conn.malformed === 1)
      this.#badInput(
        { conn: conn.id, player: conn.name, problem },
        'malformed message from a player (later ones on this connection are counted, not logged)',
      );
    if (conn.malformed >= MAX_MALFORMED) this.#close(conn, CloseCode.policy, 'too many malformed messages');
  }

  /** A WARN line about bad client input, at most BAD_INPUT_LOG_LINES per window (the rest are counted). */
  #badInput(fields: Record<string, unknown>, message: string): void {
    const now = this.#monotonic();
    const window = this.#badInputWindow;
    if (now - window.startedAt >= BAD_INPUT_LOG_WINDOW_MS) {
      const suppressed = window.suppressed;
      this.#badInputWindow = { startedAt: now, lines: 0, suppressed: 0 };
      if (suppressed > 0)
        this.#log.warn(
          { suppressed },
          `${suppressed} more lines about malformed input were not logged (see game_bad_messages_total)`,
        );
    }
    const current = this.#badInputWindow;
    if (current.lines >= BAD_INPUT_LOG_LINES) {
      current.suppressed += 1;
      return;
    }
    current.lines += 1;
    this.#log.warn(fields, message);
  }

  async #login(conn: Connection, name: string): Promise<void> {
    clearTimeout(conn.loginTimer);
    const refusal = this.#refusal();
    if (refusal) return this.#refuse(conn, refusal, this.#refusalMessage(refusal));
    conn.state = 'joining';
    conn.name = name;
    // The same name online here: refused while that session answers a ping; taken over when it does not
    // (the player lost their connection and is back before the heartbeat noticed).
    let replaced: { x: number; y: number } | undefined;
    const existing = this.#byName.get(name);
    if (existing) {
      const alive = existing.state !== 'playing' || (await this.#answers(existing, DUPLICATE_PROBE_MS));
      if (conn.state !== 'joining') return; // closed while probing
      const now = this.#byName.get(name);
      if (alive || (now !== undefined && now !== existing))
        return this.#refuse(conn, 'duplicate', `${name} is already playing on this server`);
      if (now === existing && existing.avatar) {
        replaced = { x: existing.avatar.x, y: existing.avatar.y };
        this.#replace(existing);
      }
    }
    this.#byName.set(name, conn);
    // Taking over: the position is the old session's, not the save still on its way to Redis.
    const saved = replaced ?? (await this.#store.loadPlayer(name));
    if (conn.state !== 'joining') return; // closed while loading
    const late = this.#refusal();
    if (late) {
      this.#byName.delete(name);
      return this.#refuse(conn, late, this.#refusalMessage(late));
    }
    const position = saved ?? this.#world.randomPosition(this.#random);
    const session: SessionRecord = { id: randomUUID(), player: name, startedAt: this.#now() };
    this.#store.sessionStarted(session.id, name, session.startedAt);
    conn.session = session;
    conn.avatar = this.#world.add(conn.id, name, position.x, position.y);
    conn.state = 'playing';
    this.#playing.add(conn);
    this.#sessionsTotal += 1;
    this.#metrics.logins.inc();
    this.#metrics.playersConnected.set(this.#playing.size);
    this.#log.debug({ player: name, conn: conn.id }, 'player joined');
    this.#send(conn, {
      type: 'welcome',
      name,
      instance: this.#config.instance,
      version: this.#config.version,
      x: round1(conn.avatar.x),
      y: round1(conn.avatar.y),
      tickRate: this.#config.tickRate,
      maintenance: { ...this.#maintenance },
    });
  }

  #refusalMessage(reason: RefusalReason): string {
    switch (reason) {
      case 'maintenance':
        return this.#maintenance.message ?? 'The server is under maintenance.';
      case 'draining':
        return this.#drain?.message ?? 'The server is closing.';
      case 'duplicate':
        return 'That name is already playing on this server.';
      case 'full':
        return 'The server is full.';
    }
  }

  /** Whether `conn` answers a ping within `ms`. */
  #answers(conn: Connection, ms: number): Promise<boolean> {
    if (conn.ws.readyState !== WebSocket.OPEN) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (alive: boolean): void => {
        clearTimeout(timer);
        conn.onPong.delete(wake);
        resolve(alive);
      };
      const wake = (): void => done(conn.ws.readyState === WebSocket.OPEN);
      const timer = setTimeout(() => done(false), ms);
      conn.onPong.add(wake);
      conn.ws.ping();
    });
  }

  /** Ends a session that a newer login with the same name takes over (its connection stopped answering). */
  #replace(old: Connection): void {
    this.#log.info({ conn: old.id }, 'a session that stopped answering was taken over by a new login');
    this.#log.debug({ conn: old.id, player: old.name }, 'session replaced');
    const saved = this.#endSession(old, 'replaced');
    if (saved) this.#byeOnceSaved(old, 'replaced', saved, CloseCode.replaced, 'replaced by a newer login');
    else this.#close(old, CloseCode.replaced, 'replaced by a newer login');
  }

  /** Pings every connection; cuts those that missed two pongs in a row. */
  #ping(): void {
    for (const conn of this.#conns.values()) {
      if (conn.ws.readyState !== WebSocket.OPEN) continue;
      if (conn.missedPongs >= 2) {
        this.#log.info(
          { conn: conn.id, missedPongs: conn.missedPongs },
          'a connection stopped answering pings; cut',
        );
        conn.ws.terminate();
        continue;
      }
      conn.missedPongs += 1;
      conn.ws.ping();
    }
  }

  #refuse(conn: Connection, reason: RefusalReason, message: string): void {
    this.#metrics.loginsRefused.inc({ reason });
    this.#log.debug({ conn: conn.id, reason }, 'login refused');
    this.#send(conn, { type: 'refused', reason, message });
    this.#close(conn, REFUSAL_CLOSE_CODE[reason], reason);
  }

  /** The player asked to save and leave. */
  #leave(conn: Connection): void {
    const reason: EndReason = this.#shuttingDown ? 'shutdown' : this.#drain ? 'drain' : 'leave';
    const saved = this.#endSession(conn, reason);
    if (saved) this.#byeOnceSaved(conn, reason, saved, CloseCode.normal, 'bye');
    else this.#close(conn, CloseCode.normal, 'bye');
  }

  /**
   * Sends `bye` once the player's position is written (`saved: true`), or with `saved: false` when it is
   * not written within BYE_SAVE_WAIT_MS (a database down: the write stays queued and counted in
   * `pendingWrites`), then closes. The player is out of the game already: `playersOnline` does not wait.
   */
  #byeOnceSaved(
    conn: Connection,
    reason: EndReason,
    saved: Promise<boolean>,
    code: CloseCode,
    closeReason: string,
  ): void {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), BYE_SAVE_WAIT_MS);
    });
    void Promise.race([saved, bound]).then((written) => {
      clearTimeout(timer);
      this.#send(conn, { type: 'bye', reason, saved: written });
      this.#close(conn, code, closeReason);
    });
  }

  /**
   * Ends a playing session: out of the world, position saved, session row ended, presence removed.
   * Returns whether the position gets written (see {@link GameStore.savePlayer}), or undefined when the
   * connection was not playing.
   */
  #endSession(conn: Connection, reason: EndReason): Promise<boolean> | undefined {
    if (conn.state !== 'playing' || !conn.session || !conn.avatar) return undefined;
    this.#world.remove(conn.id);
    this.#playing.delete(conn);
    if (conn.name !== undefined && this.#byName.get(conn.name) === conn) this.#byName.delete(conn.name);
    const saved = this.#store.savePlayer(conn.session.player, round1(conn.avatar.x), round1(conn.avatar.y));
    this.#store.sessionEnded(conn.session, reason, this.#now());
    conn.state = 'closed';
    this.#metrics.playersConnected.set(this.#playing.size);
    this.#log.debug({ player: conn.session.player, reason }, 'player left');
    if (this.#playing.size === 0) {
      for (const resolve of this.#emptyWaiters) resolve();
      this.#emptyWaiters.clear();
    }
    return saved;
  }

  /** Starts the close handshake, and cuts the socket if the client does not finish it in time. */
  #close(conn: Connection, code: CloseCode, reason: string): void {
    clearTimeout(conn.loginTimer);
    if (conn.state !== 'playing') conn.state = 'closed';
    if (conn.ws.readyState === WebSocket.OPEN || conn.ws.readyState === WebSocket.CONNECTING) {
      conn.ws.close(code, reason);
      clearTimeout(conn.killTimer);
      conn.killTimer = setTimeout(() => conn.ws.terminate(), CLOSE_GRACE_MS);
    }
  }

  #send(conn: Connection, message: ServerMessage, droppable = false): void {
    if (conn.ws.readyState === WebSocket.OPEN) this.#sendText(conn, JSON.stringify(message), droppable);
  }

  /**
   * Every send goes through here. A client with more than MAX_BUFFERED_BYTES unsent gets nothing
   * `droppable` (snapshots, chat, error replies) and nothing at all past HARD_BUFFERED_BYTES; one that
   * stays over MAX_BUFFERED_BYTES for SLOW_CLIENT_MS is not reading and is closed (4007).
   */
  #sendText(conn: Connection, text: string, droppable: boolean): boolean {
    const ws = conn.ws;
    if (ws.readyState !== WebSocket.OPEN) return false;
    if (!this.#keepsUp(conn)) {
      if (droppable || ws.bufferedAmount > HARD_BUFFERED_BYTES) return false;
      // #keepsUp may just have closed it (4007): a send now would never arrive, nor count as delivered.
      if (ws.readyState !== WebSocket.OPEN) return false;
    }
    ws.send(text);
    return true;
  }

  /** False when the client is behind (over MAX_BUFFERED_BYTES); closes it when it has been for too long. */
  #keepsUp(conn: Connection): boolean {
    const buffered = conn.ws.bufferedAmount;
    if (buffered <= MAX_BUFFERED_BYTES) {
      conn.slowSince = undefined;
      return true;
    }
    const now = this.#monotonic();
    conn.slowSince ??= now;
    if (now - conn.slowSince >= SLOW_CLIENT_MS && conn.ws.readyState === WebSocket.OPEN) {
      this.#log.warn(
        { conn: conn.id, bufferedBytes: buffered, seconds: Math.round((now - conn.slowSince) / 1000) },
        'a player is not reading what is sent; closed (4007)',
      );
      this.#close(conn, CloseCode.tooSlow, 'not reading');
    }
    return false;
  }

  /** Sends one message to every logged-in player (serialised once). */
  #broadcast(message: ServerMessage): void {
    const text = JSON.stringify(message);
    for (const conn of this.#playing) this.#sendText(conn, text, false);
  }

  // ----------------------------------------------------------------------------------------------------
  // The tick

  #tick(info: TickInfo): void {
    const queue = this.#queue;
    if (queue.length > 0) {
      this.#queue = [];
      const stopAt = info.startedAt + this.#loop.periodMs / 2;
      const budget = this.#config.inputBudgetMs;
      const batchSize = this.#config.inputBatchSize;
      let processed = 0;
      let late = 0;
      let i = 0;
      while (i < queue.length) {
        const batchStart = this.#monotonic();
        const end = Math.min(queue.length, i + batchSize);
        for (; i < end; i++) {
          const item = queue[i]!;
          if (item.conn.state !== 'playing') continue;
          if (item.input.type === 'leave') {
            this.#leave(item.conn);
            continue;
          }
          if (batchStart - item.at > budget) {
            late += 1;
            continue;
          }
          this.#apply(item.conn, item.input);
          processed += 1;
        }
        if (this.#monotonic() >= stopAt) break;
      }
      // Nothing arrives during a tick (one thread), so what is left goes back as the whole queue.
      if (i < queue.length) this.#queue = queue.slice(i);
      if (processed > 0) this.#metrics.inputsProcessed.inc(processed);
      if (late > 0) this.#metrics.inputsDropped.inc({ reason: 'late' }, late);
    }
    this.#sendSnapshots(info.tick);
  }

  #apply(conn: Connection, input: MoveInput | ChatInput): void {
    const avatar = conn.avatar!;
    if (input.type === 'move') {
      this.#world.move(avatar, input.dx, input.dy);
      return;
    }
    const text = JSON.stringify({ type: 'chat', from: avatar.name, text: input.text, scope: input.scope });
    if (input.scope === 'all') {
      // Sent with each player's next snapshot: one broadcast costs a send per player, spread over the
      // snapshot period instead of hundreds of sends in one tick.
      for (const box of this.#outbox) {
        if (box.length >= MAX_OUTBOX) {
          box.shift();
          this.#metrics.inputsDropped.inc({ reason: 'overflow' });
        }
        box.push(text);
      }
      return;
    }
    this.#world.forEachNear(avatar, NEAR_RADIUS, (other) => {
      const target = this.#conns.get(other.id);
      if (target) this.#sendText(target, text, true);
    });
  }

  #sendSnapshots(tick: number): void {
    const group = tick % this.#groups;
    const chat = this.#outbox[group]!;
    if (chat.length > 0) this.#outbox[group] = [];
    for (const conn of this.#playing) {
      if (conn.group !== group) continue;
      const avatar = conn.avatar!;
      if (conn.ws.readyState !== WebSocket.OPEN) continue;
      for (const text of chat) this.#sendText(conn, text, true);
      if (!this.#keepsUp(conn)) continue;
      // Built as text: snapshots are most of the traffic, and each other player's part is the same for
      // everyone who sees it this tick (names are [A-Za-z0-9_-], so they need no escaping).
      let players = '';
      let count = 0;
      this.#world.forEachNear(avatar, NEAR_RADIUS, (other) => {
        if (other === avatar) return true;
        if (other.fragmentTick !== tick) {
          other.fragment = `["${other.name}",${round1(other.x)},${round1(other.y)}]`;
          other.fragmentTick = tick;
        }
        players += count === 0 ? other.fragment : `,${other.fragment}`;
        count += 1;
        return count < SNAPSHOT_MAX_PLAYERS;
      });
      this.#sendText(
        conn,
        `{"type":"snapshot","tick":${tick},"x":${round1(avatar.x)},"y":${round1(avatar.y)},"players":[${players}]}`,
        true,
      );
    }
  }
}
