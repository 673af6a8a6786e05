import { once } from 'node:events';
import { Argument, Command, Option } from 'commander';
import {
  ErrorCode,
  formatDuration,
  GameopsError,
  InputError,
  parseDuration,
  withTimeout,
} from '../../core/index.ts';
import type { Resources } from '../../app/index.ts';
import type {
  Fleet,
  InstanceFilter,
  RolloutProgress,
  RolloutResult,
  WaitOptions,
} from '../../platform/index.ts';
import { withResources } from '../context.ts';
import { ExitCode } from '../exit.ts';
import type { RolloutOutcome } from '../fleet-render.ts';
import { printable } from '../render.ts';
import { INTERRUPTED, interruptible, writeJson } from './run.ts';

const MAX_REPLICAS = 1000;
const DIAGNOSTIC_KINDS = ['cpu-profile', 'heap-snapshot', 'stack-dump'] as const;
type DiagnosticKindName = (typeof DIAGNOSTIC_KINDS)[number];
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const LABEL_KEY_MAX = 317;
const LABEL_VALUE_MAX = 63;
const MAX_PATTERN = 1000;

const FLEET_EXIT_CODES = `
Exit codes:
  0    done (status: every instance ready and answering)
  1    partly: some instances not ready or not answering, or an instance did not confirm the gate
  2    failed: a rollout that did not finish, a drain that timed out, no instance ready
  3    could not run: bad usage or config, no platform configured, unknown instance, another rollout running
  130  interrupted (Ctrl-C): the wait stopped and the state the fleet was left in is printed`;

const LOCAL_NOTE = `
On the local platform (platform.kind: local) the game servers are processes on this machine that gameops
starts; they keep running when gameops exits, and every gameops command adopts them again from
<dataDir>/fleet/state.json. \`gameops fleet scale 0 --yes\` stops them.`;

interface JsonOption {
  json?: boolean;
}

interface SelectorOption {
  selector?: string[];
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function selectorOption(): Option {
  return new Option(
    '-l, --selector <key=value>',
    'only instances with this label (repeatable; "a=b,c=d" also works)',
  ).argParser((value: string, previous: string[] | undefined) => collect(value, previous ?? []));
}

/**
 * Parses `key=value` selectors (repeated or comma-separated) into a label map.
 * @throws InputError naming the flag and the bad pair.
 */
export function parseSelector(values: readonly string[], flag = '--selector'): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const value of values)
    for (const raw of value.split(',')) {
      const pair = raw.trim();
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const key = eq < 0 ? '' : pair.slice(0, eq).trim();
      const val = eq < 0 ? '' : pair.slice(eq + 1).trim();
      if (eq < 0 || key === '' || key.length > LABEL_KEY_MAX || val.length > LABEL_VALUE_MAX)
        throw new InputError(
          `${flag}: "${printable(pair)}" is not key=value (key 1-${LABEL_KEY_MAX} characters, value at most ${LABEL_VALUE_MAX})`,
        );
      labels[key] = val;
    }
  return labels;
}

function filterOf(selector: readonly string[] | undefined, names?: string[]): InstanceFilter {
  const labels = parseSelector(selector ?? []);
  return {
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(names && names.length > 0 ? { names } : {}),
  };
}

/** An integer from `min` to `max` written in plain digits (no `1e3`, `0x10`, `2.5`). */
function parseInteger(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new InputError(`${name}: "${printable(text)}" is not an integer from ${min} to ${max}`);
  return n;
}

export function parseReplicas(text: string): number {
  return parseInteger('replicas', text, 0, MAX_REPLICAS);
}

function parseBoundedDuration(flag: string, text: string, minMs: number, maxMs: number): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new InputError(`${flag}: ${(err as Error).message}`);
  }
  if (ms < minMs || ms > maxMs)
    throw new InputError(
      `${flag}: "${printable(text)}" is out of range (${formatDuration(minMs)} to ${formatDuration(maxMs)})`,
    );
  return ms;
}

/** Opens the fleet of the configured platform for one command and releases it afterwards. */
async function withFleet(
  command: Command,
  work: (fleet: Fleet, resources: Resources) => Promise<void>,
): Promise<void> {
  await withResources(command, 'none', async (resources) => {
    const { openFleet } = await import('../../app/index.ts');
    await work(await openFleet(resources), resources);
  });
}

