#!/usr/bin/env bash
# setup.sh -- install what shoal's build, tests, fuzzing and benchmark need.
#
# Idempotent: asks dpkg which Debian packages are missing and calls
# apt-get update/install only when something is. Runs as root, or through
# sudo otherwise. Debian 12 (bookworm) is the reference platform.
set -euo pipefail

PACKAGES=(
    build-essential      # gcc, make, libc headers
    gcc
    clang                # libFuzzer target (scripts/fuzz.sh)
    libclang-rt-14-dev   # libFuzzer and sanitizer runtimes for clang 14
    cmake
    pkg-config
    libsodium-dev        # Ed25519 identities and signatures
    libprotobuf-c-dev    # wire payload
    protobuf-c-compiler  # protoc-c, run by the build on proto/*.proto
    libev-dev            # the agent's event loop
    libjansson-dev       # HTTP API JSON
    libhttp-parser-dev   # HTTP API request parsing
    libcurl4-openssl-dev # active HTTP health checks (multi-socket API on libev)
    curl                 # README examples
    bind9-dnsutils       # dig: the DNS process tests' client
    prometheus           # promtool check metrics, in the metrics process tests
    python3              # process tests, scripts/bench_membership.py
    serf                 # the benchmark's peer
    iproute2             # ip netns / veth / bridges: the fault suite's network
    nftables             # loss and partitions inside test namespaces
    tcpdump              # capture tests: nothing readable on the wire
    python3-consul       # the Consul-compatibility tests' real client
    unbound              # a real resolver in front of shoal's DNS
    chromium             # the web UI tests' browser (headless)
    chromium-driver      # WebDriver for it
    python3-selenium     # drives chromium from the UI tests
    man-db               # man pages, checked after cmake --install
    bash-completion      # the completion test
    groff-base           # test_install.py: the generated man pages render without warnings
    python3-yaml         # test_deploy.py: reads deploy/kubernetes/*.yaml
    python3-jsonschema   # test_deploy.py: the manifests' schemas (written there, not fetched)
    gcc                  # test_install.py: builds examples/client_example.c via pkg-config
)

missing=()
for p in "${PACKAGES[@]}"; do
    # "ii" = desired install, currently installed; anything else needs work.
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    if [[ "$status" != ii* ]]; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup: all ${#PACKAGES[@]} packages present"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "setup: missing packages (${missing[*]}) and not root, no sudo" >&2
        exit 1
    fi
fi

echo "setup: installing ${missing[*]}"
# env, so that the setting survives sudo's environment reset.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
