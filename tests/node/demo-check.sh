#!/usr/bin/env bash
# Runs `make demo`'s script the way a person would and checks that what it tells them to type
# works: a quote arrives on the Redis channel it names. Then removes the node. Part of
# `make test-node`, so the demo cannot rot unnoticed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
trap '"$HERE/node-down.sh" >/dev/null 2>&1 || true' EXIT
out=$(QS_CP_SKIP_BUILD=1 "$HERE/demo.sh")
echo "$out" | grep -q '^quotestream runs on the node' || die "demo.sh did not say the stream runs:
$out"
watch=$(echo "$out" | grep -o 'tests/node/enter.sh redis-cli -h [0-9.]* subscribe quotes.realtime')
[ -n "$watch" ] || die "demo.sh printed no redis-cli command to watch the quotes"
# The command it printed, bounded: the third reply of SUBSCRIBE is the first message.
quote=$(cd "$REPO" && timeout 20 $watch | sed -n '6{p;q}') || true
echo "$quote" | grep -q '"ticker"' || die "no quote within 20 s from: $watch"
log "ok: the demo streams (first quote: ${quote:0:80}...)"
