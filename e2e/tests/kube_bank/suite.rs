//! What every scenario shares: the cluster, the client pod's listeners, the
//! probe keys (one account per shard) and the rows measured so far.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shardmesh_e2e::{http, shards};

use crate::kubectl::{Kube, Pod};
use crate::report::Row;
use crate::series::Series;

/// Namespace of the bank and its client.
pub const NS: &str = "bank";
/// Namespace of the Helm release.
pub const OPERATOR_NS: &str = "shardmesh-system";
/// Helm release name.
pub const RELEASE: &str = "shardmesh";
/// The bank's pods.
pub const BANK: &str = "shardmesh.io/service=bank";
/// The operator's pods.
pub const OPERATOR: &str =
    "app.kubernetes.io/instance=shardmesh,app.kubernetes.io/component=operator";
/// The bank's shards (10 × the 3 replicas it is created with; fixed after).
pub const SHARDS: u32 = 30;
/// The single node the agent registers.
pub const NODE: &str = "node-1";

/// The state scenarios build on.
pub struct Suite {
    /// kubectl/helm against the netns cluster.
    pub kube: Kube,
    /// Where bank-load writes its summaries.
    pub dir: PathBuf,
    /// The client pod's outbound listener (`IP:7400`).
    pub client: String,
    /// The client pod's admin listener.
    pub client_admin: String,
    /// One account per shard, to time recovery of every shard.
    pub keys: Vec<String>,
    /// Figures so far.
    pub rows: Vec<Row>,
    /// Checks that failed so far: a scenario's figures are still worth the
    /// next scenario's, so they are collected and the test fails at the end
    /// with all of them (a broken cluster still panics at once).
    pub failures: Vec<String>,
}

// === impl Suite ===

impl Suite {
    /// Starts load through the client pod and waits until it flows.
    /// `extra` adds flags (e.g. `--watch-shards`).
    pub fn load(&self, name: &str, extra: &[&str]) -> Series {
        let mut args = vec![
            "--concurrency",
            "12",
            "--accounts",
            "200",
            // Above the mesh deadline (10 s): every failure is the mesh's answer.
            "--timeout-ms",
            "15000",
        ];
        args.extend_from_slice(extra);
        let series = Series::start(&self.dir, name, &self.client, &args);
        http::wait_traffic(&self.client_admin, 300.0, Duration::from_secs(30));
        series
    }

    /// The bank's pods now.
    pub fn bank(&self) -> Vec<Pod> {
        self.kube.pods(NS, BANK)
    }

    /// One bank pod (panics when it does not exist).
    pub fn bank_pod(&self, name: &str) -> Pod {
        self.kube
            .pod(NS, name)
            .unwrap_or_else(|| panic!("no pod {name}: {:?}", self.bank()))
    }

    /// Waits until `n` bank pods serve; the time since `since`.
    pub fn wait_bank(&self, n: usize, since: Instant) -> Duration {
        self.kube
            .wait_serving(NS, BANK, n, since, Duration::from_secs(180))
            .map(|(d, _)| d)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Time from `since` until every key is served through the client pod.
    pub fn served_again(&self, since: Instant) -> Duration {
        shards::served_again(
            std::slice::from_ref(&self.client),
            &self.keys,
            since,
            Duration::from_secs(90),
        )
        .unwrap_or_else(|| panic!("not every key served through {} within 90 s", self.client))
    }

    /// Shards each bank pod's sidecar serves now, summed (30 = all, once).
    pub fn shards_served(&self, pods: &[Pod]) -> usize {
        pods.iter().map(|p| shards::served(&p.admin()).len()).sum()
    }

    /// Records a failed check (`ok` false) with its message.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let message = what();
            println!("CHECK FAILED: {message}");
            self.failures.push(message);
        }
    }

    /// Prints and keeps a scenario's row.
    pub fn record(&mut self, row: Row) {
        println!("{}\n{}", crate::report::HEADER, row.line());
        self.rows.push(row);
    }
}
