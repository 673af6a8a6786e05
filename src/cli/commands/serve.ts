import { Command } from 'commander';
import { InputError, UnavailableError } from '../../core/index.ts';
import { globalOptions } from '../context.ts';

interface ServeOptions {
  host?: string;
  port?: string;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description(
      "Run the gameops server: the HTTP API, /metrics, alert intake and paging (escalations, status-update reminders), runbook schedules, maintenance windows (notices, their runs; scheduled backups held off during them) and the local platform's supervisor (restarts crashed game servers; they keep running when gameops stops). `npm start` runs this.",
    )
    .option('--host <address>', 'address to listen on (default: server.host, 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default: server.port, 8787; 0 picks a free one)')
    .action(async (options: ServeOptions, command: Command) => {
      const opts = globalOptions(command);
      const port = options.port === undefined ? undefined : parsePort(options.port);
      const { bootstrap, openOps, openRunbooks, shutdown, superviseFleet, workOps, workRunbooks } =
        await import('../../app/index.ts');
      const { buildServer, UNCONFIGURED_HINT } = await import('../../server/index.ts');
      const { startScheduler } = await import('../../schedules/index.ts');
      const { maintenanceHoldOff, workMaintenance } = await import('../../app/maintenance.ts');
      const resources = await bootstrap({
        store: 'required',
        metrics: true,
        ...(opts.config ? { configPath: opts.config } : {}),
        ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
      });
      const { config, log, store, loaded } = resources;
      const server = await buildServer(resources);
      // Runbook schedules (runbooks.schedules; the daily check at 09:00 by default): occurrences missed
      // while gameops was down are settled now, and a bad schedule stops serve here, naming it.
      let scheduler: Awaited<ReturnType<typeof startScheduler>>;
      try {
        if (!store) throw new UnavailableError('schedules need the store');
        // Incident response (alert routes, suppression windows, on-call schedules, policies): a config it
        // cannot use stops serve here, naming it, instead of failing every Alertmanager webhook later.
        await openOps(resources);
        // Recurring maintenance windows whose cron or time zone is wrong stop serve here, naming them.
        (await import('../../maintenance/service.ts')).checkRecurringWindows(config);
        scheduler = await startScheduler({
          config,
          configured: loaded.configured,
          store,
          runs: await openRunbooks(resources),
          clock: resources.clock,
          log,
          // Runbooks of maintenance.holdOff (backups, DB maintenance) wait while a maintenance window is open.
          holdOff: maintenanceHoldOff(resources),
        });
      } catch (err) {
        await server.close();
        await shutdown(resources);
        throw err;
      }
      const host = options.host ?? config.server.host;
      let address: string;
      try {
        address = await server.app.listen({ host, port: port ?? config.server.port });
      } catch (err) {
        await shutdown(resources);
        throw listenError(err, host, port ?? config.server.port);
      }
      // CLI commands on this machine reach the API while serve holds the embedded store: serve.json and
      // a fresh local admin token in the data directory (src/identity/local.ts).
      const { publishServe } = await import('../../identity/index.ts');
      const published =
        store?.backend === 'sqlite'
          ? await publishServe(store, config.database.dataDir, address, resources.clock.now())
          : undefined;
      process.stderr.write(
        `gameops listening on ${address} (service ${config.service.name}/${config.service.environment}; ` +
          `store: ${store?.backend} at ${store?.location})\n`,
      );
      if (!loaded.configured) process.stderr.write(`gameops: ${UNCONFIGURED_HINT}\n`);
      if (!isLoopback(host))
        log.warn(
          { host },
          'listening beyond loopback over plain HTTP: API tokens cross the network in clear; put it behind a TLS proxy',
        );

      // The local platform's game servers are supervised while the server runs (they keep running
      // when it stops; the next start adopts them: docs/adr/0004-local-platform.md).
      const supervision = new AbortController();
      const supervising = superviseFleet(resources, supervision.signal);
      // The runbook engine's worker: queued runs start, runs interrupted by a restart resume.
      const working = new AbortController();
      const runbookWork = workRunbooks(resources, working.signal);
      // Incident response: alerts processed, pages delivered and escalated, status updates reminded.
      const opsWork = workOps(resources, working.signal);
      // Maintenance windows: recurring ones materialised, notices sent, their runs started and followed.
      const maintenanceWork = workMaintenance(resources, working.signal);

      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          process.stderr.write(`gameops: ${signal} received, finishing in-flight work\n`);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await scheduler.stop();
      supervision.abort();
      working.abort();
      await Promise.all([supervising, runbookWork, opsWork, maintenanceWork]);
      // The local admin token stops working with serve (revoked while the store is still open).
      await published?.unpublish().catch((err: unknown) => {
        log.warn({ err }, 'could not revoke the local admin token at shutdown; the next serve revokes it');
      });
      await server.close();
      await shutdown(resources);
      process.stderr.write('gameops: stopped\n');
    });
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535)
    throw new InputError(`--port: "${text}" is not a port number (0-65535)`);
  return port;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Turns a listen failure into a message a person can act on. */
function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `${host}:${port}`;
  if (code === 'EADDRINUSE')
    return new InputError(`cannot listen on ${where}: the port is already in use (--port)`);
  if (code === 'EACCES')
    return new InputError(`cannot listen on ${where}: permission denied (ports below 1024 need root)`);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
    return new InputError(`cannot listen on ${where}: that address is not on this machine (--host)`);
  return err;
}
