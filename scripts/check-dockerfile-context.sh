#!/usr/bin/env bash
# `make dockerfile-check`: proves that the Dockerfile's build stage COPYs everything cargo
# reads, without Docker. Copies exactly the paths of the build stage's COPY lines into a
# directory of their own and runs `cargo check --locked --offline --bins -p BINARY...` there
# (what `docker build --build-arg BINARY=...` compiles):
#  - a workspace member missing from the COPY lines (a new crate) fails loading the manifests;
#  - a file read from outside the copied directories fails compiling: build.rs inputs (the
#    worker's proto/), include_str! (the worker embeds examples/sp500.yaml).
# Also checks that every BINARY has its `FROM runtime AS <binary>` stage with ENTRYPOINT
# /usr/local/bin/<binary> (an exec-form ENTRYPOINT cannot use the BINARY argument).
#
#   scripts/check-dockerfile-context.sh BINARY...    (make passes IMAGE_BINARIES)
#
# The copy and cargo's target dir persist under $CARGO_TARGET_DIR/ctx-check (default
# target/ctx-check) and the copy keeps the files' mtimes, so after the first run (a few minutes:
# the dependencies in check mode) a run rechecks only the crates that changed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

dockerfile=Dockerfile
work=${CARGO_TARGET_DIR:-target}/ctx-check
ctx=$work/context
ctx_target=$(realpath -m "$work/target")
fail() { echo "FAIL dockerfile-check: $*" >&2; exit 1; }

# The build stage's COPY lines (continuations joined), without --from copies.
mapfile -t copies < <(python3 - "$dockerfile" <<'PY'
import re, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
stage = None
for line in text.splitlines():
    words = line.split()
    if not words or words[0].startswith("#"):
        continue
    if words[0].upper() == "FROM":
        stage = words[3] if len(words) > 3 and words[2].upper() == "AS" else None
    elif words[0].upper() == "COPY" and stage == "build":
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words) or args[0].startswith("["):
            sys.exit(f"dockerfile-check: cannot read this COPY line of the build stage: {line}")
        print(" ".join(args))
PY
)
[ ${#copies[@]} -gt 0 ] || fail "no COPY line in the build stage (FROM ... AS build) of $dockerfile"

rm -rf "$ctx"
mkdir -p "$ctx"
for line in "${copies[@]}"; do
    read -r -a words <<<"$line"
    dest=${words[-1]}
    unset 'words[-1]'
    case "$dest" in /*) fail "absolute COPY destination $dest: only paths relative to WORKDIR are supported" ;; esac
    for src in "${words[@]}"; do
        [ -e "$src" ] || fail "COPY $src: no such path in the repository"
        if [ -d "$src" ]; then
            # Docker copies a directory's contents into the destination.
            mkdir -p "$ctx/$dest"
            cp -a "$src/." "$ctx/$dest/"
        elif [[ "$dest" == */ ]]; then
            mkdir -p "$ctx/$dest"
            cp -a "$src" "$ctx/$dest"
        else
            mkdir -p "$(dirname "$ctx/$dest")"
            cp -a "$src" "$ctx/$dest"
        fi
    done
done

for bin in "$@"; do
    awk -v b="$bin" '/^FROM / { cur = ($0 == "FROM runtime AS " b) }
        cur && $0 == "ENTRYPOINT [\"/usr/local/bin/" b "\"]" { found = 1 } END { exit !found }' "$dockerfile" ||
        fail "no stage 'FROM runtime AS $bin' with ENTRYPOINT [\"/usr/local/bin/$bin\"] in $dockerfile"
done

packages=()
for bin in "$@"; do packages+=(-p "$bin"); done
start=$SECONDS
if ! (cd "$ctx" && CARGO_TARGET_DIR=$ctx_target cargo check --locked --offline --bins --quiet "${packages[@]}"); then
    fail "cargo cannot build from the Dockerfile's COPY lines: add the missing path (a new workspace member, or a file a crate reads from outside its directory) to the build stage"
fi
echo "PASS dockerfile-check: the build stage's ${#copies[@]} COPY lines hold every workspace member and every file $* compile from (cargo check in $((SECONDS - start)) s)"
