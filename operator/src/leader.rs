//! Leader election with a `coordination.k8s.io` Lease (kube-lease-manager),
//! so two operator replicas can run and only one reconciles.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;

/// Name of the Lease the replicas contend for.
pub const LEASE_NAME: &str = "shardmesh-operator";
/// Seconds a lease stays valid without renewal (a new leader takes over after at most this).
pub const LEASE_SECONDS: u64 = 15;

/// A running election: the leader flag and the task that keeps the lease.
pub struct Election {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Election {
    /// Joins the election for the Lease in `namespace` as `identity`; the
    /// Lease lasts `seconds` and the holder renews it a third of that early.
    pub async fn join(
        client: Client,
        namespace: &str,
        identity: &str,
        seconds: u64,
    ) -> Result<Self, Error> {
        let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(seconds)
            .with_grace((seconds / 3).max(1))
            .build()
            .await
            .map_err(|e| Error::Lease(e.to_string()))?;
        let (is_leader, task) = manager.watch().await;
        Ok(Self { is_leader, task })
    }

    /// Resolves once this replica holds the lease; false if the election ended.
    pub async fn leading(&mut self) -> bool {
        self.is_leader.wait_for(|leader| *leader).await.is_ok()
    }

    /// Resolves when this replica stops holding the lease (or the election ends).
    pub async fn lost(&mut self) {
        let _ = self.is_leader.wait_for(|leader| !*leader).await;
    }

    /// Leaves the election, releasing the lease so a standby takes over at once.
    pub async fn leave(self) {
        drop(self.is_leader);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the leader lease"),
            Err(e) => tracing::warn!(error = %e, "lease task failed"),
        }
    }
}
