import { z } from 'zod';
import { durationSchema, errorMessage, formatDuration, unsafeCharacter } from '../core/index.ts';
// The leaf module (it imports only core): matchers are checked when the config loads.
import { parseMatcher } from '../alerts/matchers.ts';

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

const storageClassSchema = z
  .string()
  .regex(
    /^[A-Z][A-Z_]{1,40}$/,
    'an S3 storage class such as STANDARD, STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE',
  );

export const storageSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('filesystem'),
    path: z.string().min(1).describe('Directory holding the backup sets (created 0700 when missing).'),
  }),
  z.strictObject({
    kind: z.literal('s3'),
    bucket: z.string().min(3).max(63),
    prefix: z
      .string()
      .regex(
        /^([A-Za-z0-9][A-Za-z0-9._-]*\/)*$/,
        'empty, or path segments each ending in "/", e.g. "gameops/"',
      )
      .default('')
      .describe('Key prefix of every object, e.g. "gameops/".'),
    endpoint: httpUrl('accessKeyId and secretAccessKey (env:NAME)')
      .optional()
      .describe('An S3-compatible endpoint (MinIO, Ceph, R2...); default: AWS for `region`.'),
    region: z.string().default('us-east-1'),
    forcePathStyle: z.boolean().default(false).describe('Path-style URLs (most S3-compatible servers).'),
    accessKeyId: secretRefSchema.optional().describe('Default: the AWS SDK credential chain.'),
    secretAccessKey: secretRefSchema.optional(),
    storageClass: z
      .strictObject({
        default: storageClassSchema.optional(),
        mysql: storageClassSchema.optional(),
        redis: storageClassSchema.optional(),
        kubernetes: storageClassSchema.optional(),
        files: storageClassSchema.optional(),
      })
      .prefault({})
      .describe('Storage class per component, e.g. mysql: GLACIER_IR, files: DEEP_ARCHIVE.'),
    serverSideEncryption: z
      .discriminatedUnion('kind', [
        z.strictObject({ kind: z.literal('AES256') }),
        z.strictObject({ kind: z.literal('aws:kms'), kmsKeyId: z.string().min(1).optional() }),
      ])
      .optional()
      .describe('Server-side encryption on top of the client-side age encryption.'),
    objectLock: z
      .strictObject({
        mode: z.enum(['GOVERNANCE', 'COMPLIANCE']).default('GOVERNANCE'),
        days: z.number().int().min(1).max(3650),
      })
      .optional()
      .describe('Object Lock retention on every object (the bucket must have Object Lock enabled).'),
    partSize: z
      .number()
      .int()
      .min(5 * 1024 * 1024)
      .max(512 * 1024 * 1024)
      .default(16 * 1024 * 1024)
      .describe('Multipart part size in bytes (5 MiB to 512 MiB).'),
  }),
]);

const channelName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", at most 64');

export const channelSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    name: channelName,
    kind: z.literal('webhook'),
    url: httpUrl('token: env:NAME'),
    token: secretRefSchema.optional().describe('Sent as Authorization: Bearer.'),
    signingSecret: secretRefSchema
      .optional()
      .describe(
        'HMAC-SHA256 key: each request carries X-Gameops-Signature: t=<unix seconds>,v1=<hex of HMAC(t + "." + body)>.',
      ),
  }),
  z.strictObject({
    name: channelName,
    kind: z.literal('slack'),
    webhookUrl: secretRefSchema.describe(
      'A Slack (or Slack-compatible, e.g. Mattermost) incoming webhook URL.',
    ),
  }),
  z.strictObject({
    name: channelName,
    kind: z.literal('discord'),
    webhookUrl: secretRefSchema.describe('A Discord webhook URL (https://discord.com/api/webhooks/…).'),
  }),
  z.strictObject({
    name: channelName,
    kind: z.literal('email'),
    smtpUrl: secretRefSchema.describe(
      'smtp://user:pass@host:587 (STARTTLS required unless the host is loopback; ?tls=optional allows plain text) or smtps://host:465.',
    ),
    from: z.email(),
    to: z
      .array(z.email())
      .default([])
      .describe("Fixed recipients; a page to a person goes to that person's email instead."),
  }),
]);

/** An IANA time zone name the runtime knows (e.g. Asia/Seoul, Europe/Berlin, UTC). */
export const timeZoneSchema = z.string().refine(
  (zone) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: zone });
      return true;
    } catch {
      return false;
    }
  },
  {
    error: (issue) =>
      `${JSON.stringify(issue.input)} is not an IANA time zone (e.g. Asia/Seoul, Europe/Berlin, UTC)`,
  },
);

const idSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lower-case letters, digits, ".", "_" and "-", at most 64');

export const personSchema = z.strictObject({
  id: idSchema,
  name: z.string().min(1),
  email: z.email().optional(),
  timezone: timeZoneSchema.default('UTC'),
  contacts: z
    .array(channelName)
    .default([])
    .describe(
      'Channels (notifications.channels) a page to this person goes through, in order: when one cannot deliver, the next is tried. Default: oncall.defaultContacts.',
    ),
});

export const teamSchema = z.strictObject({
  id: idSchema,
  name: z.string().min(1),
  members: z.array(z.string()).default([]).describe('Person ids.'),
  lead: z.string().optional().describe('The team lead (a person id): "team lead" escalation targets.'),
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

// ---------------------------------------------------------------------------------------------------
// Incidents, on-call and alert intake (issue #5; src/incidents, src/oncall, src/alerts)

export const SEVERITIES = ['P1', 'P2', 'P3', 'P4'] as const;
const severitySchema = z.enum(SEVERITIES);
const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const;
const clockTime = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'a time of day as HH:MM (24 h)');
const escalationDelay = boundedDuration(0, 7 * DAY_MS, '0 and 7d');

/** Who a page or escalation level goes to. */
export const pageTargetSchema = z.union([
  z.strictObject({ person: z.string().min(1).describe('A person id.') }),
  z.strictObject({ team: z.string().min(1).describe('A team id: every member.') }),
  z.strictObject({ teamLead: z.string().min(1).describe("A team id: that team's lead.") }),
  z.strictObject({
    schedule: z
      .string()
      .min(1)
      .describe('An on-call schedule: whoever is on call there when the level fires.'),
    layer: z.string().min(1).optional().describe('Its layer, e.g. backup (default: the first, primary).'),
  }),
]);

const severityLevelSchema = z.strictObject({
  description: z.string().min(1),
  respondWithin: escalationDelay
    .optional()
    .describe('Response target (acknowledgement); absent: within business hours.'),
  warRoom: z
    .boolean()
    .describe('Open a war room (roles, phase checklists, status updates); otherwise an owner.'),
  statusUpdateEvery: boundedDuration(10_000, 7 * DAY_MS, '10s and 7d')
    .optional()
    .describe('Status-update cadence (e.g. 15m); absent: no reminders.'),
  policy: z
    .string()
    .min(1)
    .optional()
    .describe('Escalation policy paged when an incident opens (default: oncall.defaultPolicy).'),
  escalateTo: z
    .array(pageTargetSchema)
    .default([])
    .describe(
      'Who is told when an incident opens at this severity and when a status update is missed (§2.1).',
    ),
});

const SEVERITY_DEFAULTS = {
  P1: { description: 'Whole service down', respondWithin: '0s', warRoom: true, statusUpdateEvery: '15m' },
  P2: { description: 'Major feature outage', respondWithin: '15m', warRoom: true, statusUpdateEvery: '15m' },
  P3: { description: 'Partial degradation', respondWithin: '1h', warRoom: false, statusUpdateEvery: '1h' },
  P4: { description: 'Minor issue', warRoom: false },
} as const;

export const incidentsSchema = z
  .strictObject({
    severities: z
      .strictObject({
        P1: severityLevelSchema.prefault(SEVERITY_DEFAULTS.P1),
        P2: severityLevelSchema.prefault(SEVERITY_DEFAULTS.P2),
        P3: severityLevelSchema.prefault(SEVERITY_DEFAULTS.P3),
        P4: severityLevelSchema.prefault(SEVERITY_DEFAULTS.P4),
      })
      .prefault({})
      .describe(
        '§2.1: P1 immediate → CTO/VP, P2 15 min → team lead, P3 1 h → on-call, P4 business hours → team.',
      ),
    businessHours: z
      .strictObject({
        timezone: timeZoneSchema.default('UTC'),
        days: z
          .array(z.enum(WEEKDAYS))
          .min(1)
          .default(['monday', 'tuesday', 'wednesday', 'thursday', 'friday']),
        start: clockTime.default('09:00'),
        end: clockTime.default('18:00'),
      })
      .prefault({}),
    statusUpdateGrace: boundedDuration(0, DAY_MS, '0 and 1d')
      .prefault('5m')
      .describe('A status update later than its due time by this much is missed and escalated.'),
    resolveWithAlerts: z
      .boolean()
      .default(true)
      .describe('Resolve an incident opened by alerts when all of its alerts have resolved.'),
    notices: z
      .strictObject({
        stakeholders: z.array(channelName).default([]).describe('Channels for internal stakeholder notices.'),
        customers: z.array(channelName).default([]).describe('Channels for customer/player notices.'),
      })
      .prefault({}),
    checklists: z
      .strictObject({
        first15Minutes: z.array(z.string().min(1)).optional(),
        inProgress: z.array(z.string().min(1)).optional(),
        afterResolution: z.array(z.string().min(1)).optional(),
      })
      .prefault({})
      .describe('War-room phase checklists; defaults from §2.3.'),
  })
  .prefault({});

const handoffSchema = z.strictObject({
  weekday: z.enum(WEEKDAYS).default('monday'),
  time: clockTime.default('10:00'),
});

export const oncallScheduleSchema = z.strictObject({
  name: idSchema,
  timezone: timeZoneSchema.default('UTC').describe('IANA time zone of handoffs.'),
  layers: z
    .array(
      z.strictObject({
        name: idSchema.describe('e.g. primary, backup.'),
        rotation: z.enum(['daily', 'weekly']).default('weekly'),
        handoff: handoffSchema.prefault({}).describe('When shifts change (weekday ignored for daily).'),
        start: z.iso
          .date({ error: 'must be a date, YYYY-MM-DD' })
          .describe('The first shift (participants[0]) begins at the first handoff on or after this date.'),
        participants: z
          .array(z.string().min(1))
          .min(1, 'needs at least one participant')
          .describe('Person ids, in order.'),
      }),
    )
    .min(1, 'needs at least one layer'),
});

export const escalationPolicySchema = z.strictObject({
  name: idSchema,
  levels: z
    .array(
      z.strictObject({
        after: escalationDelay.describe('Since the page opened (e.g. 0s, 15m, 30m, 1h).'),
        targets: z.array(pageTargetSchema).min(1),
      }),
    )
    .min(1),
  repeat: z
    .number()
    .int()
    .min(0)
    .max(10)
    .default(0)
    .describe('Run the levels again this many times while unacknowledged.'),
});

export const oncallSchema = z
  .strictObject({
    schedules: z.array(oncallScheduleSchema).default([]),
    policies: z.array(escalationPolicySchema).default([]),
    defaultPolicy: z
      .string()
      .optional()
      .describe('Policy for pages that name none (default: the first policy).'),
    defaultContacts: z.array(channelName).default([]).describe('Channels for a person without contacts.'),
    delivery: z
      .strictObject({
        attempts: z
          .number()
          .int()
          .min(1)
          .max(20)
          .default(5)
          .describe('Attempts per channel before the next one.'),
        firstRetry: boundedDuration(100, 10 * MINUTE_MS, '100ms and 10m').prefault('30s'),
        maxRetry: boundedDuration(1000, 60 * MINUTE_MS, '1s and 60m').prefault('10m'),
        timeout: timeoutSchema.default(10_000).describe('Per attempt.'),
      })
      .prefault({}),
    ackLinks: z
      .strictObject({
        expireAfter: boundedDuration(MINUTE_MS, 30 * DAY_MS, '1m and 30d').prefault('24h'),
      })
      .prefault({})
      .describe('Signed acknowledge links in page notifications (need server.publicUrl).'),
    selfAlert: z
      .array(pageTargetSchema)
      .default([])
      .describe(
        "Paged directly when gameops's own escalation loop stalls (default: the default policy's first level).",
      ),
  })
  .prefault({});

/** An Alertmanager-style label matcher: name="v", name!="v", name=~"re", name!~"re". */
const matcherSchema = z
  .string()
  .superRefine((text, ctx) => {
    try {
      parseMatcher(text, 'matcher');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: errorMessage(err).replace(/^matcher: /, '') });
    }
  })
  .describe('e.g. severity="critical", team=~"ops|dev", env!="staging"');