/** The fleet as it is now, in one line, for after an interruption or a failure. */
interface Picture {
  line: string;
  /** The versions instances run, sorted; undefined when the platform did not answer. */
  versions: string[] | undefined;
}

async function fleetPicture(fleet: Fleet): Promise<Picture> {
  try {
    const instances = await withTimeout('the platform', 10_000, () => fleet.platform.instances());
    const versions = new Map<string, number>();
    for (const i of instances) versions.set(i.version, (versions.get(i.version) ?? 0) + 1);
    const ready = instances.filter((i) => i.ready).length;
    const byVersion = [...versions].map(([v, n]) => `${printable(v)} ×${n}`).join(', ');
    const notReady = instances
      .filter((i) => !i.ready)
      .map((i) => `${printable(i.name)} ${i.phase}${i.reason ? ` (${printable(i.reason)})` : ''}`);
    return {
      line:
        `${instances.length} instances, ${ready} ready${byVersion ? `; versions: ${byVersion}` : ''}` +
        (notReady.length > 0 ? `; not ready: ${notReady.join(', ')}` : ''),
      versions: [...versions.keys()].sort(),
    };
  } catch (err) {
    return {
      line: `unknown (${printable(err instanceof Error ? err.message : String(err))})`,
      versions: undefined,
    };
  }
}

/** Prints progress on stderr when its message changes, with the time since the operation started. */
function progressPrinter(started: number): {
  onProgress: (p: RolloutProgress) => void;
  last: () => RolloutProgress | undefined;
} {
  let last: RolloutProgress | undefined;
  return {
    onProgress(p) {
      const changed = last?.message !== p.message;
      last = p;
      if (changed)
        process.stderr.write(
          `[${formatDuration(performance.now() - started)}] ${printable(p.operation)}: ${printable(p.message)}\n`,
        );
    },
    last: () => last,
  };
}

function progressFrom(err: unknown): RolloutProgress | undefined {
  if (!(err instanceof GameopsError)) return undefined;
  const p = err.details?.progress;
  return typeof p === 'object' && p !== null && 'message' in p ? (p as RolloutProgress) : undefined;
}

/** Errors that mean the operation never started: they go to main (exit 3). */
function refusedBeforeStart(err: unknown): boolean {
  return (
    err instanceof GameopsError &&
    (err.code === ErrorCode.input ||
      err.code === ErrorCode.conflict ||
      err.code === ErrorCode.notFound ||
      err.code === ErrorCode.notAllowed)
  );
}

interface RolloutSpec {
  /** e.g. `scale to 3`. */
  what: string;
  run(fleet: Fleet, options: WaitOptions): Promise<RolloutResult>;
  /** How to undo or recover, given the fleet as it was before and as it was left. */
  recovery(before: { replicas: number; versions: string[] }, after: Picture): string;
  timeoutMs?: number;
}

/**
 * Runs a scale/restart/set-version/rollback: progress on stderr, the result on stdout, the gate re-applied
 * afterwards when it is closed (ADR 0006). Failure: exit 2 with the error, the last progress, the state the
 * fleet was left in and how to recover. Ctrl-C: exit 130 with the state.
 */
