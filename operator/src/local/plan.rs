//! Manifests → a plan: each ShardedService validated exactly as the operator
//! does, its sidecar config rendered with the operator's own renderer, and
//! then, per pod, the per-pod fields a cluster would get from the downward API.

use std::path::{Path, PathBuf};

use shardmesh_config::{LogFormat, SeedConfig, SidecarConfig};

use super::addr::{self, Network, PodNet};
use super::LocalError;
use crate::crd::ShardedService;
use crate::render::{self, MeshInputs};

/// Annotation with the command that runs the app locally (split on whitespace).
pub const LOCAL_COMMAND: &str = "shardmesh.io/local-command";
/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Sidecar shutdown grace locally: Ctrl-C and scale-in should be quick.
const LOCAL_SHUTDOWN_GRACE_MS: u64 = 5_000;

/// One service of the mesh, ready to start pods of.
#[derive(Clone, Debug)]
pub struct ServicePlan {
    /// ShardedService name.
    pub name: String,
    /// Position in the mesh (picks the pods' third address octet).
    pub index: usize,
    /// Replicas at start.
    pub replicas: u32,
    /// Shards in force.
    pub shards: u32,
    /// Port the app listens on (on the pod IP).
    pub app_port: u16,
    /// Program and arguments of the app.
    pub command: Vec<String>,
    /// Plain `env` values of the pod template's first container.
    pub env: Vec<(String, String)>,
    /// The sidecar config rendered by the operator, shared by every pod.
    pub base: SidecarConfig,
}

/// Everything needed to start one pod.
#[derive(Clone, Debug)]
pub struct PodPlan {
    /// Pod name, `NAME-i`.
    pub name: String,
    /// Service name.
    pub service: String,
    /// Ordinal `i`.
    pub ordinal: u32,
    /// Its IP (and namespace).
    pub net: PodNet,
    /// Its sidecar config, per-pod fields filled in.
    pub sidecar: SidecarConfig,
    /// App program and arguments.
    pub command: Vec<String>,
    /// App environment.
    pub env: Vec<(String, String)>,
    /// Its directory in the run dir (config and logs).
    pub dir: PathBuf,
}

