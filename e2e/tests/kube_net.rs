//! Cluster networking of the Kubernetes-with-pods suite, as pods see it:
//! CoreDNS answering `*.svc.cluster.local` from Services and EndpointSlices
//! (a ClusterIP Service, a headless Service with not-ready addresses
//! published, StatefulSet-style pod hostnames, pod A records,
//! `kubernetes.default`), kube-proxy (nftables) routing a ClusterIP to
//! backends from the node netns and from pods on the same bridge (the
//! masquerade path), and in-cluster API access from a pod's netns with a
//! ServiceAccount token at `https://kubernetes.default.svc`.
//!
//! Runs inside the node netns of `scripts/kube/cluster` in netns mode
//! (scripts/test.d/65-kube-pods.sh: `SHARDMESH_KUBE_NETNS`,
//! `SHARDMESH_KUBE_E2E=1`, root); skips with the reason otherwise. Pods are
//! made by hand ([`handpod`]) so this does not depend on the node agent.

#[path = "kube_net/handpod.rs"]
mod handpod;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use handpod::Sandbox;
use shardmesh_e2e::dns::{self, NXDOMAIN};
use shardmesh_e2e::kube::ControlPlane;

const KUBE_DNS: &str = "10.96.0.10:53";

/// The control plane, or why this test cannot run here.
fn cluster() -> Result<ControlPlane, String> {
    let Ok(ns) = std::env::var("SHARDMESH_KUBE_NETNS") else {
        return Err("SHARDMESH_KUBE_NETNS is not set (scripts/test.d/65-kube-pods.sh runs this in the node netns)".into());
    };
    if !shardmesh_e2e::is_root() {
        return Err("needs root (network namespaces)".into());
    }
    let here = Command::new("ip")
        .args(["netns", "identify", &std::process::id().to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if here != ns {
        return Err(format!(
            "not inside the node netns {ns} (ip netns exec {ns} ...)"
        ));
    }
    ControlPlane::for_test()
}

macro_rules! cluster_or_skip {
    () => {
        match cluster() {
            Ok(cp) => cp,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

/// `kubectl apply` of a YAML text.
fn apply(cp: &ControlPlane, yaml: &str) {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl().args(args).output().expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace and a Node of the test's own for hand-made pods (the
/// EndpointSlice controller skips pods whose Node does not exist); never
/// schedulable. Dropping it deletes both (without waiting).
struct Scope<'a> {
    cp: &'a ControlPlane,
    ns: String,
    node: String,
}

impl<'a> Scope<'a> {
    fn new(cp: &'a ControlPlane, name: &str) -> Self {
        let scope = Scope {
            cp,
            ns: format!("kube-net-{name}"),
            node: format!("kube-net-{name}"),
        };
        let _ = cp
            .kubectl()
            .args([
                "delete",
                "namespace",
                &scope.ns,
                "--wait=true",
                "--timeout=60s",
            ])
            .output();
        apply(
            cp,
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\nspec:\n  unschedulable: true\n  taints: [{{key: shardmesh.io/kube-net-test, effect: NoSchedule}}]\n",
                ns = scope.ns,
                node = scope.node
            ),
        );
        scope
    }

    /// A Pod object for a hand-made pod, bound to the test Node, with the
    /// status a kubelet would write (Running, its IP, Ready or not).
    fn pod(&self, name: &str, ip: Ipv4Addr, labels: &str, extra_spec: &str, ready: bool) {
        apply(
            self.cp,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  nodeName: {node}\n  tolerations: [{{operator: Exists}}]\n{extra_spec}  containers:\n  - name: app\n    image: shardmesh.test/hand-made\n    ports: [{{name: http, containerPort: 8080}}]\n",
                ns = self.ns,
                node = self.node
            ),
        );
        let status = if ready { "True" } else { "False" };
        let now = "2026-01-01T00:00:00Z";
        let patch = format!(
            r#"{{"status":{{"phase":"Running","hostIP":"10.244.0.1","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"startTime":"{now}","conditions":[{{"type":"Ready","status":"{status}","lastTransitionTime":"{now}"}},{{"type":"ContainersReady","status":"{status}","lastTransitionTime":"{now}"}}]}}}}"#
        );
        kubectl(
            self.cp,
            &[
                "patch",
                "pod",
                name,
                "-n",
                &self.ns,
                "--subresource",
                "status",
                "--type",
                "merge",
                "-p",
                &patch,
            ],
        );
    }

    fn cluster_ip(&self, svc: &str) -> Ipv4Addr {
        let ip = kubectl(
            self.cp,
            &[
                "get",
                "service",
                svc,
                "-n",
                &self.ns,
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        );
        ip.trim()
            .parse()
            .unwrap_or_else(|e| panic!("ClusterIP of {svc}: {ip:?}: {e}"))
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        let _ = self
            .cp
            .kubectl()
            .args(["delete", "namespace", &self.ns, "--wait=false"])
            .output();
        let _ = self
            .cp
            .kubectl()
            .args(["delete", "node", &self.node, "--wait=false"])
            .output();
    }
}

/// Polls the cluster DNS until `name` answers `want` (rcode, sorted
/// addresses); panics with the last answer after 30 s.
fn expect_dns(name: &str, rcode: u8, want: &[Ipv4Addr]) {
    let server: SocketAddr = KUBE_DNS.parse().expect("kube-dns address");
    let mut want = want.to_vec();
    want.sort();
    let start = Instant::now();
    let mut last = Err(String::new());
    let ok = shardmesh_e2e::poll(Duration::from_secs(30), || {
        last = dns::query_a(server, name, Duration::from_secs(2));
        matches!(&last, Ok(a) if a.rcode == rcode && a.addrs == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "{name}: wanted rcode {rcode} {want:?} from {KUBE_DNS}, last answer {last:?}"
    );
    eprintln!(
        "dns: {name} -> rcode {rcode} {want:?} after {:?}",
        start.elapsed()
    );
}

#[test]
fn dns_answers_services_headless_not_ready_pods_and_kubernetes_default() {
    let cp = cluster_or_skip!();
    let scope = Scope::new(&cp, "dns");
    let ns = scope.ns.clone();
    let (ready, unready) = (
        Ipv4Addr::new(10, 244, 0, 201),
        Ipv4Addr::new(10, 244, 0, 202),
    );
    let sts = "  hostname: HOST\n  subdomain: gossip\n";
    scope.pod(
        "hand-0",
        ready,
        "app: hand",
        &sts.replace("HOST", "hand-0"),
        true,
    );
    scope.pod(
        "hand-1",
        unready,
        "app: hand",
        &sts.replace("HOST", "hand-1"),
        false,
    );
    apply(
        &cp,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: hand}}\n  ports: [{{port: 80, targetPort: http}}]\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: gossip, namespace: {ns}}}\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector: {{app: hand}}\n  ports: [{{name: gossip, port: 7946}}]\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: ready-only, namespace: {ns}}}\nspec:\n  clusterIP: None\n  selector: {{app: hand}}\n  ports: [{{name: x, port: 7946}}]\n"
        ),
    );
    let web = scope.cluster_ip("web");

    expect_dns(
        "kubernetes.default.svc.cluster.local",
        0,
        &[Ipv4Addr::new(10, 96, 0, 1)],
    );
    expect_dns(
        "kube-dns.kube-system.svc.cluster.local",
        0,
        &[Ipv4Addr::new(10, 96, 0, 10)],
    );
    expect_dns(&format!("web.{ns}.svc.cluster.local"), 0, &[web]);
    // The gossip seeds' case: a headless Service publishing not-ready
    // addresses answers with every pod, ready or not ...
    expect_dns(
        &format!("gossip.{ns}.svc.cluster.local"),
        0,
        &[ready, unready],
    );
    // ... and one that does not, with the ready ones only.
    expect_dns(&format!("ready-only.{ns}.svc.cluster.local"), 0, &[ready]);
    // StatefulSet-style pod names under the headless Service.
    expect_dns(
        &format!("hand-1.gossip.{ns}.svc.cluster.local"),
        0,
        &[unready],
    );
    // `pods verified`: a pod's A record exists only for a pod with that IP.
    expect_dns(&format!("10-244-0-201.{ns}.pod.cluster.local"), 0, &[ready]);
    expect_dns(
        &format!("10-244-0-249.{ns}.pod.cluster.local"),
        NXDOMAIN,
        &[],
    );
    expect_dns(&format!("nope.{ns}.svc.cluster.local"), NXDOMAIN, &[]);
    // No upstream inside the netns: anything else is NXDOMAIN at once.
    expect_dns("example.com", NXDOMAIN, &[]);

    // A pod that turns ready appears in the ready-only answer.
    scope.pod(
        "hand-1",
        unready,
        "app: hand",
        &sts.replace("HOST", "hand-1"),
        true,
    );
    expect_dns(
        &format!("ready-only.{ns}.svc.cluster.local"),
        0,
        &[ready, unready],
    );
}

