//! A child process in its own process group, with its output appended to a
//! log file, and killed (the whole group) when dropped, so neither a panic
//! nor an early return leaves a process behind.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::process::{kill_process_group, Pid, Signal};

use super::LocalError;

/// A running (or exited, not yet reaped) child process.
#[derive(Debug)]
pub struct Proc {
    /// The child; its pid is also its process group id.
    child: Child,
    /// Set once `try_wait` reaped it.
    exited: Option<ExitStatus>,
}

/// How to start a process.
#[derive(Clone, Copy, Debug)]
pub struct Spawn<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Extra environment.
    pub env: &'a [(String, String)],
    /// Run inside this network namespace (`ip netns exec NS ...`).
    pub netns: Option<&'a str>,
    /// Append stdout and stderr here.
    pub log: &'a Path,
}

impl Proc {
    /// Starts `spec` in a new process group.
    pub fn spawn(spec: Spawn<'_>) -> Result<Self, LocalError> {
        let mut argv: Vec<&str> = Vec::new();
        if let Some(ns) = spec.netns {
            argv.extend(["ip", "netns", "exec", ns]);
        }
        argv.extend(spec.argv.iter().map(String::as_str));
        let Some((program, args)) = argv.split_first() else {
            return Err(LocalError::Manifest("empty command".into()));
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log)
            .map_err(|e| LocalError::io(format!("cannot open {}", spec.log.display()), e))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // A marker per start makes restarts visible in the log.
        let _ = writeln!(log, "--- shardmesh local: start {argv:?} at unix {now}");
        let err = log
            .try_clone()
            .map_err(|e| LocalError::io("cannot duplicate a log handle", e))?;
        let mut cmd = Command::new(program);
        let runner = rustix::process::getpid();
        // The only unsafe code of the operator crate.
        // SAFETY: the closure runs in the child between fork and exec and
        // makes only async-signal-safe system calls (prctl, getppid).
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || die_with(runner));
        }
        cmd.args(args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| LocalError::io(format!("cannot start {program}"), e))?;
        Ok(Self {
            child,
            exited: None,
        })
    }

    /// The process id (and process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process has ended; `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends `signal` to the whole process group (the app's children too).
    pub fn signal(&self, signal: Signal) {
        if self.exited.is_some() {
            return;
        }
        if let Some(pgid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process_group(pgid, signal);
        }
    }

    /// SIGKILL to the group, then reap.
    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            self.signal(Signal::KILL);
            let _ = self.child.wait();
        }
        // The leader may be gone while others in its group live on.
        if let Some(pgid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// In the child before exec: SIGKILL when the runner dies, however it dies
/// (`kill -9` included), so no pod outlives its runner holding its
/// addresses. The runner forks from its main thread, which lives as long as
/// the runner (the death signal follows the forking thread). If the runner
/// died before the signal was armed, the child exits at once.
fn die_with(runner: rustix::process::Pid) -> std::io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if rustix::process::getppid() != Some(runner) {
        return Err(std::io::Error::other(
            "the runner exited before the pod started",
        ));
    }
    Ok(())
}

/// "exit 1", "signal 9": how a process ended, for people.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "ended".to_string(),
    }
}