async function runRollout(command: Command, json: boolean, spec: RolloutSpec): Promise<void> {
  const interrupt = interruptible();
  try {
    await withFleet(command, async (fleet) => {
      const beforeInstances = await fleet.platform.instances();
      const before = {
        replicas: beforeInstances.length,
        versions: [...new Set(beforeInstances.map((i) => i.version))].sort(),
      };
      const started = performance.now();
      const progress = progressPrinter(started);
      process.stderr.write(`gameops: ${spec.what} on ${printable(fleet.platform.describe())}\n`);
      let rollout: RolloutResult;
      try {
        rollout = await spec.run(fleet, {
          signal: interrupt.signal,
          onProgress: progress.onProgress,
          ...(spec.timeoutMs !== undefined ? { timeoutMs: spec.timeoutMs } : {}),
        });
      } catch (err) {
        // Refused before anything changed (bad input, a conflict, a port taken, state not writable): the
        // operation could not run (exit 3), as opposed to a rollout that failed part-way (exit 2).
        const refused =
          refusedBeforeStart(err) ||
          (err instanceof GameopsError &&
            err.code === ErrorCode.unavailable &&
            progressFrom(err) === undefined &&
            progress.last() === undefined);
        if (!interrupt.signal.aborted && refused) throw err;
        const last = progressFrom(err) ?? progress.last();
        const message = err instanceof Error ? err.message : String(err);
        const picture = await fleetPicture(fleet);
        const interrupted = interrupt.signal.aborted;
        const hint = spec.recovery(before, picture);
        if (json)
          writeJson({
            error: {
              code: interrupted ? 'interrupted' : err instanceof GameopsError ? err.code : 'internal',
              message,
            },
            progress: last,
            fleet: picture.line,
            recovery: hint,
          });
        process.stderr.write(
          [
            interrupted
              ? `gameops: ${spec.what} interrupted after ${formatDuration(performance.now() - started)}; gameops stopped waiting`
              : `gameops: ${spec.what} FAILED after ${formatDuration(performance.now() - started)}: ${printable(message)}`,
            ...(last ? [`last progress: ${printable(last.message)}`] : []),
            `fleet left with: ${picture.line}`,
            hint,
            '',
          ].join('\n'),
        );
        process.exitCode = interrupted ? INTERRUPTED : ExitCode.fail;
        return;
      }
      const outcome: RolloutOutcome = { rollout, ...(await fleet.gateAfterRollout(interrupt.signal)) };
      const { renderRolloutOutcome } = await import('../fleet-render.ts');
      if (json) writeJson(outcome);
      else process.stdout.write(`${renderRolloutOutcome(outcome)}\n`);
      process.exitCode =
        outcome.gateProblem !== undefined || outcome.gate?.status === 'partial' ? ExitCode.warn : ExitCode.ok;
    });
  } finally {
    interrupt.dispose();
  }
}

function timeoutOption(): Option {
  return new Option(
    '--timeout <duration>',
    'stop waiting after this long, e.g. 10m (1s to 6h; default: the platform’s rolloutTimeout)',
  );
}

function parseTimeout(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseBoundedDuration('--timeout', text, 1000, 6 * 3_600_000);
}

