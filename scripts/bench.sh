#!/usr/bin/env bash
# `make bench`: runs every benchmark row in release mode and writes docs/benchmarks.md.
# `make bench-quick` (scripts/bench.sh --quick): every row in a few seconds, written to a
# temporary file (printed at the end) and never to docs/benchmarks.md; CI runs it so the
# harnesses cannot rot.
#
# Every harness starts its own throwaway servers and measures its own baseline in the same run;
# nothing here asserts a timing. One function per row (row_*); ROWS lists them in order.
#
# Environment: BENCH_PROFILE=release|debug (default release; `make test` uses debug, which
# reuses the test build), BENCH_OUT=<file> (where the report goes), BENCH_ROWS="row_x row_y"
# (run only these rows).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
if [ "${1:-}" = "--quick" ]; then mode=quick; fi
profile=${BENCH_PROFILE:-release}
target=${CARGO_TARGET_DIR:-target}
case "$profile" in
    release) cargo_profile=(--release); bin=$target/release ;;
    debug) cargo_profile=(); bin=$target/debug ;;
    *) echo "BENCH_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
quick_flag=()
if [ "$mode" = quick ]; then quick_flag=(--quick); fi
if [ "$mode" = quick ]; then out=${BENCH_OUT:-$(mktemp --suffix=.md)}; else out=${BENCH_OUT:-docs/benchmarks.md}; fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

