//! Location-transparent routing: request → (service, key) → shard → owner.

pub mod balance;
pub mod hold;
pub mod ownership;
pub mod table;
pub mod target;

pub use table::{Endpoint, EndpointHealth, RoutingTable, ServiceRoutes};
pub use target::{resolve, Target};

/// The channel the proxy reads routing tables from. Whoever owns membership
/// (static config, gossip, the shard manager) holds the sender.
pub type TableRx = tokio::sync::watch::Receiver<std::sync::Arc<RoutingTable>>;
