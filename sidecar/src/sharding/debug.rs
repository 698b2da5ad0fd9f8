//! `/debug/shards` of the shard manager: what an operator needs to see per
//! shard (owner, state, epoch, in-flight requests).

use std::sync::atomic::Ordering;

use super::ShardManager;

impl ShardManager {
    /// `/debug/shards`: owner, state and epoch of every shard.
    pub fn debug(&self) -> serde_json::Value {
        let state = self.shared.lock();
        let t = &state.table;
        serde_json::json!({
            "service": self.shared.service,
            "local": t.me().as_str(),
            "hasMajority": t.has_majority(),
            "ready": t.is_ready(),
            "owned": t.owned(),
            "shards": (0..t.shards()).map(|s| {
                let st = t.state(s);
                let epoch = match &st {
                    shardmesh_shards::ShardState::Serving { epoch }
                    | shardmesh_shards::ShardState::Releasing { epoch } => Some(*epoch),
                    shardmesh_shards::ShardState::Acquiring { epoch, .. } => *epoch,
                    shardmesh_shards::ShardState::NotOwned => None,
                };
                serde_json::json!({
                    "shard": s,
                    "owner": t.owner(s).map(|m| m.as_str().to_string()),
                    "state": st.name(),
                    "epoch": epoch,
                    "inflight": self.shared.inflight.get(s as usize).map(|c| c.load(Ordering::Relaxed)),
                })
            }).collect::<Vec<_>>(),
        })
    }
}
