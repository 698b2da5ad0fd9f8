#!/usr/bin/env bash
# Every child manifest the operator renders for examples/*.yaml, and the CRD,
# validates against the Kubernetes OpenAPI schemas offline (kubernetes-validate,
# strict: unknown fields fail). A deliberately broken manifest must fail too,
# so a validator that accepts everything cannot pass this stage.
set -euo pipefail
source scripts/lib/common.sh

K8S_VERSION=1.34.0
pip_install "kubernetes-validate==1.37.0"
kv="$(dirname "$(venv_python)")/kubernetes-validate"

# The same selection as stage 10, so this is a no-op after it (other
# selections resolve features differently and rebuild everything).
cargo build --release --locked -q --workspace --bins
bin=target/release/shardmesh-operator
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$bin" crd > "$out/crd.yaml"
if ! cmp -s "$out/crd.yaml" crds/shardedservice.yaml; then
    echo "crds/shardedservice.yaml is stale: run 'shardmesh-operator crd > crds/shardedservice.yaml'"
    exit 1
fi

rendered=0
for f in examples/*.yaml; do
    grep -q '^kind: ShardedService' "$f" || continue
    "$bin" render "$f" > "$out/children-$(basename "$f")"
    rendered=$((rendered + 1))
done
# The same children with mutual TLS (identity endpoint on): token volume, CA ConfigMap.
"$bin" render examples/bank.yaml \
    --identity-url https://shardmesh-operator.shardmesh-system.svc:8443 \
    > "$out/children-tls-bank.yaml"
grep -q 'serviceAccountToken' "$out/children-tls-bank.yaml" \
    || { echo "render --identity-url produced no projected token"; exit 1; }
[ "$rendered" -ge 2 ] || { echo "expected at least 2 example ShardedServices, rendered $rendered"; exit 1; }

# What an example declares beside its ShardedService (bank.yaml's shared
# claim), and the test harness's PersistentVolume behind that claim.
for f in examples/*.yaml; do
    awk -v pfx="$out/extra-$(basename "$f" .yaml)-" '/^---$/ { n++; next } { print > (pfx n ".yaml") }' "$f"
done
grep -l '^kind: ShardedService' "$out"/extra-*.yaml | xargs -r rm
extras=("$out"/extra-*.yaml e2e/fixtures/*.yaml)
grep -q '^kind: PersistentVolumeClaim' "$out"/extra-bank-*.yaml \
    || { echo "examples/bank.yaml declares no PersistentVolumeClaim"; exit 1; }

"$kv" -k "$K8S_VERSION" --strict --quiet "$out"/children-*.yaml crds/shardedservice.yaml "${extras[@]}"
echo "validated children of $rendered ShardedServices, the CRD and ${#extras[@]} other manifests against Kubernetes $K8S_VERSION"

# Self-check: a field the schema does not know must be rejected.
sed 's/^  podManagementPolicy: Parallel$/  podManagementPolicy: Parallel\n  notAField: 1/' \
    "$out/children-bank.yaml" > "$out/broken.yaml"
if "$kv" -k "$K8S_VERSION" --strict --quiet "$out/broken.yaml" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a manifest with an unknown field"
    exit 1
fi
echo "the validator rejects an unknown field, as it should"
