import { z } from 'zod';
import { durationSchema, formatDuration } from '../core/index.ts';

/**
 * The schema of `gameops.yaml`: the game service being operated. Public fields are forgiving (`'10s'`,
 * optional blocks with documented defaults); parsing yields the strict resolved shape. Secret fields
 * take a reference (`env:NAME`, `file:/path`); an inline value is accepted with a warning.
 */

/** A secret reference as written in the file; resolved to a Secret by load.ts. */
export const secretRefSchema = z
  .string()
  .min(1)
  .describe(
    'A secret: "env:NAME" reads an environment variable, "file:/path" reads a file. Inline values are discouraged.',
  );

const percent = z.number().min(0).max(100);
const hostSchema = z.string().min(1).max(253);
const portSchema = z.number().int().min(1).max(65535);
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/**
 * An http(s) URL without `user:password@`: a URL is printed (`gameops config check`, logs, errors), so
 * credentials go in a secret field instead; `instead` says which.
 */
function httpUrl(instead: string) {
  return z
    .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
    .refine((value) => !hasUserinfo(value), {
      error: `credentials in the URL are not allowed; use ${instead}`,
    });
}

function hasUserinfo(value: string): boolean {
  try {
    const url = new URL(value);
    return url.username !== '' || url.password !== '';
  } catch {
    // Not a URL at all: the URL check reports that.
    return false;
  }
}

/** A duration (`'10s'` or milliseconds) between `min` and `max`, inclusive. */
function boundedDuration(min: number, max: number, range: string) {
  return durationSchema.pipe(
    z.number().refine((ms) => ms >= min && ms <= max, {
      error: (issue) => `must be between ${range} (got ${formatDuration(Number(issue.input))})`,
    }),
  );
}

const timeoutSchema = boundedDuration(100, 10 * MINUTE_MS, '100ms and 10m');
const BASIC_AUTH_HINT = 'username + password: env:NAME, or bearerToken: env:NAME';

/** Basic auth (`username` + `password`) or `bearerToken`, not both; each half of Basic auth needs the other. */
function checkHttpAuth(
  auth: { username?: string | undefined; password?: string | undefined; bearerToken?: string | undefined },
  ctx: z.RefinementCtx,
): void {
  if (auth.bearerToken !== undefined && (auth.username !== undefined || auth.password !== undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: ['bearerToken'],
      message: 'cannot be combined with username/password: use one or the other',
    });
  }
  if (auth.username !== undefined && auth.password === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['username'],
      message: 'needs a password (e.g. password: env:NAME)',
    });
  }
  if (auth.password !== undefined && auth.username === undefined) {
    ctx.addIssue({ code: 'custom', path: ['password'], message: 'needs a username' });
  }
}

export const mysqlSchema = z
  .strictObject({
    host: hostSchema.default('127.0.0.1'),
    port: portSchema.default(3306),
    socketPath: z.string().optional().describe('Unix socket path; when set, host and port are ignored.'),
    user: z
      .string()
      .min(1)
      .describe('A monitoring user: needs PROCESS and SELECT on mysql.slow_log; not root.'),
    password: secretRefSchema.optional(),
    database: z.string().min(1).default('gamedb').describe('The game schema.'),
    tls: z.boolean().default(false),
    connectTimeout: timeoutSchema.default(5000).describe('From 100ms to 10m.'),
  })
  .describe('MySQL or MariaDB holding the game data.');

export const redisSchema = z
  .strictObject({
    host: hostSchema.default('127.0.0.1'),
    port: portSchema.default(6379),
    username: z.string().optional(),
    password: secretRefSchema.optional(),
    db: z.number().int().min(0).max(15).default(0),
    tls: z.boolean().default(false),
  })
  .describe('Redis used by the game (sessions, presence, caches).');

/** An HTTP service gameops reads (Alertmanager, Prometheus): a URL and optional Basic or bearer auth. */
function httpServiceSchema(urlDescription: string) {
  return z
    .strictObject({
      url: httpUrl(BASIC_AUTH_HINT).describe(urlDescription),
      username: z.string().min(1).optional().describe('Basic auth user; needs password.'),
      password: secretRefSchema.optional(),
      bearerToken: secretRefSchema
        .optional()
        .describe('A secret (env:NAME or file:/path): a bearer token, instead of username and password.'),
    })
    .superRefine(checkHttpAuth);
}

