#!/usr/bin/env bash
# The OCI images (scripts/images/build): built twice to the same bytes, read
# back with skopeo (as a push would), unpacked with umoci, and each image's
# entrypoint run from its own root filesystem in fresh namespaces as the
# image's user (scripts/images/sandbox): --version/--help, then a short real
# start: the sidecar and the bank together as one pod (a request through the
# sidecar's outbound listener lands in the bank, which writes its shard log as
# uid 65532), the operator's `crd` and `render`, tally serving HTTP/2. An image
# missing a library must fail to start, so a sandbox that runs host binaries
# cannot pass. Root only (namespaces, chroot, umoci); skips with a reason.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh

skip() { echo "35-images: SKIP: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (umoci writes root-owned files; namespaces and chroot)"
command -v unshare >/dev/null || skip "needs unshare (util-linux)"
unshare --mount --pid --net --fork true 2>/dev/null || skip "cannot create namespaces here"
apt_install umoci skopeo jq curl iproute2 ca-certificates

passed=0
failed=0
ok() { echo "35-images: ok: $*"; passed=$((passed + 1)); }
bad() { echo "35-images: FAIL: $*"; failed=$((failed + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

version=$(awk '/^\[workspace.package\]/{p=1;next} /^\[/{p=0} p && $1=="version"{gsub(/"/,"",$3); print $3; exit}' Cargo.toml)
work=$(mktemp -d "${TMPDIR:-/tmp}/shardmesh-images-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
images=(sidecar operator bank tally)

t0=$(date +%s)
scripts/images/build "${images[@]}"
echo "35-images: built in $(( $(date +%s) - t0 ))s"

# 1. Reproducible: a second build from the same binaries gives the same bytes.
SHARDMESH_IMAGES_OUT="$work/again" SHARDMESH_IMAGES_NO_CARGO=1 scripts/images/build "${images[@]}" >/dev/null
for n in "${images[@]}"; do
    check "$n: a second build is byte-identical" cmp -s "target/images/$n-$version.oci.tar" "$work/again/$n-$version.oci.tar"
done

# 2. Each archive through skopeo (what `skopeo copy ... docker://` reads),
#    then unpacked into a runtime bundle by umoci.
for n in "${images[@]}"; do
    archive="target/images/$n-$version.oci.tar"
    skopeo copy -q "oci-archive:$archive" "oci:$work/$n.layout:$version"
    umoci unpack --image "$work/$n.layout:$version" "$work/bundles/$n" >/dev/null
    cfg=$(skopeo inspect --config "oci-archive:$archive")
    exe=$(jq -r '.config.Entrypoint | join(" ")' <<<"$cfg")
    check "$n: config User 65532:65532" [ "$(jq -r .config.User <<<"$cfg")" = "65532:65532" ]
    check "$n: Entrypoint $exe is in the image" [ -x "$work/bundles/$n/rootfs$exe" ]
    check "$n: version label $version" [ "$(jq -r '.config.Labels["org.opencontainers.image.version"]' <<<"$cfg")" = "$version" ]
    check "$n: title and source labels" [ "$(jq -r '.config.Labels["org.opencontainers.image.title"]' <<<"$cfg"),$(jq -r '.config.Labels["org.opencontainers.image.source"]' <<<"$cfg")" = "$n,https://github.com/shardmesh/shardmesh" ]
    # Nothing but the binary, its libraries and loader, a few /etc files.
    extra=$(cd "$work/bundles/$n/rootfs" && find . -type f -o -type l | sed 's|^\.||' |
        grep -Ev '^/usr/local/bin/[^/]+$|^/lib(64)?/([^/]+/)?(ld-linux[^/]*|lib[^/]+\.so[^/]*)$|^/etc/(passwd|group|nsswitch\.conf|ssl/certs/ca-certificates\.crt)$' || true)
    check "$n: no files beyond binary, libraries and /etc basics${extra:+ (extra: $extra)}" [ -z "$extra" ]
    owners=$(find "$work/bundles/$n/rootfs" ! -user 0 | head -3)
    check "$n: every file is owned by root" [ -z "$owners" ]
done
check "only the operator carries CA certificates" eval '[ -f "$work/bundles/operator/rootfs/etc/ssl/certs/ca-certificates.crt" ] \
    && [ ! -e "$work/bundles/sidecar/rootfs/etc/ssl" ] && [ ! -e "$work/bundles/bank/rootfs/etc/ssl" ]' 

# 3. The images' tags as the manifests and the chart use them: the examples
#    name the workspace version, the chart defaults to its appVersion (which
#    50-helm.sh keeps equal to the workspace version).
for f in examples/*.yaml; do
    for ref in $(sed -n 's/^ *image: *"\{0,1\}\(ghcr.io\/shardmesh\/[^" ]*\)"\{0,1\}.*/\1/p' "$f"); do
        check "$f names $ref at the workspace version" [ "${ref##*:}" = "$version" ]
        check "$f: $ref is an image this script builds" [ -f "target/images/$(basename "${ref%:*}")-$version.oci.tar" ]
    done
done
for n in sidecar operator; do
    check "charts/shardmesh/values.yaml points at ghcr.io/shardmesh/$n" grep -q "repository: ghcr.io/shardmesh/$n\$" charts/shardmesh/values.yaml
done

# 4. Run each entrypoint from its own root filesystem (scripts/images/sandbox).
sandbox() { scripts/images/sandbox "$@"; }
out="$work/out"
mkdir -p "$out"
for n in sidecar operator; do
    check "$n --version prints $version" eval 'sandbox "image_run $n --version > $out/$n.version" "$work/bundles/$n" \
        && grep -q " $version\$" "$out/$n.version"'
    check "$n --help prints usage" eval 'sandbox "image_run $n --help > $out/$n.help 2>&1" "$work/bundles/$n" \
        && grep -qi usage "$out/$n.help"' 
done
# bank and tally answer --help with their usage and exit status 2.
for n in bank tally; do
    check "$n --help prints usage" eval 'sandbox "image_run $n --help > $out/$n.help 2>&1 || [ \$? = 2 ]" "$work/bundles/$n" \
        && grep -q "usage: $n" "$out/$n.help"' 
done

# The operator: the CRD and a render of the example, from inside the image.
cp examples/bank.yaml "$work/bundles/operator/rootfs/tmp/bank.yaml"
check "operator crd prints the CustomResourceDefinition" eval 'sandbox "image_run operator crd > $out/crd.yaml" "$work/bundles/operator" \
    && cmp -s "$out/crd.yaml" crds/shardedservice.yaml'
check "operator render /tmp/bank.yaml prints a StatefulSet" eval 'sandbox "image_run operator render /tmp/bank.yaml > $out/render.yaml" "$work/bundles/operator" \
    && grep -q "^kind: StatefulSet" "$out/render.yaml"' 

# A pod: the sidecar and the bank (standalone: it owns every shard) in one
# network namespace; a keyed request through the sidecar's outbound listener.
mkdir -p "$work/bundles/sidecar/rootfs/etc/shardmesh"
cat > "$work/bundles/sidecar/rootfs/etc/shardmesh/sidecar.yaml" <<'YAML'
pod: { name: bank-0, service: bank }
app: { address: "127.0.0.1:8080" }
services:
  - name: bank
    shards: 4
    routing: { keyFromPath: "/accounts/{key}" }
    members:
      - { name: bank-0, inbound: "127.0.0.1:7401", admin: "127.0.0.1:7402" }
membership:
  gossip: { enabled: false }
shutdownGraceMs: 1000
YAML
# shellcheck disable=SC2016 # runs inside the sandbox
pod='
image_start bank '"$out"'/bank.log --standalone 4 --data /tmp/bank --listen 127.0.0.1:8080
bank_pid=$IMAGE_PID
image_start sidecar '"$out"'/sidecar.log --config /etc/shardmesh/sidecar.yaml
sidecar_pid=$IMAGE_PID
wait_http http://127.0.0.1:7402/live 15
wait_http http://127.0.0.1:7402/ready 15
wait_http http://127.0.0.1:8080/accounts/probe 15
curl -fsS -D '"$out"'/deposit.headers -H "x-shardmesh-service: bank" -H "x-shardmesh-idempotent: true" \
    -H "content-type: application/json" -d "{\"amount\": 42, \"op\": \"image-test-1\"}" \
    http://127.0.0.1:7400/accounts/alice/deposit > '"$out"'/deposit.json
curl -fsS -H "x-shardmesh-service: bank" http://127.0.0.1:7400/accounts/alice > '"$out"'/balance.json
curl -fsS http://127.0.0.1:7402/metrics > '"$out"'/metrics.txt
for p in $bank_pid $sidecar_pid; do grep -E "^(Name|Uid|CapEff)" /proc/$p/status; done > '"$out"'/status.txt
'
check "sidecar + bank images as one pod: /live, /ready, a deposit through the mesh" \
    sandbox "$pod" "$work/bundles/sidecar" "$work/bundles/bank"
check "the deposit's answer came from the bank: balance 42" grep -q '"balance":42' "$out/balance.json"
check "the mesh served it (x-shardmesh-served-by: bank-0)" grep -qi '^x-shardmesh-served-by: bank-0' "$out/deposit.headers"
check "the sidecar counted it in /metrics" grep -q '^shardmesh_requests_total{.*service="bank"' "$out/metrics.txt"
check "both processes ran as uid 65532 with no capabilities" [ \
    "$(grep -c $'^Uid:\t65532\t65532\t65532\t65532' "$out/status.txt" || true),$(grep -c $'^CapEff:\t0000000000000000' "$out/status.txt" || true)" = "2,2" ]
logs=$(find "$work/bundles/bank/rootfs/tmp/bank" -name 'shard-*.log' -user 65532 2>/dev/null | wc -l)
check "the bank wrote its shard logs as 65532 inside its own rootfs ($logs files)" [ "$logs" -ge 1 ]

# tally: a gRPC server answers HTTP/2 (an unknown method gets a gRPC status).
# shellcheck disable=SC2016
check "tally serves HTTP/2 gRPC" sandbox '
image_start tally /dev/null --listen 127.0.0.1:8080
for _ in $(seq 100); do
    curl -sS --http2-prior-knowledge -o /dev/null -D '"$out"'/tally.headers -X POST \
        -H "content-type: application/grpc" --data-binary "" \
        http://127.0.0.1:8080/no.Such/Method 2>/dev/null && break
    sleep 0.1
done
grep -qi "^grpc-status:" '"$out"'/tally.headers
' "$work/bundles/tally"

# 5. Self-check: without one of its libraries an image must not start.
cp -a "$work/bundles/bank" "$work/bundles/broken"
rm "$work/bundles/broken/rootfs/lib/x86_64-linux-gnu/libgcc_s.so.1" 2>/dev/null \
    || rm "$(find "$work/bundles/broken/rootfs/lib" -name 'libgcc_s.so*' | head -1)"
if sandbox "image_run broken --help > $out/broken.txt 2>&1" "$work/bundles/broken"; then
    bad "an image without libgcc_s started anyway: the sandbox does not isolate"
elif grep -q 'error while loading shared libraries' "$out/broken.txt"; then
    ok "an image without libgcc_s fails to load, as it must"
else
    bad "the broken image failed for another reason: $(head -3 "$out/broken.txt")"
fi

for n in "${images[@]}"; do
    printf '35-images: %-9s %6d KiB  target/images/%s-%s.oci.tar\n' "$n" \
        $(( $(stat -c %s "target/images/$n-$version.oci.tar") / 1024 )) "$n" "$version"
done
echo "35-images: $passed passed, $failed failed"
[ "$failed" = 0 ]
