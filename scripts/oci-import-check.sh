#!/usr/bin/env bash
# Imports OCI image-layout archives (scripts/oci-image.py) into a private containerd, the way a
# node without a registry gets them (`ctr -n k8s.io images import`), and checks that each one
# is listed under the name in its index.json with its manifest digest and that its content is
# complete and unpacks. With --run, also starts a container from each (runc, as the image's
# user) and checks that it exits 0, printing its first line of output:
#
#   scripts/oci-import-check.sh [--run | --run-args 'ARGS...'] FILE.oci.tar...
#
# --run runs the image's entrypoint and command; --run-args runs its entrypoint with ARGS
# instead of its command (e.g. --run-args --version).
#
# The containerd is this script's own (root, state and socket under a temp dir, CRI plugin off)
# and is stopped on exit; nothing touches a system containerd. Needs root and Debian's
# containerd package (containerd, ctr, runc).
set -euo pipefail

run=no run_args=()
case "${1:-}" in
    --run) run=yes; shift ;;
    --run-args) run=yes; read -r -a run_args <<<"$2"; shift 2 ;;
esac
[ $# -gt 0 ] || { echo "usage: $0 [--run | --run-args ARGS] FILE.oci.tar..." >&2; exit 2; }

dir=$(mktemp -d /tmp/oci-import.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

sock=$dir/containerd.sock
cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
pid=$!
ctr() { command ctr --address "$sock" --namespace k8s.io "$@"; }
for _ in $(seq 100); do
    ctr version >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/containerd.log" >&2; echo "FAIL oci-import-check: containerd did not start" >&2; exit 1; }
    sleep 0.1
done

# The name and digest an archive's index.json announces, and the image's entrypoint.
describe() {
    python3 -c '
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    blob = lambda digest: json.load(tar.extractfile("blobs/sha256/" + digest.split(":")[1]))
    m = json.load(tar.extractfile("index.json"))["manifests"][0]
    config = blob(blob(m["digest"])["config"]["digest"])["config"]
print(m["annotations"]["io.containerd.image.name"], m["digest"], " ".join(config["Entrypoint"]))
' "$1"
}

n=0
for archive in "$@"; do
    read -r name digest entrypoint < <(describe "$archive")
    ctr images import "$archive" >/dev/null
    listed=$(ctr images ls | awk -v n="$name" '$1 == n {print $3}')
    if [ "$listed" != "$digest" ]; then
        ctr images ls >&2
        echo "FAIL oci-import-check: $archive: expected $name at $digest, containerd lists '${listed}'" >&2
        exit 1
    fi
    ctr images check "name==$name" | grep -q complete || { echo "FAIL oci-import-check: $name is incomplete" >&2; exit 1; }
    msg="imported as $name ($digest)"
    if [ "$run" = yes ]; then
        n=$((n + 1))
        # ctr run's arguments replace entrypoint and command alike.
        cmd=()
        if [ ${#run_args[@]} -gt 0 ]; then read -r -a cmd <<<"$entrypoint"; cmd+=("${run_args[@]}"); fi
        if ! out=$(ctr run --rm "$name" "oci-import-check-$n" "${cmd[@]}" 2>&1); then
            echo "$out" >&2
            echo "FAIL oci-import-check: $name did not run" >&2
            exit 1
        fi
        msg="$msg, ran ${cmd[*]:-its entrypoint and command}${out:+: ${out%%$'\n'*}}"
    fi
    echo "PASS oci-import-check: $archive $msg"
done