export const alertmanagerSchema = httpServiceSchema(
  'Base URL, e.g. http://alertmanager:9093 (API v2 is used); no credentials in it.',
);

export const prometheusSchema = httpServiceSchema(
  'Base URL, e.g. http://prometheus:9090; no credentials in it.',
);

export const storageSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('filesystem'), path: z.string().min(1) }),
  z.strictObject({
    kind: z.literal('s3'),
    bucket: z.string().min(3),
    prefix: z.string().default(''),
    endpoint: httpUrl('accessKeyId and secretAccessKey (env:NAME)').optional(),
    region: z.string().default('us-east-1'),
    accessKeyId: secretRefSchema.optional(),
    secretAccessKey: secretRefSchema.optional(),
  }),
]);

export const channelSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    name: z.string().min(1),
    kind: z.literal('webhook'),
    url: httpUrl('token: env:NAME'),
    token: secretRefSchema.optional(),
  }),
  z.strictObject({ name: z.string().min(1), kind: z.literal('slack'), webhookUrl: secretRefSchema }),
  z.strictObject({
    name: z.string().min(1),
    kind: z.literal('email'),
    smtpUrl: secretRefSchema,
    from: z.email(),
    to: z.array(z.email()).min(1),
  }),
]);

export const personSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, ".", "_" and "-"'),
  name: z.string().min(1),
  email: z.email().optional(),
  timezone: z.string().default('UTC'),
});

export const teamSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, ".", "_" and "-"'),
  name: z.string().min(1),
  members: z.array(z.string()).default([]),
});

const versionName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/, 'letters, digits, ".", "_", "+" and "-", at most 128');
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Environment variables by name; a bad name is reported on its own key, quoting it. */
function envMap<T extends z.ZodType>(value: T) {
  return z.record(z.string(), value).superRefine((map, ctx) => {
    for (const key of Object.keys(map))
      if (!ENV_NAME.test(key))
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `"${key}" is not an environment variable name (letters, digits and _, not starting with a digit)`,
        });
  });
}
const labelMap = z.record(z.string().min(1).max(317), z.string().max(63));

/** One version of the game server the local adapter can run: its command, as an argument array. */
export const localVersionSchema = z.strictObject({
  command: z
    .array(z.string().min(1))
    .min(1)
    .describe('Program and arguments, e.g. ["node", "examples/game-server/main.ts"]; no shell is used.'),
  cwd: z.string().optional().describe('Working directory, relative to where gameops runs (default: there).'),
  env: envMap(z.string()).default({}).describe('Extra environment for this version.'),
});

export const localPlatformSchema = z
  .strictObject({
    kind: z.literal('local'),
    replicas: z.number().int().min(0).max(1000).default(1).describe('Instances to run at first start.'),
    basePort: portSchema
      .default(7700)
      .describe('Instance i listens on basePort + i (players and the /ops endpoints).'),
    host: z.string().default('127.0.0.1').describe('Address the game servers bind to.'),
    version: versionName.describe('The version to run at first start; a key of `versions`.'),
    versions: z.record(versionName, localVersionSchema).refine((v) => Object.keys(v).length > 0, {
      error: 'list at least one version',
    }),
    env: envMap(z.string()).default({}).describe('Environment for every instance.'),
    secretEnv: envMap(secretRefSchema)
      .default({})
      .describe('Environment from secrets (env:NAME or file:/path), e.g. the game DB password.'),
    readinessTimeout: boundedDuration(1000, 30 * MINUTE_MS, '1s and 30m')
      .default(30_000)
      .describe('How long a started instance may take to answer GET /ops/status.'),
    rolloutTimeout: boundedDuration(1000, 6 * 60 * MINUTE_MS, '1s and 6h').default(10 * MINUTE_MS),
    minReady: boundedDuration(0, 10 * MINUTE_MS, '0s and 10m')
      .default(3000)
      .describe(
        'A started instance must stay up and ready this long before a rollout moves on (like minReadySeconds).',
      ),
    logs: z
      .strictObject({
        maxBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .default(10 * 1024 * 1024)
          .describe('Rotate an instance log at this size.'),
        keep: z.number().int().min(1).max(100).default(5).describe('Rotated files kept per instance.'),
      })
      .prefault({}),
  })
  .describe('Game servers as processes on this machine, supervised by gameops.');

