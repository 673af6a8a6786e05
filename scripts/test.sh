#!/usr/bin/env bash
# `npm test`: typecheck, lint, format check, then every test (real servers included; see test/harness).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== typecheck" && tsc --noEmit -p .
echo "== lint" && eslint --max-warnings=0 .
echo "== format" && prettier --check --log-level=warn .
echo "== build" && node scripts/build.ts
echo "== test servers" && node scripts/test-servers.ts
echo "== tests" && vitest run "$@"
