//! Starting and stopping a sidecar: binds the listeners, starts gossip and
//! the shard manager, publishes the routing table, serves until shutdown,
//! then hands its shards off and drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shardmesh_config::SidecarConfig;
use shardmesh_gossip::{Gossip, GossipSettings, Keyring, MemberStatus};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::app_client::AppClient;
use crate::drain;
use crate::gate::{ShardGate, TableGate};
use crate::membership::{self, LocalMember};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::routing::RoutingTable;
use crate::server::{self, Protocols, ServerLimits};
use crate::sharding::ShardManager;
use crate::tls::MeshTls;
use crate::{inbound, outbound};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {listener} address {addr}: {source}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The configured address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The routing table could not be built.
    #[error("routing table: {0}")]
    Table(String),
    /// Gossip could not start.
    #[error("gossip: {0}")]
    Gossip(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The trust anchor or this sidecar's certificate could not be loaded.
    #[error("{0}")]
    Tls(String),
}

/// A sidecar whose listeners are bound and whose table is loaded.
pub struct Sidecar {
    config: SidecarConfig,
    proxy: Proxy,
    outbound: TcpListener,
    inbound: TcpListener,
    admin: TcpListener,
    ready_tx: watch::Sender<bool>,
    ready_rx: watch::Receiver<bool>,
    table_tx: watch::Sender<Arc<RoutingTable>>,
    gossip: Option<GossipMember>,
    tls: Option<Arc<MeshTls>>,
}

/// The running gossip member of a sidecar and its shard manager.
struct GossipMember {
    member: Arc<LocalMember>,
    shards: Option<ShardManager>,
    /// Resolved last in shutdown, so the member leaves gossip after its
    /// shards are handed off and its requests drained.
    leave: tokio::sync::oneshot::Sender<()>,
}

/// Addresses the listeners actually bound (port 0 in tests).
#[derive(Clone, Copy, Debug)]
pub struct BoundAddrs {
    /// Outbound listener.
    pub outbound: SocketAddr,
    /// Inbound listener.
    pub inbound: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Gossip (UDP and TCP), when enabled.
    pub gossip: Option<SocketAddr>,
}

impl Sidecar {
    /// Binds every listener, starts gossip when enabled, and loads the
    /// routing table (static, or fed by gossip).
    pub async fn bind(config: SidecarConfig) -> Result<Self, StartError> {
        let metrics = Metrics::new()?;
        let tls = match &config.tls {
            Some(t) => {
                let tls = MeshTls::start(t, &config.pod, metrics.clone())
                    .await
                    .map_err(StartError::Tls)?;
                tls.spawn_renewal();
                Some(tls)
            }
            None => None,
        };
        let table = RoutingTable::from_static_config(&config)
            .map_err(|e| StartError::Table(e.to_string()))?;
        let (table_tx, table_rx) = watch::channel(Arc::new(table));
        let outbound = bind("outbound", &config.listeners.outbound).await?;
        let inbound = bind("inbound", &config.listeners.inbound).await?;
        let admin = bind("admin", &config.listeners.admin).await?;
        // Static membership: ready as soon as the table is built. Gossip:
        // ready once joined and this pod's shards are acquired.
        let (ready_tx, ready_rx) = watch::channel(!config.membership.gossip.enabled);
        let (gossip, gate): (Option<GossipMember>, Arc<dyn ShardGate>) =
            if config.membership.gossip.enabled {
                let (member, leave) = start_gossip(
                    &config,
                    local_addr(&inbound),
                    local_addr(&admin),
                    metrics.clone(),
                    tls.as_deref(),
                )
                .await?;
                let shards = ShardManager::start(
                    &config,
                    member.clone(),
                    table_rx.clone(),
                    AppClient::new(&config.app.address)
                        .map_err(|e| StartError::Table(format!("app.address: {e}")))?,
                    metrics.clone(),
                    ready_tx.clone(),
                )
                .map_err(|e| StartError::Table(format!("shards: {e}")))?;
                tokio::spawn(membership::feed(
                    Arc::new(config.clone()),
                    member.handle().view(),
                    table_tx.clone(),
                    shards.is_none().then(|| ready_tx.clone()),
                ));
                let gate: Arc<dyn ShardGate> = match &shards {
                    Some(m) => Arc::new(m.gate()),
                    None => Arc::new(TableGate::new(table_rx.clone())),
                };
                let g = GossipMember {
                    member,
                    shards,
                    leave,
                };
                (Some(g), gate)
            } else {
                (None, Arc::new(TableGate::new(table_rx.clone())))
            };
        let proxy = Proxy::new(&config, table_rx, gate, metrics, tls.clone())
            .map_err(|e| StartError::Table(e.to_string()))?;
        Ok(Self {
            config,
            proxy,
            outbound,
            inbound,
            admin,
            ready_tx,
            ready_rx,
            table_tx,
            gossip,
            tls,
        })
    }

