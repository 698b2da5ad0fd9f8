//! One pod's worker: makes its sandbox and volumes, starts native sidecars
//! (each must be started before the next), runs plain init containers to
//! completion, then the app containers; writes the status when it changes;
//! and on deletion stops app containers (preStop, SIGTERM, grace, SIGKILL),
//! then sidecars in reverse order, removes the sandbox and deletes the pod
//! with grace 0 and a UID precondition, as kubelet does.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::Preconditions;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::container::{grace_of, Handle, Kind, PodCtx, State};
use super::fields::PodRefs;
use super::lookup::Lookup;
use super::sandbox::{self, Sandbox};
use super::status::{self, Inputs, Transitions};
use super::volumes::VolumeSet;
use super::Agent;

/// What the manager tells a worker.
#[derive(Clone, Debug)]
pub enum Msg {
    /// The pod's latest object.
    Update(Box<Pod>),
    /// The pod is gone from the API (deleted without us, or force-deleted).
    Gone,
}

/// The container named `name` (app, init or ephemeral) of `pod`.
pub fn find_container(pod: &Pod, name: &str) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

/// The pod's hostname (`spec.hostname` or its name).
pub fn hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// The directory name of a pod: `<ns>_<name>_<uid>`.
pub fn dir_name(pod: &Pod) -> String {
    format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

struct Worker {
    agent: Arc<Agent>,
    pod: Pod,
    shared: Arc<Mutex<Pod>>,
    dir: PathBuf,
    sandbox: Option<Sandbox>,
    volumes: VolumeSet,
    volumes_ready: bool,
    next_volume_sync: Instant,
    setup_error: Option<String>,
    ctx: Option<Arc<PodCtx>>,
    inits: Vec<Option<Handle>>,
    mains: Vec<Option<Handle>>,
    next_init: usize,
    sidecars_stopped: bool,
    changed: Arc<Notify>,
    transitions: Transitions,
    written: Option<Value>,
    start_time: Timestamp,
}

/// Runs one pod until it is deleted, gone or the agent stops.
pub async fn run(
    agent: Arc<Agent>,
    first: Pod,
    mut rx: watch::Receiver<Msg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let dir = agent.cfg.state_dir.join("pods").join(dir_name(&first));
    let spec = first.spec.clone().unwrap_or_default();
    let start_time = first
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let phase = first
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let mut w = Worker {
        agent,
        shared: Arc::new(Mutex::new(first.clone())),
        pod: first,
        volumes: VolumeSet::new(dir.join("volumes")),
        dir,
        sandbox: None,
        volumes_ready: false,
        next_volume_sync: Instant::now(),
        setup_error: None,
        ctx: None,
        inits: spec
            .init_containers
            .iter()
            .flatten()
            .map(|_| None)
            .collect(),
        mains: spec.containers.iter().map(|_| None).collect(),
        next_init: 0,
        sidecars_stopped: false,
        changed: Arc::new(Notify::new()),
        transitions: Transitions::new(),
        written: None,
        start_time,
    };
    // A pod that finished before this agent started is not run again.
    let finished = phase == "Succeeded" || phase == "Failed";
    let mut gone = false;
    loop {
        if gone {
            w.stop_all(Duration::from_secs(2), false).await;
            w.teardown().await;
            return;
        }
        if w.pod.metadata.deletion_timestamp.is_some() {
            w.delete().await;
            return;
        }
        if *shutdown.borrow() {
            let grace = grace_of(&w.pod).min(Duration::from_secs(30));
            w.stop_all(grace, false).await;
            w.teardown().await;
            return;
        }
        if !finished {
            w.advance().await;
            w.write_status().await;
        }
        tokio::select! {
            r = rx.changed() => match r {
                Err(_) => gone = true,
                Ok(()) => match rx.borrow_and_update().clone() {
                    Msg::Gone => gone = true,
                    Msg::Update(p) => {
                        if let Ok(mut s) = w.shared.lock() {
                            *s = (*p).clone();
                        }
                        w.pod = *p;
                    }
                },
            },
            _ = w.changed.notified() => {}
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

impl Worker {
    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    fn host_network(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
    }

    fn pod_ip(&self) -> Option<String> {
        if self.host_network() {
            return Some(self.agent.cfg.node_ip.to_string());
        }
        self.sandbox.as_ref().map(|s| s.ip.to_string())
    }

    /// Makes the next step that can be made.
    async fn advance(&mut self) {
        if self.sandbox.is_none() && !self.host_network() {
            if let Err(e) = self.make_sandbox().await {
                self.setup_error = Some(e);
                return;
            }
        }
        if self.host_network() && !self.dir.join("etc").exists() {
            if let Err(e) = self.write_etc(self.agent.cfg.node_ip) {
                self.setup_error = Some(e);
                return;
            }
        }
        if Instant::now() >= self.next_volume_sync {
            let mut lookup = Lookup::new(self.agent.client.clone(), &self.namespace());
            let refs = PodRefs {
                pod: &self.pod,
                pod_ip: self.pod_ip().unwrap_or_default(),
                host_ip: self.agent.cfg.node_ip.to_string(),
            };
            match self.volumes.sync(&mut lookup, &refs).await {
                Ok(()) => {
                    self.volumes_ready = true;
                    self.setup_error = None;
                    self.next_volume_sync = Instant::now() + Duration::from_secs(30);
                }
                Err(e) => {
                    tracing_log(&format!("pod {}/{}: {e}", self.namespace(), self.name()));
                    self.setup_error = Some(e);
                    self.next_volume_sync = Instant::now() + Duration::from_secs(3);
                }
            }
        }
        if !self.volumes_ready {
            return;
        }
        let ctx = match &self.ctx {
            Some(c) => c.clone(),
            None => {
                let spec = self.pod.spec.clone().unwrap_or_default();
                let volumes = spec
                    .volumes
                    .iter()
                    .flatten()
                    .filter_map(|v| {
                        self.volumes
                            .path(&v.name)
                            .map(|p| (v.name.clone(), p.to_path_buf()))
                    })
                    .collect();
                let netns_path = match &self.sandbox {
                    Some(s) => s.netns_path(),
                    None => PathBuf::from("/proc/self/ns/net"),
                };
                let ctx = Arc::new(PodCtx {
                    cfg: self.agent.cfg.clone(),
                    client: self.agent.client.clone(),
                    images: self.agent.images.clone(),
                    agent_exe: self.agent.exe.clone(),
                    pod: self.shared.clone(),
                    dir: self.dir.clone(),
                    ip: self.pod_ip().unwrap_or_default(),
                    netns_path,
                    volumes,
                    changed: self.changed.clone(),
                });
                self.ctx = Some(ctx.clone());
                ctx
            }
        };
        let spec = self.pod.spec.clone().unwrap_or_default();
        let inits = spec.init_containers.clone().unwrap_or_default();
        let mut init_failed = false;
        while self.next_init < inits.len() {
            let c = &inits[self.next_init];
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let slot = &mut self.inits[self.next_init];
            let handle = slot.get_or_insert_with(|| {
                Handle::start(
                    ctx.clone(),
                    c.clone(),
                    if sidecar { Kind::Sidecar } else { Kind::Init },
                )
            });
            let v = handle.view();
            if sidecar {
                if !v.started {
                    break;
                }
            } else if !v.done {
                break;
            } else if !matches!(&v.state, State::Terminated(e) if e.code == 0) {
                init_failed = true;
                break;
            }
            self.next_init += 1;
        }
        if self.next_init == inits.len() {
            for (slot, c) in self.mains.iter_mut().zip(&spec.containers) {
                if slot.is_none() {
                    *slot = Some(Handle::start(ctx.clone(), c.clone(), Kind::Main));
                }
            }
        }
        let mains_done = self.next_init == inits.len()
            && self
                .mains
                .iter()
                .all(|m| m.as_ref().is_some_and(|h| h.view().done));
        if (mains_done || init_failed) && !self.sidecars_stopped {
            self.sidecars_stopped = true;
            let grace = grace_of(&self.pod);
            for h in self.inits.iter_mut().rev().flatten() {
                h.stop(grace).await;
            }
        }
    }

    async fn make_sandbox(&mut self) -> Result<(), String> {
        let prefer = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let (ip, prefix) = {
            let mut ipam = self
                .agent
                .ipam
                .lock()
                .map_err(|_| "ipam lock poisoned".to_string())?;
            let ip = ipam.allocate(prefer).ok_or_else(|| {
                format!(
                    "no free address in the pod CIDR {}",
                    self.agent.cfg.pod_cidr
                )
            })?;
            (ip, ipam.prefix())
        };
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let sb = Sandbox::named(&self.agent.scope, &uid, ip);
        if let Err(e) = sb.create(&self.agent.cfg, prefix).await {
            if let Ok(mut ipam) = self.agent.ipam.lock() {
                ipam.release(ip);
            }
            return Err(e);
        }
        self.sandbox = Some(sb);
        self.write_etc(ip)
    }

    fn write_etc(&self, ip: Ipv4Addr) -> Result<(), String> {
        let etc = self.dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host = hostname(&self.pod);
        let fqdn = spec.subdomain.as_ref().map(|sub| {
            format!(
                "{host}.{sub}.{}.svc.{}",
                self.namespace(),
                self.agent.cfg.cluster_domain
            )
        });
        let resolv = match spec.dns_policy.as_deref() {
            Some("Default") => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            _ => sandbox::resolv_conf(&self.agent.cfg, &self.namespace()),
        };
        for (name, body) in [
            ("resolv.conf", resolv),
            ("hosts", sandbox::hosts(ip, &host, fqdn.as_deref())),
            ("hostname", format!("{host}\n")),
        ] {
            std::fs::write(etc.join(name), body).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    fn inputs(&self) -> Inputs<'_> {
        let view = |h: &Option<Handle>| h.as_ref().map(Handle::view);
        Inputs {
            pod: &self.pod,
            pod_ip: self.pod_ip(),
            host_ip: self.agent.cfg.node_ip.to_string(),
            start_time: self.start_time,
            sandbox_ready: self.sandbox.is_some() || self.host_network(),
            setup_error: self.setup_error.clone(),
            inits: self.inits.iter().map(view).collect(),
            mains: self.mains.iter().map(view).collect(),
        }
    }

    /// Writes the status when it differs from the last one written.
    async fn write_status(&mut self) {
        let mut transitions = std::mem::take(&mut self.transitions);
        let status = status::build(&self.inputs(), &mut transitions);
        self.transitions = transitions;
        if self.written.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.namespace());
        // podIPs and hostIPs merge by `ip` in a strategic patch: replace
        // them whole, or a new address would be added beside the old one.
        let mut body = status.clone();
        for key in ["podIPs", "hostIPs"] {
            if let Some(list) = body.get_mut(key).and_then(Value::as_array_mut) {
                list.push(serde_json::json!({"$patch": "replace"}));
            }
        }
        let patch = serde_json::json!({"status": body});
        match api
            .patch_status(
                &self.name(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => self.written = Some(status),
            Err(e) => tracing_log(&format!(
                "pod {}/{}: status: {e}",
                self.namespace(),
                self.name()
            )),
        }
    }

    /// Stops every container: app containers together, then init containers
    /// and sidecars in reverse order with what is left of `grace` (at least
    /// 2 s). With `report`, the status is written once the app containers
    /// have stopped (not Ready; still Running while sidecars shut down).
    async fn stop_all(&mut self, grace: Duration, report: bool) {
        let deadline = Instant::now() + grace;
        for h in self.mains.iter().flatten() {
            h.request_stop(grace);
        }
        for h in self.mains.iter_mut().flatten() {
            h.stop(grace).await;
        }
        if report {
            self.write_status().await;
        }
        for h in self.inits.iter_mut().rev().flatten() {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(2));
            h.stop(left).await;
        }
    }

    /// Removes the sandbox, frees the address and deletes the volumes (logs stay).
    async fn teardown(&mut self) {
        if let Some(sb) = self.sandbox.take() {
            sb.destroy().await;
            if let Ok(mut ipam) = self.agent.ipam.lock() {
                ipam.release(sb.ip);
            }
        }
        for sub in ["volumes", "scratch"] {
            let _ = std::fs::remove_dir_all(self.dir.join(sub));
        }
    }

    /// Graceful deletion, ending with the API delete (grace 0, UID precondition).
    async fn delete(&mut self) {
        let grace = grace_of(&self.pod);
        self.stop_all(grace, true).await;
        self.write_status().await;
        self.teardown().await;
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.namespace());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = api.delete(&self.name(), &params).await {
            tracing_log(&format!(
                "pod {}/{}: delete: {e}",
                self.namespace(),
                self.name()
            ));
        }
    }
}

/// One line on the agent's stderr.
pub fn tracing_log(msg: &str) {
    eprintln!("{} node-agent: {msg}", status::time(Timestamp::now()));
}
