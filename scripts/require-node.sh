#!/bin/sh
# Stops an npm script with one line when the `node` it would run is older than package.json's
# engines.node. npm ci installs a Node that fits (the `node` dev dependency) and npm scripts
# find it first on PATH, so this speaks only when that install was skipped (--ignore-scripts,
# --omit=dev) or the command runs outside npm with an older `node` first on PATH.
#
#   sh scripts/require-node.sh      → silent, exit 0; or one line on stderr, exit 1
cd "$(dirname "$0")/.." || exit 1

if ! command -v node >/dev/null 2>&1; then
  echo "podgate needs Node.js (see engines in package.json) and there is no 'node' on PATH: install Node 24, then run npm ci" >&2
  exit 1
fi

# Plain ES5 in a CommonJS eval, so that any Node old enough to need this message can run it.
node -e '
var need = require("./package.json").engines.node
var min = /^>=(\d+)\.(\d+)$/.exec(need)
if (min === null) { console.error("scripts/require-node.sh: engines.node must look like >=X.Y, got " + need); process.exit(1) }
var have = process.versions.node.split(".").map(Number)
var ok = have[0] > Number(min[1]) || (have[0] === Number(min[1]) && have[1] >= Number(min[2]))
if (!ok) {
  console.error("podgate needs Node.js " + need + " (Node 24 LTS), but `node` here is " + process.version +
    " (" + process.execPath + "): run npm ci, which installs Node 24 for npm scripts, or put Node 24 first on PATH")
  process.exit(1)
}
'
