# Shared settings of the test node scripts (sourced, not run).
# shellcheck shell=bash
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${QS_CP_BIN:-$REPO/.cache/controlplane/bin}"
STATE="${QS_NODE_DIR:-$REPO/.cache/node}"
# One node per machine: the namespace and cgroup names are fixed so that node-down.sh finds
# what any earlier run left.
NETNS=qs-node
NODE_NAME=qs-node
CGROUP_ROOT=qs-node
# Addresses exist only inside the namespace: the node (a veth whose other end is also inside),
# the pods' bridge, and the `kubernetes` Service (the first address of the API server's
# --service-cluster-ip-range=10.0.0.0/24).
NODE_IP=10.201.0.2
POD_CIDR=10.244.0.0/24
SERVICE_IP=10.0.0.1
API_PORT=6443
PAUSE_IMAGE=quotestream.test/pause:1
# What a Deployment, a Job and the stream's pods need; the garbage collector and the namespace
# controller already run inside qs-controlplane.
CONTROLLERS=deployment-controller,replicaset-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,endpoints-controller,endpointslice-controller,pod-garbage-collector-controller,node-lifecycle-controller,taint-eviction-controller,job-controller,ttl-after-finished-controller,disruption-controller

log() { printf '%s: %s\n' "$(basename "$0")" "$*"; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

print_usage() {
    cat <<USAGE
Use it (every command runs inside the node's network namespace):
  tests/node/enter.sh kubectl get nodes,pods -A
  tests/node/enter.sh helm list -A
  tests/node/enter.sh bash            # a shell with KUBECONFIG and PATH set
Stop it:
  tests/node/node-down.sh             # or: make cluster-down
USAGE
}