export const alertRouteSchema = z.strictObject({
  name: z.string().min(1).max(100).optional(),
  matchers: z
    .array(matcherSchema)
    .default([])
    .describe('All must match (Alertmanager syntax, e.g. severity="critical").'),
  severity: severitySchema
    .optional()
    .describe('Incident severity (default: from the severity label, else P3).'),
  service: z
    .string()
    .min(1)
    .optional()
    .describe('Service name on the incident (default: the service label, else service.name).'),
  policy: z.string().min(1).optional(),
  runbook: z.string().min(1).optional().describe('A gameops runbook offered on the incident.'),
  groupBy: z
    .array(z.string().min(1))
    .optional()
    .describe("Labels that make one incident (default: the Alertmanager group; ['...'] would be per alert)."),
  createIncident: z.boolean().default(true).describe('false: record the alert only.'),
});

export const suppressionWindowSchema = z.strictObject({
  name: z.string().min(1).max(100),
  cron: z
    .string()
    .min(1)
    .optional()
    .describe('Recurring: when the window starts (five-field cron in timezone).'),
  start: z.iso.datetime({ offset: true }).optional().describe('One-off: when it starts.'),
  duration: boundedDuration(MINUTE_MS, 30 * DAY_MS, '1m and 30d'),
  timezone: timeZoneSchema.default('UTC'),
  matchers: z.array(matcherSchema).default([]).describe('Only alerts/pages matching these (default: all).'),
});

