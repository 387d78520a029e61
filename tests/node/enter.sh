#!/usr/bin/env bash
# Runs a command inside the test node's network namespace with KUBECONFIG set to the admin
# kubeconfig and the control plane's kubectl and helm first on PATH. The API server, the pods
# and their addresses are reachable only from there.
#
#   tests/node/enter.sh kubectl get pods -A
#   tests/node/enter.sh bash
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# -gt 0 ] || die "usage: enter.sh COMMAND [ARGS...]"
[ -f "$STATE/supervisor.ready" ] || die "the node is not running (tests/node/node-up.sh starts it)"
exec ip netns exec "$NETNS" env KUBECONFIG="$STATE/cp/admin.kubeconfig" PATH="$BIN:$PATH" \
    CONTAINERD_ADDRESS="$STATE/containerd/containerd.sock" CONTAINERD_NAMESPACE=k8s.io "$@"
