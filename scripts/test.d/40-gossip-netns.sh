#!/usr/bin/env bash
# Gossip over real network namespaces (root only; skips with a reason otherwise).
# Five gossip-node processes, each in its own namespace, joined by veth to a
# bridge. 1) nft drops 10 % of gossip packets on one member's link: no member
#    is ever declared dead. 2) A full cut isolates two members: the majority
#    marks them dead and they mark the majority dead. 3) The cut heals: all
#    five are alive everywhere again. Namespaces are removed on exit.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"

skip() { echo "40-gossip-netns: SKIP: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "needs iproute2 (ip)"
command -v nft >/dev/null || skip "needs nftables (nft)"
probe="smgprobe$$"
ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces here"
ip netns del "$probe"

# The same selection as stage 10, so this is a no-op after it.
cargo build -q --release --locked --workspace --bins
bin="$PWD/target/release/gossip-node"

pfx="smg$$"
hub="${pfx}hub"
work=$(mktemp -d)
pids=()
nodes=(1 2 3 4 5)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for i in "${nodes[@]}"; do ip netns del "${pfx}n$i" 2>/dev/null || true; done
    ip netns del "$hub" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Topology: a bridge in a hub namespace, one veth per member namespace.
ip netns add "$hub"
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
for i in "${nodes[@]}"; do
    ns="${pfx}n$i"
    ip netns add "$ns"
    ip link add "${pfx}a$i" type veth peer name "${pfx}b$i"
    ip link set "${pfx}a$i" netns "$ns"
    ip link set "${pfx}b$i" netns "$hub"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "10.77.0.$i/24" dev "${pfx}a$i"
    ip -n "$ns" link set "${pfx}a$i" up
    ip -n "$hub" link set "${pfx}b$i" master br0
    ip -n "$hub" link set "${pfx}b$i" up
done

head -c 32 /dev/urandom | base64 > "$work/keys"
for i in "${nodes[@]}"; do
    seeds=()
    [ "$i" != 1 ] && seeds+=(--seed 10.77.0.1:7946)
    [ "$i" != 2 ] && seeds+=(--seed 10.77.0.2:7946)
    ip netns exec "${pfx}n$i" "$bin" --listen "10.77.0.$i:7946" --pod "n$i" \
        --keyring "$work/keys" --status "$work/n$i" --probe-ms 200 "${seeds[@]}" \
        > "$work/n$i.log" 2>&1 &
    pids+=($!)
done

# count FILE HEALTH: members with that health in a member's view.
count() { [ -f "$1" ] && grep -c " $2 " "$1" || echo 0; }
health_of() { [ -f "$1" ] && awk -v p="$2" '$1 == p { print $2 }' "$1" || true; }
wait_for() {
    local what="$1" timeout="$2"; shift 2
    local t0=$SECONDS
    until "$@"; do
        if (( SECONDS - t0 > timeout )); then
            echo "40-gossip-netns: timed out after ${timeout}s waiting for: $what"
            for i in "${nodes[@]}"; do echo "--- n$i"; cat "$work/n$i" 2>/dev/null; tail -5 "$work/n$i.log"; done
            exit 1
        fi
        sleep 0.2
    done
    echo "40-gossip-netns: $what after $(( SECONDS - t0 ))s"
}
all_alive() {
    for i in "${nodes[@]}"; do [ "$(count "$work/n$i" Alive)" = 5 ] || return 1; done
}
wait_for "5 members alive in every view" 30 all_alive

# 1) 10 % loss of gossip packets, both ways, on n1's link, for 20 s (100 probe periods).
ip netns exec "${pfx}n1" nft -f - <<'NFT'
table inet lossy {
    chain in  { type filter hook input priority 0; udp dport 7946 numgen random mod 10 == 0 drop; }
    chain out { type filter hook output priority 0; udp sport 7946 numgen random mod 10 == 0 drop; }
}
NFT
sleep 20
ip netns exec "${pfx}n1" nft delete table inet lossy
if grep -h '^DEAD' "$work"/n*.log; then
    echo "40-gossip-netns: FAIL: a live member was declared dead under 10 % loss"
    exit 1
fi
echo "40-gossip-netns: 10 % loss on n1 for 20 s: no false deaths"
all_alive || { echo "40-gossip-netns: FAIL: not all alive after the loss phase"; exit 1; }

# 2) Full cut: n4 and n5 cannot reach n1..n3.
for i in 4 5; do
    ip netns exec "${pfx}n$i" nft -f - <<'NFT'
table inet cut {
    chain in  { type filter hook input priority 0; ip saddr { 10.77.0.1, 10.77.0.2, 10.77.0.3 } drop; }
    chain out { type filter hook output priority 0; ip daddr { 10.77.0.1, 10.77.0.2, 10.77.0.3 } drop; }
}
NFT
done
split_seen() {
    for i in 1 2 3; do
        for p in n4 n5; do [ "$(health_of "$work/n$i" "$p")" = Dead ] || return 1; done
    done
    for i in 4 5; do
        for p in n1 n2 n3; do [ "$(health_of "$work/n$i" "$p")" = Dead ] || return 1; done
    done
}
wait_for "majority marks the minority dead (and vice versa)" 30 split_seen

# 3) Heal.
for i in 4 5; do ip netns exec "${pfx}n$i" nft delete table inet cut; done
wait_for "all five alive everywhere after the cut healed" 60 all_alive
echo "40-gossip-netns: 3 passed, 0 failed"
