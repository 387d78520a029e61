#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages when it is missing: Redis and
# PostgreSQL servers (started by the tests themselves on free loopback ports, never as system
# services), and the container runtime of `make images-test` and of the real node (tests/node/:
# containerd, runc, the CNI plugins, iptables; started only by those, the node's only inside
# its own namespaces), headless chromium + chromedriver for the store's page, wrk for the
# query benchmark, promtool for the alerting rules. Idempotent and quiet when everything is there.
set -euo pipefail

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
pg_bindir >/dev/null || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# Debian's containerd 1.6 rather than a v2 built from the Go module proxy: no two-minute build
# in every fresh CI run, and the kubelet v1.37 still supports it (it warns that 1.38 will not).
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Test certificates (CA + server) for the TLS tests of PostgreSQL and Redis (testkit TestCerts).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The store's live page is tested in a real headless browser (store/tests/live_page.rs):
# Debian's chromium, driven through chromedriver.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# The query API rows of `make bench` load the store with wrk (p50/p95/p99).
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# The chart's alerting rules are checked and unit-tested by Prometheus' own rule engine
# (`promtool test rules`, operator/tests/alert_rules.rs): Debian's prometheus ships promtool.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

echo "ensure-deps: installing ${need[*]} from Debian's packages"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "ensure-deps: need root (or sudo) to apt-get install ${need[*]}" >&2
        exit 1
    }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Policy: never start the packaged services; the tests run their own throwaway servers.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "ensure-deps: done"
