//! Starting and stopping a sidecar: binds the listeners, publishes the
//! routing table, serves until shutdown, then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shardmesh_config::SidecarConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::gate::TableGate;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::routing::RoutingTable;
use crate::server::{self, Protocols, ServerLimits};
use crate::{inbound, membership, outbound};
use shardmesh_gossip::{Gossip, GossipHandle, GossipSettings, Keyring, MemberStatus};

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
}

/// The running gossip member of a sidecar.
struct GossipMember {
    handle: Arc<GossipHandle>,
    /// Resolved after draining, so the member leaves gracefully last.
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
    /// Binds every listener and loads the static routing table.
    pub async fn bind(config: SidecarConfig) -> Result<Self, StartError> {
        let metrics = Metrics::new()?;
        let table = RoutingTable::from_static_config(&config)
            .map_err(|e| StartError::Table(e.to_string()))?;
        let (table_tx, table_rx) = watch::channel(Arc::new(table));
        let gate = Arc::new(TableGate::new(table_rx.clone()));
        let proxy = Proxy::new(&config, table_rx, gate, metrics)
            .map_err(|e| StartError::Table(e.to_string()))?;
        let outbound = bind("outbound", &config.listeners.outbound).await?;
        let inbound = bind("inbound", &config.listeners.inbound).await?;
        let admin = bind("admin", &config.listeners.admin).await?;
        let gossip = if config.membership.gossip.enabled {
            let inbound_addr = local_addr(&inbound);
            let admin_addr = local_addr(&admin);
            Some(start_gossip(&config, inbound_addr, admin_addr, proxy.metrics().clone()).await?)
        } else {
            None
        };
        // Static membership: the table is complete as soon as it is built.
        // Gossip: ready once the member sees itself in the view.
        let (ready_tx, ready_rx) = watch::channel(gossip.is_none());
        if let Some(g) = &gossip {
            tokio::spawn(membership::feed(
                Arc::new(config.clone()),
                g.handle.view(),
                table_tx.clone(),
                ready_tx.clone(),
            ));
        }
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
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> BoundAddrs {
        BoundAddrs {
            outbound: local_addr(&self.outbound),
            inbound: local_addr(&self.inbound),
            admin: local_addr(&self.admin),
            gossip: self.gossip.as_ref().map(|g| g.handle.local_addr()),
        }
    }

    /// The sender that replaces the routing table (membership and shard
    /// ownership feed it).
    pub fn table_sender(&self) -> watch::Sender<Arc<RoutingTable>> {
        self.table_tx.clone()
    }

    /// Serves until `shutdown` resolves; then turns not-ready, stops
    /// accepting, and gives in-flight requests the grace period to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let limits = ServerLimits {
            max_header_bytes: self.config.limits.max_header_bytes as usize,
            header_read_timeout: Duration::from_millis(self.config.limits.header_read_timeout_ms),
            max_connections: self.config.limits.max_connections as usize,
        };
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let addrs = self.addrs();
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let proxy = self.proxy.clone();
        let out = tokio::spawn(server::serve(
            self.outbound,
            Protocols::Http1,
            limits,
            move |req, _peer| outbound::handle(proxy.clone(), req),
            stopped(stop_rx.clone()),
            grace,
        ));
        let proxy = self.proxy.clone();
        let inb = tokio::spawn(server::serve(
            self.inbound,
            Protocols::Http1AndH2,
            limits,
            move |req, _peer| inbound::handle(proxy.clone(), req),
            stopped(stop_rx.clone()),
            grace,
        ));
        let state = AdminState {
            proxy: self.proxy.clone(),
            ready: self.ready_rx.clone(),
            members: self
                .gossip
                .as_ref()
                .map(|g| membership::debug_source(g.handle.view())),
            shards: None,
        };
        let adm = tokio::spawn(server::serve(
            self.admin,
            Protocols::Http1,
            limits,
            move |req, _peer| admin::handle(state.clone(), req),
            stopped(stop_rx.clone()),
            grace,
        ));
        if let Some(g) = &self.gossip {
            let handle = g.handle.clone();
            let mut ready = self.ready_rx.clone();
            let config = self.config.clone();
            tokio::spawn(async move {
                if ready.wait_for(|r| *r).await.is_ok() {
                    announce(&handle, &config, addrs, MemberStatus::Serving).await;
                }
            });
        }
        shutdown.await;
        tracing::info!(?grace, "shutting down: draining in-flight requests");
        let _ = self.ready_tx.send(false);
        if let Some(g) = &self.gossip {
            announce(&g.handle, &self.config, addrs, MemberStatus::Leaving).await;
        }
        let _ = stop_tx.send(true);
        let _ = tokio::join!(out, inb);
        if let Some(g) = self.gossip {
            if let Err(e) = g.handle.leave().await {
                tracing::debug!(error = %e, "gossip leave");
            }
            let _ = g.leave.send(());
        }
        adm.abort();
        tracing::info!("shutdown complete");
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
) -> Result<GossipMember, StartError> {
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
        meta,
        keyring,
        Arc::new(membership::GossipMetrics(metrics)),
        async move {
            let _ = left.await;
        },
    )
    .await
    .map_err(|e| err(e.to_string()))?;
    Ok(GossipMember {
        handle: Arc::new(handle),
        leave,
    })
}

/// Announces this member's lifecycle state through gossip.
async fn announce(
    handle: &GossipHandle,
    config: &SidecarConfig,
    addrs: BoundAddrs,
    state: MemberStatus,
) {
    let inbound = membership::advertised(config, addrs.inbound).unwrap_or(addrs.inbound);
    let admin = membership::advertised(config, addrs.admin).unwrap_or(addrs.admin);
    let mut meta = membership::local_meta(config, inbound, admin);
    meta.state = state;
    if let Err(e) = handle.update_meta(meta).await {
        tracing::warn!(error = %e, "cannot announce member state");
    }
}