export function fleetCommand(): Command {
  const fleet = new Command('fleet')
    .description(
      'The game-server fleet: status, usage, logs, scaling, restarts, versions, the traffic gate, drain and ' +
        'diagnostics, on the platform in the config (platform: local or kubernetes).',
    )
    .addHelpText('after', `${FLEET_EXIT_CODES}\n${LOCAL_NOTE}`);

  fleet
    .command('status')
    .summary('Instances, players, tick lag, the gate and the autoscaler')
    .description(
      'Every instance with its phase, readiness, restarts, version, node and age, joined with what its game ' +
        'server says (players online, tick lag p99); then totals, the traffic gate and the autoscaler.',
    )
    .addOption(selectorOption())
    .option('--json', 'print the status as JSON')
    .addHelpText(
      'after',
      '\nExit code: 0 when every instance is ready and answering, 1 when some are not, 2 when none is ready ' +
        '(also when the fleet has no instances).\n' +
        LOCAL_NOTE,
    )
    .action(async (options: JsonOption & SelectorOption, command: Command) => {
      const filter = filterOf(options.selector);
      await withFleet(command, async (f, resources) => {
        const { renderStatus, statusExitCode } = await import('../fleet-render.ts');
        const status = await f.status(filter);
        if (options.json) writeJson(status);
        else process.stdout.write(`${renderStatus(status, resources.clock.now())}\n`);
        process.exitCode = statusExitCode(status);
      });
    });

  fleet
    .command('top')
    .summary('CPU and memory of nodes and instances')
    .description(
      'CPU (millicores and %) and memory of the nodes, then of the instances, busiest first ' +
        '(like kubectl top; locally from /proc).',
    )
    .addOption(selectorOption())
    .option('--json', 'print the usage report as JSON')
    .action(async (options: JsonOption & SelectorOption, command: Command) => {
      const filter = filterOf(options.selector);
      await withFleet(command, async (f) => {
        const report = await f.platform.usage(filter);
        if (options.json) writeJson(report);
        else process.stdout.write(`${(await import('../fleet-render.ts')).renderUsage(report)}\n`);
      });
    });

  fleet
    .command('logs')
    .summary('Print, follow or count log lines')
    .description(
      'Print the log lines of one instance, or of every selected instance (each line prefixed with ' +
        '[instance]), as they are read: nothing is collected in memory. With --follow, keep printing new ' +
        'lines until Ctrl-C. With --count PATTERN, count the lines containing PATTERN per instance instead.',
    )
    .argument('[instance]', 'one instance (see `gameops fleet status`); default: every selected instance')
    .addOption(selectorOption())
    .option('--since <duration>', 'only lines from the last DURATION, e.g. 1h (1s to 30d)')
    .addOption(
      new Option(
        '--tail <n>',
        'only the last N lines of each instance (0 to 100000; -f --tail 0: only new lines)',
      ),
    )
    .addOption(new Option('-f, --follow', 'keep printing new lines until Ctrl-C').conflicts('count'))
    .addOption(
      new Option(
        '--count <pattern>',
        'count lines containing PATTERN (a plain substring, e.g. ERROR) per instance',
      ).conflicts('tail'),
    )
    .option('--json', 'one JSON object per line: {"instance","line"} (with --count: the counts)')
    .addHelpText(
      'after',
      '\nLines come from the game servers: control characters are shown as \\xNN escapes.\n' +
        'Exit code 3 for an unknown instance; 0 otherwise, also when --follow is stopped with Ctrl-C.',
    )
    .action(
      async (
        instance: string | undefined,
        options: JsonOption &
          SelectorOption & { since?: string; tail?: string; follow?: boolean; count?: string },
        command: Command,
      ) => {
        const filter = filterOf(options.selector, instance === undefined ? undefined : [instance]);
        const sinceMs =
          options.since === undefined
            ? undefined
            : parseBoundedDuration('--since', options.since, 1000, 30 * 86_400_000);
        const tail =
          options.tail === undefined ? undefined : parseInteger('--tail', options.tail, 0, 100_000);
        if (options.count !== undefined && (options.count === '' || options.count.length > MAX_PATTERN))
          throw new InputError(`--count: the pattern must be 1 to ${MAX_PATTERN} characters`);
        const interrupt = interruptible();
        try {
          await withFleet(command, async (f) => {
            if (options.count !== undefined) {
              const count = await f.platform.countLines({
                ...filter,
                pattern: options.count,
                ...(sinceMs !== undefined ? { sinceMs } : {}),
                signal: interrupt.signal,
              });
              if (options.json) writeJson({ pattern: options.count, ...count });
              else
                process.stdout.write(
                  `${(await import('../fleet-render.ts')).renderLineCount(options.count, count)}\n`,
                );
              return;
            }
            const several = instance === undefined && (await f.platform.instances(filter)).length !== 1;
            await streamLogs(
              f.platform.logs({
                ...filter,
                ...(sinceMs !== undefined ? { sinceMs } : {}),
                ...(tail !== undefined ? { tail } : {}),
                ...(options.follow ? { follow: true } : {}),
                signal: interrupt.signal,
              }),
              { prefix: several, json: options.json === true, signal: interrupt.signal },
            );
          });
        } finally {
          interrupt.dispose();
        }
      },
    );

  fleet
    .command('scale')
    .summary('Set the number of instances and wait')
    .description(
      'Set the number of game-server instances and wait until that many are ready. Progress goes to ' +
        'stderr, the result to stdout. A closed traffic gate is re-applied to the fleet afterwards.',
    )
    .argument('<replicas>', `number of instances, an integer from 0 to ${MAX_REPLICAS}`)
    .addOption(timeoutOption())
    .option('--yes', 'confirm scaling to 0, which stops every game server and disconnects every player')
    .option('--json', 'print the result (or the failure) as JSON')
    .addHelpText(
      'after',
      '\nCtrl-C stops waiting (exit 130) and prints the state the fleet was left in; the platform keeps the ' +
        'new replica count.\n' +
        LOCAL_NOTE,
    )
    .action(
      async (text: string, options: JsonOption & { timeout?: string; yes?: boolean }, command: Command) => {
        const replicas = parseReplicas(text);
        const timeoutMs = parseTimeout(options.timeout);
        if (replicas === 0 && !options.yes)
          throw new InputError(
            'scaling to 0 stops every game server and disconnects every player; add --yes to do it',
          );
        await runRollout(command, options.json === true, {
          what: `scale to ${replicas}`,
          run: (f, wait) => f.platform.scale(replicas, wait),
          recovery: (before) =>
            `to go back: gameops fleet scale ${before.replicas}${before.replicas === 0 ? ' --yes' : ''}`,
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        });
      },
    );

  fleet
    .command('restart')
    .summary('Rolling restart')
    .description(
      'Restart instances a few at a time, each batch waiting for readiness (a rolling restart). ' +
        'Players on a restarted instance are disconnected: drain it first when that matters.',
    )
    .argument('[instance...]', 'only these instances (default: every instance)')
    .option('--max-unavailable <n>', 'instances restarted at once (1 to 1000; default 1)')
    .addOption(timeoutOption())
    .option('--json', 'print the result (or the failure) as JSON')
    .action(
      async (
        instances: string[],
        options: JsonOption & { maxUnavailable?: string; timeout?: string },
        command: Command,
      ) => {
        const maxUnavailable =
          options.maxUnavailable === undefined
            ? undefined
            : parseInteger('--max-unavailable', options.maxUnavailable, 1, MAX_REPLICAS);
        const timeoutMs = parseTimeout(options.timeout);
        await runRollout(command, options.json === true, {
          what: instances.length > 0 ? `restart of ${instances.map(printable).join(', ')}` : 'restart',
          run: (f, wait) =>
            f.platform.restart({
              ...wait,
              ...(maxUnavailable !== undefined ? { maxUnavailable } : {}),
              ...(instances.length > 0 ? { filter: { names: instances } } : {}),
            }),
          recovery: () =>
            'a restart does not change the version; check `gameops fleet status` and ' +
            '`gameops fleet logs <instance>` for the instances that did not come back',
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        });
      },
    );

  fleet
    .command('set-version')
    .summary('Roll the fleet to another version and wait')
    .description(
      'Roll the fleet to another game-server version and wait until every instance runs it. If it does not ' +
        'finish in time the rollout is left paused and reported; `gameops fleet rollback` goes back.',
    )
    .argument('<version>', 'the version (Kubernetes: image tag; local: a key of platform.versions)')
    .addOption(timeoutOption())
    .option('--json', 'print the result (or the failure) as JSON')
    .action(async (version: string, options: JsonOption & { timeout?: string }, command: Command) => {
      if (!VERSION_RE.test(version))
        throw new InputError(
          `version: "${printable(version)}" is not a version (letters, digits, ".", "_", "+", "-"; at most 128)`,
        );
      const timeoutMs = parseTimeout(options.timeout);
      await runRollout(command, options.json === true, {
        what: `set-version ${version}`,
        run: (f, wait) => f.platform.setVersion(version, wait),
        recovery: (before, after) =>
          after.versions !== undefined &&
          after.versions.length > 0 &&
          after.versions.join() === before.versions.join()
            ? `every instance runs ${after.versions.map(printable).join(', ')} again, as before: nothing to roll back`
            : `to roll back: gameops fleet rollback` +
              (before.versions.length === 1 ? ` (the fleet ran ${printable(before.versions[0] ?? '')})` : ''),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      });
    });

  fleet
    .command('rollback')
    .summary('Roll back to the previous version and wait')
    .description('Roll the fleet back to the version before the last set-version, and wait.')
    .addOption(timeoutOption())
    .option('--json', 'print the result (or the failure) as JSON')
    .action(async (options: JsonOption & { timeout?: string }, command: Command) => {
      const timeoutMs = parseTimeout(options.timeout);
      await runRollout(command, options.json === true, {
        what: 'rollback',
        run: (f, wait) => f.platform.rollback(wait),
        recovery: (before) =>
          `to retry: gameops fleet rollback` +
          (before.versions.length === 1
            ? `; to return to what ran before: gameops fleet set-version ${printable(before.versions[0] ?? '')}`
            : ''),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      });
    });

  const gate = fleet
    .command('gate')
    .summary('Show, close or open the traffic gate (new logins)')
    .description(
      'The traffic gate (ADR 0006): closed, game servers refuse new logins and tell connected players, who ' +
        'keep playing. Without a subcommand, shows the recorded gate.',
    )
    .option('--json', 'print the gate as JSON')
    .addHelpText(
      'after',
      '\nThe gate is recorded in the game config, so instances that start later (a scale-up, a restart) ' +
        'are told too.',
    )
    .action(async (options: JsonOption, command: Command) => {
      await withFleet(command, async (f) => {
        const state = await f.gate();
        if (options.json) writeJson(state);
        else process.stdout.write(`${(await import('../fleet-render.ts')).renderGate(state)}\n`);
      });
    });

  gate
    .command('close')
    .description('Close the gate: every ready game server refuses new logins and shows players MESSAGE.')
    .requiredOption('--message <text>', 'what players are told, 1 to 500 characters')
    .option('--starts-at <iso>', 'when the maintenance starts, ISO 8601 (told to players; informational)')
    .option('--json', 'print the outcome as JSON')
    .addHelpText('after', '\nExit code 1 when some ready instance did not confirm (named in the output).')
    .action(async (options: { message: string; startsAt?: string }, command: Command) => {
      if (options.message.trim() === '' || options.message.length > 500)
        throw new InputError('--message: 1 to 500 characters');
      if (
        options.startsAt !== undefined &&
        (!/^\d{4}-\d{2}-\d{2}T/.test(options.startsAt) || !Number.isFinite(Date.parse(options.startsAt)))
      )
        throw new InputError(
          `--starts-at: "${printable(options.startsAt)}" is not an ISO 8601 time, e.g. 2026-12-01T10:00:00Z`,
        );
      await setGate(command, jsonFlag(command), {
        closed: true,
        message: options.message,
        ...(options.startsAt !== undefined ? { startsAt: options.startsAt } : {}),
      });
    });

  gate
    .command('open')
    .description('Open the gate: game servers accept new logins again.')
    .option('--json', 'print the outcome as JSON')
    .action(async (_options: JsonOption, command: Command) => {
      await setGate(command, jsonFlag(command), { closed: false });
    });

  fleet
    .command('drain')
    .summary('Empty the game servers and wait until no player is left')
    .description(
      'Ask every ready game server to empty: new logins are refused, players are asked to save and leave, ' +
        'and are saved and disconnected at the deadline. Waits until no player is left, printing the count ' +
        'as it falls. A drain cannot be undone: restart or scale the instances afterwards.',
    )
    .addOption(selectorOption())
    .option('--message <text>', 'what players are told, 1 to 500 characters')
    .option('--deadline <duration>', 'when the servers disconnect the remaining players, 1s to 1h', '30s')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nExit code 0 when empty, 1 when empty but an instance could not be asked, 2 when players remained ' +
        '30 s after the deadline, 130 on Ctrl-C (the instances keep draining).',
    )
    .action(
      async (
        options: JsonOption & SelectorOption & { message?: string; deadline: string },
        command: Command,
      ) => {
        const filter = filterOf(options.selector);
        const deadlineSeconds = Math.ceil(
          parseBoundedDuration('--deadline', options.deadline, 1000, 3_600_000) / 1000,
        );
        if (options.message !== undefined && (options.message.trim() === '' || options.message.length > 500))
          throw new InputError('--message: 1 to 500 characters');
        const interrupt = interruptible();
        try {
          await withFleet(command, async (f) => {
            const started = performance.now();
            let last: number | undefined;
            const result = await f.drain({
              ...(options.message !== undefined ? { message: options.message } : {}),
              deadlineSeconds,
              filter,
              signal: interrupt.signal,
              onProgress: (remaining) => {
                if (remaining === last) return;
                last = remaining;
                process.stderr.write(
                  `[${formatDuration(performance.now() - started)}] players remaining: ${remaining}\n`,
                );
              },
            });
            if (options.json) writeJson(result);
            else process.stdout.write(`${(await import('../fleet-render.ts')).renderDrain(result)}\n`);
            if (interrupt.signal.aborted) {
              process.stderr.write(
                `gameops: stopped waiting; ${result.playersRemaining} players were still online and the ` +
                  'instances keep draining (a drain cannot be undone)\n',
              );
              process.exitCode = INTERRUPTED;
            } else if (result.status === 'timeout') process.exitCode = ExitCode.fail;
            else process.exitCode = result.instances.every((i) => i.ok) ? ExitCode.ok : ExitCode.warn;
          });
        } finally {
          interrupt.dispose();
        }
      },
    );

  fleet
    .command('diagnostics')
    .summary('CPU profile, heap snapshot or stack dump of one instance')
    .description(
      'Take a diagnostic from one game server and store it as an artefact (game.artefactDir, default ' +
        '<dataDir>/artefacts); prints its path, size and sha256. A heap snapshot pauses the server while ' +
        'it is taken (players see a hitch).',
    )
    .argument('<instance>', 'the instance (see `gameops fleet status`)')
    .addArgument(new Argument('<kind>', 'what to take').choices(DIAGNOSTIC_KINDS))
    .option('--seconds <n>', 'cpu-profile only: how long to profile, 1 to 60 (default 10)')
    .option('--json', 'print the artefact as JSON')
    .action(
      async (
        instance: string,
        kind: DiagnosticKindName,
        options: JsonOption & { seconds?: string },
        command: Command,
      ) => {
        if (options.seconds !== undefined && kind !== 'cpu-profile')
          throw new InputError('--seconds: only for cpu-profile');
        const seconds =
          options.seconds === undefined ? undefined : parseInteger('--seconds', options.seconds, 1, 60);
        const interrupt = interruptible();
        try {
          await withFleet(command, async (f) => {
            const artefact = await f.diagnostics(instance, kind, {
              ...(seconds !== undefined ? { seconds } : {}),
              signal: interrupt.signal,
            });
            if (options.json) writeJson(artefact);
            else process.stdout.write(`${(await import('../fleet-render.ts')).renderArtefact(artefact)}\n`);
          });
        } catch (err) {
          if (!interrupt.signal.aborted) throw err;
          process.stderr.write('gameops: interrupted; nothing was stored\n');
          process.exitCode = INTERRUPTED;
        } finally {
          interrupt.dispose();
        }
      },
    );

  for (const sub of fleet.commands) sub.addHelpText('after', FLEET_EXIT_CODES);
  // main.ts sets exitOverride on commands and their children; `gate open|close` are one level deeper.
  for (const leaf of gate.commands) leaf.exitOverride();
  return fleet;
}