    /// Mutual TLS state (certificate, renewal), when the config has a `tls` section.
    pub fn tls(&self) -> Option<Arc<MeshTls>> {
        self.tls.clone()
    }

    /// The bound addresses.
    pub fn addrs(&self) -> BoundAddrs {
        BoundAddrs {
            outbound: local_addr(&self.outbound),
            inbound: local_addr(&self.inbound),
            admin: local_addr(&self.admin),
            gossip: self.gossip.as_ref().map(|g| g.member.handle().local_addr()),
        }
    }

    /// The sender that replaces the routing table (membership and shard
    /// ownership feed it).
    pub fn table_sender(&self) -> watch::Sender<Arc<RoutingTable>> {
        self.table_tx.clone()
    }

    /// Serves until `shutdown` resolves; then turns not-ready, hands its
    /// shards to their next owners, stops accepting, and gives in-flight
    /// requests the grace period to finish. A drain asked on the admin
    /// listener (the app's preStop hook) does the hand-off early, while the
    /// app still runs, and the listeners stay open until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let limits = ServerLimits {
            max_header_bytes: self.config.limits.max_header_bytes as usize,
            header_read_timeout: Duration::from_millis(self.config.limits.header_read_timeout_ms),
            max_connections: self.config.limits.max_connections as usize,
        };
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let proxy = self.proxy.clone();
        let out = tokio::spawn(server::serve(
            self.outbound,
            // h2c too: apps speak gRPC to the outbound listener.
            Protocols::Http1AndH2,
            limits,
            None,
            move |req, _peer| outbound::handle(proxy.clone(), req),
            stopped(stop_rx.clone()),
            grace,
        ));
        let proxy = self.proxy.clone();
        let inb = tokio::spawn(server::serve(
            self.inbound,
            Protocols::Http1AndH2,
            limits,
            self.tls.clone(),
            move |req, _peer| inbound::handle(proxy.clone(), req),
            stopped(stop_rx.clone()),
            grace,
        ));
        let node_ip = self
            .config
            .pod
            .host_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok());
        let (drain_control, mut drain_signal) = drain::channel(node_ip);
        let state = AdminState {
            drain: Some(drain_control),
            proxy: self.proxy.clone(),
            ready: self.ready_rx.clone(),
            members: self
                .gossip
                .as_ref()
                .map(|g| membership::debug_source(g.member.handle().view())),
            shards: self
                .gossip
                .as_ref()
                .and_then(|g| g.shards.clone())
                .map(|m| {
                    let source: admin::DebugSource = Arc::new(move || m.debug());
                    source
                }),
        };
        let adm = tokio::spawn(server::serve(
            self.admin,
            Protocols::Http1,
            limits,
            None,
            move |req, peer| admin::handle(state.clone(), req, peer),
            stopped(stop_rx.clone()),
            grace,
        ));
        if let Some(g) = &self.gossip {
            let member = g.member.clone();
            let mut ready = self.ready_rx.clone();
            tokio::spawn(async move {
                if ready.wait_for(|r| *r).await.is_ok() {
                    if let Err(e) = member.set_state(MemberStatus::Serving).await {
                        tracing::warn!(error = %e, "cannot announce serving");
                    }
                }
            });
        }
        let anchor = tokio::spawn(server::keep_timer_armed());
        let peers = tokio::spawn(sync_peers(self.proxy.clone()));
        tokio::pin!(shutdown);
        let signalled = tokio::select! {
            () = &mut shutdown => true,
            () = drain_signal.requested() => false,
        };
        tracing::info!(
            ?grace,
            signalled,
            "shutting down: handing off shards, draining requests"
        );
        let _ = self.ready_tx.send(false);
        if let Some(g) = &self.gossip {
            let until = tokio::time::Instant::now() + grace;
            // Announce `leaving` first: the others route keyed requests to
            // the new owners (who hold them until the handoff) and keyless
            // ones elsewhere.
            if let Err(e) = g.member.set_state(MemberStatus::Leaving).await {
                tracing::debug!(error = %e, "cannot announce leaving");
            }
            if let Some(shards) = &g.shards {
                // Keep serving (and forwarding) while the shards move.
                if tokio::time::timeout_at(until, shards.leave())
                    .await
                    .is_err()
                {
                    tracing::warn!(?grace, "shards not all released within the grace period");
                }
            }
            // Keep serving until callers stopped routing here, so nobody
            // meets a closed port while its view still names this pod.
            let idle = wait_inbound_idle(&self.proxy, QUIET_BEFORE_STOP, until).await;
            tracing::info!(?idle, "inbound traffic stopped");
        }
        drain_signal.finished();
        if !signalled {
            // Drained for the app's preStop hook: keep the outbound
            // listener for the app's last calls until the pod stops us.
            shutdown.await;
        }
        anchor.abort();
        peers.abort();
        tracing::info!("closing the listeners");
        let _ = stop_tx.send(true);
        let _ = tokio::join!(out, inb);
        if let Some(g) = self.gossip {
            if let Err(e) = g.member.handle().leave().await {
                tracing::debug!(error = %e, "gossip leave");
            }
            let _ = g.leave.send(());
        }
        adm.abort();
        tracing::info!("shutdown complete");
    }
}