/// Reads every ShardedService from `files` (multi-document YAML; other kinds are skipped).
pub fn load(files: &[PathBuf]) -> Result<Vec<ShardedService>, LocalError> {
    let mut out = Vec::new();
    for path in files {
        let size = std::fs::metadata(path)
            .map_err(|e| LocalError::io(format!("cannot read {}", path.display()), e))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            return Err(LocalError::Manifest(format!(
                "{} is larger than {MAX_MANIFEST_BYTES} bytes",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| LocalError::io(format!("cannot read {}", path.display()), e))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| LocalError::Manifest(format!("{}: {e}", path.display())))?;
        for doc in docs {
            if doc.get("kind").and_then(|k| k.as_str()) != Some("ShardedService") {
                continue;
            }
            let svc: ShardedService = serde_json::from_value(doc).map_err(|e| {
                LocalError::Manifest(format!("{}: not a ShardedService: {e}", path.display()))
            })?;
            out.push(svc);
        }
    }
    if out.is_empty() {
        return Err(LocalError::Manifest(
            "no ShardedService in the given files".into(),
        ));
    }
    Ok(out)
}

/// Validates `services` and plans the mesh they form on `network`.
pub fn plan(
    services: &[ShardedService],
    network: &Network,
    keyring: &Path,
) -> Result<Vec<ServicePlan>, LocalError> {
    if services.len() > addr::MAX_SERVICES {
        return Err(LocalError::Manifest(format!(
            "at most {} services in one local mesh",
            addr::MAX_SERVICES
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    for svc in services {
        let name = svc.metadata.name.clone().unwrap_or_default();
        crate::validate(svc, crate::local::pki::TRUST_DOMAIN)
            .map_err(|e| LocalError::Manifest(format!("{name}: {e}")))?;
        if !names.insert(name.clone()) {
            return Err(LocalError::Manifest(format!(
                "ShardedService {name} appears twice"
            )));
        }
    }
    let peers: Vec<_> = services.iter().filter_map(own_service).collect();
    // Every starting pod of every service seeds the mesh, as the cluster's
    // headless gossip Service lists every pod: with pod 0 alone as the
    // seed, a restarted pod 0 found nobody, started as the first member,
    // and after `stable_after` acquired every shard beside the live owners
    // (their apps fenced them: half the requests failed in the chaos test).
    let seeds: Vec<String> = services
        .iter()
        .enumerate()
        .flat_map(|(s, svc)| {
            let replicas = u32::try_from(svc.spec.replicas).unwrap_or(0);
            (0..replicas.clamp(1, addr::MAX_REPLICAS))
                .map(move |i| network.pod(s, i).addr(addr::GOSSIP_PORT))
        })
        .collect();
    services
        .iter()
        .enumerate()
        .map(|(index, svc)| plan_service(svc, index, &peers, &seeds, keyring))
        .collect()
}

/// The service entry every sidecar routes `svc` by: the first service of
/// its own rendered config (one source of truth with the operator).
fn own_service(svc: &ShardedService) -> Option<shardmesh_config::ServiceConfig> {
    let inputs = MeshInputs {
        shards: render::resolved_shards(svc),
        seeds: SeedConfig::default(),
        gossip_enabled: true,
        keyring_file: None,
        peers: Vec::new(),
        tls: None,
    };
    render::render_sidecar_config(svc, &inputs)
        .services
        .into_iter()
        .next()
}

fn plan_service(
    svc: &ShardedService,
    index: usize,
    peers: &[shardmesh_config::ServiceConfig],
    seeds: &[String],
    keyring: &Path,
) -> Result<ServicePlan, LocalError> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let replicas = u32::try_from(svc.spec.replicas).unwrap_or(0);
    if replicas > addr::MAX_REPLICAS {
        return Err(LocalError::Manifest(format!(
            "{name}: at most {} replicas locally",
            addr::MAX_REPLICAS
        )));
    }
    let shards = render::resolved_shards(svc);
    let inputs = MeshInputs {
        shards,
        seeds: SeedConfig {
            dns: None,
            static_seeds: seeds.to_vec(),
        },
        gossip_enabled: true,
        keyring_file: Some(keyring.display().to_string()),
        peers: peers.to_vec(),
        tls: None,
    };
    let mut base = render::render_sidecar_config(svc, &inputs);
    base.log.format = LogFormat::Json;
    base.shutdown_grace_ms = base.shutdown_grace_ms.min(LOCAL_SHUTDOWN_GRACE_MS);
    Ok(ServicePlan {
        command: command(svc, &name)?,
        env: template_env(svc),
        app_port: u16::try_from(svc.spec.app_port).unwrap_or(8080),
        name,
        index,
        replicas,
        shards,
        base,
    })
}

/// The app command: the annotation, else the first container's command + args.
fn command(svc: &ShardedService, name: &str) -> Result<Vec<String>, LocalError> {
    let annotated = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOCAL_COMMAND))
        .map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|c| !c.is_empty());
    let from_template = || {
        let c = svc.spec.template.spec.as_ref()?.containers.first()?;
        let mut argv = c.command.clone().unwrap_or_default();
        argv.extend(c.args.clone().unwrap_or_default());
        Some(argv).filter(|a| !a.is_empty())
    };
    let argv = annotated.or_else(from_template).ok_or_else(|| {
        LocalError::Manifest(format!(
            "{name}: no app command: set the {LOCAL_COMMAND} annotation or the container's command"
        ))
    })?;
    let program = Path::new(&argv[0]);
    if argv[0].contains('/') && !program.exists() {
        return Err(LocalError::Manifest(format!(
            "{name}: app program {} does not exist (build it first, e.g. cargo build --release -p shardmesh-bank)",
            program.display()
        )));
    }
    Ok(argv)
}

fn template_env(svc: &ShardedService) -> Vec<(String, String)> {
    let container = svc
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first());
    container
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

/// `bank` → `BANK`, `user-db` → `USER_DB`: prefix of the app's own variables.
pub fn env_prefix(service: &str) -> String {
    service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl ServicePlan {
    /// The plan of pod `ordinal`, with its files under `run_dir`.
    pub fn pod(&self, ordinal: u32, network: &Network, run_dir: &Path) -> PodPlan {
        let name = format!("{}-{ordinal}", self.name);
        let net = network.pod(self.index, ordinal);
        let mut sidecar = self.base.clone();
        sidecar.pod.name = name.clone();
        sidecar.pod.advertise_host = Some(net.ip.to_string());
        sidecar.listeners.outbound = net.addr(addr::OUTBOUND_PORT);
        sidecar.listeners.inbound = net.addr(addr::INBOUND_PORT);
        sidecar.listeners.admin = net.addr(addr::ADMIN_PORT);
        sidecar.listeners.gossip = net.addr(addr::GOSSIP_PORT);
        let app = net.addr(self.app_port);
        sidecar.app.address = app.clone();
        let data = run_dir.join("data").join(&self.name);
        let prefix = env_prefix(&self.name);
        let mut env = self.env.clone();
        env.extend([
            ("SHARDMESH_POD_NAME".to_string(), name.clone()),
            ("SHARDMESH_SERVICE".to_string(), self.name.clone()),
            (
                "SHARDMESH_OUTBOUND".to_string(),
                format!("http://{}", net.addr(addr::OUTBOUND_PORT)),
            ),
            ("SHARDMESH_APP_LISTEN".to_string(), app.clone()),
            ("SHARDMESH_DATA_DIR".to_string(), data.display().to_string()),
            (format!("{prefix}_LISTEN"), app),
            (format!("{prefix}_DATA"), data.display().to_string()),
        ]);
        PodPlan {
            dir: run_dir.join(&name),
            name,
            service: self.name.clone(),
            ordinal,
            net,
            sidecar,
            command: self.command.clone(),
            env,
        }
    }
}

#[cfg(test)]
mod tests;
