#!/usr/bin/env bash
# `make images`: packs release binaries (already built) into OCI image-layout archives with
# scripts/oci-image.py, FROM scratch, and prints their paths, sizes and digests. Each image's
# default command is the CMD of the binary's stage in the Dockerfile (`FROM runtime AS
# <binary>`), so both ways of building give the same command.
#
#   scripts/build-images.sh BINARY...
#
# Environment: IMAGE_REPO (e.g. ghcr.io/quotestream; image BINARY is $IMAGE_REPO/BINARY),
# IMAGE_TAG (default: the workspace version), IMAGES_DIR (default $CARGO_TARGET_DIR/images),
# SOURCE_DATE_EPOCH (default: the commit time of HEAD), CA_CERTS (default Debian's bundle).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
target=${CARGO_TARGET_DIR:-target}
out=${IMAGES_DIR:-$target/images}
repo=${IMAGE_REPO:?set IMAGE_REPO, e.g. ghcr.io/quotestream}
read -r version source licenses < <(python3 -c '
import tomllib
p = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]
print(p["version"], p["repository"], p["license"])')
tag=${IMAGE_TAG:-$version}
# The commit time, so that the same commit gives the same image (docs/images.md).
created=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
revision=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then revision=$revision-dirty; fi
# reqwest (rustls-platform-verifier) and redis (rustls-native-certs) verify servers against the
# system roots, so the worker's HTTPS sources and sinks need the bundle.
ca=${CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$ca" ] || { echo "build-images: no CA bundle at $ca (apt-get install ca-certificates, or set CA_CERTS)" >&2; exit 1; }

# The CMD (a JSON array) of the Dockerfile stage named after the binary.
dockerfile_cmd() {
    python3 - "$1" <<'PY'
import json, sys
stage = None
for line in open("Dockerfile"):
    words = line.split(maxsplit=1)
    if words and words[0] == "FROM":
        stage = line.split()[-1] if " AS " in line else None
    elif stage == sys.argv[1] and words and words[0] == "CMD":
        print(json.dumps(json.loads(words[1])))
        sys.exit(0)
sys.exit(f"build-images: no CMD in a 'FROM runtime AS {sys.argv[1]}' stage of the Dockerfile")
PY
}

mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
report=()
for bin in "$@"; do
    binary=$target/release/$bin
    [ -x "$binary" ] || { echo "build-images: $binary is missing: cargo build --release -p $bin" >&2; exit 1; }
    archive=$out/$bin.oci.tar
    cmd=$(dockerfile_cmd "$bin")
    read -r digest layer_size < <(scripts/oci-image.py --binary "$binary" --name "$repo/$bin:$tag" \
        --out "$archive" --created "$created" --cmd "$cmd" --port 8080/tcp --ca-certs "$ca" \
        --label "org.opencontainers.image.title=$bin" \
        --label "org.opencontainers.image.version=$tag" \
        --label "org.opencontainers.image.revision=$revision" \
        --label "org.opencontainers.image.source=$source" \
        --label "org.opencontainers.image.licenses=$licenses")
    report+=("$(printf '%-44s %9s archive, %9s uncompressed image (binary %s), %s %s' "$archive" \
        "$(mb "$(stat -c %s "$archive")")" "$(mb "$layer_size")" "$(mb "$(stat -c %s "$binary")")" "$repo/$bin:$tag" "$digest")")
done
printf '%s\n' "${report[@]}"
