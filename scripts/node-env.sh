# Sourced from the repository root (`. scripts/node-env.sh`) by a shell that wants to run
# podgate's Node outside npm scripts, e.g. `node src/main.ts serve`: when the shell's `node` is
# older than package.json's engines.node, puts the Node that npm ci installed
# (node_modules/node, the `node` dev dependency) first on PATH. npm scripts need none of this.
# On failure it says why and returns 1: `exit` would close the terminal that sourced it.

if [ ! -f scripts/require-node.sh ] || [ ! -f package.json ]; then
  echo "scripts/node-env.sh: source it from the repository root" >&2
  return 1 2>/dev/null || exit 1
fi

if ! sh scripts/require-node.sh 2>/dev/null; then
  if [ -x node_modules/node/bin/node ]; then
    export PATH="$PWD/node_modules/node/bin:$PATH"
    hash -r 2>/dev/null
  fi
  # Says why in one line when the project's Node is missing too (npm ci not run yet).
  sh scripts/require-node.sh || return 1 2>/dev/null || exit 1
fi
