//! `shardmesh-operator run`: wires logging, the API client, the HTTP server,
//! leader election and the controller, and shuts them down on SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::leader::Election;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context};
use crate::server::{self, Health};
use crate::Error;

/// Runs the operator until SIGTERM/SIGINT; the process exit code.
pub fn main(args: RunArgs) -> ExitCode {
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardmesh-operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Resolves on SIGTERM or SIGINT.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
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

/// The operator: server and election start at once; the controller runs
/// while this replica leads. Losing the lease ends the process with an
/// error so Kubernetes restarts it as a clean standby (never two leaders
/// reconciling with stale caches).
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_for_operate = stop_rx.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let metrics = Metrics::new().map_err(|e| Error::Render(e.to_string()))?;
    let health = Arc::new(Health::default());
    let listener = server::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "serving /metrics, /healthz, /readyz");
    let http = tokio::spawn(server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        stopped(),
    ));

    let result = match kube::Client::try_default().await {
        Ok(client) => {
            let ca_pem = match args.identity_listen {
                Some(addr) => Some(start_identity(&args, client.clone(), addr, stopped()).await?),
                None => None,
            };
            let settings = args.settings_with_ca(ca_pem.as_deref());
            operate(
                &args,
                settings,
                client,
                metrics,
                health,
                stop_rx_for_operate,
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    if result.is_err() {
        // Nothing left to serve probes for: stop at once.
        http.abort();
    }
    let _ = http.await;
    result
}

/// Loads (or creates) the CA Secret and serves the identity endpoint; the
/// CA certificate's PEM (for the pods' trust anchor ConfigMaps).
async fn start_identity(
    args: &RunArgs,
    client: kube::Client,
    addr: std::net::SocketAddr,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<String, Error> {
    let namespace = args.lease_namespace.clone();
    let ca = crate::identity::load_or_create_ca(
        &client,
        &namespace,
        &args.ca_secret,
        &args.trust_domain,
    )
    .await
    .map_err(Error::Identity)?;
    let ca_pem = ca.cert_pem().to_string();
    let service = Arc::new(
        crate::identity::IdentityService::new(ca, client, &args.trust_domain)
            .with_audience(&args.identity_audience),
    );
    let dns = if args.identity_dns.is_empty() {
        vec![crate::cli::default_identity_host(&namespace)]
    } else {
        args.identity_dns.clone()
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Identity(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, ?dns, "serving the identity endpoint");
    tokio::spawn(async move {
        if let Err(e) = crate::identity::serve(listener, service, dns, &namespace, stopped).await {
            tracing::error!(error = %e, "identity endpoint stopped");
        }
    });
    Ok(ca_pem)
}

/// Everything after start-up: the election (unless disabled) and the
/// controller while leading, until `stop` turns true.
pub async fn operate(
    args: &RunArgs,
    settings: crate::render::Settings,
    client: kube::Client,
    metrics: Metrics,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let stopped = move || {
        let mut rx = stop.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("shardmesh-operator-{}", std::process::id()));
    let mut ctx = Context::new(client.clone(), settings, metrics, Some(identity.clone()));
    ctx.concurrency = args.max_concurrent_reconciles;
    let ctx = Arc::new(ctx);
    if args.no_leader_election {
        health.ready.store(true, Ordering::Relaxed);
        reconcile::run(ctx, args.namespace.clone(), stopped()).await;
        return Ok(());
    }
    let mut election =
        Election::join(client, &args.lease_namespace, &identity, args.lease_seconds).await?;
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!(%identity, namespace = %args.lease_namespace, "waiting to lead");
    let outcome = tokio::select! {
        _ = stopped() => Ok(()),
        leading = election.leading() => {
            if leading {
                tracing::info!(%identity, "leading: starting the controller");
                lead(ctx, args, &mut election, stopped()).await
            } else {
                Err(Error::Lease("the election ended".into()))
            }
        }
    };
    election.leave().await;
    outcome
}

/// Runs the controller until shutdown (Ok) or until the lease is lost (Err).
async fn lead(
    ctx: Arc<Context>,
    args: &RunArgs,
    election: &mut Election,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            _ = stopped => {},
            _ = lost_rx => {},
        }
    };
    let controller = reconcile::run(ctx, args.namespace.clone(), shutdown);
    tokio::pin!(controller);
    tokio::select! {
        _ = &mut controller => Ok(()),
        _ = election.lost() => {
            let _ = lost_tx.send(());
            controller.await;
            Err(Error::Lease("lost the leader lease".into()))
        }
    }
}