export const kubernetesPlatformSchema = z
  .strictObject({
    kind: z.literal('kubernetes'),
    kubeconfig: z
      .string()
      .optional()
      .describe('Path to a kubeconfig; default: KUBECONFIG, ~/.kube/config, then the in-cluster account.'),
    context: z.string().optional().describe('kubeconfig context (default: its current context).'),
    namespace: z.string().min(1).max(63).default('default'),
    deployment: z.string().min(1).max(253).describe('The Deployment running the game servers.'),
    container: z
      .string()
      .optional()
      .describe('The game-server container in the pod (default: the first container).'),
    selector: labelMap
      .optional()
      .describe("Labels of the game-server pods (default: the Deployment's matchLabels)."),
    configMap: z.string().optional().describe('ConfigMap holding the game config (maintenance_mode, …).'),
    hpa: z.string().optional().describe('HorizontalPodAutoscaler of the Deployment, if any.'),
    opsPort: z
      .union([portSchema, z.string().min(1).max(15)])
      .default('ops')
      .describe('Container port (number or name) serving /ops and /metrics.'),
    rolloutTimeout: boundedDuration(1000, 6 * 60 * MINUTE_MS, '1s and 6h').default(10 * MINUTE_MS),
    requestTimeout: timeoutSchema.default(15_000).describe('Deadline of one API request, 100ms to 10m.'),
    verifyImageTag: z
      .boolean()
      .default(true)
      .describe(
        "Before set-version, ask the image's registry (anonymously) whether the tag exists; a registry that cannot be asked only warns.",
      ),
  })
  .describe('Game servers as pods of a Deployment.');

export const platformSchema = z.discriminatedUnion('kind', [localPlatformSchema, kubernetesPlatformSchema]);

/** How gameops talks to game servers (docs/game-server-contract.md). */
export const gameSchema = z
  .strictObject({
    opsToken: secretRefSchema
      .optional()
      .describe("Bearer token for the game servers' /ops endpoints (env:NAME or file:/path)."),
    requestTimeout: timeoutSchema.default(5000).describe('Per request to a game server, 100ms to 10m.'),
    tickBudgetMs: z
      .number()
      .positive()
      .default(50)
      .describe('Latency budget of one server tick (runbook §7.2); tick lag p99 is judged against it.'),
    artefactDir: z
      .string()
      .optional()
      .describe('Where diagnostics (profiles, heap snapshots) are stored (default: <dataDir>/artefacts).'),
  })
  .prefault({});

const roleSchema = z.enum(['viewer', 'responder', 'operator', 'admin']);
const nameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "_" and "-", at most 63 characters');

/** A cron schedule of a runbook (ADR 0007): fires once per occurrence across restarts and instances. */
export const scheduleSchema = z.strictObject({
  name: nameSchema.describe('Unique name of the schedule.'),
  runbook: z.string().min(1).describe('The runbook to start.'),
  cron: z
    .string()
    .min(1)
    .max(200)
    .describe('Five-field cron expression (minute hour day-of-month month day-of-week), e.g. "0 9 * * *".'),
  timezone: z.string().optional().describe('IANA time zone, e.g. Asia/Seoul (default: runbooks.timezone).'),
  params: z.record(z.string(), z.unknown()).default({}).describe('Parameters of the runbook.'),
  grace: boundedDuration(0, 7 * DAY_MS, '0s and 7d')
    .optional()
    .describe(
      'An occurrence missed while gameops was down runs at start if this recent (default: runbooks.grace).',
    ),
  enabled: z.boolean().default(true),
});

