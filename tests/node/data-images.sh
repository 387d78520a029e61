#!/usr/bin/env bash
# Builds the images of the real-node test's data services into DIR (default target/images),
# packed by scripts/oci-image.py like the product images (FROM scratch, the binaries' shared
# libraries, user 65532; no base image is pulled):
#   quotestream.test/redis:1      Debian's redis-server
#   quotestream.test/postgres:1   Debian's PostgreSQL 15 (initdb at first start, trust auth)
#   quotestream.test/gapwatch:1   tests/testkit's gapwatch (per-ticker gap of a Redis channel)
# Usage: tests/node/data-images.sh [DIR]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
OUT="${1:-${CARGO_TARGET_DIR:-$REPO/target}/images}"
PACK="$REPO/scripts/oci-image.py"
mkdir -p "$OUT"

redis_server=$(command -v redis-server) || die "redis-server is missing (scripts/ensure-deps.sh installs it)"
"$PACK" --binary "$redis_server" --name quotestream.test/redis:1 --cmd '[]' --port 6379/tcp \
    --out "$OUT/test-redis.oci.tar" >/dev/null

pg=/usr/lib/postgresql/15
[ -x "$pg/bin/postgres" ] || die "$pg/bin/postgres is missing (scripts/ensure-deps.sh installs postgresql)"
# initdb runs its bootstrap through /bin/sh, so this test image has one (dash). The modules,
# less the JIT (it would bring LLVM's 100 MB along).
modules=()
for f in "$pg"/lib/*.so; do
    [ "$(basename "$f")" = llvmjit.so ] || modules+=(--add "$f")
done
"$PACK" --binary "$HERE/postgres-entrypoint.sh" --name quotestream.test/postgres:1 --cmd '[]' \
    --add /bin/dash:/bin/sh --add "$pg/bin/postgres" --add "$pg/bin/initdb" "${modules[@]}" \
    --add /usr/share/postgresql/15 --add /usr/share/zoneinfo/UTC --add /usr/share/zoneinfo/Etc/UTC \
    --port 5432/tcp --out "$OUT/test-postgres.oci.tar" >/dev/null

cargo build --release -q -p quotestream-testkit --bin gapwatch
target="${CARGO_TARGET_DIR:-$REPO/target}"
"$PACK" --binary "$target/release/gapwatch" --name quotestream.test/gapwatch:1 --cmd '[]' \
    --port 8080/tcp --out "$OUT/test-gapwatch.oci.tar" >/dev/null
ls -l "$OUT"/test-*.oci.tar
