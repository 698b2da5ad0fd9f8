//! `shardmesh-operator run`: wires the controller, the HTTP server, leader election and shutdown.

use std::process::ExitCode;

use crate::cli::RunArgs;

/// Runs the operator until SIGTERM/SIGINT.
pub fn main(_args: RunArgs) -> ExitCode {
    eprintln!("shardmesh-operator run: not built yet");
    ExitCode::from(2)
}
