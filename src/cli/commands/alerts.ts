import { Command } from 'commander';

// PLACEHOLDER (issue #5, being written): gameops alerts.
export function alertsCommand(): Command {
  return new Command('alerts').description('(being written)');
}
