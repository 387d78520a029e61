#!/usr/bin/env bash
# Starts a real one-node Kubernetes cluster on this machine: the test control plane plus
# kube-controller-manager, kube-scheduler, a kubelet, containerd + runc (Debian's) and a bridge
# CNI, all inside a network namespace and a private mount namespace made here (supervisor.sh
# says what runs). Nothing listens outside the namespace and no host setting changes;
# node-down.sh removes every process, mount, cgroup and the namespace.
#
#   tests/node/node-up.sh                  # or: make cluster-up NODE=1
#   tests/node/enter.sh kubectl get nodes  # run a command inside the node's network
#   tests/node/node-down.sh                # or: make cluster-down
#
# Environment: QS_NODE_DIR (state, default $REPO/.cache/node), QS_NODE_READY_TIMEOUT (s, 240),
#              QS_CP_SKIP_BUILD=1 (do not run build.sh --node), QS_NODE_IMAGES (extra
#              .oci.tar files to import at start, space separated).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"

TIMEOUT="${QS_NODE_READY_TIMEOUT:-240}"

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }
[ "$(id -u)" = 0 ] || die "the node needs root (network and mount namespaces, cgroups)"
need containerd "apt-get install containerd (scripts/ensure-deps.sh does)"
need runc "apt-get install runc"
need iptables "apt-get install iptables"
[ -x /usr/lib/cni/bridge ] || die "/usr/lib/cni/bridge is missing: apt-get install containernetworking-plugins"
need cc "apt-get install gcc libc6-dev (for the static pause binary)"
case "$STATE/" in
/run/* | /var/lib/* | /var/log/*) die "QS_NODE_DIR=$STATE is below /run, /var/lib or /var/log, which the node covers with its own tmpfs" ;;
esac

free_mb=$(df -Pm "$(dirname "$STATE")" | awk 'NR == 2 {print $4}')
[ "$free_mb" -ge 1024 ] || die "only ${free_mb} MB free on the disk of $STATE: the kubelet evicts every pod below 256 MB (free some space, e.g. old target/ directories)"

if [ -z "${QS_CP_SKIP_BUILD:-}" ]; then
    "$REPO/tests/controlplane/build.sh" --node
fi
for b in qs-controlplane kubectl kubelet kube-scheduler kube-controller-manager; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run tests/controlplane/build.sh --node"
done

if ip netns list | grep -qw "$NETNS"; then
    if [ -f "$STATE/supervisor.ready" ]; then
        log "already running"
        print_usage
        exit 0
    fi
    die "network namespace $NETNS exists but the node is not ready: run tests/node/node-down.sh first"
fi

t0=$SECONDS
rm -rf "$STATE"
mkdir -p "$STATE"/{logs,images,containerd,cni/net.d,cni/ipam,kubelet/root,kubelet/pki}
STATE="$(cd "$STATE" && pwd)"
CONTAINERD_SOCK="$STATE/containerd/containerd.sock"
[ "${#CONTAINERD_SOCK}" -lt 100 ] || die "state dir path too long for a unix socket: $STATE (set QS_NODE_DIR)"

cat >"$STATE/node.env" <<EOF
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
API_PORT=$API_PORT
SERVICE_IP=$SERVICE_IP
POD_CIDR=$POD_CIDR
CGROUP_ROOT=$CGROUP_ROOT
BIN=$BIN
CONTAINERD_SOCK=$CONTAINERD_SOCK
CONTROLLERS=$CONTROLLERS
EOF

# ---- the pod sandbox image: a static pause, packed like every other image ----
cc -static -Os -o "$STATE/pause" "$HERE/pause.c"
"$REPO/scripts/oci-image.py" --binary "$STATE/pause" --name "$PAUSE_IMAGE" --cmd '[]' \
    --out "$STATE/images/pause.oci.tar" >/dev/null
for img in ${QS_NODE_IMAGES:-}; do
    cp "$img" "$STATE/images/"
done

# ---- containerd: CRI with runc, cgroupfs, our pause, the bridge CNI ----
cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$STATE/containerd/ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE the pause container's oom_score_adj of -998 cannot be set.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF

cat >"$STATE/cni/net.d/10-qs-pods.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "qs-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "qspods0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

echo "nameserver $NODE_IP" >"$STATE/kubelet/resolv.conf"
cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/cp/pki/ca.crt}
authorization: {mode: Webhook}
# cgroup v1 and no systemd on these machines: cgroupfs below the node's own subtree.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
failSwapOn: false
resolvConf: $STATE/kubelet/resolv.conf
podLogsDir: $STATE/pod-logs
# A ConfigMap edit reaches a mounted volume within seconds, as on a busy production kubelet.
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
imageGCHighThresholdPercent: 100
# Absolute thresholds: a percentage of a large shared disk (1% of 250 GB) would evict every pod
# as soon as other work on the machine fills it, which is not what the tests are about.
evictionHard: {memory.available: 100Mi, nodefs.available: 256Mi, imagefs.available: 256Mi}
maxPods: 110
serializeImagePulls: false
EOF

# ---- namespaces and the supervisor ----
ip netns add "$NETNS"
setsid ip netns exec "$NETNS" unshare --mount --propagation private \
    "$HERE/supervisor.sh" "$STATE" </dev/null >"$STATE/logs/supervisor.log" 2>&1 &
echo $! >"$STATE/supervisor.pid"
log "supervisor started (pid $!), log $STATE/logs/supervisor.log; waiting up to ${TIMEOUT}s"

until [ -f "$STATE/supervisor.ready" ]; do
    if [ -f "$STATE/supervisor.failed" ] || ! kill -0 "$(cat "$STATE/supervisor.pid")" 2>/dev/null; then
        tail -n 30 "$STATE/logs/supervisor.log" >&2
        die "the node did not start (logs in $STATE/logs)"
    fi
    [ $((SECONDS - t0)) -lt "$TIMEOUT" ] || die "the node did not start within ${TIMEOUT}s (logs in $STATE/logs)"
    sleep 0.2
done
until "$HERE/enter.sh" kubectl get "node/$NODE_NAME" >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt "$TIMEOUT" ] || die "node $NODE_NAME did not register within ${TIMEOUT}s (kubelet log: $STATE/logs/kubelet.log)"
    kill -0 "$(cat "$STATE/supervisor.pid")" 2>/dev/null || die "the node stopped (logs in $STATE/logs)"
    sleep 0.2
done
"$HERE/enter.sh" kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout="$((TIMEOUT - (SECONDS - t0)))s" >/dev/null ||
    die "node $NODE_NAME not Ready (kubelet log: $STATE/logs/kubelet.log)"
echo $((SECONDS - t0)) >"$STATE/up-seconds"
log "node $NODE_NAME Ready after $((SECONDS - t0))s"
print_usage