/** The runbook engine: user runbooks, schedules, who may run what, troubleshooting defaults. */
export const runbooksSchema = z
  .strictObject({
    dir: z
      .string()
      .optional()
      .describe('Directory of user runbooks (*.yaml); relative paths are relative to the config file.'),
    timezone: z.string().default('UTC').describe('Default IANA time zone of schedules.'),
    grace: boundedDuration(0, 7 * DAY_MS, '0s and 7d')
      .prefault('1h')
      .describe('Default grace period for occurrences missed while gameops was down.'),
    defaultSchedules: z
      .boolean()
      .default(true)
      .describe(
        'Schedule the built-in daily-check at 09:00 (runbooks.timezone) unless a schedule named daily-check exists.',
      ),
    schedules: z.array(scheduleSchema).default([]),
    access: z
      .record(nameSchema, z.strictObject({ run: z.array(roleSchema).min(1) }))
      .default({})
      .describe("Per runbook: the roles that may start and control it (overrides the runbook's own)."),
    leaseTtl: boundedDuration(1000, 10 * MINUTE_MS, '1s and 10m')
      .prefault('8s')
      .describe("How long a worker's claim on a run lasts without renewal (PostgreSQL: failover time)."),
    retention: boundedDuration(DAY_MS, 3650 * DAY_MS, '1d and 3650d (10 years)')
      .prefault('365d')
      .describe('How long finished runs are kept.'),
    highCpu: z
      .strictObject({
        scaleUpTo: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .optional()
          .describe('Replicas the high-cpu runbook proposes (default: current + 50 %, at least +1).'),
        profileSeconds: z
          .number()
          .int()
          .min(1)
          .max(60)
          .default(30)
          .describe('Seconds of the CPU profile (the game-server contract caps it at 60).'),
        cpuTargetPercent: z
          .number()
          .min(1)
          .max(100)
          .default(70)
          .describe('CPU (of one core) the scale-up must bring the hottest instance under.'),
      })
      .prefault({}),
    slowQueries: z
      .strictObject({
        minSeconds: z
          .number()
          .int()
          .min(1)
          .max(86400)
          .default(10)
          .describe('Queries running at least this long are listed.'),
      })
      .prefault({}),
  })
  .prefault({});

/** Daily-check thresholds; every field has a default taken from runbook §1.1. */
export const thresholdsSchema = z
  .strictObject({
    disk: z
      .strictObject({
        paths: z
          .array(z.string().min(1))
          .default([])
          .describe('Paths to check; empty means every real mounted filesystem.'),
        warnPercent: percent.default(80),
        failPercent: percent.default(90),
        inodeWarnPercent: percent.default(80),
        inodeFailPercent: percent.default(90),
      })
      .prefault({}),
    database: z
      .strictObject({
        connectionsWarnPercent: percent.default(80),
        connectionsFailPercent: percent.default(95),
        longQuerySeconds: z.number().positive().default(10),
        longQueriesWarn: z
          .number()
          .int()
          .min(1)
          .default(1)
          .describe('Warn at this many queries over longQuerySeconds.'),
        longQueriesFail: z.number().int().min(1).default(5),
        slowQueriesWarn: z
          .number()
          .int()
          .min(1)
          .default(1)
          .describe('Warn when Slow_queries grew by this much since the last check.'),
        slowQueriesFail: z.number().int().min(1).default(1000),
      })
      .prefault({}),
    redis: z
      .strictObject({
        memoryWarnPercent: percent.default(80),
        memoryFailPercent: percent.default(95),
        fragmentationWarn: z.number().positive().default(1.5),
        pings: z.number().int().min(1).max(1000).default(20),
        latencyWarnMs: z.number().positive().default(5),
        latencyFailMs: z.number().positive().default(50),
      })
      .prefault({}),
    fleet: z
      .strictObject({
        restartsWarn: z
          .number()
          .int()
          .min(1)
          .default(1)
          .describe('Warn when an instance restarted this many times since the last check.'),
        restartsFail: z.number().int().min(1).default(5),
        cpuWarnPercent: percent.default(80).describe('Of a node, or of one core for an instance.'),
        memoryWarnPercent: percent.default(85).describe("Of a node's memory."),
        errorLinesWindow: boundedDuration(MINUTE_MS, 30 * DAY_MS, '1m and 30d')
          .prefault('24h')
          .describe('Window for counting ERROR lines.'),
        errorPattern: z.string().min(1).default('ERROR').describe('Substring that marks an error line.'),
        errorLinesWarn: z.number().int().min(1).default(100).describe('Per instance, over the window.'),
        errorLinesFail: z.number().int().min(1).default(1000),
      })
      .prefault({}),
    alerts: z
      .strictObject({
        failSeverities: z.array(z.string()).default(['critical', 'page']),
        warnSeverities: z.array(z.string()).default(['warning']),
      })
      .prefault({}),
  })
  .prefault({});