export const heartbeatSchema = z.strictObject({
  name: idSchema,
  every: boundedDuration(10_000, 30 * DAY_MS, '10s and 30d').describe('Expected ping interval.'),
  grace: boundedDuration(0, DAY_MS, '0 and 1d').prefault('5m'),
  severity: severitySchema.default('P2'),
  policy: z.string().min(1).optional(),
  description: z.string().optional(),
});

export const alertsSchema = z
  .strictObject({
    routes: z.array(alertRouteSchema).default([]).describe('First match wins; no match: the defaults.'),
    severityLabels: z
      .record(z.string(), severitySchema)
      .default({ critical: 'P1', page: 'P1', high: 'P2', error: 'P2', warning: 'P3', info: 'P4' })
      .describe('The "severity" label value → incident severity, when no route sets one.'),
    reconcileEvery: boundedDuration(10_000, DAY_MS, '10s and 1d')
      .prefault('5m')
      .describe('How often firing alerts are compared with Alertmanager (GET /api/v2/alerts).'),
    retention: boundedDuration(DAY_MS, 3650 * DAY_MS, '1d and 3650d (10 years)')
      .prefault('90d')
      .describe('How long resolved alerts are kept (incidents keep their timeline entries).'),
    maxPayloadBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(8 * 1024 * 1024),
    suppressions: z.array(suppressionWindowSchema).default([]).describe('Paging suppression windows.'),
    heartbeats: z.array(heartbeatSchema).default([]),
  })
  .prefault({});

const ageRecipientSchema = z
  .string()
  .regex(/^age1[02-9ac-hj-np-z]{58}$/, 'an age X25519 recipient: "age1" followed by 58 bech32 characters');

const restoreTargetSchema = z.strictObject({
  name: idSchema.describe('e.g. staging.'),
  mysql: mysqlSchema.optional().describe('Where MySQL is restored (default: the configured mysql).'),
  redis: redisSchema.optional().describe('Where Redis is restored (default: the configured redis).'),
  filesRoot: z
    .string()
    .min(1)
    .optional()
    .describe('Files are restored under this directory instead of their original paths.'),
});

