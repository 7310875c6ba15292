#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver, kube-controller-manager, etcd) from
# the Go module proxy, caches it outside the repository keyed by versions, and prints the
# directory that holds the binaries. A warm cache returns at once; concurrent callers wait
# for one build.
#
#   test/e2e/cluster/build.sh                                  → ~/.cache/podgate/k8s-v1.37.1/bin
#   PODGATE_KUBE_VERSION=v1.36.3 test/e2e/cluster/build.sh
#   PODGATE_CACHE=/somewhere test/e2e/cluster/build.sh
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io staging module
# with a directory of its own tree. A throwaway module that requires k8s.io/kubernetes and
# replaces each staging module with its published v0.X.Y builds with plain `go build`.
set -euo pipefail

version="${PODGATE_KUBE_VERSION:-v1.37.1}"
cache="${PODGATE_CACHE:-${HOME:?HOME is not set}/.cache/podgate}"
dir="$cache/k8s-$version"
bin="$dir/bin"
binaries=(kube-apiserver kube-controller-manager etcd)

fail () { echo "e2e build: $*" >&2; exit 1; }

[[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || fail "PODGATE_KUBE_VERSION must look like v1.X.Y, got '$version'"
minor="${BASH_REMATCH[1]}"
staging_version="v0.$minor.${BASH_REMATCH[2]}"

built () {
  [[ -f "$dir/versions" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}
if built; then echo "$bin"; exit 0; fi

command -v go >/dev/null 2>&1 || fail "Go is required to build Kubernetes $version from the Go module proxy, but 'go' is not on PATH (install Go 1.26+ from https://go.dev/dl/)"
# A toolchain download would hide a too-old Go behind a long, silent fetch; say it instead.
export GOTOOLCHAIN=local

mkdir -p "$dir"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dir/.lock"
  # Say why nothing happens for a while when another build holds the lock.
  flock -n 9 || { echo "e2e build: waiting for another build of Kubernetes $version to finish ($dir)" >&2; flock 9; }
  if built; then echo "$bin"; exit 0; fi
fi

started=$SECONDS
work="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "e2e build: building Kubernetes $version from the Go module proxy (first run only; 10-30 minutes on 2 cores)" >&2
gomod="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')" || true
[[ -n "$gomod" && -f "$gomod" ]] || fail "could not download k8s.io/kubernetes@$version from the Go module proxy ($(go env GOPROXY))"

go_line="$(awk '$1 == "go" { print; exit }' "$gomod")"
godebug_line="$(awk '$1 == "godebug" { print; exit }' "$gomod")"
need_go="${go_line#go }"
have_go="$(go env GOVERSION)"; have_go="${have_go#go}"
if [[ "$(printf '%s\n%s\n' "$need_go" "$have_go" | sort -V | head -1)" != "$need_go" ]]; then
  fail "Kubernetes $version needs Go $need_go or newer, this machine has Go $have_go"
fi

# The staging modules are exactly the `=> ./staging/...` replaces of the release's own go.mod.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod")
(( ${#staging[@]} > 0 )) || fail "no staging replaces found in $gomod"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$gomod")"
[[ -n "$etcd_version" ]] || fail "cannot find the go.etcd.io/etcd/server/v3 version in $gomod"

{
  echo "// Throwaway module: builds the Kubernetes $version control plane; never committed."
  echo "module podgate.test/kube-control-plane"
  echo
  echo "$go_line"
  [[ -n "$godebug_line" ]] && echo "$godebug_line"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $version"
  echo "	go.etcd.io/etcd/server/v3 $etcd_version"
  echo ")"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
} > "$work/go.mod"

packages=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager go.etcd.io/etcd/server/v3)
# Resolves the whole build list and records go.sum; a lagging staging tag fails here, by name.
(cd "$work" && go get "${packages[0]}@$version" "${packages[1]}@$version" "${packages[2]}@$etcd_version" >&2) \
  || fail "resolving the modules of Kubernetes $version failed (see above; a staging module may lack the tag $staging_version)"

pkgv=k8s.io/component-base/version
cgv=k8s.io/client-go/pkg/version
ldflags="-s -w"
for p in "$pkgv" "$cgv"; do
  ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  ldflags+=" -X $p.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$work/bin"
for pkg in "${packages[@]}"; do
  name="${pkg##*/}"; [[ "$name" == v3 ]] && name=etcd
  echo "e2e build: go build $pkg" >&2
  # -p bounds parallel compiles: a 2-core machine and about 2 GiB per compile.
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="-p=${PODGATE_BUILD_JOBS:-2} -buildvcs=false -mod=mod" \
    go build -trimpath -ldflags "$ldflags" -o "bin/$name" "$pkg" >&2) \
    || fail "go build $pkg failed (see above)"
done

"$work/bin/kube-apiserver" --version | grep -qF "$version" || fail "the built kube-apiserver does not report $version"
"$work/bin/etcd" --version >/dev/null || fail "the built etcd does not run"

mkdir -p "$bin"
for b in "${binaries[@]}"; do mv -f "$work/bin/$b" "$bin/$b"; done
{
  echo "kubernetes=$version"
  echo "staging=$staging_version"
  echo "etcd=$etcd_version"
  echo "go=$(go env GOVERSION)"
  echo "seconds=$((SECONDS - started))"
} > "$dir/versions"
echo "e2e build: done in $((SECONDS - started)) s" >&2
echo "$bin"
