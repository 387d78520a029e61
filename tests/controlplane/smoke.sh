#!/usr/bin/env bash
# Smoke test of the test control plane: builds the tools (idempotent), starts qs-controlplane
# in a private temp dir, and checks against the real API server that
#   - it answers (/readyz, /version = the pinned Kubernetes version),
#   - a CRD installs and becomes Established,
#   - an object violating a CEL x-kubernetes-validations rule is rejected,
#   - the `nobody` identity is denied (403) listing deployments, the `operator` identity is
#     the quotestream-operator service account,
#   - the garbage collector deletes dependents of a deleted owner, the namespace controller
#     deletes a namespace (when the controllers run),
#   - helm lint / helm template work on a tiny chart and its output passes a server dry-run,
#   - qs-controlplane refuses a port in use, a second start on the same dir, an unusable dir,
#   - SIGTERM stops it cleanly and removes its state.
# Everything it starts is stopped by a trap. Exit code 0 only when every check passed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${QS_CP_BIN:-$REPO/.cache/controlplane/bin}"
TD="$HERE/testdata"
READY_TIMEOUT="${QS_CP_READY_TIMEOUT:-180}"

pass=0
fail=0
ok() { pass=$((pass + 1)); printf '  ok    %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf '  FAIL  %s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }

if [ -z "${QS_CP_SKIP_BUILD:-}" ]; then
    "$HERE/build.sh" || { echo "smoke: build failed"; echo "0 passed, 1 failed"; exit 1; }
fi
for b in qs-controlplane kubectl helm; do
    [ -x "$BIN/$b" ] || { echo "smoke: $BIN/$b missing (run tests/controlplane/build.sh)"; exit 1; }
done
export PATH="$BIN:$PATH"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/qs-smoke.XXXXXX")"
DIR="$WORK/cluster"
LOG="$WORK/controlplane.log"
CP_PID=""
EXTRA_PIDS=()

stop_cp() { # graceful stop with a bounded wait, then SIGKILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    echo "smoke: pid $pid did not stop within 60s, killing it"
    kill -KILL "$pid" 2>/dev/null
}
cleanup() {
    local p
    for p in "${EXTRA_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && stop_cp "$p"; done
    [ -n "$CP_PID" ] && kill -0 "$CP_PID" 2>/dev/null && stop_cp "$CP_PID"
    if [ "$fail" -gt 0 ] && [ -f "$LOG" ]; then
        echo "--- last lines of the control plane log ($LOG) ---"
        tail -n 30 "$LOG"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# poll CMD... until it succeeds or TIMEOUT seconds pass (bounded poll loop).
poll() {
    local timeout=$1 start=$SECONDS
    shift
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - start)) -ge "$timeout" ] && return 1
        sleep 0.5
    done
}

section "start qs-controlplane ($("$BIN/qs-controlplane" version))"
t_start=$(date +%s.%N)
qs-controlplane run --dir "$DIR" --user 'alice:team-a,team-b' >"$LOG" 2>&1 &
CP_PID=$!
if poll "$READY_TIMEOUT" test -f "$DIR/ready"; then
    t_ready=$(date +%s.%N)
    ok "ready in $(awk -v a="$t_start" -v b="$t_ready" 'BEGIN{printf "%.1f", b-a}')s (pid $CP_PID)"
else
    bad "control plane not ready within ${READY_TIMEOUT}s"
    echo "$pass passed, $fail failed"
    exit 1
fi
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$CP_PID/status")
echo "  info  RSS after ready: $((rss_kb / 1024)) MiB"

ADMIN="$DIR/admin.kubeconfig"
export KUBECONFIG="$ADMIN"
state_get() { python3 -c "import json,sys; d=json.load(open('$DIR/state.json')); print(eval(sys.argv[1]))" "$1"; }

section "API server"
out=$(kubectl get --raw /readyz 2>&1)
[ "$out" = "ok" ] && ok "/readyz = ok" || bad "/readyz: $out"
want="$(qs-controlplane version)"
got=$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["serverVersion"]["gitVersion"], d["clientVersion"]["gitVersion"])')
[ "$got" = "$want $want" ] && ok "server and kubectl version $want" || bad "versions: got '$got', want '$want $want'"
kubectl get ns default >/dev/null 2>&1 && ok "kubectl get ns default (admin)" || bad "kubectl get ns default"
[ -f "$DIR/state.json" ] && [ "$(state_get 'd["pid"]')" = "$CP_PID" ] && ok "state.json records pid $CP_PID" || bad "state.json missing or wrong pid"
CONTROLLERS=$(state_get '",".join(d["controllers"])')

