//! The operator against the real API server (`scripts/kube/cluster`), with
//! the permissions of the Helm chart: the chart is installed with the real
//! Helm CLI and `shardmesh-operator run` authenticates with a TokenRequest
//! token of the chart's ServiceAccount, so the chart's ClusterRole is what is
//! tested. One test, in steps that build on each other (printed as they go):
//!
//! 1. the CRD applies with no warning (no unknown `format`s);
//! 2. every `examples/*.yaml` ShardedService is reconciled into its children,
//!    each with an owner reference, and a status with conditions and
//!    `observedGeneration`;
//! 3. zero writes in steady state, counted from the audit log;
//! 4. every CEL rule of docs/operator.md is refused by the API server with its
//!    message, including a shard count added after creation (issue 19);
//! 5. `kubectl scale shsvc` through the scale subresource;
//! 6. the identity endpoint's TokenReview: a token for the endpoint's audience
//!    gets a certificate, another audience or a plain API token is refused;
//! 7. two replicas: one leader; the leader killed, the standby leads within
//!    the lease duration and reconciles;
//! 8. delete → the controller-manager's garbage collector removes the children.
//!
//! Gated on `SHARDMESH_KUBE_E2E=1` (scripts/test.d/60-kube.sh).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use shardmesh_e2e::bins::{target_dir, workspace};
use shardmesh_e2e::kube::{poll_async, token_kubeconfig, ControlPlane};
use shardmesh_operator::validate::rules;
use shardmesh_operator::ShardedService;

const OPERATOR_NS: &str = "shardmesh-system";
const RELEASE: &str = "shardmesh";
const NS: &str = "examples";
const LEASE: &str = "shardmesh-operator";
const LEASE_SECONDS: u64 = 8;
const IDENTITY_HOST: &str = "shardmesh-identity.test";

fn step(what: &str) {
    println!("--- {what}");
}

fn output(mut cmd: Command, what: &str) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn must(cmd: Command, what: &str) -> String {
    let (ok, stdout, stderr) = output(cmd, what);
    assert!(ok, "{what} failed:\n{stdout}\n{stderr}");
    stdout
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One `shardmesh-operator run` process; killed on drop.
struct Operator {
    child: Child,
    identity: String,
    /// Port of `/metrics`, `/healthz`, `/readyz`.
    port: u16,
}

impl Operator {
    fn start(cp: &ControlPlane, kubeconfig: &Path, identity: &str, id_port: u16) -> Self {
        let port = free_port();
        let bin = target_dir().join("release/shardmesh-operator");
        assert!(
            bin.is_file(),
            "build it first: cargo build --release -p shardmesh-operator"
        );
        let log = std::fs::File::create(cp.dir().join(format!("operator-{identity}.log")))
            .expect("operator log");
        let child = Command::new(bin)
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--lease-namespace",
                OPERATOR_NS,
                "--identity",
                identity,
                "--lease-seconds",
                &LEASE_SECONDS.to_string(),
                "--identity-listen",
                &format!("127.0.0.1:{id_port}"),
                "--identity-dns",
                IDENTITY_HOST,
                // One URL for every replica (the chart's Service): a new
                // leader renders exactly what the old one did.
                "--identity-url",
                &format!("https://{IDENTITY_HOST}:8443"),
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start shardmesh-operator");
        Operator {
            child,
            identity: identity.into(),
            port,
        }
    }

    /// True once `/readyz` answers 200: the client is up and the replica
    /// takes part in the election (leader or standby).
    fn ready(&self) -> bool {
        Command::new("curl")
            .args(["-sf", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{}/readyz", self.port))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    let lease = leases.get_opt(LEASE).await.ok().flatten()?;
    let spec = lease.spec?;
    let renewed = spec.renew_time?.0;
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed);
    let held = spec.lease_duration_seconds.unwrap_or(0);
    (age.as_secs() < i64::from(held)).then_some(spec.holder_identity?)
}

/// Writes in the audit log made by `user`, leader-election Lease renewals and
/// TokenReviews (a question, not a change) aside.
fn writes_by(cp: &ControlPlane, user: &str) -> Vec<String> {
    cp.audit_events()
        .into_iter()
        .filter(|e| e.is_write() && e.user.username == user)
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_none_or(|o| o.resource != "leases" && o.resource != "tokenreviews")
        })
        .map(|e| format!("{} {}", e.verb, e.request_uri))
        .collect()
}

fn examples() -> Vec<(PathBuf, ShardedService)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(workspace().join("examples")).expect("examples/") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "yaml") && text.contains("\nkind: ShardedService")
        {
            let svc = shardmesh_operator::cli::sharded_service_from_yaml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            found.push((path, svc));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn reconciled(svc: &ShardedService) -> bool {
    let Some(status) = &svc.status else {
        return false;
    };
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    status.observed_generation == svc.metadata.generation
        && status.shards.is_some()
        && ["Ready", "Progressing", "Degraded"]
            .iter()
            .all(|t| types.contains(t))
}

async fn wait_reconciled(api: &Api<ShardedService>, name: &str) -> ShardedService {
    let found = poll_async(Duration::from_secs(60), || async {
        api.get(name).await.ok().filter(reconciled)
    })
    .await;
    match found {
        Some(svc) => svc,
        None => {
            let status = api.get(name).await.ok().and_then(|s| s.status);
            panic!("{name} not reconciled within 60 s: {status:?}")
        }
    }
}

fn owned_by<K: Resource>(child: &K, svc: &ShardedService) -> bool {
    let uid = svc.metadata.uid.as_deref();
    child.meta().owner_references.iter().flatten().any(|o| {
        Some(o.uid.as_str()) == uid && o.controller == Some(true) && o.kind == "ShardedService"
    })
}

fn minimal(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "shardmesh.io/v1alpha1",
        "kind": "ShardedService",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]}}
        }
    })
}