section() { printf '\n## %s\n\n' "$1" >>"$tmp"; }
note() { echo "bench: $*" >&2; }
# Runs a harness, its stdout into the report under a "Command:" line.
harness() {
    printf 'Command: `%s`\n\n' "$*" >>"$tmp"
    "$@" >>"$tmp"
}
# Seconds a row took, for the progress log (quick mode must stay at a few seconds per row).
timed() {
    local start=$SECONDS
    "$@"
    note "$1 took $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------------
# Rows

row_redis() {
    section "Redis: publish throughput and publish-to-subscribe latency"
    harness "$bin/examples/bench_redis" "${quick_flag[@]}"
}

row_storage() {
    section "Storage sink: POST /quotes/batch to a local receiver"
    harness "$bin/examples/bench_storage" "${quick_flag[@]}"
}

row_postgres() {
    section "PostgreSQL sink: idempotent writes versus raw COPY"
    if [ "$mode" = quick ]; then
        harness "$bin/examples/postgres_throughput" 20000 5000
    else
        harness "$bin/examples/postgres_throughput"
    fi
}

row_disk_buffer() {
    section "Disk buffer: durable sinks with the buffer on versus off"
    harness "$bin/examples/bench_disk_buffer" "${quick_flag[@]}"
}

row_store() {
    section "Storage service: POST /quotes/batch into PostgreSQL with rollups"
    harness "$bin/examples/bench_store" "${quick_flag[@]}"
}

row_query() {
    section "Query API: quotes, daily bars from the rollup versus raw quotes, versus Python (wrk)"
    harness "$bin/examples/bench_query" "${quick_flag[@]}"
}

row_yahoo() {
    section "Yahoo polling: one poll cycle versus one request per ticker"
    harness "$bin/examples/bench_yahoo" "${quick_flag[@]}"
}

row_stream() {
    section "Streaming source: vendor frame → Redis subscriber latency"
    harness "$bin/examples/bench_stream" "${quick_flag[@]}"
}

row_backfill() {
    section "History: backfill 500 instruments × 2 years daily + 29 days of 1-minute bars, versus Python"
    harness "$bin/examples/bench_backfill" "${quick_flag[@]}"
}

row_alpaca() {
    section "Alpaca streaming source: decoding and delivery rate"
    harness "$bin/examples/bench_alpaca"
}

# Real kube-apiserver + etcd (tests/controlplane) and the operator binary of this profile;
# quick mode measures 4 shards only (instead of 4, 16 and 64).
row_controlplane() {
    section "Operator: create to Ready, reconcile duration, reshard convergence (real kube-apiserver)"
    tests/controlplane/build.sh >&2
    harness "$bin/examples/bench_controlplane" "${quick_flag[@]}"
}

row_e2e() {
    section "End to end: synthetic source → validation → Redis (+ PostgreSQL), versus Python"
    harness "$bin/examples/bench_e2e" "${quick_flag[@]}"
}

row_memory() {
    section "Worker memory (RSS) by tickers per shard"
    local duration=10s counts=(300 10000 100000)
    if [ "$mode" = quick ]; then duration=2s; counts=(300 10000); fi
    printf 'Command: `quotestream-worker local --shards 1 --tickers-file <N symbols> --interval 1s --duration %s` (synthetic source, console sink)\n\n| tickers | RSS after %s | quotes/s |\n|---:|---:|---:|\n' "$duration" "$duration" >>"$tmp"
    local syms line rss rate n
    syms=$(mktemp)
    for n in "${counts[@]}"; do
        python3 -c "
import itertools, string, sys
n = int(sys.argv[1]); out = []
for k in (3, 4, 5):
    for t in itertools.product(string.ascii_uppercase, repeat=k):
        out.append(''.join(t))
        if len(out) >= n: break
    if len(out) >= n: break
print('\n'.join(out))" "$n" >"$syms"
        line=$("$bin/quotestream-worker" local --shards 1 --tickers-file "$syms" --interval 1s --duration "$duration" | grep '^stopped after')
        rss=$(sed -E 's/.*RSS ([0-9.]+) MB.*/\1/' <<<"$line")
        rate=$(sed -E 's/.*shards \(([0-9]+)\/s\).*/\1/' <<<"$line")
        printf '| %s | %s MB | %s |\n' "$n" "$rss" "$rate" >>"$tmp"
    done
    rm -f "$syms"
}

row_peak_rss() {
    section "Peak memory: the seeds' job (validation → Redis → PostgreSQL), worker versus Python"
    harness "$bin/examples/bench_peak_rss" "${quick_flag[@]}"
}

row_sharding() {
    section "Shard assignment"
    printf 'The full table is docs/sharding.md (`make sharding-report`).\n\n' >>"$tmp"
    "$bin/examples/sharding_report" "${quick_flag[@]}" 2>/dev/null | sed -n '/^## Summary/,/^## Per shard count/p' | sed '/^## /d' >>"$tmp"
}

# What `make images` makes, from this run's binaries (a debug run packs debug binaries, so only
# `make bench`'s numbers are the images' sizes).
row_images() {
    section "Container images: size (make images)"
    local dir b layer start
    dir=$(mktemp -d)
    printf 'Command: `scripts/oci-image.py --binary %s/<binary> --ca-certs /etc/ssl/certs/ca-certificates.crt ...` (what `make images` runs: FROM scratch, the binary + the shared libraries ldd lists + /etc files + the CA bundle, one uncompressed layer). MB = 10^6 bytes.\n\n| image | binary | image (uncompressed) | archive | pack time |\n|---|---:|---:|---:|---:|\n' "$bin" >>"$tmp"
    for b in quotestream-operator quotestream-worker; do
        start=$(date +%s%N)
        read -r _ layer < <(scripts/oci-image.py --binary "$bin/$b" --name "bench.local/$b:bench" \
            --out "$dir/$b.oci.tar" --ca-certs /etc/ssl/certs/ca-certificates.crt --port 8080/tcp)
        awk -v b="$b" -v bin="$(stat -c %s "$bin/$b")" -v layer="$layer" -v ar="$(stat -c %s "$dir/$b.oci.tar")" \
            -v ms="$(( ($(date +%s%N) - start) / 1000000 ))" \
            'BEGIN { printf "| %s | %.1f MB | %.1f MB | %.1f MB | %d ms |\n", b, bin / 1e6, layer / 1e6, ar / 1e6, ms }' >>"$tmp"
    done
    rm -rf "$dir"
}

# The real node (tests/node/e2e.sh, docs/node.md): the whole user path with the release images.
# Full mode: three runs, the median of each figure. Quick mode runs nothing: it reports the run
# `make test-node` just made (make test runs it right before bench-quick), if there is one.
row_node() {
    section "Real node: helm install to first quote, reshard with real pods, container memory"
    local runs=3 i reports=()
    if [ "$mode" = quick ]; then
        if [ ! -f "$target/node-e2e.json" ]; then
            note "row_node: no $target/node-e2e.json (make test-node writes it); skipped"
            printf 'No run of `make test-node` to report.\n' >>"$tmp"
            return
        fi
        reports=("$target/node-e2e.json")
    else
        for i in $(seq 1 "$runs"); do
            note "row_node: run $i of $runs"
            QS_NODE_E2E_REPORT="$target/node-e2e-$i.json" tests/node/e2e.sh >&2
            reports+=("$target/node-e2e-$i.json")
        done
    fi
    printf 'Command: `tests/node/e2e.sh` (`make test-node`; one node, 2 cores shared by the control plane, the kubelet, containerd and every pod; 503 tickers, synthetic source, 1 s), %s.\n\n' \
        "$([ ${#reports[@]} -gt 1 ] && echo "median of ${#reports[@]} runs" || echo "one run")" >>"$tmp"
    python3 - "${reports[@]}" >>"$tmp" <<'PY'
import json, statistics, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
rows = [
    ("node up (kubelet Ready, images imported)", "node_up_s", "s"),
    ("`helm install --wait` (2 operator + 2 store replicas Ready)", "helm_install_ms", "ms"),
    ("`helm install` to the first quote in Redis", "first_quote_ms", "ms"),
    ("`kubectl scale` 3 → 8 converged (8 pods Running and ready)", "scale_8_ms", "ms"),
    ("longest per-ticker gap during 3 → 8", "gap_8_ms", "ms"),
    ("`kubectl scale` 8 → 3 converged", "scale_3_ms", "ms"),
    ("longest per-ticker gap during 8 → 3", "gap_3_ms", "ms"),
    ("leader pod deleted to new leader", "failover_ms", "ms"),
    ("`helm upgrade` rolling 4 workers", "upgrade_ms", "ms"),
    ("worker container memory, cgroup working set (largest of 4 shards)", "worker_mib", "MiB"),
    ("worker process RSS (largest)", "worker_rss_mib", "MiB"),
    ("operator container memory, cgroup working set (leader)", "operator_mib", "MiB"),
    ("operator process RSS (leader)", "operator_rss_mib", "MiB"),
    ("the whole test (images, node, every step, node down)", "total_s", "s"),
]
print("| | median | runs |\n|---|---:|---|")
for label, key, unit in rows:
    vals = [r[key] for r in runs if key in r]
    if vals:
        print(f"| {label} | {statistics.median(vals):g} {unit} | {', '.join(f'{v:g}' for v in vals)} |")
PY
}

row_micro() {
    section "Micro-benchmarks (criterion)"
    local home args=()
    home=$(mktemp -d)
    if [ "$mode" = quick ]; then args=(--warm-up-time 0.1 --measurement-time 0.2 --sample-size 10); fi
    printf 'Command: `cargo bench -p quotestream-worker --bench validation --bench wire` and `cargo bench -p quotestream-api --bench assignment`%s (criterion; mean of its samples, 95%% confidence interval; throughput in quotes per second where the benchmark handles quotes). Sources: worker/benches/validation.rs, worker/benches/wire.rs, api/benches/assignment.rs.\n\n' \
        "$([ "$mode" = quick ] && echo ", with \`-- --warm-up-time 0.1 --measurement-time 0.2 --sample-size 10\`")" >>"$tmp"
    # The same profile as the rest of the run, so the build is the one `cargo build` made.
    local cargo_bench_profile=release
    if [ "$profile" = debug ]; then cargo_bench_profile=dev; fi
    # The bench targets by name: `--benches` would also hand criterion's flags to the libraries'
    # test harness, which rejects them.
    CRITERION_HOME=$home cargo bench -q --profile "$cargo_bench_profile" -p quotestream-worker --bench validation --bench wire -- "${args[@]}" >&2
    CRITERION_HOME=$home cargo bench -q --profile "$cargo_bench_profile" -p quotestream-api --bench assignment -- "${args[@]}" >&2
    python3 scripts/bench/criterion_summary.py "$home" >>"$tmp"
    rm -rf "$home"
}

ROWS=(row_redis row_storage row_postgres row_disk_buffer row_store row_query row_yahoo row_e2e row_stream row_backfill row_alpaca row_memory row_peak_rss row_controlplane row_sharding row_images row_node row_micro)
if [ -n "${BENCH_ROWS:-}" ]; then read -r -a ROWS <<<"$BENCH_ROWS"; fi

# ---------------------------------------------------------------------------------------------

note "building ($profile)"
cargo build "${cargo_profile[@]}" -q -p quotestream-worker -p quotestream-api -p quotestream-operator -p quotestream-store --examples --bins
# The Python baselines (bench_yahoo, bench_e2e, bench_backfill, …) run this interpreter.
BENCH_PYTHON=$(scripts/bench/python-env.sh)
export BENCH_PYTHON
{
    echo "# Benchmarks"
    echo
    if [ "$mode" = quick ]; then
        echo "<!-- Written by \`make bench-quick\` ($profile build): a check that every harness runs; the numbers in docs/benchmarks.md come from \`make bench\`. -->"
    else
        echo "<!-- Generated by \`make bench\` (scripts/bench.sh). Do not edit by hand. -->"
    fi
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg) at start, $(date -u +%Y-%m-%dT%H:%MZ)."
    echo "Ratios compare runs made side by side in this same run; absolute numbers drift on shared machines."
    echo "How each row is made, how to run one or profile it, and what profiling changed: [performance.md](performance.md)."
} >"$tmp"

started=$SECONDS
for row in "${ROWS[@]}"; do
    note "$row ..."
    timed "$row"
done

mv "$tmp" "$out"
trap - EXIT
note "wrote $out ($mode, $((SECONDS - started)) s of rows)"
