#!/usr/bin/env bash
# Installs a pinned Django from PyPI into a Python virtual environment for the Django auth
# fixture (test/support/django), caches it outside the repository keyed by version, and prints
# the path of its python. A warm cache returns at once; concurrent callers wait for one install.
#
#   scripts/install-django.sh            → ~/.cache/podgate/django-5.2.19/venv/bin/python
#   scripts/install-django.sh --check    → the same path when installed; otherwise exit 1, installs nothing
#   PODGATE_CACHE=/somewhere PODGATE_DJANGO_VERSION=5.2.18 scripts/install-django.sh
#
# The environment is built in a temporary directory and renamed into place. A venv's python
# finds its packages from its own location, so it works after the rename; the console scripts
# (pip, django-admin, sqlformat, activate) name the temporary path and are removed: use
# bin/python -m pip.
set -euo pipefail

version="${PODGATE_DJANGO_VERSION:-5.2.19}"
cache="${PODGATE_CACHE:-${HOME:?HOME is not set}/.cache/podgate}"
dir="$cache/django-$version"
python="$dir/venv/bin/python"

fail () { echo "install-django: $*" >&2; exit 1; }

[[ "$version" =~ ^5\.[0-9]+(\.[0-9]+)?$ ]] || fail "PODGATE_DJANGO_VERSION must look like 5.X or 5.X.Y, got '$version'"
# The versions file is written last: a python without it is an interrupted install.
installed () { [[ -f "$dir/versions" && -x "$python" ]]; }
if installed; then echo "$python"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  fail "Django $version is not installed in $dir: run bash scripts/install-django.sh"
fi

command -v python3 >/dev/null 2>&1 || fail "Python 3.10+ is required to install Django $version, but 'python3' is not on PATH"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || fail "Django $version needs Python 3.10 or newer, but python3 here is $(python3 -c 'import platform; print(platform.python_version())')"
# Debian and Ubuntu ship venv and ensurepip apart from python3 itself.
python3 -c 'import venv, ensurepip' 2>/dev/null \
  || fail "python3 cannot create a virtual environment (no venv/ensurepip module): install the python3-venv package (apt-get install python3-venv)"

mkdir -p "$dir"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dir/.lock"
  # Say why nothing happens for a while when another install holds the lock.
  flock -n 9 || { echo "install-django: waiting for another install of Django $version to finish ($dir)" >&2; flock 9; }
  if installed; then echo "$python"; exit 0; fi
fi

started=$SECONDS
work="$(mktemp -d "$dir/.build.XXXXXX")"
log="$(mktemp "${TMPDIR:-/tmp}/podgate-install-django.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "install-django: installing Django $version from PyPI into $dir (first run only; under a minute)" >&2
python3 -m venv "$work/venv" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; fail "python3 -m venv failed (see the lines above)"; }

if ! "$work/venv/bin/python" -m pip install --no-input --disable-pip-version-check --only-binary :all: \
    "Django==$version" >>"$log" 2>&1; then
  # pip names the connection error only when it retries; "versions: none" is an index it never read.
  if grep -qE 'from versions: none|NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Name or service not known|Network is unreachable|Connection refused|ConnectTimeout|ReadTimeout|ProxyError|SSLError' "$log"; then
    fail "cannot reach PyPI to download Django $version (pip's log: $log)"
  fi
  if grep -q 'No matching distribution found' "$log"; then
    fail "PyPI has no Django $version for Python $(python3 -c 'import platform; print(platform.python_version())') (pip's log: $log)"
  fi
  tail -n 20 "$log" >&2
  fail "pip install Django==$version failed (the last lines above; all of them in $log)"
fi

"$work/venv/bin/python" -c "import django, sys; sys.exit(django.get_version() != '$version')" >>"$log" 2>&1 \
  || { tail -n 20 "$log" >&2; fail "the installed Django does not report $version (pip's log: $log)"; }
rm -f "$log"

find "$work/venv/bin" -type f ! -name 'python*' -delete
rm -rf "$dir/venv"
mv "$work/venv" "$dir/venv"
{
  echo "django=$version"
  echo "python=$("$python" -c 'import platform; print(platform.python_version())')"
  "$python" -m pip freeze --disable-pip-version-check | sed 's/^/pip: /'
  echo "seconds=$((SECONDS - started))"
} > "$dir/versions"
echo "$python"
