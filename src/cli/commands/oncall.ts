import { Command } from 'commander';

// PLACEHOLDER (issue #5, being written): gameops oncall.
export function oncallCommand(): Command {
  return new Command('oncall').description('(being written)');
}