/// How long a leaving sidecar must see no inbound request before it closes
/// its listeners: callers' views have moved on by then.
const QUIET_BEFORE_STOP: Duration = Duration::from_millis(300);

/// Waits until no inbound request arrived for `quiet`, or `until`; returns
/// how long the inbound listener had been idle.
async fn wait_inbound_idle(
    proxy: &Proxy,
    quiet: Duration,
    until: tokio::time::Instant,
) -> Duration {
    loop {
        let idle = proxy.inbound_idle();
        let now = tokio::time::Instant::now();
        if idle >= quiet || now >= until {
            return idle;
        }
        tokio::time::sleep_until((now + (quiet - idle)).min(until)).await;
    }
}

async fn bind(listener: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr: addr.to_string(),
            source,
        })
}

fn local_addr(l: &TcpListener) -> SocketAddr {
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

async fn start_gossip(
    config: &SidecarConfig,
    inbound: SocketAddr,
    admin: SocketAddr,
    metrics: Metrics,
    tls: Option<&MeshTls>,
) -> Result<(Arc<LocalMember>, tokio::sync::oneshot::Sender<()>), StartError> {
    let err = |e: String| StartError::Gossip(e);
    let tuning = &config.membership.gossip;
    let listen: SocketAddr = config.listeners.gossip.parse().map_err(|_| {
        err(format!(
            "listeners.gossip {:?} is not IP:port",
            config.listeners.gossip
        ))
    })?;
    let inbound = membership::advertised(config, inbound).map_err(err)?;
    let admin = membership::advertised(config, admin).map_err(err)?;
    let mut settings = GossipSettings::new(
        tuning,
        listen,
        GossipSettings::seeds_from(&config.membership.seeds),
    );
    // Push-pull carries the whole member list: mesh members only.
    settings.tls = tls.map(|t| shardmesh_gossip::GossipTls {
        acceptor: t.acceptor().clone(),
        connector: tokio_rustls::TlsConnector::from(t.client_config()),
    });
    if config.pod.advertise_host.is_some() {
        settings.advertise = Some(membership::advertised(config, listen).map_err(err)?);
    }
    let keyring = Keyring::configured(
        tuning.keyring_file.as_deref().map(std::path::Path::new),
        false,
    )
    .map_err(|e| err(e.to_string()))?;
    let meta = membership::local_meta(config, inbound, admin);
    let (leave, left) = tokio::sync::oneshot::channel::<()>();
    let handle = Gossip::start(
        settings,
        meta.clone(),
        keyring,
        Arc::new(membership::GossipMetrics::new(metrics)),
        async move {
            let _ = left.await;
        },
    )
    .await
    .map_err(|e| err(e.to_string()))?;
    Ok((Arc::new(LocalMember::new(Arc::new(handle), meta)), leave))
}

/// Keeps the proxy's per-peer state (breakers, unreachable marks) in step
/// with the routing table: a restarted or rejoined pod starts afresh.
async fn sync_peers(proxy: Proxy) {
    let mut tables = proxy.table_updates();
    loop {
        let table = tables.borrow_and_update().clone();
        proxy.sync_peers(&table);
        if tables.changed().await.is_err() {
            return;
        }
    }
}
