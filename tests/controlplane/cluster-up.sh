#!/usr/bin/env bash
# Starts the test control plane (qs-controlplane) in the background with its state in
# $REPO/.cache/cluster/ and waits until it is ready. Extra arguments go to qs-controlplane
# (e.g. --user alice:team-a, --apiserver-port 6443, --no-controllers, --apiserver-arg=--v=2).
#
#   tests/controlplane/cluster-up.sh
#   export KUBECONFIG=$REPO/.cache/cluster/admin.kubeconfig
#   tests/controlplane/cluster-down.sh
#
# Environment: QS_CP_READY_TIMEOUT (seconds, default 180), QS_CP_SKIP_BUILD=1 (do not run build.sh),
#              QS_CLUSTER_DIR (state dir, default $REPO/.cache/cluster).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${QS_CP_BIN:-$REPO/.cache/controlplane/bin}"
STATE="${QS_CLUSTER_DIR:-$REPO/.cache/cluster}"
LOG="$STATE/controlplane.log"
PIDFILE="$STATE/pid"
TIMEOUT="${QS_CP_READY_TIMEOUT:-180}"

die() { printf 'cluster-up: error: %s\n' "$*" >&2; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

if [ -z "${QS_CP_SKIP_BUILD:-}" ]; then
    "$HERE/build.sh"
fi
[ -x "$BIN/qs-controlplane" ] || die "$BIN/qs-controlplane is missing: run tests/controlplane/build.sh"

mkdir -p "$STATE" || die "cannot create $STATE"
if [ -f "$PIDFILE" ] && alive "$(cat "$PIDFILE")"; then
    pid="$(cat "$PIDFILE")"
    if [ -f "$STATE/ready" ]; then
        echo "cluster-up: already running (pid $pid)"
        echo "export KUBECONFIG=$STATE/admin.kubeconfig"
        exit 0
    fi
    die "a control plane (pid $pid) is starting or stuck; see $LOG or run tests/controlplane/cluster-down.sh"
fi

# setsid: the control plane survives the end of this shell; stdin from /dev/null.
setsid "$BIN/qs-controlplane" run --dir "$STATE" "$@" </dev/null >"$LOG" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"
echo "cluster-up: started qs-controlplane (pid $pid), log $LOG; waiting up to ${TIMEOUT}s for ready ..."

start=$SECONDS
while [ ! -f "$STATE/ready" ]; do
    if ! alive "$pid"; then
        wait "$pid" 2>/dev/null && rc=0 || rc=$?
        echo "cluster-up: qs-controlplane exited (code $rc) before it was ready; last log lines:" >&2
        tail -n 25 "$LOG" >&2
        rm -f "$PIDFILE"
        exit 1
    fi
    if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
        echo "cluster-up: not ready after ${TIMEOUT}s; stopping it. Last log lines:" >&2
        tail -n 25 "$LOG" >&2
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.2; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
        rm -f "$PIDFILE"
        exit 1
    fi
    sleep 0.5
done

echo "cluster-up: ready after $((SECONDS - start))s"
sed -n '/kubeconfigs:/,/^ *$/p' "$LOG"
cat <<EOF
Use it:
  export KUBECONFIG=$STATE/admin.kubeconfig
  export PATH=$BIN:\$PATH      # kubectl and helm built from source
  kubectl get ns
Stop it:
  tests/controlplane/cluster-down.sh
EOF
