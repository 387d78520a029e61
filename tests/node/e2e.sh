#!/usr/bin/env bash
# The end-to-end test that matters: quotestream installed the way users install it, on a real
# node (tests/node/node-up.sh: kubelet + containerd + runc, the images of `make images`).
#
#   1. helm install the chart (2 operator replicas, leader election) --wait
#   2. Redis and PostgreSQL as pods; examples/sp500.yaml (503 tickers) pointed at them
#   3. quotes of all 503 tickers on quotes.realtime and rows for all 503 in PostgreSQL
#   4. kubectl scale qs/sp500 --replicas=8, then 3: no ticker silent longer than the bound
#      (a gapwatch pod subscribed to the channel measures every ticker's longest gap)
#   5. delete the leader pod: the standby takes the Lease and keeps reconciling
#   6. helm upgrade with a changed worker image tag: every worker rolls, quotes go on
#   7. real restricted pods (uid 65532, read-only root), real `kubectl logs`
#   8. delete the stream, helm uninstall: no shard object, no operator pod is left
#
# Prints one "ok"/"not ok" line per check and closes with "N passed, M failed"; writes the
# timings to $QS_NODE_E2E_REPORT (default target/node-e2e.json) for `make bench`.
# Usage: tests/node/e2e.sh   (make test-node; needs root, runs make images unless
#        QS_IMAGES_DIR points at the built tarballs)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"

REPORT="${QS_NODE_E2E_REPORT:-$REPO/target/node-e2e.json}"
IMAGES="${QS_IMAGES_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/images}"
INTERVAL_MS=1000
# The bound on a ticker's silence during a reshard, documented in docs/operator.md: the
# interval, plus the kubelet's ConfigMap refresh on each side of the hand-over (its sync period,
# 5 s on this node), plus a second of scheduling slack.
GAP_BOUND_MS=$((INTERVAL_MS + 2 * 5000 + 1000))
# A reshard's hand-over is acknowledged (docs/operator.md#acknowledged-hand-over): the old
# owners keep a moving ticker until its new owner's pod reports that it streams it, so its
# silence on Redis is its polling cadence: two intervals (one cycle may land late), plus a
# second of scheduling slack on these shared cores. The unacknowledged bound above remains for
# the rolling upgrade.
HANDOVER_GAP_BOUND_MS=$((2 * INTERVAL_MS + 1000))
VERSION="$(awk -F'"' '/^version *=/ {print $2; exit}' "$REPO/Cargo.toml")"
WORKER_IMAGE="ghcr.io/quotestream/quotestream-worker:$VERSION"

t_start=$(date +%s)
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { # description command...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
E() { "$HERE/enter.sh" "$@"; }
K() { E kubectl "$@"; }
now_ms() { date +%s%3N; }

# Polls a command until it succeeds, at most $1 seconds; on time-out names what it waited for.
# The command is run anew each time: pass a function, not a "$(...)" (expanded only once).
wait_until() { # seconds description command...
    local limit=$1 what=$2 t0
    t0=$(now_ms)
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $(($(now_ms) - t0)) -ge $((limit * 1000)) ]; then
            echo "# timed out after ${limit}s waiting for: $what" >&2
            return 1
        fi
        sleep 0.2
    done
}

finish() {
    local rc=$?
    [ "$rc" -eq 0 ] || fail "the test stopped early (exit $rc at line ${BASH_LINENO[0]}); see the error above"
    if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
        echo "# state for debugging:" >&2
        K get qs,deploy,pods -A -o wide 2>&1 | sed 's/^/#   /' >&2 || true
        mkdir -p "$REPO/target/node-logs"
        cp -r "$STATE/logs/." "$REPO/target/node-logs/" 2>/dev/null || true
        echo "# node logs copied to target/node-logs/" >&2
    fi
    if [ -z "${QS_NODE_KEEP_UP:-}" ]; then
        "$HERE/node-down.sh" >/dev/null 2>&1 || echo "# node-down.sh failed" >&2
        local left
        left="$(ip netns list | grep -w "$NETNS" || true)$(ls -d /sys/fs/cgroup/*/"$CGROUP_ROOT" 2>/dev/null || true)$(grep " $STATE" /proc/mounts || true)"
        if [ -z "$left" ] && [ ! -e "$STATE" ]; then
            ok "node-down.sh left no namespace, cgroup, mount or state"
        else
            fail "node-down.sh left: $left $(ls -d "$STATE" 2>/dev/null)"
        fi
    fi
    echo "node-e2e: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
}
trap finish EXIT

