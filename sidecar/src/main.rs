//! `shardmesh-sidecar --config FILE`: loads and validates the config, then
//! runs until SIGTERM or Ctrl-C, draining in-flight requests before exit.

use std::path::PathBuf;
use std::process::ExitCode;

use shardmesh_config::SidecarConfig;
use shardmesh_sidecar::{telemetry, Sidecar};

/// mimalloc instead of glibc's malloc: a sidecar hop makes ~20 short-lived
/// allocations per request, and glibc's `_int_free` / `malloc_consolidate`
/// cost about twice as many instructions per request
/// (docs/benchmarks/sidecar.md, "Instructions per request").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: shardmesh-sidecar --config FILE\n\
    Environment overrides: SHARDMESH_POD_NAME, SHARDMESH_SERVICE, SHARDMESH_ZONE,\n\
    SHARDMESH_ADVERTISE_HOST, SHARDMESH_HOST_IP, SHARDMESH_APP_ADDRESS, SHARDMESH_*_ADDR, SHARDMESH_SEEDS,\n\
    SHARDMESH_LOG_FORMAT, SHARDMESH_LOG_LEVEL, SHARDMESH_WORKER_THREADS\n\
    (see docs/configuration.md).";

fn main() -> ExitCode {
    // One flag: a hand parse is clearer than pulling in an argument crate.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [flag, path] if flag == "--config" => PathBuf::from(path),
        [flag] if flag == "--version" => {
            println!("shardmesh-sidecar {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match SidecarConfig::load(&path, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardmesh-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("shardmesh-sidecar: {e}");
        return ExitCode::from(2);
    }
    // One worker: a current-thread runtime avoids the multi-thread
    // scheduler's cross-thread wakeups on every request hop.
    let mut builder = match worker_threads() {
        Ok(Some(1)) => tokio::runtime::Builder::new_current_thread(),
        Ok(Some(n)) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        Ok(None) => tokio::runtime::Builder::new_multi_thread(),
        Err(e) => {
            eprintln!("shardmesh-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardmesh-sidecar: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let sidecar = match Sidecar::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        let addrs = sidecar.addrs();
        tracing::info!(
            outbound = %addrs.outbound,
            inbound = %addrs.inbound,
            admin = %addrs.admin,
            gossip = %addrs.gossip.map_or_else(|| "off".to_string(), |g| g.to_string()),
            "sidecar started"
        );
        sidecar.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// `SHARDMESH_WORKER_THREADS`: runtime threads (default: one per core). A
/// sidecar shares its pod's CPU limit with the app, so operators size it.
fn worker_threads() -> Result<Option<usize>, String> {
    match std::env::var("SHARDMESH_WORKER_THREADS") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=256).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "SHARDMESH_WORKER_THREADS must be a number from 1 to 256, not {v:?}"
            )),
        },
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
