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
        // Static membership: the table is complete as soon as it is built.
        let (ready_tx, ready_rx) = watch::channel(true);
        Ok(Self {
            config,
            proxy,
            outbound,
            inbound,
            admin,
            ready_tx,
            ready_rx,
            table_tx,
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> BoundAddrs {
        let addr = |l: &TcpListener| {
            l.local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        BoundAddrs {
            outbound: addr(&self.outbound),
            inbound: addr(&self.inbound),
            admin: addr(&self.admin),
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
            members: None,
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
        shutdown.await;
        tracing::info!(?grace, "shutting down: draining in-flight requests");
        let _ = self.ready_tx.send(false);
        let _ = stop_tx.send(true);
        let _ = tokio::join!(out, inb);
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
