#!/usr/bin/env bash
# Builds the test control plane tools from source (Go module proxy only, no binary downloads):
#   qs-controlplane  etcd + kube-apiserver + garbage collector/namespace controllers (k8s.io/kubernetes)
#   kubectl          k8s.io/kubernetes/cmd/kubectl, same Kubernetes release
#   helm             helm.sh/helm/v3/cmd/helm (its own dependency versions: `go install pkg@version`)
# and with --node also the parts of a real node (tests/node/), from the same module pins
# (the `tool` lines of go.mod):
#   kubelet, kube-scheduler, kube-controller-manager
# into $REPO/.cache/controlplane/bin/. Idempotent: a binary is rebuilt only when its stamp
# (hash of go.mod, go.sum, *.go, this script, the Go version and, for helm, its version) changed.
#
# Usage: tests/controlplane/build.sh            build what is missing or stale
#        tests/controlplane/build.sh --node     also the node binaries (kubelet, scheduler, controller-manager)
#        QS_CP_FORCE=1 tests/controlplane/build.sh   rebuild everything
# Environment: QS_CP_BIN (output dir), HELM_VERSION (default below), GOFLAGS/GOCACHE/GOMODCACHE as usual.
set -euo pipefail

NODE=
case "${1:-}" in
--node) NODE=1 ;;
"") ;;
*) echo "usage: build.sh [--node]" >&2; exit 2 ;;
esac

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HELM_K8S_MINOR=37 # helm v3.22.0 is built against k8s.io/client-go v0.37.x (helm's Makefile ldflags)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${QS_CP_BIN:-$REPO/.cache/controlplane/bin}"
STAMPS="$BIN/.stamps"

t0=$SECONDS
log() { printf '[build.sh %4ss] %s\n' "$((SECONDS - t0))" "$*"; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not installed (need Go >= 1.26: k8s.io/kubernetes v1.37 requires it)"
GOVER="$(go env GOVERSION)"
case "$GOVER" in
go1.2[6-9]* | go1.[3-9][0-9]*) ;;
*) die "Go $GOVER is too old: k8s.io/kubernetes v1.37 needs Go >= 1.26" ;;
esac
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
mkdir -p "$BIN" "$STAMPS"

# Kubernetes version = the k8s.io/kubernetes requirement in go.mod.
K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$HERE/go.mod")"
[ -n "$K8S_VERSION" ] || die "cannot find the k8s.io/kubernetes version in $HERE/go.mod"
K8S_MAJOR="${K8S_VERSION#v}"; K8S_MAJOR="${K8S_MAJOR%%.*}"
K8S_MINOR="${K8S_VERSION#v*.}"; K8S_MINOR="${K8S_MINOR%%.*}"

hash_files() { (cd "$HERE" && { cat go.mod go.sum build.sh; find cmd -name '*.go' -type f | LC_ALL=C sort | xargs cat; }) | sha256sum | cut -c1-16; }
K8S_STAMP="k8s=$K8S_VERSION go=$GOVER src=$(hash_files)"
HELM_STAMP="helm=$HELM_VERSION go=$GOVER script=$(sha256sum "$HERE/build.sh" | cut -c1-16)"

up_to_date() { # name stamp
    [ -z "${QS_CP_FORCE:-}" ] && [ -x "$BIN/$1" ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]
}

k8s_ldflags() {
    local f="-s -w" v
    for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        f+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=$K8S_MAJOR -X $v.gitMinor=$K8S_MINOR"
        f+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
    done
    printf '%s' "$f"
}

build_k8s() { # name package
    local name=$1 pkg=$2 t=$SECONDS
    if up_to_date "$name" "$K8S_STAMP"; then
        log "$name is up to date ($K8S_VERSION)"
        return
    fi
    log "building $name ($K8S_VERSION, $pkg) ..."
    (cd "$HERE" && go build -trimpath -ldflags "$(k8s_ldflags)" -o "$BIN/$name.tmp" "$pkg")
    mv -f "$BIN/$name.tmp" "$BIN/$name"
    printf '%s' "$K8S_STAMP" >"$STAMPS/$name"
    log "built $name in $((SECONDS - t))s"
}

build_helm() {
    local t=$SECONDS
    if up_to_date helm "$HELM_STAMP"; then
        log "helm is up to date ($HELM_VERSION)"
        return
    fi
    log "building helm $HELM_VERSION (go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION) ..."
    local tmp="$BIN/.helm-install" p=helm.sh/helm/v3
    rm -rf "$tmp" && mkdir -p "$tmp"
    # `go install pkg@version` builds with helm's own go.mod, outside our module.
    (cd "$tmp" && GOBIN="$tmp" go install -trimpath -ldflags "-s -w \
        -X $p/internal/version.version=$HELM_VERSION -X $p/internal/version.gitTreeState=clean \
        -X $p/pkg/lint/rules.k8sVersionMajor=1 -X $p/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR \
        -X $p/pkg/chartutil.k8sVersionMajor=1 -X $p/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR" \
        "$p/cmd/helm@$HELM_VERSION")
    mv -f "$tmp/helm" "$BIN/helm"
    rm -rf "$tmp"
    printf '%s' "$HELM_STAMP" >"$STAMPS/helm"
    log "built helm in $((SECONDS - t))s"
}

log "Go $GOVER, GOFLAGS='${GOFLAGS:-}', output $BIN"
if ! up_to_date qs-controlplane "$K8S_STAMP" || ! up_to_date kubectl "$K8S_STAMP"; then
    t=$SECONDS
    log "downloading the modules the binaries need (go list -deps) ..."
    (cd "$HERE" && go list -deps ./cmd/... >/dev/null)
    log "modules ready in $((SECONDS - t))s"
fi
build_k8s qs-controlplane ./cmd/qs-controlplane
build_k8s kubectl ./cmd/kubectl
build_helm
if [ -n "$NODE" ]; then
    # One at a time: the kubelet alone peaks at about 2 GB while linking.
    build_k8s kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
    build_k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
    build_k8s kubelet k8s.io/kubernetes/cmd/kubelet
fi

log "done in $((SECONDS - t0))s: $("$BIN/qs-controlplane" version) qs-controlplane, kubectl, helm $HELM_VERSION in $BIN"
