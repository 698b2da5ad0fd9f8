//! `local up FILE...`: plans the mesh, starts every pod, supervises, applies
//! `scale` requests, shows the table, and stops everything on Ctrl-C/SIGTERM.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::addr::Network;
use super::pki::LocalPki;
use super::plan::{self, ServicePlan};
use super::pod::{Backoff, Phase, Pod};
use super::ports;
use super::state::{self, Control, PodState, RunState, ServiceState};
use super::{probe, table, LocalError, RUNS_DIR};

/// Flags of `local up`.
#[derive(Clone, Debug, clap::Args)]
pub struct UpArgs {
    /// ShardedService manifests (YAML); all their services form one mesh.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Run directory (default: target/shardmesh-local/run-<time>-<pid>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Second octet of the pod addresses: pod i of the s-th service is 127.B.s.(10+i).
    #[arg(long, default_value_t = 0)]
    pub loopback_block: u8,
    /// The sidecar binary (default: shardmesh-sidecar beside this binary, else on PATH).
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// First restart delay after a crash, in ms; doubles per crash in a row up to 30 s.
    #[arg(long, default_value_t = 1000)]
    pub restart_backoff_ms: u64,
    /// Run pod i of service s in the network namespace PREFIX-s-i at
    /// 10.B.s.(10+i) (made by the caller; tests only).
    #[arg(long, hide = true)]
    pub netns: Option<String>,
}

/// Supervision step.
const TICK: Duration = Duration::from_millis(100);
/// How often the sidecars are asked for their state.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Timeout of one admin request.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// A service and its pods.
struct Service {
    plan: ServicePlan,
    /// Replicas wanted.
    replicas: u32,
    /// Pods by ordinal.
    pods: BTreeMap<u32, Pod>,
}

/// What the loop remembers between probes.
#[derive(Default)]
struct Seen {
    /// Inbound request counts by pod, at the last probe.
    counts: BTreeMap<String, (f64, Instant)>,
    /// Last probe results by pod: ready, shards owned, rps.
    probes: BTreeMap<String, (bool, Option<u32>, f64)>,
}

/// Runs `up` until a signal.
pub async fn run(args: UpArgs) -> Result<(), LocalError> {
    let begun = Instant::now();
    let cwd = std::env::current_dir().map_err(|e| LocalError::io("no working directory", e))?;
    let run_dir = cwd.join(args.run_dir.clone().unwrap_or_else(default_run_dir));
    std::fs::create_dir_all(run_dir.join("data"))
        .map_err(|e| LocalError::io(format!("cannot create {}", run_dir.display()), e))?;
    if args.run_dir.is_none() {
        state::mark_latest(&run_dir);
    }
    let keyring = write_keyring(&run_dir)?;
    // Every sidecar-to-sidecar hop of the local mesh runs on mutual TLS.
    let mut pki = LocalPki::create(&run_dir)?;
    let network = match &args.netns {
        Some(prefix) => Network::Netns {
            prefix: prefix.clone(),
            block: args.loopback_block,
        },
        None => Network::Loopback {
            block: args.loopback_block,
        },
    };
    let manifests = plan::load(&args.files)?;
    let plans = plan::plan(&manifests, &network, &keyring)?;
    let sidecar_bin = sidecar_binary(args.sidecar.as_deref());
    let backoff = Backoff {
        initial: Duration::from_millis(args.restart_backoff_ms.max(1)),
        ..Backoff::default()
    };
    let mut services: Vec<Service> = plans
        .into_iter()
        .map(|plan| Service {
            replicas: plan.replicas,
            plan,
            pods: BTreeMap::new(),
        })
        .collect();
    let control_path = run_dir.join(state::CONTROL_FILE);
    let mut control = Control {
        seq: 0,
        replicas: services
            .iter()
            .map(|s| (s.plan.name.clone(), s.replicas))
            .collect(),
    };
    state::write_json(&control_path, &control)?;
    // A pod address already taken (an earlier run still up?) would make
    // every app crash-loop: refuse now, naming the address and its holder.
    for svc in &services {
        for ordinal in 0..svc.replicas {
            ports::check_free(&svc.plan.pod(ordinal, &network, &run_dir))
                .map_err(LocalError::AddressInUse)?;
        }
    }
    let total: u32 = services.iter().map(|s| s.replicas).sum();
    say(&format!(
        "shardmesh local: starting {total} pod(s) of {} service(s); run dir {}",
        services.len(),
        run_dir.display()
    ));
    let mut ui = Ui::new();
    let mut seen = Seen::default();
    let mut announced = false;
    let mut last_probe: Option<Instant> = None;
    let mut ticker = tokio::time::interval(TICK);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut shutdown => break,
        }
        let now = Instant::now();
        if let Ok(next) = state::read_json::<Control>(&control_path) {
            if next.seq > control.seq {
                for svc in services.iter_mut() {
                    if let Some(n) = next.replicas.get(&svc.plan.name) {
                        if *n != svc.replicas {
                            ui.event(format!("scaling {} {} -> {n}", svc.plan.name, svc.replicas));
                        }
                        svc.replicas = (*n).min(super::addr::MAX_REPLICAS);
                    }
                }
                control = next;
            }
        }
        for svc in services.iter_mut() {
            reconcile(
                svc,
                &network,
                &run_dir,
                backoff,
                &sidecar_bin,
                &mut pki,
                now,
                &mut ui,
            );
        }
        if last_probe.is_none_or(|t| now.duration_since(t) >= PROBE_EVERY) {
            last_probe = Some(now);
            probe_all(&services, &mut seen).await;
            let st = snapshot(&services, &seen, &run_dir, control.seq);
            let _ = state::write_json(&run_dir.join(state::STATE_FILE), &st);
            if st.ready && !announced {
                announced = true;
                ui.event(ready_message(&services, &st, begun.elapsed(), &run_dir));
            }
            ui.show(&st);
        }
    }
    ui.event("stopping every pod (Ctrl-C again to kill at once)".into());
    stop_all(&mut services).await;
    let mut st = snapshot(&services, &seen, &run_dir, control.seq);
    st.stopped = true;
    let _ = state::write_json(&run_dir.join(state::STATE_FILE), &st);
    say(&format!(
        "shardmesh local: stopped; logs in {}",
        run_dir.display()
    ));
    Ok(())
}

