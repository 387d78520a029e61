#!/usr/bin/env bash
# Stops the test node started by node-up.sh and leaves nothing behind: no process, mount,
# cgroup, network namespace or state directory (QS_NODE_KEEP=1 keeps $STATE/logs).
# Safe to run when nothing is running, and after a node-up that was killed half-way.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cgroup_pids() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h$CGROUP_ROOT" ] && find "$h$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

# The supervisor stops the kubelet, the pods, containerd and the control plane in order.
if [ -f "$STATE/supervisor.pid" ]; then
    pid="$(cat "$STATE/supervisor.pid")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping the node (supervisor pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
fi

# Whatever is left (a supervisor killed with -9, a node-up interrupted): pods by cgroup, the
# node's own processes by network namespace.
left=0
for _ in 1 2 3; do
    pids="$(cgroup_pids) $(ip netns pids "$NETNS" 2>/dev/null || true)"
    pids="$(echo $pids)"
    [ -n "$pids" ] || break
    left=1
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
done
[ "$left" = 0 ] || log "killed processes the supervisor left"
for h in /sys/fs/cgroup/*/; do
    [ -d "$h$CGROUP_ROOT" ] && find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null
done
ip netns list 2>/dev/null | grep -qw "$NETNS" && ip netns del "$NETNS"

# Check before removing the state: a mount still visible here would mean a leak.
if grep -q " $STATE" /proc/mounts; then
    die "mounts below $STATE are still present: $(grep " $STATE" /proc/mounts | cut -d' ' -f2 | tr '\n' ' ')"
fi
for h in /sys/fs/cgroup/*/; do
    [ -d "$h$CGROUP_ROOT" ] && die "cgroup $h$CGROUP_ROOT could not be removed"
done
if [ -d "$STATE" ]; then
    if [ -n "${QS_NODE_KEEP:-}" ]; then
        find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
        log "logs kept in $STATE/logs"
    else
        rm -rf "$STATE"
    fi
fi
log "node stopped; nothing left"
