//! # The local runner: `shardmesh-operator local {up | status | scale}`
//!
//! Runs the ShardedService manifests that go to a cluster as plain processes
//! on this machine: every pod is an app process plus a `shardmesh-sidecar`
//! process, on its own loopback address, joined into one gossip mesh.
//!
//! ## Layout
//! - [`plan`]: manifests → validated services → per-pod sidecar configs and app commands.
//! - [`addr`]: the addressing scheme (one loopback IP per pod, default ports).
//! - [`process`]: a child process in its own process group, killed on drop.
//! - [`pod`]: one pod's app + sidecar with supervision (restart with backoff).
//! - [`ports`]: a pod's addresses are free before it starts (or who holds them).
//! - [`pki`]: the run's certificate authority and each pod's mTLS certificate.
//! - [`probe`]: a tiny HTTP/1.1 GET client and `/metrics` parsing.
//! - [`state`]: the run directory: state file (for `status`) and control file (for `scale`).
//! - [`table`]: the live table of pods.
//! - [`up`]: the `up` loop: start, supervise, scale, report, stop.
//! - [`status`]: `local status` and `local scale`.

pub mod addr;
pub mod pki;
pub mod plan;
pub mod pod;
pub mod ports;
pub mod probe;
pub mod process;
pub mod state;
pub mod status;
pub mod table;
pub mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// Where run directories live, relative to the working directory.
pub const RUNS_DIR: &str = "target/shardmesh-local";

/// Why the local runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A manifest could not be read or is not a valid ShardedService.
    #[error("{0}")]
    Manifest(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The run directory holds no (readable) state.
    #[error("{0}")]
    State(String),
    /// A pod's address is taken (by whom, where Linux tells).
    #[error("{0}")]
    AddressInUse(String),
}

impl LocalError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// `local` subcommands.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start every ShardedService of FILE... as one local mesh; Ctrl-C stops it.
    Up(up::UpArgs),
    /// Members, shards and breakers of a running local mesh.
    Status {
        /// Run directory (default: the latest run under target/shardmesh-local).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Print the state as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change the replicas of one service of a running `local up`.
    Scale {
        /// The ShardedService name.
        name: String,
        /// Replicas wanted.
        replicas: u32,
        /// Run directory (default: the latest run under target/shardmesh-local).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Seconds to wait until the new pods are ready (0: do not wait).
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
}

/// Runs a `local` subcommand; the process exit code.
pub fn main(command: LocalCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardmesh-operator local: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            LocalCommand::Up(args) => up::run(args).await,
            LocalCommand::Status { run_dir, json } => status::status(run_dir, json).await,
            LocalCommand::Scale {
                name,
                replicas,
                run_dir,
                wait,
            } => status::scale(run_dir, &name, replicas, wait).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardmesh-operator local: {e}");
            ExitCode::FAILURE
        }
    }
}
