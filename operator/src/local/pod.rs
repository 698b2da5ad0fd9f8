//! One pod: the app process and its sidecar, supervised. The app starts
//! first; the sidecar once the app accepts connections (its acquire callbacks
//! need the app). A crashed app takes its sidecar down with it (like a pod
//! whose container died, its shards must move); a crashed sidecar is
//! restarted alone. Restarts back off exponentially.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::plan::PodPlan;
use super::process::{describe, Proc, Spawn};
use super::LocalError;

/// Restart policy.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Delay before the first restart; doubles per failure in a row.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// A pod up this long counts as healthy again (the delay resets).
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Delay after `failures` failures in a row (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Where a pod is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// App started; the sidecar starts when the app listens.
    Starting {
        /// When the app was started.
        since: Instant,
    },
    /// Both processes run.
    Running {
        /// Since when.
        since: Instant,
    },
    /// Waiting to restart after a crash.
    Backoff {
        /// Restart at.
        until: Instant,
        /// Only the sidecar died; the app runs on.
        sidecar_only: bool,
    },
    /// Graceful stop: sidecar first (it hands its shards off), then the app.
    Stopping {
        /// When this stage began.
        since: Instant,
    },
    /// Nothing runs.
    Stopped,
}

/// A supervised pod.
#[derive(Debug)]
pub struct Pod {
    /// What to run.
    pub plan: PodPlan,
    /// The app process.
    app: Option<Proc>,
    /// The sidecar process.
    sidecar: Option<Proc>,
    /// Where it is in its life.
    pub phase: Phase,
    /// Restarts so far (app or sidecar).
    pub restarts: u32,
    /// Failures in a row (sets the backoff).
    failures: u32,
    /// How the last crashed process ended.
    pub last_exit: Option<String>,
    /// Restart policy.
    backoff: Backoff,
    /// Path of the `shardmesh-sidecar` binary.
    sidecar_bin: String,
}

/// Longest wait for an app to listen before its sidecar starts anyway.
const APP_START_WAIT: Duration = Duration::from_secs(10);
/// Extra time past the sidecar's own grace before it is killed.
const STOP_SLACK: Duration = Duration::from_secs(2);
/// Time the app gets after SIGTERM.
const APP_STOP_WAIT: Duration = Duration::from_secs(3);

impl Pod {
    /// A pod that has not started yet.
    pub fn new(plan: PodPlan, backoff: Backoff, sidecar_bin: String) -> Self {
        Self {
            plan,
            app: None,
            sidecar: None,
            phase: Phase::Stopped,
            restarts: 0,
            failures: 0,
            last_exit: None,
            backoff,
            sidecar_bin,
        }
    }

    /// Writes the sidecar config and starts the app.
    pub fn start(&mut self, now: Instant) -> Result<(), LocalError> {
        std::fs::create_dir_all(&self.plan.dir)
            .map_err(|e| LocalError::io(format!("cannot create {}", self.plan.dir.display()), e))?;
        let yaml = self
            .plan
            .sidecar
            .to_yaml()
            .map_err(|e| LocalError::Manifest(e.to_string()))?;
        let config = self.plan.dir.join("sidecar.yaml");
        std::fs::write(&config, yaml)
            .map_err(|e| LocalError::io(format!("cannot write {}", config.display()), e))?;
        self.start_app()?;
        self.phase = Phase::Starting { since: now };
        Ok(())
    }

    fn start_app(&mut self) -> Result<(), LocalError> {
        let log = self.plan.dir.join("app.log");
        self.app = Some(Proc::spawn(Spawn {
            argv: &self.plan.command,
            env: &self.plan.env,
            netns: self.plan.net.netns.as_deref(),
            log: &log,
        })?);
        Ok(())
    }

    fn start_sidecar(&mut self) -> Result<(), LocalError> {
        let argv = [
            self.sidecar_bin.clone(),
            "--config".to_string(),
            self.plan.dir.join("sidecar.yaml").display().to_string(),
        ];
        let env = [("SHARDMESH_WORKER_THREADS".to_string(), "1".to_string())];
        self.sidecar = Some(Proc::spawn(Spawn {
            argv: &argv,
            env: &env,
            netns: self.plan.net.netns.as_deref(),
            log: &self.plan.dir.join("sidecar.log"),
        })?);
        Ok(())
    }

    /// Pid of the app, if it runs.
    pub fn app_pid(&self) -> Option<u32> {
        self.app.as_ref().map(Proc::pid)
    }

