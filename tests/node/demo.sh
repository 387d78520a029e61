#!/usr/bin/env bash
# `make demo`: quotestream on a real node, the way a user runs it in staging, for a person to
# watch: the node (node-up.sh), the chart installed with `helm install --wait`, a Redis pod and
# the S&P 500 example (synthetic prices, 1 s, 4 shards) publishing to it. It leaves everything
# running and prints what to type; `make cluster-down` removes it all.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
IMAGES="${QS_IMAGES_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/images}"
K() { "$HERE/enter.sh" kubectl "$@"; }

"$HERE/data-images.sh" "$IMAGES" >/dev/null
if [ ! -f "$STATE/supervisor.ready" ]; then
    QS_NODE_IMAGES="$(ls "$IMAGES"/*.oci.tar | tr '\n' ' ')" QS_CP_SKIP_BUILD=1 "$HERE/node-up.sh" | grep '^node-up.sh:'
fi
log "starting Redis as a pod"
K apply -f "$HERE/manifests/data.yaml" >/dev/null
K -n data wait --for=condition=Ready pod/redis --timeout=120s >/dev/null
REDIS_IP=$(K -n data get pod redis -o jsonpath='{.status.podIP}')

log "helm install quotestream charts/quotestream -n quotestream-system --create-namespace --wait"
"$HERE/enter.sh" helm upgrade --install quotestream "$REPO/charts/quotestream" \
    -n quotestream-system --create-namespace --wait --timeout 180s >/dev/null
K create namespace markets --dry-run=client -o yaml | K apply -f - >/dev/null
K -n markets create secret generic quotes-db --from-literal=dsn="postgres://postgres@$(K -n data get pod postgres -o jsonpath='{.status.podIP}'):5432/postgres" \
    --dry-run=client -o yaml | K apply -f - >/dev/null
K -n markets label secret quotes-db quotes.opa.io/stream-access=true --overwrite >/dev/null  # the Secret policy
log "kubectl apply: the S&P 500 example (503 tickers, 4 shards, synthetic source, 1 s)"
python3 "$HERE/sp500-manifest.py" "$REPO/examples/sp500.yaml" --redis "redis://$REDIS_IP:6379/0" \
    --interval 1s --shards 4 | K apply -f - >/dev/null
K -n markets wait --for=condition=Ready qs/sp500 --timeout=120s >/dev/null
K get qs -A
K -n markets get pods -o wide
cat <<EOF

quotestream runs on the node. Watch it:
  tests/node/enter.sh redis-cli -h $REDIS_IP subscribe quotes.realtime     # the quotes
  tests/node/enter.sh kubectl get qs -A -w                                  # the stream's status
  tests/node/enter.sh kubectl -n markets logs -l quotes.opa.io/shard=0 -f   # a worker's log
  tests/node/enter.sh kubectl -n markets scale qs/sp500 --replicas=8        # reshard
  tests/node/enter.sh psql -h $(K -n data get pod postgres -o jsonpath='{.status.podIP}') -U postgres \\
      -c 'SELECT symbol, max(timestamp), count(*) FROM quotes.real_time GROUP BY 1 LIMIT 5'
Stop it:
  make cluster-down
EOF
