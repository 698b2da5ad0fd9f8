#!/usr/bin/env bash
# System tools the tests need: network namespaces and nft for the partition
# and packet-loss tests (run as root in CI; they skip with a reason otherwise),
# python3 for small in-namespace helpers.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
if [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; then
    apt_install iproute2 nftables python3 || echo "warning: could not install iproute2/nftables; netns tests will skip"
else
    echo "not root and no sudo: netns tests will skip"
fi
