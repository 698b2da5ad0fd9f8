//! Draining on request, before the app stops.
//!
//! In Kubernetes the native sidecar outlives the app: on pod deletion the
//! kubelet stops the app first and the sidecar only once the app exited. A
//! sidecar that hands its shards off on its own SIGTERM would do so with the
//! app already gone (requests for its shards fail with `no-owner` meanwhile).
//! So the operator gives the app container a preStop hook, `GET /drain` on
//! the admin port: the sidecar hands its shards off and waits until callers
//! stopped routing here while the app still serves, and only then answers,
//! letting the kubelet send the app its SIGTERM.

use std::net::IpAddr;

use tokio::sync::watch;

/// The admin listener's side: asks for a drain and waits for its end.
#[derive(Clone)]
pub struct DrainControl {
    requested: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    /// Peers allowed to ask besides loopback: the node (kubelet).
    node: Option<IpAddr>,
}

/// The sidecar's side: learns that a drain was asked and reports its end.
pub struct DrainSignal {
    requested: watch::Receiver<bool>,
    done: watch::Sender<bool>,
}

/// A connected pair; `node` is the node IP the kubelet calls from.
pub fn channel(node: Option<IpAddr>) -> (DrainControl, DrainSignal) {
    let (requested_tx, requested_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    (
        DrainControl {
            requested: requested_tx,
            done: done_rx,
            node,
        },
        DrainSignal {
            requested: requested_rx,
            done: done_tx,
        },
    )
}

impl DrainControl {
    /// Whether `peer` may drain this pod: the pod itself (loopback) or the
    /// node's kubelet. Other pods may reach the admin port (probes,
    /// scrapes) but must not take a pod out of service.
    pub fn allowed(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        peer.is_loopback() || self.node == Some(peer)
    }

    /// Asks for a drain (idempotent) and waits until it is over.
    pub async fn drain(&self) {
        self.requested.send_replace(true);
        let mut done = self.done.clone();
        // An error means the sidecar is gone: drained as much as it ever will be.
        let _ = done.wait_for(|d| *d).await;
    }
}

impl DrainSignal {
    /// Resolves once a drain was asked; never if nobody can ask any more.
    pub async fn requested(&mut self) {
        if self.requested.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Reports that the shards are handed off and traffic moved away.
    pub fn finished(&self) {
        self.done.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn only_loopback_and_the_node_may_drain() {
        let node: IpAddr = Ipv4Addr::new(10, 244, 0, 1).into();
        let (control, _signal) = channel(Some(node));
        assert!(control.allowed(Ipv4Addr::LOCALHOST.into()));
        assert!(control.allowed(Ipv6Addr::LOCALHOST.into()));
        assert!(control.allowed(node));
        assert!(control.allowed(Ipv4Addr::new(10, 244, 0, 1).to_ipv6_mapped().into()));
        assert!(!control.allowed(Ipv4Addr::new(10, 244, 0, 7).into()));
        let (control, _signal) = channel(None);
        assert!(!control.allowed(node));
    }

    #[tokio::test]
    async fn drain_waits_for_the_sidecar_to_finish() {
        let (control, mut signal) = channel(None);
        let asked = tokio::spawn({
            let control = control.clone();
            async move { control.drain().await }
        });
        signal.requested().await;
        assert!(!asked.is_finished());
        signal.finished();
        asked.await.unwrap();
        // A second request returns at once.
        control.drain().await;
    }
}
