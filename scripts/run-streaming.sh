#!/usr/bin/env bash
# `SOURCE=<vendor> make run`: serves the vendor's streaming protocol on localhost with synthetic
# prices (the fake-market binary of the test kit) and streams the S&P 500 example from it.
# Usage: scripts/run-streaming.sh yahoo-stream|alpaca|polygon [quotestream-worker local flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source="${1:?usage: $0 yahoo-stream|alpaca|polygon [flags for quotestream-worker local]}"
shift
case "$source" in
  yahoo-stream|alpaca|polygon) ;;
  *) echo "SOURCE=$source: use yahoo-stream, alpaca or polygon (or leave SOURCE unset for the synthetic market)" >&2; exit 2 ;;
esac
RATE="${RATE:-2000}"
cargo build --release -q -p quotestream-testkit --bin fake-market -p quotestream-worker --bin quotestream-worker
target="${CARGO_TARGET_DIR:-target}/release"
url_file="$(mktemp)"
# Every shard holds a connection: the local account allows as many as a run can have (real
# accounts allow one unless the plan says otherwise; see docs/streaming.md).
limits=()
[ "$source" = yahoo-stream ] || limits=(--max-connections 64)
"$target/fake-market" "$source" --rate "$RATE" "${limits[@]}" > "$url_file" &
fake=$!
trap 'kill "$fake" 2>/dev/null; rm -f "$url_file"' EXIT
for _ in $(seq 1 100); do
  [ -s "$url_file" ] && break
  kill -0 "$fake" 2>/dev/null || { echo "fake-market $source did not start" >&2; exit 1; }
  sleep 0.1
done
url="$(head -n1 "$url_file")"
[ -n "$url" ] || { echo "fake-market $source printed no URL within 10s" >&2; exit 1; }
echo "local $source server at $url ($RATE ticks/s); Ctrl-C stops both" >&2
# The local servers' credentials (tests/testkit/src/stream/alpaca.rs; the polygon server takes
# any non-empty key): real ones would be refused by them.
export APCA_API_KEY_ID=PKFAKEMARKET APCA_API_SECRET_KEY=fake-market-secret
export POLYGON_API_KEY=local
"$target/quotestream-worker" local --source "$source" --source-url "$url" "$@"
