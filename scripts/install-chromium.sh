#!/usr/bin/env bash
# Makes sure headless Chromium is there for the browser tests (test/browser/), which drive it
# with puppeteer-core: never a browser downloaded by puppeteer, only the distribution's package.
# Prints nothing when the browser is present; otherwise installs the Debian package chromium
# with apt-get (root only; about 25 s on a Debian 12 machine), with one progress line on stderr.
#
#   scripts/install-chromium.sh                          → /usr/bin/chromium, installed if missing
#   PODGATE_CHROMIUM=/opt/chromium/chrome scripts/install-chromium.sh   → checks that one instead
set -euo pipefail

browser="${PODGATE_CHROMIUM:-/usr/bin/chromium}"
fail () { echo "install-chromium: $*" >&2; exit 1; }

[[ -x "$browser" ]] && exit 0
[[ -n "${PODGATE_CHROMIUM:-}" ]] && fail "PODGATE_CHROMIUM=$browser is not an executable file"

what="the browser tests need Chromium at $browser"
command -v apt-get >/dev/null 2>&1 \
  || fail "$what: install the chromium package, or set PODGATE_CHROMIUM to a Chromium binary"
[[ "$(id -u)" == 0 ]] \
  || fail "$what: run apt-get install --no-install-recommends chromium as root, or set PODGATE_CHROMIUM to a Chromium binary"

log="$(mktemp "${TMPDIR:-/tmp}/podgate-install-chromium.XXXXXX")"
echo "install-chromium: installing the Debian package chromium with apt-get (first run only; under a minute)" >&2
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  fail "apt-get install chromium failed (the last lines above; all of them in $log)"
fi
rm -f "$log"
[[ -x "$browser" ]] || fail "apt-get installed chromium, but $browser is still missing"
