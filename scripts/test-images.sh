#!/usr/bin/env bash
# `make images-test` (part of `make test`): the image packer without a release build. Packs a
# small system binary, /usr/bin/id (dynamically linked: libc, libselinux, libpcre2 and the
# loader), the way `make images` packs the quotestream binaries, and checks that
#  - two packs of the same input give the same bytes and digest, and another --created time a
#    different digest (the digest follows its inputs, nothing else);
#  - the chart's default image tag (its appVersion) is the tag `make images` gives (the
#    workspace version);
#  - when root with containerd installed: a private containerd imports the archive under its
#    name and digest, and the container runs as the nonroot user with only the libraries ldd
#    found (`id` prints uid=65532(nonroot) gid=65532(nonroot)).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL images-test: $*" >&2; exit 1; }

pack() { scripts/oci-image.py --binary /usr/bin/id --cmd '[]' --name quotestream.test/id:1 --created "$1" --out "$2"; }
read -r first _ < <(pack 1700000000 "$dir/a.oci.tar")
read -r second _ < <(pack 1700000000 "$dir/b.oci.tar")
read -r later _ < <(pack 1700000001 "$dir/c.oci.tar")
[ "$first" = "$second" ] || fail "two packs of the same input differ: $first and $second"
cmp -s "$dir/a.oci.tar" "$dir/b.oci.tar" || fail "two packs of the same input have the same digest but different archive bytes"
[ "$first" != "$later" ] || fail "another --created time gave the same digest $first"
echo "PASS images-test: packing twice gives the same archive and digest ($first); another created time gives another"

app=$(sed -nE 's/^appVersion: "?([^"]*)"?$/\1/p' charts/quotestream/Chart.yaml)
version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])')
[ "$app" = "$version" ] || fail "charts/quotestream/Chart.yaml appVersion $app (the chart's default image tag) is not the workspace version $version (the tag make images gives)"
echo "PASS images-test: the chart's default image tag is the workspace version ($version)"

if [ "$(id -u)" -ne 0 ] || ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
    echo "images-test: not root or containerd/runc not installed: skipping the import and run check"
    exit 0
fi
out=$(scripts/oci-import-check.sh --run "$dir/a.oci.tar")
echo "$out"
grep -q "uid=65532(nonroot) gid=65532(nonroot)" <<<"$out" || fail "the imported image did not run as nonroot (65532)"
echo "PASS images-test: containerd imported the image and ran it as uid=65532(nonroot)"
