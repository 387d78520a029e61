#!/usr/bin/env bash
# `DATABASE_URL=… make run`: starts quotestream-store on that database (migrations, rollups;
# docs/store.md) on a free loopback port and runs the given command with the local shards'
# storage sink pointed at it (STORAGE_URL). DATABASE_URL is not passed on: the shards write
# through the store, which keeps the rollups from the rows it inserts (a direct PostgreSQL
# sink writing the same rows first would leave them out of the bars).
# Usage: DATABASE_URL=postgres://… scripts/with-store.sh COMMAND [ARGS…]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?set DATABASE_URL to the PostgreSQL the store should use}"
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
cargo build --release -q -p quotestream-store --bin quotestream-store
target="${CARGO_TARGET_DIR:-target}/release"
log="$(mktemp -t quotestream-store.XXXXXX.log)"
"$target/quotestream-store" --log-json true serve --listen 127.0.0.1:0 > "$log" 2>&1 &
store=$!
stop() {
  # SIGTERM: the store drains in-flight batches and exits.
  kill -TERM "$store" 2>/dev/null || true
  wait "$store" 2>/dev/null || true
}
trap stop EXIT
listen=""
for _ in $(seq 1 300); do
  listen="$(grep -o '"listen":"[0-9.:]*"' "$log" | head -n1 | cut -d'"' -f4 || true)"
  [ -n "$listen" ] && break
  if ! kill -0 "$store" 2>/dev/null; then
    echo "quotestream-store did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$listen" ] || { echo "quotestream-store did not listen within 30s; its log: $log" >&2; exit 1; }
echo "quotestream-store at http://$listen (log: $log); the shards post their batches to it" >&2
STORAGE_URL="http://$listen" env -u DATABASE_URL "$@"