    /// Pid of the sidecar, if it runs.
    pub fn sidecar_pid(&self) -> Option<u32> {
        self.sidecar.as_ref().map(Proc::pid)
    }

    /// One supervision step: notices exits, starts what is due.
    pub fn tick(&mut self, now: Instant) -> Result<(), LocalError> {
        match self.phase {
            Phase::Starting { since } => {
                if self.check_crash(now) {
                    return Ok(());
                }
                if self.app_listens() || now.duration_since(since) > APP_START_WAIT {
                    self.start_sidecar()?;
                    self.phase = Phase::Running { since: now };
                }
            }
            Phase::Running { since } => {
                if !self.check_crash(now) && now.duration_since(since) > self.backoff.reset_after {
                    self.failures = 0;
                }
            }
            Phase::Backoff {
                until,
                sidecar_only,
            } if now >= until => {
                self.restarts += 1;
                if sidecar_only && self.app.as_mut().is_some_and(|a| a.exit_status().is_none()) {
                    self.start_sidecar()?;
                    self.phase = Phase::Running { since: now };
                } else {
                    self.kill_all();
                    self.start_app()?;
                    self.phase = Phase::Starting { since: now };
                }
            }
            Phase::Stopping { since } => self.stop_step(now, since),
            Phase::Backoff { .. } | Phase::Stopped => {}
        }
        Ok(())
    }

    /// True (and a restart scheduled) when the app or the sidecar has died.
    fn check_crash(&mut self, now: Instant) -> bool {
        let app_exit = self.app.as_mut().and_then(Proc::exit_status);
        let sidecar_exit = self.sidecar.as_mut().and_then(Proc::exit_status);
        let (what, status, sidecar_only) = match (app_exit, sidecar_exit) {
            (Some(s), _) => ("app", s, false),
            (None, Some(s)) => ("sidecar", s, true),
            (None, None) => return false,
        };
        self.last_exit = Some(format!("{what} {}", describe(status)));
        if !sidecar_only {
            // The app is gone: its shards must move, so the sidecar goes too.
            self.kill_all();
        } else {
            self.sidecar = None;
        }
        self.failures += 1;
        self.phase = Phase::Backoff {
            until: now + self.backoff.delay(self.failures),
            sidecar_only,
        };
        true
    }

    fn app_listens(&self) -> bool {
        if self.plan.net.netns.is_some() {
            // Not reachable from here; the sidecar retries its callbacks.
            return true;
        }
        let Ok(addr) = self.plan.sidecar.app.address.parse::<SocketAddr>() else {
            return true;
        };
        TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok()
    }

    /// Begins a graceful stop: SIGTERM to the sidecar (it hands its shards off).
    pub fn begin_stop(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
            return;
        }
        match (&self.sidecar, &self.app) {
            (Some(s), _) => s.signal(Signal::TERM),
            (None, Some(a)) => a.signal(Signal::TERM),
            (None, None) => {}
        }
        self.phase = Phase::Stopping { since: now };
    }

    fn stop_step(&mut self, now: Instant, since: Instant) {
        let grace = Duration::from_millis(self.plan.sidecar.shutdown_grace_ms) + STOP_SLACK;
        if let Some(s) = self.sidecar.as_mut() {
            if s.exit_status().is_none() && now.duration_since(since) < grace {
                return;
            }
            s.kill();
            self.sidecar = None;
            if let Some(a) = &self.app {
                a.signal(Signal::TERM);
            }
            self.phase = Phase::Stopping { since: now };
            return;
        }
        if let Some(a) = self.app.as_mut() {
            if a.exit_status().is_none() && now.duration_since(since) < APP_STOP_WAIT {
                return;
            }
        }
        self.kill_all();
        self.phase = Phase::Stopped;
    }

    /// SIGKILL to both process groups.
    pub fn kill_all(&mut self) {
        if let Some(mut s) = self.sidecar.take() {
            s.kill();
        }
        if let Some(mut a) = self.app.take() {
            a.kill();
        }
    }

    /// A short word for tables: starting, running, backoff, stopping, stopped.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Starting { .. } => "starting",
            Phase::Running { .. } => "running",
            Phase::Backoff { .. } => "restarting",
            Phase::Stopping { .. } => "stopping",
            Phase::Stopped => "stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
            reset_after: Duration::from_secs(10),
        };
        let delays: Vec<_> = (1..=6).map(|f| b.delay(f).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
    }
}