export const backupsSchema = z
  .strictObject({
    storage: storageSchema,
    encryption: z
      .strictObject({
        recipients: z
          .array(ageRecipientSchema)
          .min(1, 'at least one age recipient (age-keygen -y key.txt prints it)')
          .describe('age recipients every object is encrypted to; `age -d -i key.txt` decrypts.'),
        identity: secretRefSchema
          .optional()
          .describe(
            'An age identity (AGE-SECRET-KEY-1...) as file:/path (age-keygen output) or env:NAME: needed by verify, drill and restore, never by create.',
          ),
      })
      .describe('Client-side encryption (age, X25519); Secrets are never stored without it.'),
    compressionLevel: z.number().int().min(1).max(19).default(3).describe('zstd level, 1 to 19.'),
    stallTimeout: boundedDuration(MINUTE_MS, 24 * 60 * MINUTE_MS, '1m and 24h')
      .prefault('15m')
      .describe('A backup that makes no progress (no bytes, no step) for this long is stopped and fails.'),
    mysql: z
      .strictObject({
        enabled: z.boolean().default(true),
        user: z
          .string()
          .min(1)
          .optional()
          .describe(
            'A backup user (default: mysql.user): SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS; drills and restores also create databases, tables, triggers, routines and events (with binary logging on: SUPER or log_bin_trust_function_creators; other DEFINERs: SET USER).',
          ),
        password: secretRefSchema.optional(),
        databases: z
          .array(z.string().regex(/^[A-Za-z0-9_$]{1,64}$/, 'a database name: letters, digits, "_" and "$"'))
          .min(1)
          .optional()
          .describe('Databases in the set (default: [mysql.database]).'),
        parallel: z.number().int().min(1).max(16).default(2).describe('Parallel loaders on restore.'),
        chunkBytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .max(1024 * 1024 * 1024)
          .default(64 * 1024 * 1024)
          .describe(
            'A table is split into objects of about this many dump bytes (restore loads them in parallel).',
          ),
        lockWaitTimeout: boundedDuration(1000, 10 * MINUTE_MS, '1s and 10m')
          .prefault('10s')
          .describe(
            'How long the brief global read lock that aligns snapshots may wait before the backup fails.',
          ),
      })
      .prefault({}),
    redis: z
      .strictObject({
        enabled: z.boolean().default(true),
        samples: z.number().int().min(0).max(10_000).default(100).describe('Keys sampled for drills.'),
        restoreVia: hostSchema
          .default('127.0.0.1')
          .describe(
            'Restore loads the RDB into a temporary Redis on this gameops host, bound to this address, and the target replicates from it: an address of this host the target Redis can reach.',
          ),
      })
      .prefault({}),
    kubernetes: z
      .strictObject({ enabled: z.boolean().default(true) })
      .prefault({})
      .describe('ConfigMaps and Secrets of the namespace (the game config file on the local platform).'),
    files: z
      .strictObject({
        paths: z
          .array(z.string().min(1))
          .default([])
          .describe('Files and directories in the set (absolute, or relative to where gameops runs).'),
      })
      .prefault({}),
    retention: z
      .strictObject({
        keepDays: z.number().int().min(0).max(3650).default(30).describe('Keep every set younger than this.'),
        daily: z.number().int().min(0).max(3650).default(7),
        weekly: z.number().int().min(0).max(520).default(4),
        monthly: z.number().int().min(0).max(120).default(12),
        minVerified: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(3)
          .describe('Never fewer verified sets than this (and never the newest verified set).'),
      })
      .prefault({}),
    restorable: z
      .strictObject({
        warnAfter: boundedDuration(MINUTE_MS, 365 * DAY_MS, '1m and 365d').prefault('8d'),
        failAfter: boundedDuration(MINUTE_MS, 365 * DAY_MS, '1m and 365d').prefault('31d'),
      })
      .prefault({})
      .describe('The daily check warns or fails when a component was last proven restorable this long ago.'),
    targets: z
      .array(restoreTargetSchema)
      .default([])
      .describe('Restore targets other than the original, e.g. a staging clone.'),
  })
  .describe('Backup sets (runbook §5): storage, encryption, components, retention and restore targets.');

/** A MySQL identifier gameops names in SQL (always quoted with backticks, and checked against the live schema). */
const sqlIdentifier = z
  .string()
  .regex(/^[A-Za-z0-9_$]{1,64}$/, 'a MySQL table or column name: letters, digits, "_" and "$", at most 64');

export const MAINTENANCE_TASKS = ['db', 'logs', 'update'] as const;

/** A time-partitioned table rotated by db-maintenance (runbook §4.2). */
export const partitionedTableSchema = z.strictObject({
  table: sqlIdentifier.describe(
    'e.g. game_logs: RANGE partitioned by TO_DAYS(<column>) or UNIX_TIMESTAMP(<column>).',
  ),
  database: sqlIdentifier.optional().describe('Default: mysql.database.'),
  unit: z.enum(['day', 'month']).default('month').describe('One partition per day or per month.'),
  ahead: z.number().int().min(1).max(366).default(3).describe('Future partitions kept ready (in units).'),
  retain: z
    .number()
    .int()
    .min(1)
    .max(3660)
    .default(12)
    .describe(
      'Partitions (units) kept before the current one; older ones are archived, verified, then dropped.',
    ),
  zone: z
    .literal('UTC')
    .optional()
    .describe(
      'Set when a DATETIME/DATE partition column holds UTC although the server time_zone is not UTC; otherwise ' +
        'such a table is only rotated on a UTC server (bounds are UTC days and months).',
    ),
});

