#!/usr/bin/env bash
# The test node's supervisor. node-up.sh starts it inside the node's network namespace and a
# private mount namespace (`ip netns exec NS unshare --mount --propagation private`), so every
# mount, route, iptables rule and listening socket below exists only there:
#
#   containerd (+ runc, bridge CNI)  the container runtime, state under $STATE/containerd
#   qs-controlplane                   etcd + kube-apiserver (+ GC, namespace controller), :6443
#   kube-controller-manager           deployment, replicaset, serviceaccount, ... controllers
#   kube-scheduler
#   kubelet                           node $NODE_NAME at $NODE_IP, pods on the bridge
#
# It writes $STATE/supervisor.ready when all of them run, and on SIGTERM/SIGINT stops the
# kubelet, every pod process, containerd and the control plane, removes its cgroups and exits
# (the mount namespace and its mounts die with it). Usage: supervisor.sh STATE_DIR
set -euo pipefail

STATE=$1
# shellcheck source=/dev/null
. "$STATE/node.env"

log() { printf '[node %s] %s\n' "$(date +%T)" "$*"; }
die() { log "error: $*"; touch "$STATE/supervisor.failed"; stop_all; exit 1; }

declare -A PIDS=()
start() { # name command...
    local name=$1
    shift
    "$@" >"$STATE/logs/$name.log" 2>&1 &
    PIDS[$name]=$!
    log "started $name (pid $!), log $STATE/logs/$name.log"
}

alive() { kill -0 "$1" 2>/dev/null; }

wait_for() { # seconds description command...
    local limit=$1 what=$2 t=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - t)) -lt "$limit" ] || die "$what: not ready after ${limit}s"
        for name in "${!PIDS[@]}"; do
            alive "${PIDS[$name]}" || die "$name exited while waiting for $what (see $STATE/logs/$name.log)"
        done
        sleep 0.2
    done
}

# Every process in the node's cgroups: the pods' containers and sandboxes.
cgroup_pids() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h$CGROUP_ROOT" ] && find "$h$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

remove_cgroups() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h$CGROUP_ROOT" ] || continue
        find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

stopping=0
stop_all() {
    [ "$stopping" = 0 ] || return 0
    stopping=1
    log "stopping"
    # The kubelet first, so that nothing restarts what is stopped next.
    for name in kubelet kube-scheduler kube-controller-manager; do
        [ -n "${PIDS[$name]:-}" ] && kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    # Pod processes: a polite TERM, then KILL whatever is left.
    local pids
    pids=$(cgroup_pids)
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 25); do
        [ -z "$(cgroup_pids)" ] && break
        sleep 0.2
    done
    pids=$(cgroup_pids)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    # containerd and its shims (the shims are in this network namespace, not in the cgroups).
    [ -n "${PIDS[containerd]:-}" ] && kill -TERM "${PIDS[containerd]}" 2>/dev/null || true
    # Only the shims in this network namespace: another containerd on the machine has its own.
    local shim
    for shim in $(pgrep -f containerd-shim-runc-v2 || true); do
        [ "$(readlink "/proc/$shim/ns/net")" = "$(readlink /proc/self/ns/net)" ] && kill -TERM "$shim" 2>/dev/null || true
    done
    [ -n "${PIDS[controlplane]:-}" ] && kill -TERM "${PIDS[controlplane]}" 2>/dev/null || true
    local name
    for name in "${!PIDS[@]}"; do
        for _ in $(seq 1 100); do alive "${PIDS[$name]}" || break; sleep 0.1; done
        alive "${PIDS[$name]}" && kill -KILL "${PIDS[$name]}" 2>/dev/null || true
    done
    for _ in $(seq 1 25); do
        [ -z "$(cgroup_pids)" ] && break
        sleep 0.2
    done
    remove_cgroups
    rm -f "$STATE/supervisor.ready"
    log "stopped"
}
trap 'stop_all; exit 0' TERM INT

mkdir -p "$STATE/logs"

# ---- mounts (private to this mount namespace) ----
# The kubelet, containerd and the CNI plugins write below these without a setting to move
# them (/var/log/containers, /run/netns, /run/containerd/s, /var/lib/cni): a tmpfs over each
# here keeps the host's directories untouched. node-up.sh refuses a state dir below them.
for d in /run /var/lib /var/log; do
    mount -t tmpfs -o mode=0755 qs-node "$d"
done
# The kubelet sets these host-wide sysctls; give it files holding the values it wants so that
# it finds nothing to change and the host's settings stay as they are.
mkdir -p "$STATE/sysctl"
while read -r key value; do
    f="$STATE/sysctl/${key//\//.}"
    echo "$value" >"$f"
    mount --bind "$f" "/proc/sys/$key"
