/**
 * `gameops-bots`: simulated players against one or more game servers.
 *
 *   gameops-bots --players 500 --duration 60s [--url ws://127.0.0.1:7700/play ...] [--ramp 5s] [--json]
 *                [--events]
 *
 * Prints a summary at the end (or on Ctrl-C). Exit code 0 when at least one bot logged in, 1 when none
 * could, 2 for bad usage.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import {
  DEFAULT_MAX_RECONNECTS,
  DEFAULT_PING_INTERVAL_MS,
  startBots,
  type BotSummary,
} from './bot-runner.ts';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

function duration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`"${text}" is not a duration (e.g. 500ms, 30s, 5m)`);
  return Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
}

function intIn(min: number, max: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max)
      throw new InvalidArgumentError(`an integer from ${min} to ${max}`);
    return value;
  };
}

const wsUrl = z
  .url({ protocol: /^wss?$/, error: 'a ws:// or wss:// URL' })
  .refine((u) => !new URL(u).username && !new URL(u).password, 'no credentials in the URL');

function url(text: string, previous: string[] | undefined): string[] {
  const parsed = wsUrl.safeParse(text);
  if (!parsed.success)
    throw new InvalidArgumentError(`"${text}": ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return [...(previous ?? []), parsed.data];
}

function render(summary: BotSummary): string {
  const refusedBy = Object.entries(summary.refusedByReason)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ');
  const notices = Object.entries(summary.noticesByKind)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  return [
    `bots: ${summary.players} players for ${summary.durationSeconds} s`,
    `  connected   ${summary.connected} (logins ${summary.logins}, reconnects ${summary.reconnects}, online at end ${summary.onlineAtEnd})`,
    `  refused     ${summary.refused}${refusedBy ? ` (${refusedBy})` : ''}`,
    `  notices     ${summary.noticesSeen} seen${notices ? ` (${notices})` : ''}`,
    `  drained     ${summary.drained}`,
    `  gave up     ${summary.gaveUp}`,
    `  errors      ${summary.errors} (connect failures ${summary.connectFailures}, silent servers dropped ${summary.timeouts})`,
    `  messages    ${summary.messagesSent} sent, ${summary.messagesReceived} received, ${summary.messagesPerSecond}/s` +
      ` (snapshots ${summary.snapshotsReceived}, chat ${summary.chatReceived})`,
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('gameops-bots')
    .description('Simulated players for a game server speaking the gameops reference protocol')
    .addOption(new Option('--players <n>', 'number of bots').argParser(intIn(1, 100_000)).default(10))
    .addOption(
      new Option('--duration <d>', 'how long to run, ramp included')
        .argParser(duration)
        .default(60_000, '60s'),
    )
    .addOption(new Option('--url <ws-url>', 'game server (repeat to spread bots)').argParser(url))
    .addOption(new Option('--ramp <d>', 'spread logins over this long').argParser(duration).default(0, '0s'))
    .addOption(new Option('--move-rate <n>', 'moves per second per bot').argParser(intIn(1, 20)).default(4))
    .addOption(
      new Option('--chat-every <d>', 'mean time between chat messages')
        .argParser(duration)
        .default(30_000, '30s'),
    )
    .addOption(
      new Option(
        '--max-reconnects <n>',
        'reconnection attempts in a row before a bot gives up; waits start at 250 ms and double up to 5 s, ' +
          'jittered, so the default keeps trying for about 40 to 80 s (a server restart)',
      )
        .argParser(intIn(0, 1000))
        .default(DEFAULT_MAX_RECONNECTS),
    )
    .addOption(
      new Option(
        '--ping-interval <d>',
        'each bot pings its server this often; a server silent (no message, no pong) for two intervals ' +
          'is taken for dead and the bot reconnects',
      )
        .argParser(duration)
        .default(DEFAULT_PING_INTERVAL_MS, `${DEFAULT_PING_INTERVAL_MS / 1000}s`),
    )
    .addOption(
      new Option('--name-prefix <prefix>', 'bot names are <prefix>-<i>').argParser((text: string) => {
        if (!/^[A-Za-z0-9_-]{1,20}$/.test(text))
          throw new InvalidArgumentError('1 to 20 letters, digits, "_" or "-"');
        return text;
      }),
    )
    .option('--json', 'print the summary as JSON')
    .option(
      '--events',
      'print notices, drains, refusals and bots giving up as JSON lines on stdout as they happen',
    )
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });
  try {
    program.parse(argv);
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : 2;
  }
  const opts = program.opts<{
    players: number;
    duration: number;
    url?: string[];
    ramp: number;
    moveRate: number;
    chatEvery: number;
    maxReconnects: number;
    pingInterval: number;
    namePrefix?: string;
    json?: boolean;
    events?: boolean;
  }>();
  if (opts.pingInterval < 100) {
    process.stderr.write('gameops-bots: --ping-interval must be at least 100ms\n');
    return 2;
  }
  if (opts.ramp > opts.duration) {
    process.stderr.write('gameops-bots: --ramp cannot be longer than --duration\n');
    return 2;
  }
  const urls = opts.url ?? ['ws://127.0.0.1:7700/play'];
  const run = startBots({
    players: opts.players,
    durationMs: opts.duration,
    urls,
    rampMs: opts.ramp,
    moveRate: opts.moveRate,
    chatIntervalMs: opts.chatEvery,
    maxReconnects: opts.maxReconnects,
    pingIntervalMs: opts.pingInterval,
    ...(opts.namePrefix ? { namePrefix: opts.namePrefix } : {}),
    log: (line) => process.stderr.write(`gameops-bots: ${line}\n`),
  });
  process.stderr.write(
    `gameops-bots: ${opts.players} bots against ${urls.join(', ')} for ${opts.duration / 1000} s` +
      (opts.ramp > 0 ? ` (ramp ${opts.ramp / 1000} s)` : '') +
      '\n',
  );
  if (opts.events)
    run.events.on('event', (event) => {
      // Logins, closes and protocol errors are too many to print one by one; the summary counts them.
      if (event.type === 'login' || event.type === 'closed' || event.type === 'error') return;
      process.stdout.write(`${JSON.stringify({ event })}\n`);
    });
  const interrupt = (): void => void run.stop();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const summary = await run.done;
  process.stdout.write(opts.json ? `${JSON.stringify(summary)}\n` : `${render(summary)}\n`);
  return summary.connected > 0 ? 0 : 1;
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`gameops-bots: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