/**
 * `--json` of `gate close|open`: commander hands an option that the parent `gate` also has to the parent,
 * wherever it is written, so read it from both.
 */
function jsonFlag(command: Command): boolean {
  return command.optsWithGlobals<JsonOption>().json === true;
}

async function setGate(
  command: Command,
  json: boolean,
  input: { closed: boolean; message?: string; startsAt?: string },
): Promise<void> {
  const interrupt = interruptible();
  try {
    await withFleet(command, async (f) => {
      const result = await f.setGate(input, interrupt.signal);
      if (json) writeJson(result);
      else process.stdout.write(`${(await import('../fleet-render.ts')).renderGateResult(result)}\n`);
      process.exitCode = result.status === 'ok' ? ExitCode.ok : ExitCode.warn;
    });
  } finally {
    interrupt.dispose();
  }
}

/** Writes lines as they come, waiting for stdout when it is slower than the log; ends quietly on abort. */
async function streamLogs(
  lines: AsyncIterable<{ instance: string; line: string }>,
  options: { prefix: boolean; json: boolean; signal: AbortSignal },
): Promise<void> {
  try {
    for await (const { instance, line } of lines) {
      const text = options.json
        ? `${JSON.stringify({ instance, line })}\n`
        : `${options.prefix ? `[${printable(instance)}] ` : ''}${printable(line)}\n`;
      if (!process.stdout.write(text)) await once(process.stdout, 'drain', { signal: options.signal });
      if (options.signal.aborted) break;
    }
  } catch (err) {
    // Ctrl-C during --follow is how a follow ends: not an error.
    if (!options.signal.aborted) throw err;
  }
}
