//! One container's supervisor: starts its process through the shim, runs
//! its startup, liveness and readiness probes, restarts it by the restart
//! policy with kubelet's back-off (0 s, then 10 s doubling to 5 min,
//! `CrashLoopBackOff`), and stops it with preStop, SIGTERM, the grace period
//! and SIGKILL. What it sees is published in a [`View`] for the pod's status.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::jiff::Timestamp;
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::sync::{watch, Notify};

use super::config::Config;
use super::images::ImageTable;
use super::launch::{plan, spawn, wait_exec};
use super::probes::{self, Action, Target};

/// What kind of container, which decides when it restarts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A plain init container: runs to completion, retried on failure unless `Never`.
    Init,
    /// A native sidecar (`restartPolicy: Always` init container): always restarted.
    Sidecar,
    /// An app container: restarted by the pod's `restartPolicy`.
    Main,
}

/// A finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    /// Exit code (128 + signal when killed by one).
    pub code: i32,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// `Completed` or `Error`.
    pub reason: String,
    /// Why the agent killed it, if it did.
    pub message: Option<String>,
    /// When the run started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// The run's id.
    pub container_id: String,
}

/// A container's current state.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Not running: `reason` and `message` say why.
    Waiting {
        /// e.g. `ErrImagePull`, `CrashLoopBackOff`, `ContainerCreating`.
        reason: String,
        /// Details.
        message: String,
    },
    /// Running since.
    Running(Timestamp),
    /// Ended and not restarted.
    Terminated(Exit),
}

/// What the pod's status needs from a container.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// Current state.
    pub state: State,
    /// The previous run, once it restarted.
    pub last: Option<Exit>,
    /// Restarts so far.
    pub restarts: i32,
    /// Passed its startup probe (or running without one).
    pub started: bool,
    /// Passes its readiness probe (or started without one).
    pub ready: bool,
    /// The current run's id.
    pub container_id: Option<String>,
    /// The host binary behind the image.
    pub image_id: String,
    /// Will not run again.
    pub done: bool,
}

impl Default for View {
    fn default() -> Self {
        Self {
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            restarts: 0,
            started: false,
            ready: false,
            container_id: None,
            image_id: String::new(),
            done: false,
        }
    }
}

/// What every container of a pod shares.
pub struct PodCtx {
    /// Agent settings.
    pub cfg: Arc<Config>,
    /// API client.
    pub client: kube::Client,
    /// Image table.
    pub images: Arc<ImageTable>,
    /// This binary (the shim).
    pub agent_exe: PathBuf,
    /// The latest pod object.
    pub pod: Arc<Mutex<Pod>>,
    /// The pod directory.
    pub dir: PathBuf,
    /// The pod's address.
    pub ip: String,
    /// Its network namespace file.
    pub netns_path: PathBuf,
    /// Volume name → host path.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Wakes the pod worker when a view changes.
    pub changed: Arc<Notify>,
}