done <<'EOF'
vm/overcommit_memory 1
vm/panic_on_oom 0
kernel/panic 10
kernel/panic_on_oops 1
kernel/keys/root_maxkeys 1000000
kernel/keys/root_maxbytes 25000000
EOF

# ---- cgroups: the node's own subtree in each v1 hierarchy ----
# `ip netns exec` mounts a fresh /sys for the namespace, which hides the host's cgroup mounts:
# mount the same hierarchies again (same options, so the same hierarchies) from init's view.
if ! grep -q ' /sys/fs/cgroup/[^ ]* cgroup' /proc/self/mounts; then
    mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
    while read -r _ dir type opts _; do
        mkdir -p "$dir"
        mount -t "$type" -o "$opts" "$type" "$dir"
    done < <(grep -E '^[^ ]+ /sys/fs/cgroup/[^ ]+ cgroup2? ' /proc/1/mounts)
fi
for h in /sys/fs/cgroup/*/; do
    [ -f "${h}cgroup.procs" ] || continue
    mkdir -p "$h$CGROUP_ROOT"
    if [ -f "${h}cpuset.cpus" ]; then
        cat "${h}cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
        cat "${h}cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
    fi
done

# ---- network: the node's address and the `kubernetes` Service ----
ip link set lo up
ip link add qsnode0 type veth peer name qsnode1
ip addr add "$NODE_IP/24" dev qsnode0
ip link set qsnode0 up
ip link set qsnode1 up
# Nothing leaves this namespace: the default route ends on the veth's other end.
ip route add default dev qsnode0
# What kube-proxy would do for the `kubernetes` Service only (pods reach the API server at
# its ClusterIP); other Services are not routed (no kube-proxy, no cluster DNS).
for chain in PREROUTING OUTPUT; do
    iptables -t nat -A "$chain" -d "$SERVICE_IP/32" -p tcp --dport 443 \
        -j DNAT --to-destination "$NODE_IP:$API_PORT"
done

# ---- containerd ----
start containerd containerd --config "$STATE/containerd/config.toml"
wait_for 30 containerd ctr --address "$CONTAINERD_SOCK" version
for img in "$STATE"/images/*.oci.tar; do
    [ -f "$img" ] || continue
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false "$img" >/dev/null ||
        die "importing $img failed"
done
log "images: $(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | tr '\n' ' ')"

# ---- control plane ----
start controlplane "$BIN/qs-controlplane" run --dir "$STATE/cp" --apiserver-port "$API_PORT" \
    --user "system:node:$NODE_NAME" \
    --apiserver-arg=--bind-address=0.0.0.0 \
    --apiserver-arg=--advertise-address="$NODE_IP" \
    --apiserver-arg=--authorization-mode=Node,RBAC \
    --apiserver-arg=--disable-admission-plugins= \
    --apiserver-arg=--enable-admission-plugins=NodeRestriction \
    --apiserver-arg=--kubelet-client-certificate="$STATE/cp/pki/admin.crt" \
    --apiserver-arg=--kubelet-client-key="$STATE/cp/pki/admin.key" \
    --apiserver-arg=--kubelet-preferred-address-types=InternalIP
wait_for 180 "the control plane" test -f "$STATE/cp/ready"
ADMIN="$STATE/cp/admin.kubeconfig"

start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$ADMIN" \
    --authentication-kubeconfig "$ADMIN" --authorization-kubeconfig "$ADMIN" \
    --controllers="$CONTROLLERS" --leader-elect=false --secure-port=0 \
    --root-ca-file="$STATE/cp/pki/ca.crt" --cluster-name=qs-node \
    --node-monitor-grace-period=20s --concurrent-deployment-syncs=10 --concurrent-replicaset-syncs=10
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$ADMIN" \
    --authentication-kubeconfig "$ADMIN" --authorization-kubeconfig "$ADMIN" \
    --leader-elect=false --secure-port=0

# ---- kubelet ----
start kubelet "$BIN/kubelet" --config "$STATE/kubelet/config.yaml" \
    --kubeconfig "$STATE/cp/node-$NODE_NAME.kubeconfig" --root-dir "$STATE/kubelet/root" \
    --cert-dir "$STATE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"

touch "$STATE/supervisor.ready"
log "running"
# Stay until signalled; a component that dies takes the node down with a clear message.
while :; do
    for name in "${!PIDS[@]}"; do
        alive "${PIDS[$name]}" || die "$name exited (see $STATE/logs/$name.log)"
    done
    sleep 1 &
    wait $! || true
done
