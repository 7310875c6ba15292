#!/usr/bin/env bash
# Builds helm from the Go module proxy at a pinned version, caches it outside the repository
# (keyed by version) and prints the path of the binary. A warm cache returns at once.
#
#   scripts/install-helm.sh            → /root/.cache/podgate/helm-v3.22.0/helm
#   PODGATE_CACHE=/somewhere scripts/install-helm.sh
#   PODGATE_HELM_VERSION=v3.21.4 scripts/install-helm.sh
set -euo pipefail

version="${PODGATE_HELM_VERSION:-v3.22.0}"
cache="${PODGATE_CACHE:-${HOME:?HOME is not set}/.cache/podgate}"
dir="$cache/helm-$version"
bin="$dir/helm"

fail () { echo "install-helm: $*" >&2; exit 1; }

[[ "$version" =~ ^v3\.[0-9]+\.[0-9]+$ ]] || fail "PODGATE_HELM_VERSION must look like v3.X.Y, got '$version'"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

command -v go >/dev/null 2>&1 || fail "Go is required to build helm $version from the Go module proxy, but 'go' is not on PATH (install Go 1.26+ from https://go.dev/dl/)"

mkdir -p "$dir"
# Concurrent callers (parallel test files, CI jobs) wait for one build instead of racing.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dir/.lock"
  # Say why nothing happens for a while when another build holds the lock.
  flock -n 9 || { echo "install-helm: waiting for another build of helm $version to finish ($dir)" >&2; flock 9; }
  if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
fi

work="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

module="helm.sh/helm/v3"
echo "install-helm: building helm $version from the Go module proxy (first run only; a few minutes)" >&2
gomod="$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')" || true
[[ -n "$gomod" && -f "$gomod" ]] || fail "could not download $module@$version from the Go module proxy ($(go env GOPROXY))"

# Helm's release build stamps the Kubernetes version it was built against (client-go v0.N → 1.N);
# without it, template rendering and lint assume Kubernetes 1.20.
client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")"
[[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || fail "cannot find the k8s.io/client-go version in $gomod"
kube_minor="${BASH_REMATCH[1]}"

ldflags="-s -w -X $module/internal/version.version=$version"
ldflags+=" -X $module/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X $module/$pkg.k8sVersionMajor=1 -X $module/$pkg.k8sVersionMinor=$kube_minor"
done

GOBIN="$work" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
  go install -trimpath -ldflags "$ldflags" "$module/cmd/helm@$version" >&2 \
  || fail "go install $module/cmd/helm@$version failed (see the output above)"

"$work/helm" version --short >/dev/null 2>&1 || fail "the built helm binary does not run"
mv -f "$work/helm" "$bin"
echo "$bin"
