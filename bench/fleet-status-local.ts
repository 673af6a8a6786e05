/**
 * `gameops fleet status` over 500 local instances: target < 1 s.
 *
 * What is timed is what the command does: `createFleet(...).status()` (src/platform/fleet.ts), i.e. the
 * local adapter's `instances()` (state file, /proc liveness, one readiness probe per instance) plus one
 * `GET /ops/status` per ready instance through the game-server client, with their concurrency caps;
 * `instances()` alone is timed too. 5 runs each, medians printed.
 *
 * The game servers: 500 Node processes do not fit this machine (the mini game server's RSS is measured
 * and printed: ~80 MB each, ~40 GB for 500 on a 24 GiB host), so each instance is a minimal responder in
 * C (compiled here with gcc) that speaks the part of the contract being measured: `GET /ops/status` with
 * the bearer token answering the contract's status document, `GET /metrics`, a JSON log line on start.
 * The 500 are started, and stopped at the end, through the adapter itself (scale).
 *
 * Usage: node bench/fleet-status-local.ts [instances]
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { systemClock } from '../src/core/index.ts';
import { createFleet } from '../src/platform/fleet.ts';
import { createGameServerClient } from '../src/platform/game-client.ts';
import { createLocalPlatform } from '../src/platform/local/index.ts';
import {
  MINI_SERVER,
  destroyFleet,
  freePortBlock,
  localConfig,
  randomToken,
  tempDataDir,
} from '../src/platform/local/test-support.ts';

const run = promisify(execFile);
const COUNT = Number(process.argv[2] ?? 500);
const RUNS = 5;

const RESPONDER_C = String.raw`
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v && *v ? v : fallback;
}

static int same(const char *given, size_t given_len, const char *expected) {
  size_t n = strlen(expected);
  unsigned char diff = given_len != n;
  for (size_t i = 0; i < n; i++) diff |= (unsigned char)(i < given_len ? given[i] : 0) ^ (unsigned char)expected[i];
  return diff == 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  int port = atoi(env_or("GAME_PORT", "0"));
  const char *host = env_or("GAME_HOST", "127.0.0.1");
  const char *instance = env_or("GAME_INSTANCE", "game-?");
  const char *version = env_or("GAME_VERSION", "unknown");
  char expected[600] = "";
  const char *token = getenv("GAME_OPS_TOKEN");
  if (token && *token) snprintf(expected, sizeof expected, "Bearer %s", token);
  unsetenv("GAME_OPS_TOKEN");
  struct timeval started;
  gettimeofday(&started, NULL);
  char started_iso[40];
  strftime(started_iso, sizeof started_iso, "%Y-%m-%dT%H:%M:%S", gmtime(&started.tv_sec));
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, host, &addr.sin_addr);
  if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 512) < 0) {
    printf("{\"time\":\"%s.%03ldZ\",\"level\":\"FATAL\",\"msg\":\"cannot listen\",\"port\":%d}\n", started_iso, (long)started.tv_usec / 1000, port);
    return 1;
  }
  printf("{\"time\":\"%s.%03ldZ\",\"level\":\"INFO\",\"msg\":\"listening\",\"instance\":\"%s\",\"port\":%d}\n", started_iso, (long)started.tv_usec / 1000, instance, port);
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    struct timeval tv = {2, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[8192];
    size_t n = 0;
    req[0] = 0;
    while (n < sizeof req - 1) {
      ssize_t r = read(c, req + n, sizeof req - 1 - n);
      if (r <= 0) break;
      n += (size_t)r;
      req[n] = 0;
      if (strstr(req, "\r\n\r\n")) break;
    }
    char method[8] = "", path[256] = "";
    sscanf(req, "%7s %255s", method, path);
    int authorized = expected[0] == 0;
    for (char *line = strstr(req, "\r\n"); line && !authorized; line = strstr(line + 2, "\r\n")) {
      char *h = line + 2;
      if (strncasecmp(h, "authorization:", 14) != 0) continue;
      h += 14;
      while (*h == ' ') h++;
      char *end = strstr(h, "\r\n");
      authorized = same(h, end ? (size_t)(end - h) : strlen(h), expected);
      break;
    }
    char body[2048];
    const char *status = "200 OK", *type = "application/json";
    if (strcmp(path, "/metrics") == 0) {
      type = "text/plain";
      snprintf(body, sizeof body, "game_players_connected 0\ngame_sessions_open 0\n");
    } else if (strncmp(path, "/ops/", 5) == 0 && !authorized) {
      status = "401 Unauthorized";
      snprintf(body, sizeof body, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"missing or wrong bearer token\"}}");
    } else if (strcmp(path, "/ops/status") == 0 && strcmp(method, "GET") == 0) {
      struct timeval now;
      gettimeofday(&now, NULL);
      double up = (now.tv_sec - started.tv_sec) + (now.tv_usec - started.tv_usec) / 1e6;
      snprintf(body, sizeof body,
               "{\"instance\":\"%s\",\"version\":\"%s\",\"startedAt\":\"%s.%03ldZ\",\"uptimeSeconds\":%.3f,"
               "\"playersOnline\":0,\"sessions\":0,\"sessionsTotal\":0,\"acceptingLogins\":true,"
               "\"maintenance\":{\"enabled\":false,\"message\":null,\"startsAt\":null},\"draining\":false,"
               "\"drain\":null,\"shuttingDown\":false,\"tickRate\":30,\"ticksPerSecond\":30,"
               "\"tickLagMs\":{\"p50\":0,\"p99\":0,\"max\":0},\"tickDurationMs\":{\"p50\":0,\"p99\":0,\"max\":0},"
               "\"windowSeconds\":60}",
               instance, version, started_iso, (long)started.tv_usec / 1000, up);
    } else {
      status = "404 Not Found";
      snprintf(body, sizeof body, "{\"error\":{\"code\":\"not_found\",\"message\":\"unknown path\"}}");
    }
    char response[4096];
    int len = snprintf(response, sizeof response,
                       "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       status, type, strlen(body), body);
    if (write(c, response, (size_t)len) < 0) { /* the client went away */ }
    close(c);
  }
}
`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0) * 1024;
}

/** Starts one mini game server on its own, long enough to read its resident memory. */
async function miniServerRss(): Promise<number> {
  const port = await freePortBlock(1);
  const child = spawn(process.execPath, [MINI_SERVER], {
    env: {
      PATH: process.env.PATH ?? '',
      GAME_PORT: String(port),
      GAME_INSTANCE: 'game-0',
      GAME_VERSION: 'x',
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => d.includes('listening') && resolve()),
    );
    await sleep(500);
    return await rssOf(child.pid!);
  } finally {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
}

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const dataDir = await tempDataDir();
try {
  const responderSource = join(dataDir, 'responder.c');
  const responder = join(dataDir, 'responder');
  await writeFile(responderSource, RESPONDER_C);
  await run('gcc', ['-O2', '-Wall', '-o', responder, responderSource]);

  const token = randomToken();
  const basePort = await freePortBlock(COUNT);
  const config = localConfig({
    basePort,
    replicas: COUNT,
    readinessTimeout: '60s',
    rolloutTimeout: '10m',
    command: [responder],
  });
  const platform = createLocalPlatform({ config, dataDir, opsToken: token, clock: systemClock });
  const fleet = createFleet({
    platform,
    game: createGameServerClient({ token, timeoutMs: 5000 }),
    clock: systemClock,
    artefactDir: join(dataDir, 'artefacts'),
  });

  const mini = await miniServerRss();
  let began = performance.now();
  await platform.scale(COUNT, { timeoutMs: 600_000 });
  const startMs = performance.now() - began;
  const usage = await platform.usage();
  const responderRss = usage.instances.reduce((s, u) => s + u.memoryBytes, 0) / usage.instances.length;

  const list: number[] = [];
  const status: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    began = performance.now();
    const instances = await platform.instances();
    list.push(performance.now() - began);
    if (instances.filter((i) => i.ready).length !== COUNT) throw new Error('not every instance is ready');
    began = performance.now();
    const result = await fleet.status();
    status.push(performance.now() - began);
    if (result.totals.ready !== COUNT || result.totals.notAnswering !== 0)
      throw new Error(`fleet status: ${JSON.stringify(result.totals)}`);
  }
  began = performance.now();
  await platform.scale(0, { timeoutMs: 600_000 });
  const stopMs = performance.now() - began;
  await platform.close();

  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(', ');
  const total = median(status);
  process.stdout.write(
    [
      `fleet-status-local: ${COUNT} instances, median of ${RUNS} runs`,
      `  game server: minimal C responder (RSS ${mib(responderRss)} each); the Node mini game server is ${mib(mini)} each,`,
      `    ${mib(mini * COUNT)} for ${COUNT}: more than this machine should give`,
      `  instances()                      ${median(list).toFixed(0).padStart(5)} ms   runs: ${fmt(list)}`,
      `  fleet status (instances + ${COUNT} GET /ops/status) ${total.toFixed(0).padStart(5)} ms   runs: ${fmt(status)}`,
      `  target < 1000 ms: ${total < 1000 ? 'met' : 'NOT met'} (best run ${Math.min(...status).toFixed(0)} ms)`,
      `  machine: ${cpus().length} CPUs, load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} at the end (other work shares it)`,
      `  (started ${COUNT} through scale in ${(startMs / 1000).toFixed(1)} s, stopped in ${(stopMs / 1000).toFixed(1)} s)`,
      '',
    ].join('\n'),
  );
} finally {
  // Whatever happened above, no responder outlives the benchmark.
  await destroyFleet(dataDir);
}
