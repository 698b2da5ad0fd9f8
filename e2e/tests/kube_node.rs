//! The node agent (`shardmesh-node-agent`) against the real control plane:
//! pods created through the API, scheduled by the real scheduler (or bound
//! by `nodeName`), run by the agent as processes in their own network and
//! mount namespaces on the node's bridge.
//!
//! Needs root, `SHARDMESH_KUBE_E2E=1` and a node netns of its own with the
//! bridge (`SHARDMESH_NODE_TEST_NETNS`, the control plane bound to its
//! 10.244.0.1, and no other agent: these tests start theirs):
//! `scripts/kube/node-test` sets all of that up and removes it. Otherwise
//! each test prints why it skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use shardmesh_e2e::kube::{poll_async, ControlPlane};
use shardmesh_e2e::node::sandbox::{self, Sandbox};

/// The node netns the test must run in (set by scripts/kube/node-test).
const NETNS_ENV: &str = "SHARDMESH_NODE_TEST_NETNS";
const NODE: &str = "node-1";

/// One agent at a time: they would share the Node.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running agent with its control plane and a namespace of its own.
struct Harness {
    cp: ControlPlane,
    client: Client,
    agent: Option<Child>,
    state: PathBuf,
    ns: String,
}

fn skip_reason() -> Option<String> {
    if std::env::var(shardmesh_e2e::kube::E2E_ENV).as_deref() != Ok("1") {
        return Some("SHARDMESH_KUBE_E2E is not 1 (run scripts/kube/node-test)".into());
    }
    if !shardmesh_e2e::is_root() {
        return Some("needs root (network namespaces)".into());
    }
    if std::env::var_os(NETNS_ENV).is_none() {
        return Some(format!(
            "{NETNS_ENV} is not set: run through scripts/kube/node-test"
        ));
    }
    let bridge = Command::new("ip").args(["link", "show", "smbr0"]).output();
    if !bridge.is_ok_and(|o| o.status.success()) {
        return Some("no bridge smbr0 in this network namespace".into());
    }
    None
}

/// Every network namespace of the machine with `prefix`.
fn netns_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Starts `shardmesh-node-agent` with its log appended to `STATE/agent.log`.
fn spawn_agent(cp: &ControlPlane, state: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("agent.log"))
        .expect("agent log");
    Command::new(env!("CARGO_BIN_EXE_shardmesh-node-agent"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["--node-name", NODE, "--images"])
        .arg(state.join("images.yaml"))
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start shardmesh-node-agent")
}