/// Brings `svc` towards its wanted replicas and supervises its pods.
#[allow(clippy::too_many_arguments)]
fn reconcile(
    svc: &mut Service,
    network: &Network,
    run_dir: &Path,
    backoff: Backoff,
    sidecar_bin: &str,
    pki: &mut LocalPki,
    now: Instant,
    ui: &mut Ui,
) {
    for ordinal in 0..svc.replicas {
        if svc.pods.contains_key(&ordinal) {
            continue;
        }
        let mut plan = svc.plan.pod(ordinal, network, run_dir);
        pki.configure(&mut plan);
        let mut pod = Pod::new(plan, backoff, sidecar_bin.to_string());
        let started = ports::check_free(&pod.plan)
            .map_err(LocalError::AddressInUse)
            .and_then(|()| pki.issue(&pod.plan, now))
            .and_then(|()| pod.start(now));
        if let Err(e) = started {
            ui.event(format!("{}: cannot start: {e}", pod.plan.name));
        }
        svc.pods.insert(ordinal, pod);
    }
    // Scale in one pod at a time, highest ordinal first (like a StatefulSet).
    let extra: Vec<u32> = svc
        .pods
        .keys()
        .copied()
        .filter(|o| *o >= svc.replicas)
        .collect();
    let stopping = extra
        .iter()
        .any(|o| matches!(svc.pods[o].phase, Phase::Stopping { .. }));
    if let (false, Some(last)) = (stopping, extra.last()) {
        if let Some(pod) = svc.pods.get_mut(last) {
            pod.begin_stop(now);
        }
    }
    for pod in svc.pods.values_mut() {
        if let Err(e) = pki.refresh(&pod.plan, now) {
            ui.event(format!("{}: {e}", pod.plan.name));
        }
        let before = pod.restarts;
        let was_backoff = matches!(pod.phase, Phase::Backoff { .. });
        if let Err(e) = pod.tick(now) {
            ui.event(format!("{}: {e}", pod.plan.name));
        }
        if !was_backoff && matches!(pod.phase, Phase::Backoff { .. }) {
            ui.event(format!(
                "{} crashed ({}); restarting with backoff",
                pod.plan.name,
                pod.last_exit.clone().unwrap_or_default()
            ));
        }
        if pod.restarts > before {
            ui.event(format!(
                "{} restarted (restart #{})",
                pod.plan.name, pod.restarts
            ));
        }
    }
    svc.pods
        .retain(|o, p| *o < svc.replicas || p.phase != Phase::Stopped);
}