/** Stale rows purged in bounded batches (runbook §4.2). */
export const purgeRuleSchema = z.strictObject({
  table: sqlIdentifier,
  database: sqlIdentifier.optional().describe('Default: mysql.database.'),
  column: sqlIdentifier.describe('A DATETIME/TIMESTAMP column, e.g. last_activity.'),
  olderThan: boundedDuration(60 * MINUTE_MS, 3650 * DAY_MS, '1h and 3650d').describe(
    'Rows older than this go.',
  ),
  batchSize: z.number().int().min(1).max(100_000).default(5000).describe('Rows per DELETE (short locks).'),
  zone: timeZoneSchema
    .optional()
    .describe(
      'The zone a DATETIME/DATE column holds (e.g. Europe/Paris, +02:00): the cutoff is written in it. Default: ' +
        "the server's time_zone, which must then be UTC (TIMESTAMP columns are always compared in UTC).",
    ),
  allowScan: z
    .boolean()
    .default(false)
    .describe('Purge even though the column leads no index (each batch then scans the table).'),
});

/** A recurring maintenance window (e.g. every Thursday 04:00–06:00 in the game's time zone). */
export const recurringWindowSchema = z.strictObject({
  name: idSchema,
  cron: z.string().min(1).max(200).describe('When it starts: five-field cron in timezone, e.g. "0 4 * * 4".'),
  timezone: timeZoneSchema.optional().describe('Default: maintenance.timezone.'),
  duration: boundedDuration(5 * MINUTE_MS, 24 * 60 * MINUTE_MS, '5m and 24h'),
  tasks: z
    .array(
      z.enum(MAINTENANCE_TASKS).exclude(['update'], {
        error:
          'db or logs: a recurring window gives no version to update to (plan an update with gameops maintenance plan --version)',
      }),
    )
    .default(['db', 'logs']),
  message: z
    .string()
    .min(1)
    .max(500)
    .refine((text) => unsafeCharacter(text) === undefined, {
      error: 'one line of text: control and text-direction characters are not allowed',
    })
    .optional()
    .describe("Players' notice (default: a standard one)."),
  enabled: z.boolean().default(true),
});