impl Harness {
    async fn start(name: &str) -> Option<(Self, tokio::sync::MutexGuard<'static, ()>)> {
        if let Some(why) = skip_reason() {
            println!("skipped: {why}");
            return None;
        }
        let guard = SERIAL.lock().await;
        let cp = match ControlPlane::for_test() {
            Ok(cp) => cp,
            Err(why) => {
                println!("skipped: {why}");
                return None;
            }
        };
        let client = cp.client().await.expect("client");
        let state = cp.dir().join(format!("node-{name}"));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("state dir");
        let table = state.join("images.yaml");
        std::fs::write(
            &table,
            format!(
                "images:\n  shardmesh.test/sh: /bin/sh\n  shardmesh.test/upstream: {}\n",
                env!("CARGO_BIN_EXE_bench-upstream")
            ),
        )
        .expect("image table");
        let agent = spawn_agent(&cp, &state);
        let ns = format!("node-{name}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await;
        let h = Self {
            cp,
            client,
            agent: Some(agent),
            state,
            ns,
        };
        // The node is registered and Ready, and the namespace has its default ServiceAccount.
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(h.client.clone());
        let ready = poll_async(Duration::from_secs(30), || async {
            let n = nodes.get_opt(NODE).await.ok()??;
            let conds = n.status?.conditions?;
            conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        })
        .await;
        assert!(ready.is_some(), "node {NODE} not Ready: {}", h.agent_log());
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(h.client.clone(), "kube-node-lease");
        let lease = poll_async(Duration::from_secs(30), || async {
            leases.get_opt(NODE).await.ok()?
        })
        .await
        .expect("the node's Lease");
        let spec = lease.spec.unwrap_or_default();
        assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
        assert!(spec.renew_time.is_some(), "the Lease is renewed");
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(h.client.clone(), &h.ns);
        poll_async(Duration::from_secs(30), || async {
            sas.get_opt("default").await.ok()?
        })
        .await
        .expect("default ServiceAccount");
        Some((h, guard))
    }

    /// The network namespace of the pod with `uid`.
    fn pod_netns(&self, uid: &str) -> String {
        Sandbox::named(
            &sandbox::scope(&self.state),
            uid,
            std::net::Ipv4Addr::UNSPECIFIED,
        )
        .netns
    }

    /// This agent's pod namespaces.
    fn netns_list(&self) -> Vec<String> {
        netns_with(&sandbox::scope(&self.state))
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.state.join("agent.log")).unwrap_or_default()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create_pod(&self, body: Value) -> Pod {
        let mut pod: Pod = serde_json::from_value(body).expect("pod json");
        pod.metadata.namespace = Some(self.ns.clone());
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Polls pod `name` until `check` holds on it.
    async fn wait_pod(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        check: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let api = self.pods();
        let got = poll_async(Duration::from_secs(secs), || async {
            let p = api.get_opt(name).await.ok()??;
            check(&p).then_some(p)
        })
        .await;
        match got {
            Some(p) => p,
            None => {
                let now = api.get_opt(name).await.ok().flatten();
                panic!(
                    "pod {name}: {what} not within {secs}s; status: {}\nagent log:\n{}",
                    serde_json::to_string_pretty(&now.and_then(|p| p.status)).unwrap_or_default(),
                    self.agent_log()
                )
            }
        }
    }

    async fn wait_gone(&self, name: &str, secs: u64) -> Duration {
        let t0 = Instant::now();
        let api = self.pods();
        let gone = poll_async(Duration::from_secs(secs), || async {
            match api.get_opt(name).await {
                Ok(None) => Some(()),
                _ => None,
            }
        })
        .await;
        assert!(
            gone.is_some(),
            "pod {name} still exists after {secs}s\n{}",
            self.agent_log()
        );
        t0.elapsed()
    }

    /// The log of container `c` of `pod`.
    fn log(&self, pod: &Pod, c: &str) -> String {
        let dir = format!(
            "{}_{}_{}",
            self.ns,
            pod.name_any(),
            pod.metadata.uid.clone().unwrap_or_default()
        );
        std::fs::read_to_string(self.state.join("pods").join(dir).join(format!("{c}.log")))
            .unwrap_or_default()
    }

    async fn wait_log(&self, pod: &Pod, c: &str, needle: &str) -> String {
        let found = poll_async(Duration::from_secs(20), || async {
            let l = self.log(pod, c);
            l.contains(needle).then_some(l)
        })
        .await;
        found.unwrap_or_else(|| panic!("log of {c} lacks {needle:?}:\n{}", self.log(pod, c)))
    }

    /// SIGTERM to the agent: it exits 0 and leaves no pod namespace behind.
    fn stop(&mut self) {
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(agent.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let t0 = Instant::now();
        let status = loop {
            if let Ok(Some(st)) = agent.try_wait() {
                break Some(st);
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = agent.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "agent did not exit cleanly: {status:?}\n{}",
            self.agent_log()
        );
        let left = self.netns_list();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        println!(
            "agent stopped in {:.1}s, no namespace left",
            t0.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(a.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(40) {
                if let Ok(Some(_)) = a.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = self
            .cp
            .kubectl()
            .args(["delete", "namespace", &self.ns, "--wait=false"])
            .output();
    }
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn status_json(pod: &Pod) -> Value {
    serde_json::to_value(pod.status.clone()).unwrap_or_default()
}

/// The payload of a JWT (base64url, no padding).
fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT has three parts");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in part.bytes() {
        let v = alphabet.iter().position(|&a| a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    serde_json::from_slice(&out).expect("JWT payload JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_env_and_token_appear_in_the_container() {
    let Some((mut h, _guard)) = Harness::start("volumes").await else {
        return;
    };
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "conf"}, "data": {"a": "alpha", "b": "beta", "color": "blue"}
        }))
        .unwrap(),
    )
    .await
    .expect("configmap");
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}
            }))
            .unwrap(),
        )
        .await
        .expect("secret");
    let script = r#"
