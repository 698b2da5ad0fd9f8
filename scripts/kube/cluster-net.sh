# shellcheck shell=bash
# Cluster networking for scripts/kube/cluster in netns mode (sourced by it,
# after the control plane is up, inside the node netns): the node agent,
# kube-proxy and CoreDNS. Uses the cluster script's helpers (cert,
# kubeconfig, start, wait_for, log) and variables (dir, pki, BIN, root).
#
# Topology (one node, `node-1`, all inside the node netns):
#   10.244.0.1/24 on bridge smbr0   node address, pods' gateway, apiserver :6443, CoreDNS :53
#   10.244.0.0/24                   pod CIDR of node-1 (the agent's per-pod netns + veth)
#   10.96.0.0/16                    Service CIDR: kubernetes 10.96.0.1:443, kube-dns 10.96.0.10:53
#   127.0.0.1 (the netns's own)     etcd, controller-manager, scheduler, kube-proxy
#                                   healthz :10256 / metrics :10249, CoreDNS health :8080 / ready :8181

node_name=node-1
pod_cidr=10.244.0.0/24
cluster_cidr=10.244.0.0/16
gateway=10.244.0.1
cluster_dns=10.96.0.10
cluster_domain=cluster.local

# node_agent_bin: the agent binary (SHARDMESH_NODE_AGENT, else release, else debug).
node_agent_bin() {
    local b
    for b in "${SHARDMESH_NODE_AGENT:-}" "$root/target/release/shardmesh-node-agent" \
        "$root/target/debug/shardmesh-node-agent"; do
        [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }
    done
    return 1
}