/// Sends GET /whoami to `target` until every name in `want` answered (at
/// most 60 tries): kube-proxy spreads connections over the endpoints.
fn reach_all(what: &str, want: &BTreeSet<String>, mut get: impl FnMut() -> Result<String, String>) {
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    for _ in 0..60 {
        match get() {
            Ok(body) => {
                seen.insert(body.trim().to_string());
            }
            Err(e) => errors.push(e),
        }
        if &seen == want {
            eprintln!("{what}: reached {seen:?} ({} errors)", errors.len());
            return;
        }
    }
    panic!("{what}: reached {seen:?}, wanted {want:?}; errors: {errors:?}");
}

#[test]
fn cluster_ip_routes_to_backends_from_the_node_and_from_pods_on_the_bridge() {
    let cp = cluster_or_skip!();
    let scope = Scope::new(&cp, "svc");
    let ns = scope.ns.clone();
    let mut backends = Vec::new();
    for (i, idx) in [(0, 10u8), (1, 11)] {
        let mut sb = Sandbox::create(&format!("echo-{i}"), &ns, idx).expect("sandbox");
        sb.serve(8080).expect("http server");
        scope.pod(&sb.name, sb.ip, "app: echo", "", true);
        backends.push(sb);
    }
    let client = Sandbox::create("client", &ns, 12).expect("sandbox");
    scope.pod(&client.name, client.ip, "app: client", "", true);
    apply(
        &cp,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: echo, namespace: {ns}}}\nspec:\n  selector: {{app: echo}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n"
        ),
    );
    let vip = scope.cluster_ip("echo");
    let want: BTreeSet<String> = backends.iter().map(|b| b.name.clone()).collect();

    // kube-proxy programs the Service once its EndpointSlice lists both pods.
    let addr = format!("{vip}:80");
    let routed = shardmesh_e2e::poll(Duration::from_secs(30), || {
        let r =
            shardmesh_e2e::http::request(&addr, "GET", "/whoami", &[], "", Duration::from_secs(2));
        (r.status == 200).then_some(())
    });
    assert!(
        routed.is_some(),
        "ClusterIP {addr} never answered from the node netns"
    );

    reach_all("node netns -> ClusterIP", &want, || {
        let r =
            shardmesh_e2e::http::request(&addr, "GET", "/whoami", &[], "", Duration::from_secs(2));
        if r.status == 200 {
            Ok(r.body)
        } else {
            Err(format!("status {}", r.status))
        }
    });
    // A pod on the same bridge, by the Service's name through CoreDNS and the
    // pod's search path: replies must come back through the node netns
    // (kube-proxy's masqueradeAll), not straight across the bridge.
    reach_all("client pod -> echo (by name)", &want, || {
        client.curl("http://echo/whoami")
    });
    // A backend calling its own Service: one of the answers is itself (hairpin).
    reach_all("backend pod -> its own Service", &want, || {
        backends[0].curl(&format!("http://echo.{ns}.svc.cluster.local/whoami"))
    });
    // Through the pod's gateway, the node netns answers too (10.244.0.1 is the node).
    let out = client.sh("getent hosts kubernetes.default");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("10.96.0.1 "),
        "getent hosts kubernetes.default in a pod: {out:?}"
    );
}