echo "ENV NAME=$POD_NAME NS=$POD_NS UID=$POD_UID IP=$POD_IP NODE=$NODE SA=$SA HOST=$HOST_IP"
echo "ENV CM=$FROM_CM SECRET=$FROM_SECRET OPT=[$MISSING] PREFIXED=$CFG_color MEM=$MEM_MI EXPANDED=$EXPANDED"
echo "ENV K8S=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT HOSTNAME=$HOSTNAME"
echo "FILE a=$(cat /etc/shardmesh-test/conf/a.txt) mode=$(stat -Lc %a /etc/shardmesh-test/conf/a.txt)"
echo "FILE secret=$(cat /var/run/secrets/creds/password) podname=$(cat /info/name)"
echo "FILE labels=$(cat /var/run/secrets/tokens/labels)"
echo "FILE sub=$(cat /sub/a)"
echo "TOKEN $(cat /var/run/secrets/tokens/token)"
echo "RESOLV $(tr '\n' '|' < /etc/resolv.conf)"
echo "HOSTS $(grep -c "$POD_IP" /etc/hosts) UTS=$(cat /proc/sys/kernel/hostname) ID=$(id -u)"
echo scratch > /scratch/x && echo "EMPTYDIR $(cat /scratch/x)"
touch /etc/shardmesh-test/conf/new 2>/dev/null && echo "RO broken" || echo "RO ok"
echo READY-TO-CHECK
exec sleep 3600
"#;
    h.create_pod(json!({
        "metadata": {"name": "volumes", "labels": {"app": "volumes"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 1000},
            "volumes": [
                {"name": "conf", "configMap": {"name": "conf", "items": [{"key": "a", "path": "conf/a.txt"}], "defaultMode": 0o640}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "missing-ok", "configMap": {"name": "does-not-exist", "optional": true}},
                {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "tokens", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "shardmesh-test", "expirationSeconds": 600, "path": "token"}},
                    {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"configMap": {"name": "conf", "items": [{"key": "b", "path": "b"}]}}
                ]}},
                {"name": "scratch", "emptyDir": {}}
            ],
            "containers": [{
                "name": "main",
                "image": "shardmesh.test/sh:1",
                "command": ["sh", "-c", script],
                "resources": {"limits": {"memory": "64Mi"}},
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "conf"}}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "a"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "nope", "optional": true}}},
                    {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "EXPANDED", "value": "$(POD_NAME).$(POD_NS)"}
                ],
                "volumeMounts": [
                    {"name": "conf", "mountPath": "/etc/shardmesh-test", "readOnly": true},
                    {"name": "creds", "mountPath": "/var/run/secrets/creds", "readOnly": true},
                    {"name": "info", "mountPath": "/info"},
                    {"name": "tokens", "mountPath": "/var/run/secrets/tokens"},
                    {"name": "tokens", "mountPath": "/sub/a", "subPath": "b"},
                    {"name": "scratch", "mountPath": "/scratch"}
                ]
            }]
        }
    })).await;
    let t0 = Instant::now();
    let pod = h
        .wait_pod("volumes", 60, "Ready", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    println!("pod Ready {:.1}s after create", t0.elapsed().as_secs_f64());
    let st = status_json(&pod);
    let ip = st["podIP"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10.244.0."), "{st}");
    assert_eq!(st["hostIP"], "10.244.0.1");
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["containerStatuses"][0]["started"], true, "{st}");
    assert!(
        st["containerStatuses"][0]["state"]["running"]["startedAt"].is_string(),
        "{st}"
    );
    let log = h.wait_log(&pod, "main", "READY-TO-CHECK").await;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    for want in [
        format!("ENV NAME=volumes NS={} UID={uid} IP={ip} NODE={NODE} SA=default HOST=10.244.0.1", h.ns),
        format!("ENV CM=alpha SECRET=s3cret OPT=[] PREFIXED=blue MEM=64 EXPANDED=volumes.{}", h.ns),
        "HOSTNAME=volumes".to_string(),
        "FILE a=alpha mode=640".to_string(),
        "FILE secret=s3cret podname=volumes".to_string(),
        "FILE labels=app=\"volumes\"".to_string(),
        "FILE sub=beta".to_string(),
        format!("RESOLV nameserver 10.96.0.10|search {0}.svc.cluster.local svc.cluster.local cluster.local|options ndots:5|", h.ns),
        "HOSTS 1 UTS=volumes ID=1000".to_string(),
        "EMPTYDIR scratch".to_string(),
        "RO ok".to_string(),
    ] {
        assert!(log.contains(&want), "log lacks {want:?}:\n{log}");
    }
    let k8s_host = log
        .lines()
        .find(|l| l.starts_with("ENV K8S="))
        .unwrap_or_default();
    assert!(
        !k8s_host.starts_with("ENV K8S=:"),
        "KUBERNETES_SERVICE_HOST unset: {k8s_host}"
    );
    let token = log
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN "))
        .expect("token line")
        .trim();
    let claims = jwt_payload(token);
    assert_eq!(claims["aud"], json!(["shardmesh-test"]), "{claims}");
    let ttl = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(ttl, 600, "{claims}");
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        json!(uid),
        "bound to the pod: {claims}"
    );
    assert!(
        !Path::new("/etc/shardmesh-test").exists(),
        "the host's /etc was changed"
    );
    for p in ["/sub", "/info", "/scratch", "/run/secrets/tokens"] {
        assert!(!Path::new(p).exists(), "the host got {p}");
    }
    assert!(h.netns_list().contains(&h.pod_netns(&uid)));

    h.pods()
        .delete("volumes", &DeleteParams::default())
        .await
        .expect("delete");
    let took = h.wait_gone("volumes", 30).await;
    println!(
        "deleted in {:.1}s (grace 2 s, sleep ignores nothing: SIGTERM ends it)",
        took.as_secs_f64()
    );
    assert!(
        !h.netns_list().contains(&h.pod_netns(&uid)),
        "pod netns removed with the pod"
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_start_first_and_probes_drive_readiness() {
    let Some((mut h, _guard)) = Harness::start("probes").await else {
        return;
    };
    h.create_pod(json!({
        "metadata": {"name": "probes"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 5,
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "initContainers": [
                {"name": "sidecar", "image": "shardmesh.test/sh", "restartPolicy": "Always",
                 "command": ["sh", "-c", "sleep 2; touch /shared/sidecar-up; trap 'echo sidecar-term; sleep 2; exit 0' TERM; while true; do sleep 0.2; done"],
                 "startupProbe": {"exec": {"command": ["test", "-f", "/shared/sidecar-up"]}, "periodSeconds": 1, "failureThreshold": 30},
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
                {"name": "init", "image": "shardmesh.test/sh",
                 "command": ["sh", "-c", "test -f /shared/sidecar-up || exit 7; echo init-done"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}
            ],
            "containers": [{
                "name": "app", "image": "shardmesh.test/sh",
                "command": ["sh", "-c", "test -f /shared/sidecar-up || exit 9; sleep 3; touch /shared/ready; sleep 5; rm /shared/ready; trap 'echo app-term; exit 0' TERM; while true; do sleep 0.2; done"],
                "readinessProbe": {"exec": {"command": ["cat", "/shared/ready"]}, "periodSeconds": 1, "failureThreshold": 1},
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]
            }]
        }
    })).await;
    let running = h
        .wait_pod("probes", 60, "Running", |p| phase(p) == "Running")
        .await;
    let st = status_json(&running);
    assert_eq!(
        condition(&running, "Initialized").as_deref(),
        Some("True"),
        "{st}"
    );
    assert_eq!(st["initContainerStatuses"][0]["started"], true, "{st}");
    assert_eq!(
        st["initContainerStatuses"][1]["state"]["terminated"]["reason"], "Completed",
        "{st}"
    );
    assert_eq!(
        st["initContainerStatuses"][1]["restartCount"], 0,
        "init ran after the sidecar started: {st}"
    );
    let t0 = Instant::now();
    let ready = h
        .wait_pod("probes", 30, "Ready", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    let st = status_json(&ready);
    assert_eq!(
        st["containerStatuses"][0]["restartCount"], 0,
        "app started after the sidecar: {st}"
    );
    assert_eq!(
        condition(&ready, "ContainersReady").as_deref(),
        Some("True")
    );
    let unready = h
        .wait_pod("probes", 30, "not Ready again", |p| {
            condition(p, "Ready").as_deref() == Some("False")
        })
        .await;
    let went = t0.elapsed();
    let st = status_json(&unready);
    assert_eq!(st["containerStatuses"][0]["ready"], false, "{st}");
    assert!(
        went >= Duration::from_secs(3),
        "readiness followed the file: {went:?}"
    );
    assert!(!Path::new("/shared").exists(), "the host's / was changed");
    // Deletion: the app gets SIGTERM first, the sidecar last.
    let pod = h.pods().get("probes").await.expect("pod");
    h.pods()
        .delete("probes", &DeleteParams::default())
        .await
        .expect("delete");
    // While the sidecar shuts down (2 s), the app is terminated, the pod
    // not Ready and still Running (a terminal phase would let a StatefulSet
    // replace it before it is gone).
    let stopping = h
        .wait_pod("probes", 20, "app stopped, sidecar still stopping", |p| {
            let st = status_json(p);
            st["containerStatuses"][0]["state"]["terminated"].is_object()
                && st["initContainerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    assert_eq!(phase(&stopping), "Running");
    assert_eq!(condition(&stopping, "Ready").as_deref(), Some("False"));
    h.wait_gone("probes", 30).await;
    assert!(
        h.log(&pod, "app").contains("app-term"),
        "{}",
        h.log(&pod, "app")
    );
    assert!(
        h.log(&pod, "sidecar").contains("sidecar-term"),
        "{}",
        h.log(&pod, "sidecar")
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_restart_with_backoff_and_liveness_kills() {
    let Some((mut h, _guard)) = Harness::start("crash").await else {
        return;
    };
    h.create_pod(json!({
        "metadata": {"name": "crasher"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "shardmesh.test/sh", "command": ["sh", "-c", "echo run; exit 3"]}]}
    })).await;
    h.create_pod(json!({
        "metadata": {"name": "unlive"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "shardmesh.test/sh",
            "command": ["sh", "-c", "exec sleep 3600"],
            "livenessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 2}}]}
    })).await;
    let killed = h.create_pod(json!({
        "metadata": {"name": "killed"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "shardmesh.test/sh", "command": ["sh", "-c", "exec sleep 3600"]}]}
    })).await;
    let p = h
        .wait_pod("crasher", 40, "two restarts and CrashLoopBackOff", |p| {
            let st = status_json(p);
            let c = &st["containerStatuses"][0];
            c["restartCount"].as_i64().unwrap_or(0) >= 2
                && c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
    let c = status_json(&p)["containerStatuses"][0].clone();
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3, "{c}");
    let r = c["restartCount"].as_i64().unwrap_or(0);
    let want = format!("back-off {}s", (10i64 << (r - 2)).min(300));
    let msg = c["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains(&want), "{want}: {c}");
    assert_eq!(
        phase(&p),
        "Running",
        "restarting containers keep the pod Running"
    );
    let p = h
        .wait_pod("unlive", 40, "a liveness restart", |p| {
            status_json(p)["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        })
        .await;
    let last = status_json(&p)["containerStatuses"][0]["lastState"]["terminated"].clone();
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Liveness probe failed"),
        "{last}"
    );
    assert_eq!(last["signal"], 15, "SIGTERM ended it: {last}");
    // SIGKILL of the pod's processes from outside is a container exit.
    let running = h
        .wait_pod("killed", 30, "Running", |p| phase(p) == "Running")
        .await;
    let ns = h.pod_netns(&running.metadata.uid.clone().unwrap_or_default());
    let out = Command::new("ip")
        .args(["netns", "pids", &ns])
        .output()
        .expect("ip netns pids");
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(!pids.is_empty(), "processes in {ns}");
    for pid in &pids {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    let p = h
        .wait_pod("killed", 30, "restarted after SIGKILL", |p| {
            let c = &status_json(p)["containerStatuses"][0];
            c["restartCount"].as_i64().unwrap_or(0) >= 1 && c["state"]["running"].is_object()
        })
        .await;
    let last = status_json(&p)["containerStatuses"][0]["lastState"]["terminated"].clone();
    assert_eq!(last["exitCode"], 137, "{last}");
    let _ = killed;
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_deletion_and_bad_pods() {
    let Some((mut h, _guard)) = Harness::start("delete").await else {
        return;
    };
    h.create_pod(json!({
        "metadata": {"name": "polite"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 20,
            "volumes": [{"name": "d", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "shardmesh.test/sh",
                "command": ["sh", "-c", "trap 'echo \"term after $(cat /d/hook), $(cat /d/post)\"; exit 0' TERM; echo up; while true; do sleep 0.2; done"],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo poststart > /d/post"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo prestop > /d/hook"]}}
                },
                "volumeMounts": [{"name": "d", "mountPath": "/d"}]}]}
    })).await;
    h.create_pod(json!({
        "metadata": {"name": "stubborn"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": "shardmesh.test/sh",
                "command": ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.2; done"]}]}
    }))
    .await;
    h.create_pod(json!({
        "metadata": {"name": "no-image"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "example.invalid/nope:1"}]}
    }))
    .await;
    h.create_pod(json!({
        "metadata": {"name": "no-configmap"},
        "spec": {"nodeName": NODE, "volumes": [{"name": "v", "configMap": {"name": "nope"}}],
            "containers": [{"name": "c", "image": "shardmesh.test/sh", "command": ["true"]}]}
    }))
    .await;
    let polite = h
        .wait_pod("polite", 30, "Running", |p| phase(p) == "Running")
        .await;
    let stubborn = h
        .wait_pod("stubborn", 30, "Running", |p| phase(p) == "Running")
        .await;
    h.wait_log(&polite, "c", "up").await;
    h.wait_log(&stubborn, "c", "up").await;
    h.pods()
        .delete("polite", &DeleteParams::default())
        .await
        .expect("delete");
    let polite_took = h.wait_gone("polite", 30).await;
    assert!(
        polite_took < Duration::from_secs(10),
        "SIGTERM honoured well within the 20 s grace: {polite_took:?}"
    );
    assert!(
        h.log(&polite, "c")
            .contains("term after prestop, poststart"),
        "preStop ran before SIGTERM: {}",
        h.log(&polite, "c")
    );
    h.pods()
        .delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete");
    let took = h.wait_gone("stubborn", 30).await;
    assert!(
        took >= Duration::from_millis(1500),
        "the grace period was given: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGKILL after the 2 s grace: {took:?}"
    );
    println!(
        "polite pod gone in {:.1}s, one ignoring SIGTERM in {:.1}s (grace 2 s)",
        polite_took.as_secs_f64(),
        took.as_secs_f64()
    );
    let p = h
        .wait_pod("no-image", 30, "ErrImagePull", |p| {
            status_json(p)["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
        })
        .await;
    let w = status_json(&p)["containerStatuses"][0]["state"]["waiting"].clone();
    assert!(
        w["message"]
            .as_str()
            .unwrap_or_default()
            .contains("example.invalid/nope"),
        "{w}"
    );
    assert_eq!(phase(&p), "Pending");
    let p = h
        .wait_pod("no-configmap", 30, "a mount error", |p| {
            status_json(p)["containerStatuses"][0]["state"]["waiting"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("configmap \"nope\" not found"))
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_runs_on_the_bridge() {
    let Some((mut h, _guard)) = Harness::start("sts").await else {
        return;
    };
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), &h.ns);
    svcs.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}
    })).unwrap()).await.expect("service");
    let sts: Api<StatefulSet> = Api::namespaced(h.client.clone(), &h.ns);
    let binary_dir = Path::new(env!("CARGO_BIN_EXE_bench-upstream"))
        .parent()
        .expect("the binary's directory")
        .display()
        .to_string();
    let t0 = Instant::now();
    sts.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web", "replicas": 3, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
                    "name": "web", "image": "shardmesh.test/upstream:1",
                    "args": ["--listen", "0.0.0.0:8080"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1},
                    // An emptyDir over the directory of the image's binary (as
                    // the operator's /tmp hides a checkout under /tmp): the
                    // binary still runs, opened before the mounts.
                    "volumeMounts": [{"name": "hide", "mountPath": binary_dir}]
                }], "volumes": [{"name": "hide", "emptyDir": {}}]}
            }
        }
    })).unwrap()).await.expect("statefulset");
    let ready = poll_async(Duration::from_secs(90), || async {
        let s = sts.get("web").await.ok()?;
        (s.status?.ready_replicas? == 3).then_some(())
    })
    .await;
    assert!(ready.is_some(), "3 replicas not Ready\n{}", h.agent_log());
    // Run from a directory a volume hides, the processes still carry their
    // binary's name (what ps, pgrep and the demo look for).
    let named = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim() == "bench-upstream")
        })
        .count();
    assert!(
        named >= 3,
        "{named} processes named bench-upstream, want the 3 replicas'"
    );
    println!(
        "StatefulSet of 3: all Ready {:.1}s after create",
        t0.elapsed().as_secs_f64()
    );
    if let Some(pid) = h.agent.as_ref().map(Child::id) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or_default();
        println!("agent running 3 pods: {rss}");
    }
    // No write churn: in a quiet window after Ready (readiness probes run
    // every second), the agent writes no pod status. The audit log is
    // flushed in batches of at most 1 s, hence the settling wait.
    let status_writes = |h: &Harness| {
        h.cp.audit_events()
            .iter()
            .filter(|e| {
                e.is_write()
                    && e.object_ref.as_ref().is_some_and(|o| {
                        o.resource == "pods"
                            && o.subresource.as_deref() == Some("status")
                            && o.namespace.as_deref() == Some(h.ns.as_str())
                    })
            })
            .count()
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = status_writes(&h);
    std::thread::sleep(Duration::from_secs(6));
    let after = status_writes(&h);
    assert_eq!(after, before, "pod status writes in a steady 6 s window");
    println!("steady state: 0 pod status writes in 6 s");
    let mut ips = Vec::new();
    let mut uids = Vec::new();
    for i in 0..3 {
        let p = h.pods().get(&format!("web-{i}")).await.expect("pod");
        assert_eq!(
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some(NODE),
            "scheduled to the node"
        );
        ips.push(
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .expect("pod IP"),
        );
        uids.push(p.metadata.uid.clone().unwrap_or_default());
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "distinct pod IPs: {ips:?}");
    // Pod to pod over the bridge: from web-0's namespace to the others.
    for ip in &ips[1..] {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &h.pod_netns(&uids[0]),
                "curl",
                "-s",
                "-m",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("http://{ip}:8080/"))
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "web-0 → {ip}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sts.delete("web", &DeleteParams::foreground())
        .await
        .expect("delete statefulset");
    // The StatefulSet controller may still recreate a pod while the GC
    // deletes the set: wait until no pod and no pod namespace is left.
    let pods = h.pods();
    let clean = poll_async(Duration::from_secs(60), || async {
        let left = pods.list(&Default::default()).await.ok()?.items.len();
        (left == 0 && h.netns_list().is_empty()).then_some(())
    })
    .await;
    assert!(
        clean.is_some(),
        "pods or namespaces left: {:?}\n{}",
        h.netns_list(),
        h.agent_log()
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_nothing_after_a_restart() {
    let Some((mut h, _guard)) = Harness::start("restart").await else {
        return;
    };
    h.create_pod(json!({
        "metadata": {"name": "survivor"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "shardmesh.test/sh", "command": ["sh", "-c", "echo started; exec sleep 3600"]}]}
    }))
    .await;
    let first = h
        .wait_pod("survivor", 30, "Ready", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    let uid = first.metadata.uid.clone().unwrap_or_default();
    let ip = first.status.as_ref().and_then(|s| s.pod_ip.clone());
    h.wait_log(&first, "c", "started").await;
    // SIGKILL: the agent cannot clean up, its pod keeps running.
    if let Some(mut agent) = h.agent.take() {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    assert!(
        h.netns_list().contains(&h.pod_netns(&uid)),
        "the killed agent's pod namespace is still there"
    );
    // A new agent removes the stale namespace with its processes and runs the pod again.
    h.agent = Some(spawn_agent(&h.cp, &h.state));
    let twice = poll_async(Duration::from_secs(30), || async {
        (h.log(&first, "c").matches("started").count() >= 2).then_some(())
    })
    .await;
    assert!(
        twice.is_some(),
        "the pod ran again: {}\n{}",
        h.log(&first, "c"),
        h.agent_log()
    );
    assert!(
        h.agent_log().contains("removed stale pod namespaces"),
        "{}",
        h.agent_log()
    );
    let again = h
        .wait_pod("survivor", 30, "Ready on the new agent", |p| {
            condition(p, "Ready").as_deref() == Some("True")
                && status_json(p)["containerStatuses"][0]["restartCount"] == 0
        })
        .await;
    assert_eq!(
        again.status.as_ref().and_then(|s| s.pod_ip.clone()),
        ip,
        "it keeps its address"
    );
    let out = Command::new("ip")
        .args(["netns", "pids", &h.pod_netns(&uid)])
        .output()
        .expect("ip netns pids");
    let pids = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count();
    assert_eq!(pids, 1, "only the new sleep runs in the pod namespace");
    h.stop();
}
