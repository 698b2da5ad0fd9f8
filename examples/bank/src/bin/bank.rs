//! `bank`: the sample sharded, event-sourced bank service (see examples/README.md).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use shardmesh_bank::accounts::Accounts;
use shardmesh_bank::app::AppConfig;
use shardmesh_bank::bank::{Bank, Mode};
use shardmesh_bank::http::routes::App;
use shardmesh_bank::http::server;

/// Deadline of one saga step through the outbound sidecar.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match AppConfig::parse(&args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("bank: {msg}");
            std::process::exit(2);
        }
    };
    if let Err(msg) = run(config).await {
        eprintln!("bank: {msg}");
        std::process::exit(1);
    }
}

async fn run(config: AppConfig) -> Result<(), String> {
    let bank = Arc::new(Bank::new(
        config.data.clone(),
        config.pod.clone(),
        config.mode,
        config.fault,
    ));
    bank.acquire_all()
        .await
        .map_err(|e| format!("loading shards: {e:?}"))?;
    let accounts = match config.mode {
        Mode::Standalone { .. } => Accounts::Local(Arc::clone(&bank)),
        Mode::Mesh => Accounts::mesh(&config.outbound, STEP_TIMEOUT),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and the local runner read this line to learn the bound port.
    println!(
        "bank listening on {local} (pod {}, data {}, {:?})",
        config.pod,
        config.data.display(),
        config.mode
    );
    let app = Arc::new(App {
        bank,
        accounts,
        delay_ms: AtomicU64::new(config.delay_ms),
        debug_api: config.debug_api,
    });
    server::serve(listener, app, shutdown()).await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM. Every acknowledged write is already fsync'd,
/// so stopping needs no flush.
async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