#[test]
fn in_cluster_api_access_from_a_pod_with_a_service_account_token() {
    let cp = cluster_or_skip!();
    let scope = Scope::new(&cp, "api");
    let ns = scope.ns.clone();
    apply(
        &cp,
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: {ns}}}\n"
        ),
    );
    let pod = Sandbox::create("api-client", &ns, 20).expect("sandbox");
    // A TokenRequest for the ServiceAccount, as the projected token volume gets.
    let token = kubectl(
        &cp,
        &["create", "token", "reader", "-n", &ns, "--duration", "10m"],
    );
    let ca = cp.pki().join("ca.crt");
    let url = "https://kubernetes.default.svc/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let review = pod
        .curl(&format!(
            "--fail --cacert '{}' -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -X POST -d '{body}' {url}",
            ca.display(),
            token.trim()
        ))
        .unwrap_or_else(|e| panic!("in-cluster API call from the pod failed: {e}"));
    let json: serde_json::Value = serde_json::from_str(&review).expect("SelfSubjectReview JSON");
    assert_eq!(
        json["status"]["userInfo"]["username"],
        format!("system:serviceaccount:{ns}:reader"),
        "{review}"
    );
    // The apiserver's certificate names the Service (curl verified it
    // against the cluster CA above); without a token the API refuses.
    let anonymous = pod.curl(&format!(
        "-o /dev/null -w '%{{http_code}}' --cacert '{}' https://kubernetes.default.svc/api/v1/namespaces/{ns}/pods",
        ca.display()
    ));
    assert!(
        matches!(anonymous.as_deref(), Ok("401") | Ok("403")),
        "anonymous list pods: {anonymous:?}"
    );
}