kube_net_up() {
    local t0 kc=(--kubeconfig "$dir/admin.kubeconfig")
    t0=$(date +%s.%N)
    # Identities: the agent as the node (Node authorizer + system:nodes),
    # kube-proxy as system:kube-proxy (bound to system:node-proxier by the
    # bootstrap policy), CoreDNS as system:coredns (the ClusterRole below).
    cert "$node_name" "system:node:$node_name" system:nodes ca "IP:$gateway"
    cert kube-proxy system:kube-proxy "" ca
    cert coredns system:coredns "" ca
    kubeconfig "$dir/$node_name.kubeconfig" "$node_name"
    kubeconfig "$dir/kube-proxy.kubeconfig" kube-proxy
    kubeconfig "$dir/coredns.kubeconfig" coredns

    # CoreDNS's read access, and the kube-dns Service. The Service has no
    # selector: CoreDNS is a process of the node netns, not a pod, so its
    # EndpointSlice is written here (managed-by this script, which the
    # EndpointSlice controllers leave alone) and points at 10.244.0.1:53.
    # kube-proxy then routes 10.96.0.10:53 there like any Service, from pods
    # and from the node netns alike.
    "$BIN/kubectl" "${kc[@]}" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $cluster_dns
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-$node_name
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: scripts.shardmesh.io
addressType: IPv4
endpoints:
- addresses: [$gateway]
  conditions: {ready: true}
  nodeName: $node_name
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
YAML

    local agent
    if agent=$(node_agent_bin); then
        mkdir -p "$dir/node"
        start shardmesh-node-agent "$agent" --kubeconfig "$dir/$node_name.kubeconfig" \
            --node-name "$node_name" --pod-cidr "$pod_cidr" --bridge smbr0 --gateway "$gateway" \
            --cluster-dns "$cluster_dns" --cluster-domain "$cluster_domain" --state-dir "$dir/node"
        # kube-proxy waits up to 30 s for its Node to have addresses:
        # let the agent register it first.
        wait_for "Node $node_name registered with addresses" 60 sh -c "'$BIN/kubectl' --kubeconfig '$dir/admin.kubeconfig' \
            get node $node_name -o jsonpath='{.status.addresses[*].address}' | grep -q ."
    else
        # No agent: a placeholder Node (unschedulable) so kube-proxy finds
        # its Node at once; pods stay Pending.
        log "no shardmesh-node-agent binary (cargo build --release -p shardmesh-e2e): pods will stay Pending"
        "$BIN/kubectl" "${kc[@]}" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $node_name
  annotations: {shardmesh.io/placeholder: "no node agent runs"}
spec:
  podCIDR: $pod_cidr
  unschedulable: true
YAML
        "$BIN/kubectl" "${kc[@]}" patch node "$node_name" --subresource status --type merge \
            -p "{\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$gateway\"}]}}" >/dev/null
    fi

    # kube-proxy, nftables mode.
    # masqueradeAll: pod A -> ClusterIP -> pod B on the same bridge. A's
    # packet reaches the node netns's IP layer (A's gateway) and is DNATed to
    # B; without SNAT, B answers A directly across the bridge (bridged frames
    # never meet conntrack: scripts/kube/netns turns br_netfilter's hook off
    # in the node netns), so A gets a reply from B's IP to a connection it
    # opened to the ClusterIP and drops it. With SNAT to 10.244.0.1, B's reply
    # comes back through the node netns and conntrack undoes both
    # translations; a pod reaching itself through its own Service (hairpin)
    # works the same way, without hairpin mode on the bridge ports.
    # Measured: without it every pod -> Service -> pod connection timed out;
    # with it all succeed (kube_net's cluster_ip test covers both paths).
    # conntrack: 0 leaves the kernel's values alone; nf_conntrack_max is not
    # writable outside the initial netns. oomScoreAdj 0: no host tuning.
    cat >"$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $dir/kube-proxy.kubeconfig
hostnameOverride: $node_name
bindAddress: $gateway
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
mode: nftables
nftables:
  masqueradeAll: true
detectLocalMode: ClusterCIDR
clusterCIDR: $cluster_cidr
nodePortAddresses: [$gateway/32]
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
    start kube-proxy "$BIN/kube-proxy" --config "$dir/kube-proxy.yaml"

    # CoreDNS: the kubernetes plugin for cluster.local (Services, headless
    # Services incl. not-ready addresses when publishNotReadyAddresses,
    # StatefulSet pod hostnames, `pods verified` A records) and the reverse
    # zones; any other name is NXDOMAIN at once (the netns has no upstream).
    # Two server blocks because plugin order is CoreDNS's, not the file's:
    # `template` would answer before `kubernetes` in one block.
    # No cache: answers follow the API within the informer's latency.
    cat >"$dir/Corefile" <<COREFILE
$cluster_domain:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $gateway
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes $cluster_domain in-addr.arpa ip6.arpa {
        kubeconfig $dir/coredns.kubeconfig shardmesh
        pods verified
        ttl 5
    }
}
.:53 {
    bind $gateway
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
COREFILE
    start coredns "$BIN/coredns" -conf "$dir/Corefile"

    # /livez, not /healthz: healthz also wants the Node to exist.
    wait_for kube-proxy 60 curl -sf http://127.0.0.1:10256/livez
    wait_for coredns 60 curl -sf http://127.0.0.1:8181/ready
    # kube-proxy has programmed the kube-dns Service once its chain exists.
    wait_for "kube-proxy rules for kube-dns" 60 sh -c \
        "nft list table ip kube-proxy 2>/dev/null | grep -q 'kube-system/kube-dns/udp/dns'"
    if pid_of shardmesh-node-agent >/dev/null; then
        wait_for "Node $node_name Ready" 60 sh -c "'$BIN/kubectl' --kubeconfig '$dir/admin.kubeconfig' get node $node_name \
            -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
    fi
    log "node networking up in $(python3 -c "import time; print(round(time.time() - $t0, 1))")s" \
        "(agent: $(pid_of shardmesh-node-agent >/dev/null && echo running || echo none), kube-proxy nftables, CoreDNS at $cluster_dns)"
}
