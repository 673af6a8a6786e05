import { Command } from 'commander';

// PLACEHOLDER (issue #5, being written): gameops incident.
export function incidentCommand(): Command {
  return new Command('incident').description('(being written)');
}
