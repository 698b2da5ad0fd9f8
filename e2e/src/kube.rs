//! A real Kubernetes control plane for tests: upstream etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler run by `scripts/kube/cluster`
//! on 127.0.0.1, with the pinned binaries `scripts/kube/build` made.
//!
//! Tests are gated on [`E2E_ENV`] (`SHARDMESH_KUBE_E2E=1`, set by
//! `scripts/test.d/60-kube.sh`): [`ControlPlane::for_test`] then attaches to
//! the control plane the stage started (its directory in [`DIR_ENV`]) or
//! starts a private one that stops when the value drops. Without the gate it
//! returns why the test skips.
//!
//! The node agent of a later issue plugs in here: it gets the cluster CA
//! ([`ControlPlane::pki`]) to sign its node certificate, and the API URL and
//! kubeconfig like any client.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde::Deserialize;

use crate::bins::workspace;

/// Set to `1` to run the tests that need the control plane.
pub const E2E_ENV: &str = "SHARDMESH_KUBE_E2E";
/// The directory of a control plane started by `scripts/kube/cluster up`.
pub const DIR_ENV: &str = "SHARDMESH_KUBE_DIR";

/// A running control plane: its directory, kubeconfig and binaries.
pub struct ControlPlane {
    dir: PathBuf,
    bin: PathBuf,
    /// Stop it on drop (a control plane this process started).
    owned: bool,
}

impl ControlPlane {
    /// The control plane for a test, or why the test skips: attaches to the
    /// one in `SHARDMESH_KUBE_DIR` when it runs, else starts a private one
    /// under `target/kube/test-PID`.
    pub fn for_test() -> Result<Self, String> {
        if std::env::var(E2E_ENV).as_deref() != Ok("1") {
            return Err(format!(
                "{E2E_ENV} is not 1 (scripts/test.d/60-kube.sh sets it after starting a control plane)"
            ));
        }
        if let Some(dir) = std::env::var_os(DIR_ENV) {
            let dir = PathBuf::from(dir);
            if let Ok(cp) = Self::attach(&dir) {
                return Ok(cp);
            }
        }
        let dir = crate::bins::target_dir()
            .join("kube")
            .join(format!("test-{}", std::process::id()));
        Self::start(&dir)
    }

    /// Attaches to a running control plane started in `dir`.
    pub fn attach(dir: &Path) -> Result<Self, String> {
        let out = cluster_script(dir)
            .arg("env")
            .output()
            .map_err(|e| format!("run scripts/kube/cluster env: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "no control plane runs in {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let bin = exported(&String::from_utf8_lossy(&out.stdout), "SHARDMESH_KUBE_BIN")
            .ok_or("scripts/kube/cluster env printed no SHARDMESH_KUBE_BIN")?;
        Ok(Self {
            dir: dir.to_path_buf(),
            bin: PathBuf::from(bin),
            owned: false,
        })
    }

    /// Starts a fresh control plane in `dir` (building or reusing the binaries).
    pub fn start(dir: &Path) -> Result<Self, String> {
        let status = cluster_script(dir)
            .arg("up")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("run scripts/kube/cluster up: {e}"))?;
        if !status.success() {
            return Err(format!(
                "scripts/kube/cluster up failed; logs in {}/logs",
                dir.display()
            ));
        }
        let mut cp = Self::attach(dir)?;
        cp.owned = true;
        Ok(cp)
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The PKI directory: `ca.crt`/`ca.key` sign clients (and nodes).
    pub fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The directory of this control plane's state and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The audit log (JSON lines, level Metadata).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The pinned binaries (`kubectl`, `helm`, ...).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin("kubectl"));
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.join("kubectl-cache"));
        cmd
    }

    /// `helm` with the admin kubeconfig and its caches under the cluster's directory.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.bin("helm"));
        let home = self.dir.join("helm");
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECACHEDIR", self.dir.join("kubectl-cache"));
        cmd
    }

    /// Waits until each named CRD is Established (`kubectl wait` fails
    /// when asked before the API server has written the CRD's status).
    pub fn wait_established(&self, crds: &[&str]) -> Result<(), String> {
        for crd in crds {
            let established = crate::poll(Duration::from_secs(60), || {
                let out = self
                    .kubectl()
                    .args(["get", "crd", crd, "-o"])
                    .arg("jsonpath={.status.conditions[?(@.type==\"Established\")].status}")
                    .output()
                    .ok()?;
                (String::from_utf8_lossy(&out.stdout).trim() == "True").then_some(())
            });
            established.ok_or_else(|| format!("CRD {crd} not Established within 60 s"))?;
        }
        Ok(())
    }