export const maintenanceSchema = z
  .strictObject({
    timezone: timeZoneSchema
      .optional()
      .describe("The game's time zone: recurring windows and times in notices (default: runbooks.timezone)."),
    leadTime: boundedDuration(MINUTE_MS, DAY_MS, '1m and 1d')
      .prefault('60m')
      .describe(
        'The maintenance run starts this long before the window (preflight, approval requested) and waits for it.',
      ),
    notices: z
      .strictObject({
        before: z
          .array(boundedDuration(MINUTE_MS, 7 * DAY_MS, '1m and 7d'))
          .min(1)
          .max(10)
          .refine((offsets) => new Set(offsets).size === offsets.length, {
            error: 'an offset is given twice (each notice is sent once)',
          })
          .prefault(['24h', '60m', '10m', '1m'])
          .describe('Notices to players and stakeholders this long before the start.'),
        channels: z
          .array(z.string().min(1).max(100))
          .default([])
          .describe('notifications.channels told of every notice (stakeholders).'),
      })
      .prefault({}),
    drain: z
      .strictObject({
        deadline: boundedDuration(0, 6 * 60 * MINUTE_MS, '0s and 6h')
          .prefault('10m')
          .describe('How long players may finish after logins close; then they are saved and disconnected.'),
        kickNotice: z
          .number()
          .int()
          .min(1)
          .max(600)
          .default(30)
          .describe(
            'Seconds of warning remaining players get at the deadline before they are saved and disconnected.',
          ),
      })
      .prefault({}),
    silence: z
      .strictObject({
        matchers: z
          .array(matcherSchema)
          .default([])
          .describe('Alertmanager matchers silenced for the window (default: alertname=~".+", every alert).'),
        after: boundedDuration(0, 6 * 60 * MINUTE_MS, '0s and 6h')
          .prefault('15m')
          .describe('The silence and paging suppression outlast the window by this much (a safety net).'),
      })
      .prefault({}),
    holdOff: z
      .array(z.string().min(1).max(100))
      .default(['backup', 'backup-verify', 'backup-drill', 'backup-prune', 'db-maintenance'])
      .describe('Runbooks whose scheduled runs are held off during a window and started when it ends.'),
    recurring: z.array(recurringWindowSchema).default([]),
    playersSelector: z
      .string()
      .max(500)
      .regex(
        /^(?:[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\\n]|\\.)*"(?:\s*,\s*(?!$)|\s*$))*$/,
        'PromQL label matchers such as job="game",env="production"',
      )
      .default('')
      .describe(
        'Label matchers of game_players_connected summed for the estimate (e.g. job="game",env="production"); default: every series.',
      ),
    db: z
      .strictObject({
        optimize: z
          .strictObject({
            minFreeFraction: z
              .number()
              .min(0.01)
              .max(0.99)
              .default(0.2)
              .describe('Rebuild (OPTIMIZE) only tables whose free space is at least this fraction.'),
            minFreeBytes: z
              .number()
              .int()
              .min(0)
              .default(64 * 1024 * 1024)
              .describe('...and at least this many bytes free.'),
            maxBytes: z
              .number()
              .int()
              .min(0)
              .default(10 * 1024 * 1024 * 1024)
              .describe(
                'Never rebuild a table (or partitions) larger than this (data + index) in one window.',
              ),
            tables: z
              .array(sqlIdentifier)
              .optional()
              .describe('Only these tables (default: every base table of mysql.database).'),
          })
          .prefault({}),
        partitions: z.array(partitionedTableSchema).default([]),
        purge: z
          .array(purgeRuleSchema)
          .default([])
          .describe(
            'e.g. player_sessions.last_activity older than 30d; temporary_data.created_at older than 7d.',
          ),
        mysql: z
          .strictObject({
            user: z.string().min(1),
            password: secretRefSchema.optional(),
          })
          .optional()
          .describe(
            'A maintenance user over the mysql connection (default: mysql.user, a monitoring user): ALTER, CREATE, DROP, INSERT, LOCK TABLES, SELECT on the partitioned tables; DELETE on purged ones; RELOAD to flush the query cache.',
          ),
      })
      .prefault({}),
  })
  .prefault({})
  .describe('Planned maintenance (runbook §4): windows, notices, drain, silences and database maintenance.');

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
        publicUrl: httpUrl('nothing: it is a public address')
          .optional()
          .describe('How people reach this server (links in notifications, e.g. signed acknowledge links).'),
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
    backups: backupsSchema.optional(),
    maintenance: maintenanceSchema,
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
    incidents: incidentsSchema,
    oncall: oncallSchema,
    alerts: alertsSchema,
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
    checkOpsReferences(cfg, ctx);
    const channelNames = new Set(cfg.notifications.channels.map((c) => c.name));
    cfg.maintenance.notices.channels.forEach((name, i) => {
      if (!channelNames.has(name))
        ctx.addIssue({
          code: 'custom',
          path: ['maintenance', 'notices', 'channels', i],
          message: `unknown notification channel "${name}" (notifications.channels: ${[...channelNames].join(', ') || 'none'})`,
        });
    });
    const recurringNames = new Set<string>();
    cfg.maintenance.recurring.forEach((w, i) => {
      if (recurringNames.has(w.name))
        ctx.addIssue({
          code: 'custom',
          path: ['maintenance', 'recurring', i, 'name'],
          message: `"${w.name}" is used twice`,
        });
      recurringNames.add(w.name);
    });
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

type OpsSections = {
  people: Array<{ id: string; contacts: string[] }>;
  teams: Array<{ id: string; members: string[]; lead?: string | undefined }>;
  notifications: { channels: Array<{ name: string }> };
  incidents: z.output<typeof incidentsSchema>;
  oncall: z.output<typeof oncallSchema>;
  alerts: z.output<typeof alertsSchema>;
};

