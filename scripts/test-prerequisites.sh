#!/usr/bin/env bash
# Run by `npm test` before the suite (its pretest script): checks the Node.js version, then
# builds what the tests need and npm does not install — helm for the chart tests; etcd,
# kube-apiserver and kube-controller-manager for the end-to-end suite; Django in a venv for
# the original auth service the external-verifier tests run — once per machine, from the Go
# module proxy and PyPI, cached by version under ~/.cache/podgate (PODGATE_CACHE); and Chromium
# for the browser tests, from the Debian package.
# A warm cache prints nothing. A build shows its one progress line; the Go toolchain's own
# output is kept aside and printed only when the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."

sh scripts/require-node.sh

# build <what> <script>: the script returns at once when its cache is warm, prints the built
# path on stdout (not needed here) and its progress line on stderr.
build () {
  local what="$1" script="$2" log
  log="$(mktemp "${TMPDIR:-/tmp}/podgate-build.XXXXXX")"
  if bash "$script" 2>&1 >/dev/null | while IFS= read -r line; do
       case "$line" in
         "install-helm: building "* | "e2e build: building "*) echo "$line" >&2 ;;
         *) printf '%s\n' "$line" >>"$log" ;;
       esac
     done; then
    rm -f "$log"
    return 0
  fi
  tail -n 20 "$log" >&2
  if (( $(wc -l <"$log") > 20 )); then
    echo "npm test: could not build $what (the last lines above; all of them in $log)" >&2
  else
    rm -f "$log"
    echo "npm test: could not build $what (see the lines above)" >&2
  fi
  exit 1
}

build helm scripts/install-helm.sh
build "the Kubernetes control plane" test/e2e/cluster/build.sh
# Its one progress line (cold) or one-line failure goes to stderr; pip's log only on failure.
bash scripts/install-django.sh >/dev/null
# Nothing when /usr/bin/chromium (or PODGATE_CHROMIUM) is there; a progress line or one-line failure otherwise.
bash scripts/install-chromium.sh