section "CRD + CEL validation"
if kubectl apply -f "$TD/crd-widgets.yaml" >/dev/null; then ok "CRD applied"; else bad "CRD apply failed"; fi
if kubectl wait --for=condition=Established crd/widgets.smoke.quotestream.dev --timeout=60s >/dev/null; then
    ok "CRD Established"
else
    bad "CRD not Established within 60s"
fi
# Discovery of a new CRD can lag Established by a moment.
poll 30 kubectl get widgets -n default || true
if kubectl apply -n default -f "$TD/widget-valid.yaml" >/dev/null 2>&1; then ok "valid Widget accepted"; else bad "valid Widget rejected"; fi
out=$(kubectl apply -n default -f "$TD/widget-invalid.yaml" 2>&1)
if [ $? -ne 0 ] && grep -q "minReplicas must not exceed maxReplicas" <<<"$out"; then
    ok "invalid Widget rejected by the CEL rule: $(grep -o 'spec: Invalid value.*' <<<"$out" | head -c 120)"
else
    bad "invalid Widget not rejected as expected: $out"
fi

section "identities and RBAC"
out=$(kubectl --kubeconfig "$DIR/nobody.kubeconfig" get deployments -A 2>&1)
if [ $? -ne 0 ] && grep -q "(Forbidden)" <<<"$out"; then ok "nobody: list deployments -> 403 Forbidden"; else bad "nobody was not denied: $out"; fi
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$DIR/pki/ca.crt" \
    -H "Authorization: Bearer $(state_get '[i for i in d["identities"] if i["alias"]=="nobody"][0]["token"]')" \
    "$(state_get 'd["apiserverURL"]')/apis/apps/v1/deployments" 2>/dev/null || true)