export const configSchema = z
  .strictObject({
    service: z
      .strictObject({
        name: z.string().min(1).max(100),
        environment: z.string().min(1).max(50).default('production'),
      })
      .describe('The game service operated by this gameops instance.'),
    server: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8787),
      })
      .prefault({}),
    database: z
      .strictObject({
        dataDir: z.string().optional().describe('Embedded store directory (default: ./.gameops).'),
        url: secretRefSchema
          .optional()
          .describe(
            'PostgreSQL URL, postgres:// or postgresql:// (or env:DATABASE_URL); when set, PostgreSQL is the store.',
          ),
      })
      .prefault({})
      .describe("gameops's own store, not the game's database."),
    mysql: mysqlSchema.optional(),
    redis: redisSchema.optional(),
    alertmanager: alertmanagerSchema.optional(),
    prometheus: prometheusSchema.optional(),
    storage: storageSchema.optional(),
    platform: platformSchema.optional().describe('Where the game servers run.'),
    game: gameSchema,
    runbooks: runbooksSchema,
    notifications: z
      .strictObject({
        channels: z.array(channelSchema).default([]),
        allowPrivate: z
          .array(hostSchema)
          .default([])
          .describe(
            'Hosts of channel URLs allowed to resolve to loopback, private or link-local addresses (refused otherwise).',
          ),
      })
      .prefault({}),
    people: z.array(personSchema).default([]),
    teams: z.array(teamSchema).default([]),
    checks: z
      .strictObject({
        timeout: timeoutSchema.default(5000).describe('Per-check deadline, from 100ms to 10m.'),
        retention: boundedDuration(DAY_MS, 3650 * DAY_MS, '1d and 3650d (10 years)')
          .prefault('90d')
          .describe('How long recorded check runs are kept, from 1d to 3650d (10 years).'),
        thresholds: thresholdsSchema,
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const people = new Set(cfg.people.map((p) => p.id));
    cfg.teams.forEach((team, t) =>
      team.members.forEach((m, i) => {
        if (!people.has(m))
          ctx.addIssue({
            code: 'custom',
            path: ['teams', t, 'members', i],
            message: `unknown person "${m}"`,
          });
      }),
    );
    const { disk, database, redis, fleet } = cfg.checks.thresholds;
    if (cfg.platform?.kind === 'local') {
      const local = cfg.platform;
      if (!Object.hasOwn(local.versions, local.version))
        ctx.addIssue({
          code: 'custom',
          path: ['platform', 'version'],
          message: `"${local.version}" is not one of versions (${Object.keys(local.versions).join(', ')})`,
        });
      if (local.basePort + local.replicas > 65536)
        ctx.addIssue({
          code: 'custom',
          path: ['platform', 'basePort'],
          message: `basePort ${local.basePort} leaves no port for ${local.replicas} instances`,
        });
    }
    const pairs: Array<[string[], number, number]> = [
      [['checks', 'thresholds', 'disk', 'failPercent'], disk.warnPercent, disk.failPercent],
      [['checks', 'thresholds', 'disk', 'inodeFailPercent'], disk.inodeWarnPercent, disk.inodeFailPercent],
      [
        ['checks', 'thresholds', 'database', 'connectionsFailPercent'],
        database.connectionsWarnPercent,
        database.connectionsFailPercent,
      ],
      [
        ['checks', 'thresholds', 'redis', 'memoryFailPercent'],
        redis.memoryWarnPercent,
        redis.memoryFailPercent,
      ],
      [['checks', 'thresholds', 'redis', 'latencyFailMs'], redis.latencyWarnMs, redis.latencyFailMs],
      [['checks', 'thresholds', 'fleet', 'restartsFail'], fleet.restartsWarn, fleet.restartsFail],
      [['checks', 'thresholds', 'fleet', 'errorLinesFail'], fleet.errorLinesWarn, fleet.errorLinesFail],
    ];
    for (const [path, warn, fail] of pairs)
      if (fail < warn)
        ctx.addIssue({ code: 'custom', path, message: `must be at least the warning threshold (${warn})` });
  });

/** The config as written (input side). */
export type ConfigInput = z.input<typeof configSchema>;
/** The config after defaults, before secret references are resolved. */
export type ParsedConfig = z.output<typeof configSchema>;
