//! The node agent, "a kubelet without containers": it registers a Node and
//! runs the pods bound to it as host processes, each pod in its own network
//! namespace (veth to the node's bridge, an address from the pod CIDR) and
//! each container in its own mount and UTS namespace where its volumes
//! appear at their mount paths. Images map to workspace binaries by a table.
//!
//! ## Layout
//! - [`config`]: the flags.
//! - [`registration`]: the Node, its Lease and Ready heartbeat.
//! - [`manager`]: the pod watch, one [`pod`] worker per pod.
//! - [`pod`]: a pod's lifecycle (sandbox, init containers and sidecars, app
//!   containers, graceful deletion) and [`status`], its API status.
//! - [`container`]: one container's supervisor (probes, restarts, back-off);
//!   [`launch`] starts one run through the shim; [`probes`] runs probe and
//!   hook actions.
//! - [`sandbox`]: network namespace, veth, `resolv.conf`/`hosts`; [`ipam`] the addresses.
//! - [`volumes`] (+ [`atomic`]): volumes as host directories; [`env`] (+
//!   [`fields`], [`lookup`]): environment variables.
//! - [`shim`]: runs inside the container's namespaces: mounts, then exec.
//! - [`images`]: the image table.

pub mod atomic;
pub mod config;
pub mod container;
pub mod env;
pub mod fields;
pub mod images;
pub mod ipam;
pub mod launch;
pub mod lookup;
pub mod manager;
pub mod pod;
pub mod probes;
pub mod registration;
pub mod sandbox;
pub mod shim;
pub mod status;
pub mod volumes;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use config::Config;
use images::ImageTable;
use ipam::Ipam;

/// What every pod worker shares.
pub struct Agent {
    /// The flags.
    pub cfg: Arc<Config>,
    /// The API client.
    pub client: kube::Client,
    /// Image → binary.
    pub images: Arc<ImageTable>,
    /// Pod addresses.
    pub ipam: Mutex<Ipam>,
    /// This binary, which is also the container shim.
    pub exe: PathBuf,
    /// The prefix of this agent's pod namespaces ([`sandbox::scope`]).
    pub scope: String,
}

/// Runs the agent until `shutdown` resolves, then stops every pod it runs
/// and removes their namespaces.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let client = match &cfg.kubeconfig {
        Some(p) => crate::kube::client_for(p).await?,
        None => kube::Client::try_default()
            .await
            .map_err(|e| e.to_string())?,
    };
    let images = match &cfg.images {
        Some(p) => ImageTable::load(p)?,
        None => ImageTable::builtin(),
    };
    let ipam = Ipam::new(&cfg.pod_cidr, cfg.gateway)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    std::fs::create_dir_all(cfg.state_dir.join("pods"))
        .map_err(|e| format!("{}: {e}", cfg.state_dir.display()))?;
    let scope = sandbox::scope(&cfg.state_dir);
    let stale = sandbox::remove_stale(&scope).await;
    if !stale.is_empty() {
        pod::tracing_log(&format!(
            "removed stale pod namespaces: {}",
            stale.join(" ")
        ));
    }
    registration::register(&client, &cfg).await?;
    let cfg = Arc::new(cfg);
    let agent = Arc::new(Agent {
        cfg: cfg.clone(),
        client: client.clone(),
        images: Arc::new(images),
        ipam: Mutex::new(ipam),
        exe,
        scope: scope.clone(),
    });
    pod::tracing_log(&format!(
        "node {} registered; pods get {} on bridge {}",
        cfg.node_name, cfg.pod_cidr, cfg.bridge
    ));
    let heartbeat = tokio::spawn(registration::heartbeat(client, cfg.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let manager = tokio::spawn(manager::run(agent, stop_rx));
    shutdown.await;
    pod::tracing_log("stopping: every pod's containers, then their namespaces");
    stop_tx.send_replace(true);
    let _ = manager.await;
    heartbeat.abort();
    let left = sandbox::remove_stale(&scope).await;
    if !left.is_empty() {
        pod::tracing_log(&format!("removed left-over namespaces: {}", left.join(" ")));
    }
    Ok(())
}
