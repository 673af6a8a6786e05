/**
 * Writes docs/runbook.schema.json, the JSON Schema of a YAML runbook for editors, from the runbook input
 * schema (src/runbooks/input.ts). Needs no config and no gameops process.
 *
 *   node scripts/runbook-schema.ts           # rewrite docs/runbook.schema.json
 *   node scripts/runbook-schema.ts --check   # exit 1 when the committed file is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runbookJsonSchema } from '../src/runbooks/input.ts';

const file = join(import.meta.dirname, '..', 'docs', 'runbook.schema.json');
const schema = runbookJsonSchema();
const text = `${JSON.stringify(schema, null, 2)}\n`;

if (process.argv.includes('--check')) {
  let committed: unknown;
  try {
    committed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    // Missing or not JSON counts as out of date.
  }
  // Compared as JSON: the formatter may lay the file out differently.
  if (JSON.stringify(committed) !== JSON.stringify(schema)) {
    console.error(`${file} is out of date: run node scripts/runbook-schema.ts`);
    process.exit(1);
  }
  console.log(`${file} is up to date`);
} else {
  writeFileSync(file, text);
  console.log(`wrote ${file}`);
}
