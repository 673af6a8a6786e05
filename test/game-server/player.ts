/**
 * A scripted player for protocol-level tests: a raw WebSocket whose incoming messages are queued, so a
 * test can await "the next message of type X" and the close code.
 */
import { WebSocket, type ClientOptions } from 'ws';
import type { BotEvent, BotRun } from '../../examples/game-server/bot-runner.ts';
import { rawText, serverMessageSchema, type ServerMessage } from '../../examples/game-server/protocol.ts';

type Of<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

export interface TestPlayer {
  readonly ws: WebSocket;
  /** Every message received so far. */
  readonly received: ServerMessage[];
  send(message: unknown): void;
  sendRaw(data: string | Buffer): void;
  /** The next message of `type` not yet taken (past or future). */
  next<T extends ServerMessage['type']>(type: T, timeoutMs?: number): Promise<Of<T>>;
  /** Resolves with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

/** `options` go to the ws client, e.g. `{ autoPong: false }` for a player whose network has vanished. */
export async function connectPlayer(url: string, options: ClientOptions = {}): Promise<TestPlayer> {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
  const received: ServerMessage[] = [];
  const taken = new Set<ServerMessage>();
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    received.push(serverMessageSchema.parse(JSON.parse(rawText(data))));
    for (const wake of [...waiters]) wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const wake of [...waiters]) wake();
    });
  });
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    received,
    send: (message) => ws.send(JSON.stringify(message)),
    sendRaw: (data) => ws.send(data),
    next: <T extends ServerMessage['type']>(type: T, timeoutMs = 10_000) =>
      new Promise<Of<T>>((resolve, reject) => {
        const check = (): boolean => {
          const found = received.find((m) => m.type === type && !taken.has(m));
          if (!found) return false;
          taken.add(found);
          resolve(found as Of<T>);
          return true;
        };
        if (check()) return;
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(
            new Error(
              `no ${type} message within ${timeoutMs} ms; got ${received.map((m) => m.type).join(', ')}`,
            ),
          );
        }, timeoutMs);
        const wake = (): void => {
          if (check()) {
            clearTimeout(timer);
            waiters.delete(wake);
          }
        };
        waiters.add(wake);
      }),
    closed,
    close: () => ws.close(1000),
  };
}

/** Connects and logs in; resolves with the player and its welcome. */
export async function loginPlayer(
  url: string,
  name: string,
  options: ClientOptions = {},
): Promise<{ player: TestPlayer; welcome: Of<'welcome'> }> {
  const player = await connectPlayer(url, options);
  player.send({ type: 'login', name });
  return { player, welcome: await player.next('welcome') };
}

/**
 * Polls `check` until it returns a value other than undefined/false (for state with no event to await,
 * such as rows a server writes in batches). Rejects with `what` after `timeoutMs`.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not reached within ${timeoutMs} ms${last ? ` (last error: ${last instanceof Error ? last.message : 'unknown'})` : ''}`,
      );
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Resolves once `count` events of a bot run match (counting from now); rejects after `timeoutMs`. */
export function botEvents(
  run: BotRun,
  count: number,
  match: (event: BotEvent) => boolean,
  timeoutMs = 15_000,
): Promise<BotEvent[]> {
  return new Promise((resolve, reject) => {
    const seen: BotEvent[] = [];
    const timer = setTimeout(() => {
      run.events.off('event', listener);
      reject(new Error(`saw ${seen.length} of ${count} expected bot events within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (event: BotEvent): void => {
      if (!match(event)) return;
      seen.push(event);
      if (seen.length === count) {
        clearTimeout(timer);
        run.events.off('event', listener);
        resolve(seen);
      }
    };
    run.events.on('event', listener);
  });
}
