#!/usr/bin/env bash
# Stops the control plane started by cluster-up.sh and removes its state
# ($REPO/.cache/cluster/, the log is kept as controlplane.log for a post-mortem).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE="${QS_CLUSTER_DIR:-$REPO/.cache/cluster}"
PIDFILE="$STATE/pid"

alive() { kill -0 "$1" 2>/dev/null; }

if [ ! -f "$PIDFILE" ]; then
    echo "cluster-down: no control plane recorded in $STATE (nothing to stop)"
    exit 0
fi
pid="$(cat "$PIDFILE")"
if [ -n "$pid" ] && alive "$pid" && grep -q qs-controlplane "/proc/$pid/cmdline" 2>/dev/null; then
    echo "cluster-down: stopping qs-controlplane (pid $pid) ..."
    kill -TERM "$pid"
    for _ in $(seq 1 300); do # up to 60s: the API server drains, then etcd closes
        alive "$pid" || break
        sleep 0.2
    done
    if alive "$pid"; then
        echo "cluster-down: still running after 60s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
else
    echo "cluster-down: pid $pid is not running any more"
fi
# qs-controlplane removes its own files on a clean stop; this covers a killed one.
rm -rf "$STATE/etcd" "$STATE/pki" "$STATE"/*.kubeconfig "$STATE/state.json" "$STATE/ready" "$PIDFILE"
echo "cluster-down: stopped; log kept at $STATE/controlplane.log"