# ---- images and the node ----
t=$(now_ms)
if [ -z "${QS_IMAGES_DIR:-}" ]; then
    make -C "$REPO" --no-print-directory images >/dev/null
fi
"$HERE/data-images.sh" "$IMAGES" >/dev/null
images_ms=$(($(now_ms) - t))
QS_NODE_IMAGES="$(ls "$IMAGES"/*.oci.tar | tr '\n' ' ')" QS_CP_SKIP_BUILD=1 "$HERE/node-up.sh" >/dev/null
node_up_s=$(cat "$STATE/up-seconds")
ok "node Ready in ${node_up_s}s with the images imported"
# A second tag of the worker image, for the rolling upgrade below.
E ctr images tag "$WORKER_IMAGE" "$WORKER_IMAGE-e2e" >/dev/null

# ---- data services ----
K apply -f "$HERE/manifests/data.yaml" >/dev/null
K -n data wait --for=condition=Ready pod/redis pod/postgres --timeout=120s >/dev/null
REDIS_IP=$(K -n data get pod redis -o jsonpath='{.status.podIP}')
PG_IP=$(K -n data get pod postgres -o jsonpath='{.status.podIP}')
sed "s/REDIS_IP/$REDIS_IP/" "$HERE/manifests/gapwatch.yaml" | K apply -f - >/dev/null
K -n data wait --for=condition=Ready pod/gapwatch --timeout=60s >/dev/null
GAP_IP=$(K -n data get pod gapwatch -o jsonpath='{.status.podIP}')
ok "redis ($REDIS_IP), postgres ($PG_IP) and gapwatch ($GAP_IP) run as restricted pods"
gap() { E curl -sf "http://$GAP_IP:8080/$1" "${@:2}"; }
gap_field() { gap report | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# ---- 1. helm install (the operator, and the chart's store component on its own database) ----
E psql -h "$PG_IP" -U postgres -qc "CREATE DATABASE store" >/dev/null
K create namespace quotestream-system >/dev/null
K -n quotestream-system create secret generic quotestream-store-db \
    --from-literal=dsn="postgres://postgres@$PG_IP:5432/store" >/dev/null
t_install=$(now_ms)
E helm install quotestream "$REPO/charts/quotestream" -n quotestream-system \
    --set replicaCount=2 --set store.enabled=true --set store.database.secretName=quotestream-store-db \
    --wait --timeout 180s >/dev/null
install_ms=$(($(now_ms) - t_install))
check "helm install --wait: 2 operator replicas Ready in ${install_ms} ms" \
    test "$(K -n quotestream-system get deploy -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].status.readyReplicas}')" = 2

# ---- 2. the S&P 500 stream, pointed at the pods ----
K create namespace markets >/dev/null
K label namespace markets pod-security.kubernetes.io/enforce=restricted >/dev/null
K -n markets create secret generic quotes-db \
    --from-literal=dsn="postgres://postgres@$PG_IP:5432/postgres" >/dev/null
K -n markets label secret quotes-db quotes.opa.io/stream-access=true >/dev/null  # the Secret policy
python3 "$HERE/sp500-manifest.py" "$REPO/examples/sp500.yaml" --redis "redis://$REDIS_IP:6379/0" \
    --interval "${INTERVAL_MS}ms" --shards 3 | K apply -f - >/dev/null
quoting() { [ "$(gap_field messages)" -gt 0 ]; }
wait_until 120 "first quote on quotes.realtime" quoting
first_quote_ms=$(($(now_ms) - t_install))
ok "first quote in Redis ${first_quote_ms} ms after helm install began"
K -n markets wait --for=condition=Ready qs/sp500 --timeout=120s >/dev/null

# ---- 3. every ticker on Redis and in PostgreSQL ----
TICKERS=$(python3 "$HERE/sp500-manifest.py" "$REPO/examples/sp500.yaml" --count)
check "examples/sp500.yaml lists 503 tickers" test "$TICKERS" = 503
gap reset -X POST
all_on_redis() { [ "$(gap_field tickers)" = "$TICKERS" ]; }
wait_until 60 "all $TICKERS tickers on quotes.realtime" all_on_redis
check "quotes of all $TICKERS tickers on quotes.realtime" test "$(gap_field tickers)" = "$TICKERS"
pg_symbols() { E psql -h "$PG_IP" -U postgres -tAc "SELECT count(DISTINCT symbol) FROM quotes.real_time"; }
all_in_postgres() { [ "$(pg_symbols)" = "$TICKERS" ]; }
wait_until 60 "rows of all $TICKERS tickers in PostgreSQL" all_in_postgres
check "rows of all $TICKERS tickers in quotes.real_time ($(pg_symbols) symbols)" test "$(pg_symbols)" = "$TICKERS"

# ---- the store, as the chart deploys it: a stream whose storage sink posts to it ----
STORE_IP=$(K -n quotestream-system get pods -l app.kubernetes.io/component=store -o jsonpath='{.items[0].status.podIP}')
check "the store's /health answers 200 from its pod" E curl -sf "http://$STORE_IP:8080/health" -o /dev/null
sed "s#http://quotestream-store.quotestream-system:8080#http://$STORE_IP:8080#; s#^  name: stored#  name: stored\n  namespace: markets#" \
    "$REPO/examples/with-store.yaml" | K apply -f - >/dev/null
store_bars() { E psql -h "$PG_IP" -U postgres -d store -tAc "SELECT count(DISTINCT symbol) FROM quotes.real_time_bars_1m"; }
stored_all() { [ "$(store_bars)" = 6 ]; }
check "examples/with-store.yaml: 1-minute bars of its 6 tickers in the store's database" \
    wait_until 60 "bars in the store" stored_all
K -n markets delete qs stored --wait=true --timeout=60s >/dev/null

# ---- 4. reshard 3 → 8 → 3 with the per-ticker gap measured ----
ready_shards() { K -n markets get qs sp500 -o jsonpath='{.status.readyShards}/{.spec.shards}'; }
converged() { # shards: Ready, every shard ready, one Deployment per shard, nothing terminating
    [ "$(ready_shards)" = "$1/$1" ] &&
        [ "$(K -n markets get deploy -l quotes.opa.io/stream=sp500 -o name | wc -l)" = "$1" ] &&
        [ "$(K -n markets get pods -l quotes.opa.io/stream=sp500 --no-headers | grep -c Running)" = "$1" ] &&
        [ "$(K -n markets get pods -l quotes.opa.io/stream=sp500 --no-headers | wc -l)" = "$1" ]
}
reshard() { # to
    local to=$1 t
    gap reset -X POST
    t=$(now_ms)
    K -n markets scale qs/sp500 --replicas="$to" >/dev/null
    wait_until 180 "sp500 converged at $to shards" converged "$to"
    local took=$(($(now_ms) - t))
    # Converged is not the end of a hand-over: a shard that gains tickers streams them once the
    # kubelet has refreshed its ConfigMap volume. Wait (within the bound) until every ticker
    # has been heard since the reset, then a few more ticks before reading the gaps.
    wait_until $((GAP_BOUND_MS / 1000 + 1)) "all $TICKERS tickers streamed after the scale to $to" all_on_redis || true
    sleep $((2 * INTERVAL_MS / 1000))
    local report max
    report=$(gap report)
    max=$(echo "$report" | python3 -c "import json,sys; print(int(json.load(sys.stdin)['max_gap_ms']))")
    ok "scale to $to converged in ${took} ms"
    check "scale to $to: all $TICKERS tickers streamed" test "$(echo "$report" | python3 -c "import json,sys; print(json.load(sys.stdin)['tickers'])")" = "$TICKERS"
    check "scale to $to: longest per-ticker gap ${max} ms <= acknowledged hand-over bound ${HANDOVER_GAP_BOUND_MS} ms" test "$max" -le "$HANDOVER_GAP_BOUND_MS"
    echo "# worst gaps: $(echo "$report" | python3 -c "import json,sys; print(', '.join(f\"{g['ticker']} {g['gap_ms']:.0f}\" for g in json.load(sys.stdin)['worst'][:5]))")"
    eval "scale_${to}_ms=$took; gap_${to}_ms=$max"
}
reshard 8
reshard 3

# ---- 5. leader failover ----
lease_holder() { K -n quotestream-system get lease -o jsonpath='{.items[0].spec.holderIdentity}'; }
leader=$(lease_holder)
check "a leader holds the Lease ($leader)" test -n "$leader"
t=$(now_ms)
K -n quotestream-system delete pod "$leader" --wait=false >/dev/null
wait_until 90 "another operator pod to take the Lease" bash -c "h=\$($HERE/enter.sh kubectl -n quotestream-system get lease -o jsonpath='{.items[0].spec.holderIdentity}'); [ -n \"\$h\" ] && [ \"\$h\" != '$leader' ]"
failover_ms=$(($(now_ms) - t))
ok "leader pod deleted: $(lease_holder) leads after ${failover_ms} ms"
K -n markets scale qs/sp500 --replicas=4 >/dev/null
check "the new leader reconciles (scale to 4 converged)" wait_until 120 "sp500 at 4 shards" converged 4

# ---- 6. helm upgrade that rolls the workers ----
old_pods=$(K -n markets get pods -l quotes.opa.io/stream=sp500 -o name | sort | tr '\n' ' ')
gap reset -X POST
t=$(now_ms)
E helm upgrade quotestream "$REPO/charts/quotestream" -n quotestream-system --reuse-values \
    --set image.worker.tag="$VERSION-e2e" --wait --timeout 180s >/dev/null
rolled() {
    [ "$(K -n markets get deploy -l quotes.opa.io/stream=sp500 -o jsonpath='{range .items[*]}{.spec.template.spec.containers[0].image}{"\n"}{end}' | sort -u)" = "$WORKER_IMAGE-e2e" ] &&
        converged 4 &&
        [ -z "$(comm -12 <(echo "$old_pods" | tr ' ' '\n' | sort) <(K -n markets get pods -l quotes.opa.io/stream=sp500 -o name | sort))" ]
}
check "helm upgrade rolled every worker to $WORKER_IMAGE-e2e" wait_until 180 "workers rolled" rolled
upgrade_ms=$(($(now_ms) - t))
wait_until $((GAP_BOUND_MS / 1000 + 1)) "all $TICKERS tickers streamed after the upgrade" all_on_redis || true
sleep $((2 * INTERVAL_MS / 1000))
max=$(gap report | python3 -c "import json,sys; print(int(json.load(sys.stdin)['max_gap_ms']))")
check "rolling upgrade: longest per-ticker gap ${max} ms <= bound ${GAP_BOUND_MS} ms" test "$max" -le "$GAP_BOUND_MS"

# ---- 7. what runs is restricted, and its logs are real ----
pod=$(K -n markets get pods -l quotes.opa.io/stream=sp500 -o jsonpath='{.items[0].metadata.name}')
check "kubectl logs $pod shows the worker's JSON log" bash -c "$HERE/enter.sh kubectl -n markets logs $pod | grep -q '\"level\"'"
uid_of() { # pod namespace -> the uid its container's process runs as, read from /proc on the node
    local cid pid
    cid=$(K -n "$2" get pod "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
    cid=${cid#containerd://}
    pid=$(E ctr -n k8s.io tasks ls | awk -v c="$cid" '$1 == c {print $2}')
    awk '/^Uid:/ {print $2}' "/proc/$pid/status"
}
check "worker process runs as uid 65532" test "$(uid_of "$pod" markets)" = 65532
op=$(lease_holder)
check "operator process runs as uid 65532" test "$(uid_of "$op" quotestream-system)" = 65532
check "worker root filesystem is read-only" bash -c "$HERE/enter.sh ctr -n k8s.io containers info \$($HERE/enter.sh kubectl -n markets get pod $pod -o jsonpath='{.status.containerStatuses[0].containerID}' | sed 's|containerd://||') | grep -q '\"readonly\": true'"

# Container memory from the node's cgroups (working set = usage - inactive file pages).
mem_mib() { # pod namespace
    local cid dir
    cid=$(K -n "$2" get pod "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
    cid=${cid#containerd://}
    dir=$(find "/sys/fs/cgroup/memory/$CGROUP_ROOT" -type d -name "$cid" | head -n1)
    python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
usage = int(open(f"{d}/memory.usage_in_bytes").read())
stat = dict(line.split() for line in open(f"{d}/memory.stat"))
print(f"{(usage - int(stat.get('total_inactive_file', 0))) / 2**20:.1f}")
PY
}
# And the process's resident set (VmRSS), which also counts the shared pages of the binary and
# its libraries that the page cache charged elsewhere.
rss_mib() { # pod namespace
    local cid pid
    cid=$(K -n "$2" get pod "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
    pid=$(E ctr -n k8s.io tasks ls | awk -v c="${cid#containerd://}" '$1 == c {print $2}')
    awk '/^VmRSS:/ {printf "%.1f\n", $2 / 1024}' "/proc/$pid/status"
}
workers=$(K -n markets get pods -l quotes.opa.io/stream=sp500 -o jsonpath='{.items[*].metadata.name}')
worker_mib=$(for p in $workers; do mem_mib "$p" markets; done | sort -n | tail -n1)
worker_rss_mib=$(for p in $workers; do rss_mib "$p" markets; done | sort -n | tail -n1)
operator_mib=$(mem_mib "$op" quotestream-system)
operator_rss_mib=$(rss_mib "$op" quotestream-system)
ok "memory (cgroup working set / process RSS): largest worker ${worker_mib} / ${worker_rss_mib} MiB (4 shards of 503 tickers), leading operator ${operator_mib} / ${operator_rss_mib} MiB"

# ---- 8. clean up the way a user does ----
K -n markets delete qs sp500 --wait=true --timeout=60s >/dev/null
check "deleting the stream removes its shards" wait_until 60 "no shard objects" \
    bash -c "[ -z \"\$($HERE/enter.sh kubectl get deploy,cm,pods -A -l quotes.opa.io/stream -o name)\" ]"
E helm uninstall quotestream -n quotestream-system --wait --timeout 120s >/dev/null
check "helm uninstall leaves no operator pod and no shard object" wait_until 60 "nothing left" \
    bash -c "[ -z \"\$($HERE/enter.sh kubectl get pods -n quotestream-system -o name)\$($HERE/enter.sh kubectl get deploy,cm,pods -A -l quotes.opa.io/stream -o name)\" ]"

mkdir -p "$(dirname "$REPORT")"
cat >"$REPORT" <<EOF
{"node_up_s": $node_up_s, "images_ms": $images_ms, "helm_install_ms": $install_ms,
 "first_quote_ms": $first_quote_ms, "scale_8_ms": $scale_8_ms, "gap_8_ms": $gap_8_ms,
 "scale_3_ms": $scale_3_ms, "gap_3_ms": $gap_3_ms, "failover_ms": $failover_ms,
 "upgrade_ms": $upgrade_ms, "worker_mib": $worker_mib, "worker_rss_mib": $worker_rss_mib,
 "operator_mib": $operator_mib, "operator_rss_mib": $operator_rss_mib, "total_s": $(($(date +%s) - t_start))}
EOF
echo "# timings: $(tr -d '\n' <"$REPORT")"