impl PodCtx {
    fn pod(&self) -> Pod {
        self.pod.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// A running supervisor.
pub struct Handle {
    /// The container's state as last seen.
    pub view: Arc<Mutex<View>>,
    stop: watch::Sender<Option<Duration>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Handle {
    /// Starts supervising `spec`.
    pub fn start(ctx: Arc<PodCtx>, spec: Container, kind: Kind) -> Self {
        let view = Arc::new(Mutex::new(View::default()));
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(supervise(ctx, spec, kind, view.clone(), stop_rx));
        Self {
            view,
            stop,
            task: Some(task),
        }
    }

    /// A copy of the view.
    pub fn view(&self) -> View {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Asks it to stop within `grace` (no restart afterwards).
    pub fn request_stop(&self, grace: Duration) {
        self.stop.send_replace(Some(grace));
    }

    /// Stops it within `grace` and waits until it has.
    pub async fn stop(&mut self, grace: Duration) {
        self.request_stop(grace);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn set(view: &Mutex<View>, changed: &Notify, f: impl FnOnce(&mut View)) {
    if let Ok(mut v) = view.lock() {
        let before = v.clone();
        f(&mut v);
        if *v != before {
            changed.notify_one();
        }
    }
}

/// Kubelet's crash back-off: the first restart at once, then 10 s doubling to 5 min;
/// forgotten after 10 min of running.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(300);

    fn delay(&mut self, ran: Duration) -> Duration {
        if ran >= 2 * Self::MAX {
            self.next = Duration::ZERO;
        }
        let d = self.next;
        self.next = if d.is_zero() {
            Self::FIRST
        } else {
            (d * 2).min(Self::MAX)
        };
        d
    }
}

async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(g) = *stop.borrow_and_update() {
            return g;
        }
        if stop.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// Waits `d` unless a stop comes first (then `true`).
async fn wait_or_stop(d: Duration, stop: &mut watch::Receiver<Option<Duration>>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stopped(stop) => true,
    }
}

async fn supervise(
    ctx: Arc<PodCtx>,
    spec: Container,
    kind: Kind,
    view: Arc<Mutex<View>>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let changed = ctx.changed.clone();
    let mut backoff = Backoff {
        next: Duration::ZERO,
    };
    let mut run = 0u32;
    loop {
        if stop.borrow().is_some() {
            break;
        }
        let image = match ctx.images.resolve(&spec.image.clone().unwrap_or_default()) {
            Ok(r) => r,
            Err(msg) => {
                set(&view, &changed, |v| {
                    v.state = State::Waiting {
                        reason: "ErrImagePull".into(),
                        message: msg,
                    };
                });
                if wait_or_stop(Duration::from_secs(20), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        set(&view, &changed, |v| {
            v.image_id = format!("shardmesh-host://{}", image.binary.display())
        });
        let pod = ctx.pod();
        let (plan, env) = match plan(&ctx, &pod, &spec, &image).await {
            Ok(p) => p,
            Err(msg) => {
                set(&view, &changed, |v| {
                    v.state = State::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: msg,
                    };
                });
                if wait_or_stop(Duration::from_secs(5), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        run += 1;
        let started_at = Timestamp::now();
        let since = Instant::now();
        let mut child = match spawn(&ctx, &spec.name, &plan) {
            Ok(c) => c,
            Err(msg) => {
                set(&view, &changed, |v| {
                    v.state = State::Waiting {
                        reason: "RunContainerError".into(),
                        message: msg,
                    };
                });
                if wait_or_stop(
                    backoff.delay(Duration::ZERO).max(Duration::from_secs(1)),
                    &mut stop,
                )
                .await
                {
                    break;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or_default();
        wait_exec(&mut child, plan.ready.as_deref()).await;
        let uid_short: String = pod
            .metadata
            .uid
            .clone()
            .unwrap_or_default()
            .chars()
            .take(8)
            .collect();
        let id = format!("shardmesh://{uid_short}-{}-{run}-{pid}", spec.name);
        set(&view, &changed, |v| {
            v.state = State::Running(started_at);
            v.container_id = Some(id.clone());
            v.started = spec.startup_probe.is_none() && post_start(&spec).is_none();
            v.ready = v.started && spec.readiness_probe.is_none();
        });
        let target = Target {
            ip: ctx.ip.clone(),
            pid,
            env: env.pairs().to_vec(),
            uid: plan.uid,
            gid: plan.gid,
        };
        let grace = grace_of(&pod);
        let probing = probe_loop(&spec, &target, since, &view, &changed);
        let (status, message, by_stop) = tokio::select! {
            st = child.wait() => (st.ok(), None, false),
            why = probing => {
                let st = terminate(&mut child, pid, grace).await;
                (st, Some(why), false)
            }
            g = stopped(&mut stop) => {
                let deadline = Instant::now() + g;
                if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                    let _ = probes::run(&Action::of_hook(hook), &spec, &target, g).await;
                }
                let st = terminate(&mut child, pid, deadline.saturating_duration_since(Instant::now())).await;
                (st, None, true)
            }
        };
        // Whatever the process left in its group goes with it.
        if let Some(p) = Pid::from_raw(pid as i32) {
            let _ = kill_process_group(p, Signal::KILL);
        }
        let (code, signal) = match status {
            Some(st) => match (st.code(), st.signal()) {
                (Some(c), _) => (c, None),
                (None, Some(s)) => (128 + s, Some(s)),
                _ => (255, None),
            },
            None => (255, None),
        };
        let exit = Exit {
            code,
            signal,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message,
            started_at,
            finished_at: Timestamp::now(),
            container_id: id,
        };
        let restart_policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let restart = !by_stop
            && match kind {
                Kind::Sidecar => true,
                Kind::Init => code != 0 && restart_policy != "Never",
                Kind::Main => match restart_policy.as_str() {
                    "Never" => false,
                    "OnFailure" => code != 0,
                    _ => true,
                },
            };
        if !restart {
            set(&view, &changed, |v| {
                v.state = State::Terminated(exit);
                v.started = false;
                v.ready = false;
                v.done = true;
            });
            return;
        }
        let delay = backoff.delay(since.elapsed());
        set(&view, &changed, |v| {
            v.last = Some(exit.clone());
            v.restarts += 1;
            v.started = false;
            v.ready = false;
            // The first restart is at once: no back-off to report.
            v.state = if delay.is_zero() {
                State::Terminated(exit)
            } else {
                State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {}s restarting failed container={} pod={}",
                        delay.as_secs(),
                        spec.name,
                        pod.metadata.name.clone().unwrap_or_default()
                    ),
                }
            };
        });
        if wait_or_stop(delay, &mut stop).await {
            break;
        }
    }
    set(&view, &changed, |v| v.done = true);
}

/// The pod's termination grace period (its deletion grace when deleting).
pub fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

/// SIGTERM to the process group, then SIGKILL after `grace`.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: u32,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    let group = Pid::from_raw(pid as i32);
    if let Some(p) = group {
        let _ = kill_process_group(p, Signal::TERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(st) => st.ok(),
        Err(_) => {
            if let Some(p) = group {
                let _ = kill_process_group(p, Signal::KILL);
            }
            child.wait().await.ok()
        }
    }
}

struct ProbeSpec {
    action: Action,
    initial: Duration,
    period: Duration,
    timeout: Duration,
    success: u32,
    failure: u32,
}

impl ProbeSpec {
    fn new(p: &Probe) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Self {
            action: Action::of_probe(p),
            initial: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// The container's postStart hook, if any.
fn post_start(spec: &Container) -> Option<&k8s_openapi::api::core::v1::LifecycleHandler> {
    spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
}

/// Runs the postStart hook, then the probes; returns only when the
/// container must be killed (why).
async fn probe_loop(
    spec: &Container,
    target: &Target,
    since: Instant,
    view: &Mutex<View>,
    changed: &Notify,
) -> String {
    if let Some(hook) = post_start(spec) {
        // Kubelet gives the hook no timeout of its own; 30 s bound it here
        // so a stuck hook cannot hang the container.
        if let Err(e) = probes::run(
            &Action::of_hook(hook),
            spec,
            target,
            Duration::from_secs(30),
        )
        .await
        {
            return format!("PostStartHook failed: {e}");
        }
        if spec.startup_probe.is_none() {
            set(view, changed, |v| {
                v.started = true;
                v.ready = spec.readiness_probe.is_none();
            });
        }
    }
    if let Some(p) = &spec.startup_probe {
        let p = ProbeSpec::new(p);
        tokio::time::sleep_until((since + p.initial).into()).await;
        let mut fails = 0;
        loop {
            match probes::run(&p.action, spec, target, p.timeout).await {
                Ok(()) => break,
                Err(e) => {
                    fails += 1;
                    if fails >= p.failure {
                        return format!("Startup probe failed: {e}");
                    }
                }
            }
            tokio::time::sleep(p.period).await;
        }
        set(view, changed, |v| {
            v.started = true;
            v.ready = spec.readiness_probe.is_none();
        });
    }
    let liveness = async {
        let Some(p) = &spec.liveness_probe else {
            return std::future::pending::<String>().await;
        };
        let p = ProbeSpec::new(p);
        tokio::time::sleep_until((since + p.initial).into()).await;
        let mut fails = 0;
        loop {
            match probes::run(&p.action, spec, target, p.timeout).await {
                Ok(()) => fails = 0,
                Err(e) => {
                    fails += 1;
                    if fails >= p.failure {
                        return format!("Liveness probe failed: {e}");
                    }
                }
            }
            tokio::time::sleep(p.period).await;
        }
    };
    let readiness = async {
        let Some(p) = &spec.readiness_probe else {
            return std::future::pending::<()>().await;
        };
        let p = ProbeSpec::new(p);
        tokio::time::sleep_until((since + p.initial).into()).await;
        let (mut ok, mut fails) = (0u32, 0u32);
        loop {
            let result = probes::run(&p.action, spec, target, p.timeout).await;
            match result {
                Ok(()) => {
                    ok += 1;
                    fails = 0;
                    if ok >= p.success {
                        set(view, changed, |v| v.ready = true);
                    }
                }
                Err(_) => {
                    fails += 1;
                    ok = 0;
                    if fails >= p.failure {
                        set(view, changed, |v| v.ready = false);
                    }
                }
            }
            tokio::time::sleep(p.period).await;
        }
    };
    tokio::select! {
        why = liveness => why,
        _ = readiness => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_kubelets() {
        let mut b = Backoff {
            next: Duration::ZERO,
        };
        let d: Vec<u64> = (0..8)
            .map(|_| b.delay(Duration::from_secs(1)).as_secs())
            .collect();
        assert_eq!(d, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            b.delay(Duration::from_secs(601)).as_secs(),
            0,
            "reset after 10 min of running"
        );
    }
}