/// Asks every pod's sidecar for `/ready`, `/debug/shards` and `/metrics`.
async fn probe_all(services: &[Service], seen: &mut Seen) {
    let targets: Vec<(String, String)> = services
        .iter()
        .flat_map(|s| s.pods.values())
        .filter(|p| matches!(p.phase, Phase::Running { .. } | Phase::Stopping { .. }))
        .map(|p| (p.plan.name.clone(), p.plan.sidecar.listeners.admin.clone()))
        .collect();
    let results = futures::future::join_all(targets.iter().map(|(_, admin)| async move {
        let ready = probe::get(admin, "/ready", PROBE_TIMEOUT).await;
        let shards = probe::get(admin, "/debug/shards", PROBE_TIMEOUT).await;
        let metrics = probe::get(admin, "/metrics", PROBE_TIMEOUT).await;
        (ready, shards, metrics)
    }))
    .await;
    let now = Instant::now();
    seen.probes.clear();
    for ((name, _), (ready, shards, metrics)) in targets.into_iter().zip(results) {
        let ready = ready.is_some_and(|(code, _)| code == 200);
        let owned = shards
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|doc| doc["owned"].as_u64())
            .and_then(|n| u32::try_from(n).ok());
        let mut rps = 0.0;
        if let Some((_, text)) = metrics {
            let count = probe::inbound_requests(&text);
            if let Some((before, at)) = seen.counts.insert(name.clone(), (count, now)) {
                let dt = now.duration_since(at).as_secs_f64();
                if dt > 0.0 && count >= before {
                    rps = (count - before) / dt;
                }
            }
        }
        seen.probes.insert(name, (ready, owned, rps));
    }
}

/// The mesh as the state file and the table show it.
fn snapshot(services: &[Service], seen: &Seen, run_dir: &Path, seq: u64) -> RunState {
    let services: Vec<ServiceState> = services
        .iter()
        .map(|s| ServiceState {
            name: s.plan.name.clone(),
            replicas: s.replicas,
            shards: s.plan.shards,
            pods: s
                .pods
                .values()
                .map(|p| {
                    let (ready, owned, rps) =
                        seen.probes.get(&p.plan.name).copied().unwrap_or_default();
                    let l = &p.plan.sidecar.listeners;
                    PodState {
                        name: p.plan.name.clone(),
                        ordinal: p.plan.ordinal,
                        netns: p.plan.net.netns.clone(),
                        outbound: l.outbound.clone(),
                        inbound: l.inbound.clone(),
                        admin: l.admin.clone(),
                        gossip: l.gossip.clone(),
                        app: p.plan.sidecar.app.address.clone(),
                        phase: p.phase_name().to_string(),
                        ready,
                        shards_owned: owned,
                        rps,
                        restarts: p.restarts,
                        last_exit: p.last_exit.clone(),
                        app_pid: p.app_pid(),
                        sidecar_pid: p.sidecar_pid(),
                        dir: p.plan.dir.display().to_string(),
                    }
                })
                .collect(),
        })
        .collect();
    let ready = services.iter().all(|s| {
        let pods_ready = s.pods.iter().filter(|p| p.ready).count();
        let owned: u32 = s.pods.iter().filter_map(|p| p.shards_owned).sum();
        pods_ready == s.pods.len() && s.pods.len() as u32 == s.replicas && owned == s.shards
    });
    RunState {
        runner_pid: std::process::id(),
        run_dir: run_dir.display().to_string(),
        ready,
        stopped: false,
        control_seq: seq,
        services,
    }
}

/// Stops every pod gracefully (sidecars first), bounded; a second signal kills at once.
async fn stop_all(services: &mut [Service]) {
    let now = Instant::now();
    let mut longest = Duration::ZERO;
    for svc in services.iter_mut() {
        let grace = Duration::from_millis(svc.plan.base.shutdown_grace_ms);
        longest = longest.max(grace);
        for pod in svc.pods.values_mut() {
            pod.begin_stop(now);
        }
    }
    // Sidecar grace + slack, then the app's wait, then a margin.
    let deadline = now + longest + Duration::from_secs(7);
    let again = shutdown_signal();
    tokio::pin!(again);
    let mut ticker = tokio::time::interval(TICK);
    while Instant::now() < deadline {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut again => break,
        }
        let now = Instant::now();
        let mut all = true;
        for pod in services.iter_mut().flat_map(|s| s.pods.values_mut()) {
            let _ = pod.tick(now);
            all &= pod.phase == Phase::Stopped;
        }
        if all {
            break;
        }
    }
    for pod in services.iter_mut().flat_map(|s| s.pods.values_mut()) {
        pod.kill_all();
        pod.phase = Phase::Stopped;
    }
}

