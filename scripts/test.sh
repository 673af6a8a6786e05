#!/usr/bin/env bash
# `npm test`: typecheck, lint, format check, bundle, then every test (real servers included; see
# test/harness). Ends with one plain line, "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== typecheck" && tsc --noEmit -p .
echo "== lint" && eslint --max-warnings=0 .
echo "== format" && prettier --check --log-level=warn .
echo "== build" && node scripts/build.ts
echo "== test servers" && node scripts/test-servers.ts
echo "== tests"
results="$(mktemp -t gameops-vitest-XXXXXX.json)"
trap 'rm -f "$results"' EXIT
status=0
vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" || status=$?
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
' "$results" || true
exit "$status"