[ "$code" = "403" ] && ok "nobody: raw GET /apis/apps/v1/deployments -> HTTP 403" || bad "nobody raw GET -> HTTP $code"
out=$(kubectl --kubeconfig "$DIR/operator.kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups}' 2>&1)
if grep -q "^system:serviceaccount:quotestream-system:quotestream-operator .*system:serviceaccounts:quotestream-system" <<<"$out"; then
    ok "operator identity = quotestream-operator service account"
else
    bad "operator identity: $out"
fi
out=$(kubectl --kubeconfig "$DIR/operator.kubeconfig" auth can-i list deployments -n quotestream-system 2>&1)
[ "$out" = "no" ] && ok "operator has no rights before RBAC is applied" || bad "operator can-i: $out"
kubectl create namespace quotestream-system >/dev/null &&
    kubectl -n quotestream-system create role deploy-reader --verb=get,list,watch --resource=deployments.apps >/dev/null &&
    kubectl -n quotestream-system create rolebinding deploy-reader --role=deploy-reader \
        --serviceaccount=quotestream-system:quotestream-operator >/dev/null
if kubectl --kubeconfig "$DIR/operator.kubeconfig" -n quotestream-system get deployments >/dev/null 2>&1; then
    ok "operator may list deployments after a RoleBinding to the service account"
else
    bad "operator still denied after RoleBinding"
fi
out=$(kubectl --kubeconfig "$DIR/alice.kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups}' 2>&1)
grep -q '^alice .*team-b' <<<"$out" && ok "--user alice:team-a,team-b -> $out" || bad "alice identity: $out"

section "controllers ($CONTROLLERS)"
if [[ "$CONTROLLERS" == *garbage-collector* ]]; then
    kubectl -n default create configmap owner --from-literal=a=b >/dev/null
    uid=$(kubectl -n default get configmap owner -o jsonpath='{.metadata.uid}')
    kubectl -n default apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
    - {apiVersion: v1, kind: ConfigMap, name: owner, uid: "$uid"}
data: {a: b}
EOF
    kubectl -n default delete configmap owner --wait=false >/dev/null
    if kubectl -n default wait --for=delete configmap/dependent --timeout=60s >/dev/null 2>&1; then
        ok "garbage collector deleted the dependent of a deleted owner"
    else
        bad "dependent ConfigMap still there 60s after its owner was deleted"
    fi
    # Same with a custom resource owning a ConfigMap (what the operator relies on).
    wuid=$(kubectl -n default get widget good -o jsonpath='{.metadata.uid}')
    kubectl -n default apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: widget-child
  ownerReferences:
    - {apiVersion: smoke.quotestream.dev/v1, kind: Widget, name: good, uid: "$wuid", controller: true, blockOwnerDeletion: true}
data: {a: b}
EOF
    kubectl -n default delete widget good --cascade=foreground --wait=false >/dev/null
    if kubectl -n default wait --for=delete configmap/widget-child widget/good --timeout=60s >/dev/null 2>&1; then
        ok "foreground deletion of a custom resource deleted its owned ConfigMap"
    else
        bad "custom resource cascade did not complete within 60s"
    fi
else
    echo "  skip  garbage collector not running"
fi
if [[ "$CONTROLLERS" == *namespace* ]]; then
    kubectl create namespace smoke-ns >/dev/null && kubectl -n smoke-ns create configmap c >/dev/null
    kubectl delete namespace smoke-ns --wait=false >/dev/null
    if kubectl wait --for=delete namespace/smoke-ns --timeout=60s >/dev/null 2>&1; then
        ok "namespace controller finalized a deleted namespace"
    else
        bad "namespace smoke-ns still present 60s after deletion"
    fi
fi

section "helm ($(helm version --template '{{.Version}}'))"
CHART="$TD/chart/smoke"
out=$(helm lint --strict "$CHART" 2>&1) && ok "helm lint --strict" || bad "helm lint: $out"
rendered=$(helm template smoke "$CHART" --namespace default --set entries=3 2>&1)
if [ $? -eq 0 ] && grep -q "entry-2:" <<<"$rendered"; then ok "helm template renders"; else bad "helm template: $rendered"; fi
out=$(helm template smoke "$CHART" --set entries=0 2>&1)
[ $? -ne 0 ] && grep -qi "minimum" <<<"$out" && ok "values.schema.json enforced (entries=0 rejected)" || bad "schema not enforced: $out"
out=$(kubectl apply --dry-run=server -n default -f - <<<"$rendered" 2>&1)
[ $? -eq 0 ] && ok "rendered chart passes kubectl apply --dry-run=server" || bad "server dry-run: $out"

section "refusals"
api_port=$(state_get 'd["apiserverURL"].rsplit(":",1)[1]')
out=$(timeout 60 qs-controlplane run --dir "$WORK/other" --apiserver-port "$api_port" 2>&1)
[ $? -ne 0 ] && grep -q "not available" <<<"$out" && ok "port in use refused: $(tail -n1 <<<"$out" | head -c 110)" || bad "port in use not refused: $out"
out=$(timeout 60 qs-controlplane run --dir "$DIR" 2>&1)
[ $? -ne 0 ] && grep -q "already running" <<<"$out" && ok "second start on the same dir refused" || bad "second start not refused: $out"
touch "$WORK/afile"
out=$(timeout 60 qs-controlplane run --dir "$WORK/afile/sub" 2>&1)
[ $? -ne 0 ] && grep -q "state dir" <<<"$out" && ok "unusable dir refused: $(tail -n1 <<<"$out" | head -c 110)" || bad "unusable dir not refused: $out"

section "stop"
t0=$SECONDS
kill -TERM "$CP_PID"
if poll 60 bash -c "! kill -0 $CP_PID"; then
    wait "$CP_PID"
    rc=$?
    [ "$rc" -eq 0 ] && ok "SIGTERM: stopped cleanly in $((SECONDS - t0))s (exit 0)" || bad "SIGTERM: exit code $rc"
    CP_PID=""
else
    bad "still running 60s after SIGTERM"
fi
left=$(ls -A "$DIR" 2>/dev/null | tr '\n' ' ')
[ -z "$left" ] && ok "state removed from $DIR" || bad "left in $DIR: $left"

echo
echo "smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