/// Where to send requests, printed once the mesh is ready.
fn ready_message(services: &[Service], st: &RunState, took: Duration, run_dir: &Path) -> String {
    let mut out = format!(
        "\nmesh ready in {:.1} s. Send requests through any pod's outbound listener:\n",
        took.as_secs_f64()
    );
    for (svc, plan) in st.services.iter().zip(services.iter().map(|s| &s.plan)) {
        let Some(pod) = svc.pods.first() else {
            continue;
        };
        let routing = plan.base.services.first().map(|s| &s.routing);
        let example = match routing.and_then(|r| r.key_from_path.as_deref()) {
            Some(template) => format!(
                "http://{}{}",
                pod.outbound,
                template.replace("{key}", "alice")
            ),
            None => format!(
                "-H '{}: alice' http://{}/",
                routing.map_or("x-shardmesh-key", |r| r.key_header.as_str()),
                pod.outbound
            ),
        };
        out.push_str(&format!(
            "  curl -H 'x-shardmesh-service: {}' {example}\n",
            svc.name
        ));
    }
    out.push_str(&format!(
        "status: shardmesh-operator local status    scale: shardmesh-operator local scale NAME N\nlogs:   {}/<pod>/{{app,sidecar}}.log\n",
        run_dir.display()
    ));
    out
}

/// Resolves on SIGINT, SIGTERM or SIGHUP: a closed terminal, a dropped SSH
/// session or `tmux kill-session` stops the pods like Ctrl-C does, instead
/// of killing the runner and leaving them running on the pods' addresses.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let wait = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = wait(SignalKind::terminate()) => {}
        () = wait(SignalKind::hangup()) => {}
    }
}

/// Prints a line for people. The terminal may be gone (SIGHUP): a failed
/// write must not panic the runner halfway through stopping its pods.
fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn default_run_dir() -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Path::new(RUNS_DIR).join(format!("run-{secs}-{}", std::process::id()))
}

/// A fresh random gossip key (one base64 line, 0600), like the cluster's Secret.
fn write_keyring(run_dir: &Path) -> Result<PathBuf, LocalError> {
    use std::os::unix::fs::PermissionsExt;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| LocalError::State(format!("no randomness for the gossip key: {e}")))?;
    let path = run_dir.join("keyring");
    let line = base64::engine::general_purpose::STANDARD.encode(key) + "\n";
    std::fs::write(&path, line)
        .map_err(|e| LocalError::io(format!("cannot write {}", path.display()), e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LocalError::io(format!("cannot protect {}", path.display()), e))?;
    Ok(path)
}

fn sidecar_binary(explicit: Option<&Path>) -> String {
    if let Some(p) = explicit {
        return p.display().to_string();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("shardmesh-sidecar")))
        .filter(|p| p.exists());
    beside.map_or_else(
        || "shardmesh-sidecar".to_string(),
        |p| p.display().to_string(),
    )
}

/// The terminal: a live, redrawn table on a TTY; otherwise the table is
/// printed only when the pods' summary changes (logs stay short).
struct Ui {
    tty: bool,
    /// Lines of the table drawn last (to redraw it in place).
    drawn: usize,
    /// Events to print above the table at the next draw.
    pending: Vec<String>,
    /// Last summary printed (non-TTY).
    last: String,
}

impl Ui {
    fn new() -> Self {
        Self {
            tty: std::io::stdout().is_terminal(),
            drawn: 0,
            pending: Vec::new(),
            last: String::new(),
        }
    }

    fn event(&mut self, text: String) {
        if self.tty {
            self.pending.push(text);
        } else {
            say(&text);
        }
    }

    fn show(&mut self, st: &RunState) {
        let body = format!("{}{}", table::render(st), table::summary(st));
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
            }
            for e in self.pending.drain(..) {
                let _ = writeln!(out, "{e}");
            }
            let _ = write!(out, "{body}");
            self.drawn = body.lines().count();
        } else {
            let key = st
                .services
                .iter()
                .flat_map(|s| &s.pods)
                .map(|p| format!("{}{}{}{:?}", p.name, p.phase, p.ready, p.shards_owned))
                .collect::<String>();
            if key != self.last {
                self.last = key;
                let _ = write!(out, "{body}");
            }
        }
        let _ = out.flush();
    }
}
