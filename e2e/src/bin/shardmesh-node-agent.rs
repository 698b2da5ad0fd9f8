//! `shardmesh-node-agent`: the test cluster's kubelet stand-in (see
//! `shardmesh_e2e::node`). `shardmesh-node-agent shim PLAN` is the container
//! shim the agent starts inside each container's namespaces.

use std::process::ExitCode;

use shardmesh_e2e::node::{self, config::Config};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("shim") {
        let Some(plan) = args.nth(1) else {
            eprintln!("usage: shardmesh-node-agent shim PLAN.json");
            return ExitCode::from(2);
        };
        return node::shim::main(std::path::Path::new(&plan));
    }
    let cfg = match Config::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(node::run(cfg, stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardmesh-node-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