/** Every person, team, channel, schedule, layer and policy named by incidents/oncall/alerts exists. */
function checkOpsReferences(cfg: OpsSections, ctx: z.RefinementCtx): void {
  const people = new Set(cfg.people.map((p) => p.id));
  const teams = new Set(cfg.teams.map((t) => t.id));
  const channels = new Set(cfg.notifications.channels.map((c) => c.name));
  const schedules = new Map(cfg.oncall.schedules.map((s) => [s.name, new Set(s.layers.map((l) => l.name))]));
  const policies = new Set(cfg.oncall.policies.map((p) => p.name));
  const issue = (path: PropertyKey[], message: string): void =>
    ctx.addIssue({ code: 'custom', path, message });
  const known = (set: Set<string>, value: string, path: PropertyKey[], what: string): void => {
    if (!set.has(value)) issue(path, `unknown ${what} "${value}" (known: ${[...set].join(', ') || 'none'})`);
  };
  const duplicates = (names: string[], path: PropertyKey[], what: string): void => {
    const seen = new Set<string>();
    names.forEach((name, i) => {
      if (seen.has(name)) issue([...path, i, 'name'], `duplicate ${what} name "${name}"`);
      seen.add(name);
    });
  };
  duplicates(
    cfg.notifications.channels.map((c) => c.name),
    ['notifications', 'channels'],
    'channel',
  );
  duplicates(
    cfg.oncall.schedules.map((s) => s.name),
    ['oncall', 'schedules'],
    'schedule',
  );
  duplicates(
    cfg.oncall.policies.map((p) => p.name),
    ['oncall', 'policies'],
    'policy',
  );
  duplicates(
    cfg.alerts.heartbeats.map((h) => h.name),
    ['alerts', 'heartbeats'],
    'heartbeat',
  );
  const target = (t: z.output<typeof pageTargetSchema>, path: PropertyKey[]): void => {
    if ('person' in t) known(people, t.person, [...path, 'person'], 'person');
    else if ('team' in t) known(teams, t.team, [...path, 'team'], 'team');
    else if ('teamLead' in t) {
      known(teams, t.teamLead, [...path, 'teamLead'], 'team');
      const team = cfg.teams.find((x) => x.id === t.teamLead);
      if (team && team.lead === undefined) issue([...path, 'teamLead'], `team "${team.id}" has no lead`);
    } else {
      const layers = schedules.get(t.schedule);
      if (!layers) known(new Set(schedules.keys()), t.schedule, [...path, 'schedule'], 'on-call schedule');
      else if (t.layer !== undefined && !layers.has(t.layer))
        issue(
          [...path, 'layer'],
          `schedule "${t.schedule}" has no layer "${t.layer}" (it has ${[...layers].join(', ')})`,
        );
    }
  };
  const policy = (name: string | undefined, path: PropertyKey[]): void => {
    if (name !== undefined) known(policies, name, path, 'escalation policy');
  };
  cfg.people.forEach((p, i) =>
    p.contacts.forEach((c, j) => known(channels, c, ['people', i, 'contacts', j], 'channel')),
  );
  cfg.teams.forEach((t, i) => {
    if (t.lead !== undefined) known(people, t.lead, ['teams', i, 'lead'], 'person');
  });
  cfg.oncall.defaultContacts.forEach((c, j) =>
    known(channels, c, ['oncall', 'defaultContacts', j], 'channel'),
  );
  policy(cfg.oncall.defaultPolicy, ['oncall', 'defaultPolicy']);
  cfg.oncall.selfAlert.forEach((t, i) => target(t, ['oncall', 'selfAlert', i]));
  cfg.oncall.schedules.forEach((s, i) => {
    duplicates(
      s.layers.map((l) => l.name),
      ['oncall', 'schedules', i, 'layers'],
      'layer',
    );
    s.layers.forEach((l, j) =>
      l.participants.forEach((p, k) =>
        known(people, p, ['oncall', 'schedules', i, 'layers', j, 'participants', k], 'person'),
      ),
    );
  });
  cfg.oncall.policies.forEach((p, i) =>
    p.levels.forEach((l, j) => {
      l.targets.forEach((t, k) => target(t, ['oncall', 'policies', i, 'levels', j, 'targets', k]));
      const previous = p.levels[j - 1];
      if (previous && l.after < previous.after)
        issue(['oncall', 'policies', i, 'levels', j, 'after'], 'must not be earlier than the level before');
    }),
  );
  for (const sev of SEVERITIES) {
    const level = cfg.incidents.severities[sev];
    policy(level.policy, ['incidents', 'severities', sev, 'policy']);
    level.escalateTo.forEach((t, k) => target(t, ['incidents', 'severities', sev, 'escalateTo', k]));
  }
  for (const kind of ['stakeholders', 'customers'] as const)
    cfg.incidents.notices[kind].forEach((c, j) =>
      known(channels, c, ['incidents', 'notices', kind, j], 'channel'),
    );
  cfg.alerts.routes.forEach((r, i) => policy(r.policy, ['alerts', 'routes', i, 'policy']));
  cfg.alerts.heartbeats.forEach((h, i) => policy(h.policy, ['alerts', 'heartbeats', i, 'policy']));
  cfg.alerts.suppressions.forEach((w, i) => {
    if ((w.cron === undefined) === (w.start === undefined))
      issue(['alerts', 'suppressions', i], 'needs exactly one of cron (recurring) or start (one-off)');
  });
}

/** The config as written (input side). */
export type ConfigInput = z.input<typeof configSchema>;
/** The config after defaults, before secret references are resolved. */
export type ParsedConfig = z.output<typeof configSchema>;