fn api_message(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

async fn expect_refused(api: &Api<ShardedService>, body: serde_json::Value, message: &str) {
    let svc: ShardedService = serde_json::from_value(body).expect("ShardedService");
    match api.create(&PostParams::default(), &svc).await {
        Ok(_) => panic!("the API server accepted what CEL must refuse ({message})"),
        Err(e) => {
            let got = api_message(e);
            assert!(
                got.contains(message),
                "refused, but not with {message:?}: {got}"
            );
        }
    }
}

async fn expect_patch_refused(
    api: &Api<ShardedService>,
    name: &str,
    patch: serde_json::Value,
    message: &str,
) {
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => panic!("the API server accepted {patch} on {name}; CEL must refuse it"),
        Err(e) => {
            let got = api_message(e);
            assert!(
                got.contains(message),
                "refused, but not with {message:?}: {got}"
            );
        }
    }
}

/// `curl` POSTs a fresh CSR to the identity endpoint with `token`; the HTTP
/// status and body.
fn request_certificate(dir: &Path, ca: &Path, port: u16, token: &str) -> (u16, String) {
    let key = dir.join("leaf.key");
    let csr = dir.join("leaf.csr");
    let mut gen = Command::new("openssl");
    gen.args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=ignored",
    ])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&csr);
    must(gen, "openssl req");
    let body = dir.join("answer");
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code}", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{IDENTITY_HOST}:{port}:127.0.0.1"),
            "-H",
            &format!("Authorization: Bearer {token}"),
            "--data-binary",
        ])
        .arg(format!("@{}", csr.display()))
        .arg(format!("https://{IDENTITY_HOST}:{port}/v1/certificate"));
    let code = must(curl, "curl the identity endpoint");
    let answer = std::fs::read_to_string(&body).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), answer)
}

fn create_token(cp: &ControlPlane, ns: &str, sa: &str, audience: Option<&str>) -> String {
    let mut cmd = cp.kubectl();
    cmd.args(["-n", ns, "create", "token", sa, "--duration", "2h"]);
    if let Some(a) = audience {
        cmd.args(["--audience", a]);
    }
    must(cmd, "kubectl create token").trim().to_string()
}