    /// An admin client.
    pub async fn client(&self) -> Result<Client, String> {
        client_for(&self.kubeconfig()).await
    }

    /// Every complete request in the audit log so far.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        let text = std::fs::read_to_string(self.audit_log()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<AuditEvent>(l).ok())
            .filter(|e| e.stage == "ResponseComplete")
            .collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.owned {
            let _ = cluster_script(&self.dir).arg("down").status();
        }
    }
}

/// One audit record (the fields the tests count by).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `ResponseComplete` for a finished request.
    pub stage: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// Who asked.
    pub user: AuditUser,
    /// What it was about.
    #[serde(default)]
    pub object_ref: Option<AuditObject>,
    /// The request URI.
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    /// The HTTP status answered.
    #[serde(default)]
    pub response_status: Option<AuditStatus>,
}

/// The user of an audit record.
#[derive(Clone, Debug, Deserialize)]
pub struct AuditUser {
    /// e.g. `system:serviceaccount:NS:NAME`.
    #[serde(default)]
    pub username: String,
}

/// The object of an audit record.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObject {
    /// Plural resource, e.g. `statefulsets`.
    #[serde(default)]
    pub resource: String,
    /// Namespace, when namespaced.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name.
    #[serde(default)]
    pub name: Option<String>,
    /// `status`, `scale`, ...
    #[serde(default)]
    pub subresource: Option<String>,
}

/// The response status of an audit record.
#[derive(Clone, Debug, Deserialize)]
pub struct AuditStatus {
    /// HTTP status code.
    #[serde(default)]
    pub code: u16,
}

impl AuditEvent {
    /// A request that changes state.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// A client for the kubeconfig at `path`.
pub async fn client_for(path: &Path) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Writes a kubeconfig next to `admin` that authenticates with `token`
/// instead of the admin certificate (a ServiceAccount's TokenRequest token).
pub fn token_kubeconfig(admin: &Path, token: &str, out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(admin).map_err(|e| format!("{}: {e}", admin.display()))?;
    let mut lines = Vec::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with("users:") {
            lines.push("users:".to_string());
            lines.push("- name: token".to_string());
            lines.push("  user:".to_string());
            lines.push(format!("    token: {token}"));
            skip = true;
            continue;
        }
        if skip && (line.starts_with("- ") || line.starts_with("  ")) {
            continue;
        }
        skip = false;
        lines.push(line.replace("user: admin", "user: token"));
    }
    std::fs::write(out, lines.join("\n") + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    // It holds a credential; helm also warns about group-readable kubeconfigs.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// Polls the async `check` every 100 ms until it returns `Some`, or `None`
/// after `timeout`.
pub async fn poll_async<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cluster_script(dir: &Path) -> Command {
    let mut cmd = Command::new(workspace().join("scripts/kube/cluster"));
    cmd.env(DIR_ENV, dir);
    cmd
}

/// The value of `export NAME=VALUE` in `scripts/kube/cluster env` output.
fn exported(text: &str, name: &str) -> Option<String> {
    let prefix = format!("export {name}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exports() {
        let text = "export KUBECONFIG=/a/b\nexport SHARDMESH_KUBE_BIN=/c/bin\n# note\n";
        assert_eq!(
            exported(text, "SHARDMESH_KUBE_BIN").as_deref(),
            Some("/c/bin")
        );
        assert_eq!(exported(text, "NOPE"), None);
    }

    #[test]
    fn token_kubeconfig_swaps_the_user() {
        let dir = std::env::temp_dir().join(format!("shardmesh-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = dir.join("admin");
        std::fs::write(
            &admin,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: admin\n  user:\n    client-certificate: /x\n    client-key: /y\ncontexts:\n- name: c\n  context: {cluster: c, user: admin}\ncurrent-context: c\n",
        )
        .unwrap();
        let out = dir.join("token");
        token_kubeconfig(&admin, "abc", &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("token: abc"), "{text}");
        assert!(!text.contains("client-key"), "{text}");
        assert!(text.contains("user: token"), "{text}");
        assert!(text.contains("current-context: c"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