#[tokio::test]
async fn operator_with_the_charts_rbac_on_a_real_api_server() {
    let cp = match ControlPlane::for_test() {
        Ok(cp) => cp,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let admin = cp.client().await.expect("admin client");
    let work = cp.dir().join("operator-test");
    std::fs::create_dir_all(&work).expect("work dir");

    step("1. the CRD applies without a warning; the chart installs with the real Helm");
    let mut apply = cp.kubectl();
    apply
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(workspace().join("crds/shardedservice.yaml"));
    let (ok, _, stderr) = output(apply, "kubectl apply the CRD");
    assert!(ok, "the API server refused the CRD: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("warning"),
        "applying the CRD printed: {stderr}"
    );
    cp.wait_established(&["shardedservices.shardmesh.io"])
        .expect("the CRD is Established");
    let mut helm = cp.helm();
    helm.arg("install")
        .arg(RELEASE)
        .arg(workspace().join("charts/shardmesh"))
        .args(["-n", OPERATOR_NS, "--create-namespace"]);
    must(helm, "helm install");
    let mut sas = cp.kubectl();
    sas.args([
        "-n",
        OPERATOR_NS,
        "get",
        "serviceaccounts",
        "-l",
        &format!("app.kubernetes.io/instance={RELEASE}"),
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let sa = must(sas, "the chart's ServiceAccount").trim().to_string();
    assert!(!sa.is_empty(), "the chart made no ServiceAccount");
    let user = format!("system:serviceaccount:{OPERATOR_NS}:{sa}");
    let token = create_token(&cp, OPERATOR_NS, &sa, None);
    let sa_kubeconfig = work.join("operator.kubeconfig");
    token_kubeconfig(&cp.kubeconfig(), &token, &sa_kubeconfig).expect("token kubeconfig");
    println!("operator runs as {user}");

    let id_port = free_port();
    let op_a = Operator::start(&cp, &sa_kubeconfig, "op-a", id_port);
    let holder = poll_async(Duration::from_secs(60), || lease_holder(&admin)).await;
    assert_eq!(
        holder.as_deref(),
        Some("op-a"),
        "op-a did not take the Lease"
    );

    step("2. every example is reconciled into owned children with a status");
    let mut create_ns = cp.kubectl();
    create_ns.args(["create", "namespace", NS]);
    must(create_ns, "create the examples namespace");
    let services: Api<ShardedService> = Api::namespaced(admin.clone(), NS);
    let examples = examples();
    assert!(
        examples.len() >= 2,
        "examples/*.yaml: {examples:?}",
        examples = examples.len()
    );
    for (path, _) in &examples {
        let mut apply = cp.kubectl();
        apply.args(["-n", NS, "apply", "-f"]).arg(path);
        must(apply, &format!("kubectl apply {}", path.display()));
    }
    let sets: Api<StatefulSet> = Api::namespaced(admin.clone(), NS);
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    let svcs: Api<Service> = Api::namespaced(admin.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(admin.clone(), NS);
    for (_, example) in &examples {
        let name = example.name_any();
        let svc = wait_reconciled(&services, &name).await;
        let status = svc.status.clone().expect("status");
        println!(
            "{name}: generation {:?}, shards {:?}, conditions {:?}",
            status.observed_generation,
            status.shards,
            status
                .conditions
                .iter()
                .map(|c| format!("{}={}/{}", c.type_, c.status, c.reason))
                .collect::<Vec<_>>()
        );
        let sts = sets.get(&name).await.expect("StatefulSet");
        assert!(
            owned_by(&sts, &svc),
            "StatefulSet {name} has no owner reference"
        );
        let cm = maps
            .get(&format!("{name}-sidecar"))
            .await
            .expect("ConfigMap");
        assert!(
            owned_by(&cm, &svc),
            "ConfigMap {name}-sidecar has no owner reference"
        );
        let client_svc = svcs.get(&name).await.expect("client Service");
        assert!(
            owned_by(&client_svc, &svc),
            "Service {name} has no owner reference"
        );
        if svc.spec.replicas > 1 {
            let pdb = pdbs.get(&name).await.expect("PodDisruptionBudget");
            assert!(owned_by(&pdb, &svc), "PDB {name} has no owner reference");
        }
        // No kubelet: pods never become ready, and the status says so.
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "False", "{ready:?}");
    }
    svcs.get("shardmesh-gossip")
        .await
        .expect("the gossip Service");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);
    secrets
        .get("shardmesh-gossip-key")
        .await
        .expect("the gossip key Secret");
    let ca = maps
        .get("shardmesh-ca")
        .await
        .expect("the mesh CA ConfigMap");
    let ca_pem = ca
        .data
        .and_then(|d| d.get("ca.crt").cloned())
        .expect("ca.crt");

    step("3. zero writes in steady state (audit log)");
    // Settled: no write by the operator for 5 s (the StatefulSet controller
    // creating pods moves the status first), within 90 s.
    let settle_deadline = Instant::now() + Duration::from_secs(90);
    let mut last = writes_by(&cp, &user).len();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(5) {
        assert!(
            Instant::now() < settle_deadline,
            "the operator kept writing for 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = writes_by(&cp, &user).len();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let before = writes_by(&cp, &user);
    println!("the operator's writes so far: {}", before.len());
    // An observation window, not a timing assumption: any write in it fails.
    let window = Instant::now() + Duration::from_secs(15);
    while Instant::now() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = writes_by(&cp, &user);
        assert_eq!(
            now.len(),
            before.len(),
            "writes in steady state: {:?}",
            &now[before.len()..]
        );
    }
    println!("steady state: 0 writes in 15 s");

    step("4. every CEL rule is refused by the API server with its message");
    let long = "x".repeat(53);
    let mut cases: Vec<(serde_json::Value, &str)> = Vec::new();
    let mut v = minimal(&long);
    v["metadata"]["name"] = json!(long);
    cases.push((v, rules::NAME_LEN.1));
    let mut v = minimal("cel-replicas");
    v["spec"]["replicas"] = json!(-1);
    cases.push((v, rules::REPLICAS.1));
    for shards in [0, 70_000] {
        let mut v = minimal("cel-shards");
        v["spec"]["shards"] = json!(shards);
        cases.push((v, rules::SHARDS_RANGE.1));
    }
    let mut v = minimal("cel-port");
    v["spec"]["appPort"] = json!(0);
    cases.push((v, rules::APP_PORT_RANGE.1));
    let mut v = minimal("cel-port");
    v["spec"]["appPort"] = json!(7401);
    cases.push((v, rules::APP_PORT_FREE.1));
    for path in ["accounts/{key}", "/accounts"] {
        let mut v = minimal("cel-path");
        v["spec"]["routing"] = json!({"keyFromPath": path});
        cases.push((v, rules::KEY_FROM_PATH.1));
    }
    let mut v = minimal("cel-ids");
    v["spec"]["security"] = json!({"allowedIdentities": ["web"]});
    cases.push((v, rules::ALLOWED_IDENTITIES.1));
    for (body, message) in cases {
        expect_refused(&services, body, message).await;
        println!("refused: {message}");
    }
    // Transition rules: a written count never changes or disappears...
    let mut fixed = minimal("cel-fixed");
    fixed["spec"]["shards"] = json!(30);
    let fixed: ShardedService = serde_json::from_value(fixed).expect("svc");
    services
        .create(&PostParams::default(), &fixed)
        .await
        .expect("create cel-fixed");
    expect_patch_refused(
        &services,
        "cel-fixed",
        json!({"spec": {"shards": 40}}),
        rules::SHARDS_FIXED.1,
    )
    .await;
    expect_patch_refused(
        &services,
        "cel-fixed",
        json!({"spec": {"shards": null}}),
        rules::SHARDS_FIXED.1,
    )
    .await;
    // ...and a count added later must be the one the operator recorded (the
    // defect of issue 19: created without shards, 2 replicas → 20 in force).
    let unset: ShardedService = serde_json::from_value(minimal("cel-unset")).expect("svc");
    services
        .create(&PostParams::default(), &unset)
        .await
        .expect("create cel-unset");
    let recorded = wait_reconciled(&services, "cel-unset").await;
    assert_eq!(recorded.status.as_ref().and_then(|s| s.shards), Some(20));
    expect_patch_refused(
        &services,
        "cel-unset",
        json!({"spec": {"shards": 7}}),
        rules::SHARDS_FIXED.1,
    )
    .await;
    services
        .patch(
            "cel-unset",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"shards": 20}})),
        )
        .await
        .expect("writing the recorded count down is allowed");
    let config = maps.get("cel-unset-sidecar").await.expect("ConfigMap");
    let yaml = config
        .data
        .and_then(|d| d.get("sidecar.yaml").cloned())
        .unwrap_or_default();
    assert!(
        yaml.contains("shards: 20"),
        "the sidecar config must keep 20 shards:\n{yaml}"
    );
    println!("refused: {} (both transition rules)", rules::SHARDS_FIXED.1);
    for name in ["cel-fixed", "cel-unset"] {
        services
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }

    step("5. kubectl scale shsvc through the scale subresource");
    let bank = examples[0].1.name_any();
    let mut scale = cp.kubectl();
    scale.args([
        "-n",
        NS,
        "scale",
        &format!("shsvc/{bank}"),
        "--replicas",
        "5",
    ]);
    must(scale, "kubectl scale");
    let scaled = poll_async(Duration::from_secs(60), || async {
        let sts = sets.get(&bank).await.ok()?;
        (sts.spec.as_ref()?.replicas == Some(5)).then_some(())
    })
    .await;
    assert!(
        scaled.is_some(),
        "the StatefulSet did not follow kubectl scale"
    );
    let mut get = cp.kubectl();
    get.args(["-n", NS, "get", "shsvc", &bank]);
    println!("{}", must(get, "kubectl get shsvc"));

    step("6. the identity endpoint's TokenReview against the real API server");
    let ca_file = work.join("mesh-ca.crt");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let good = create_token(&cp, NS, "default", Some("shardmesh"));
    let (code, answer) = request_certificate(&work, &ca_file, id_port, &good);
    assert_eq!(
        code, 200,
        "a token for audience shardmesh must get a certificate: {answer}"
    );
    assert!(answer.contains("BEGIN CERTIFICATE"), "{answer}");
    std::fs::write(work.join("leaf.crt"), &answer).expect("write leaf");
    let mut text = Command::new("openssl");
    text.args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(work.join("leaf.crt"));
    let san = must(text, "openssl x509");
    assert!(
        san.contains(&format!("spiffe://cluster.local/ns/{NS}/sa/default")),
        "{san}"
    );
    for (what, token) in [
        (
            "another audience",
            create_token(&cp, NS, "default", Some("someone-else")),
        ),
        ("a plain API token", create_token(&cp, NS, "default", None)),
        ("garbage", "not-a-token".to_string()),
    ] {
        let (code, answer) = request_certificate(&work, &ca_file, id_port, &token);
        assert_eq!(code, 401, "{what} must be refused: {answer}");
        println!("refused {what}: {}", answer.trim());
    }

    step("7. two replicas: one leader; kill it, the standby leads within the lease");
    let op_b = Operator::start(&cp, &sa_kubeconfig, "op-b", free_port());
    let standby = poll_async(Duration::from_secs(30), || async {
        op_b.ready().then_some(())
    })
    .await;
    assert!(standby.is_some(), "op-b never became ready");
    assert_eq!(lease_holder(&admin).await.as_deref(), Some("op-a"));
    let mut op_a = op_a;
    op_a.child.kill().expect("kill the leader");
    let _ = op_a.child.wait();
    let killed = Instant::now();
    let writes_before = writes_by(&cp, &user).len();
    let b_leads = poll_async(Duration::from_secs(LEASE_SECONDS * 3), || async {
        (lease_holder(&admin).await.as_deref() == Some(op_b.identity.as_str())).then_some(())
    })
    .await;
    let took = killed.elapsed();
    assert!(b_leads.is_some(), "op-b never took the Lease");
    println!(
        "failover after SIGKILL of the leader: {:.1} s (lease {LEASE_SECONDS} s)",
        took.as_secs_f64()
    );
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 2),
        "failover took {took:?}, lease is {LEASE_SECONDS} s"
    );
    // The new leader reconciles everything at once; nothing changed, so it
    // writes nothing ("nothing else moves").
    let window = Instant::now() + Duration::from_secs(10);
    while Instant::now() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = writes_by(&cp, &user);
        assert_eq!(
            now.len(),
            writes_before,
            "the new leader wrote: {:?}",
            &now[writes_before..]
        );
    }
    println!("the new leader's first reconciles: 0 writes");
    let mut scale = cp.kubectl();
    scale.args([
        "-n",
        NS,
        "scale",
        &format!("shsvc/{bank}"),
        "--replicas",
        "3",
    ]);
    must(scale, "kubectl scale");
    let followed = poll_async(Duration::from_secs(60), || async {
        let sts = sets.get(&bank).await.ok()?;
        (sts.spec.as_ref()?.replicas == Some(3)).then_some(())
    })
    .await;
    assert!(followed.is_some(), "the new leader does not reconcile");

    step("8. delete: the garbage collector removes the children");
    for (_, example) in &examples {
        services
            .delete(&example.name_any(), &DeleteParams::default())
            .await
            .expect("delete");
    }
    for (_, example) in &examples {
        let name = example.name_any();
        let gone = poll_async(Duration::from_secs(60), || async {
            let left = sets.get_opt(&name).await.ok()?.is_some()
                || maps
                    .get_opt(&format!("{name}-sidecar"))
                    .await
                    .ok()?
                    .is_some()
                || svcs.get_opt(&name).await.ok()?.is_some()
                || pdbs.get_opt(&name).await.ok()?.is_some();
            (!left).then_some(())
        })
        .await;
        assert!(
            gone.is_some(),
            "children of {name} not garbage-collected in 60 s"
        );
        println!("{name}: children garbage-collected");
    }
    drop(op_b);
    let mut uninstall = cp.helm();
    uninstall.args(["uninstall", RELEASE, "-n", OPERATOR_NS]);
    must(uninstall, "helm uninstall");
    // The chart renders the Lease the operators held, so it goes with the
    // release instead of staying held until it expires.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NS);
    let gone = poll_async(Duration::from_secs(30), || async {
        matches!(leases.get_opt(LEASE).await, Ok(None)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "Lease {LEASE} survived helm uninstall");
}

/// The operator used to re-apply children (the CA ConfigMap first) into a
/// namespace being deleted, and to retry the refusals. It now recognises the
/// refusal (`Error::is_namespace_terminating`) and stops; this checks that
/// the real API server's answer is the one it recognises, for the operator's
/// own kind of write (a server-side apply that would create the object).
#[tokio::test]
async fn a_namespace_being_deleted_is_recognised_in_the_real_refusal() {
    let cp = match ControlPlane::for_test() {
        Ok(cp) => cp,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let doomed = format!("doomed-{}", std::process::id());
    const HOLD: &str = "shardmesh.io/test-hold";
    let admin = cp.client().await.expect("admin client");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": &doomed}});
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(ns).expect("namespace"),
        )
        .await
        .expect("create the namespace");
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &doomed);
    // A finalizer keeps the namespace in Terminating while we try.
    let hold = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "hold", "finalizers": [HOLD]}});
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(hold).expect("hold"),
    )
    .await
    .expect("create the holding ConfigMap");
    namespaces
        .delete(&doomed, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    let terminating = poll_async(Duration::from_secs(30), || async {
        let ns = namespaces.get(&doomed).await.ok()?;
        (ns.status?.phase.as_deref() == Some("Terminating")).then_some(())
    })
    .await;
    assert!(
        terminating.is_some(),
        "namespace {doomed} never Terminating"
    );

    let ca = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shardmesh-ca"}, "data": {"ca.crt": "x"}});
    let refused = maps
        .patch(
            "shardmesh-ca",
            &PatchParams::apply("shardmesh-operator").force(),
            &Patch::Apply(&ca),
        )
        .await
        .expect_err("a create in a terminating namespace must be refused");
    println!("refused: {refused}");
    let err = shardmesh_operator::Error::from(refused);
    assert!(
        err.is_namespace_terminating(),
        "not recognised as a namespace being deleted: {err:?}"
    );

    maps.patch(
        "hold",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release the finalizer");
    let gone = poll_async(Duration::from_secs(60), || async {
        namespaces
            .get_opt(&doomed)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "namespace {doomed} not deleted in 60 s");
}
