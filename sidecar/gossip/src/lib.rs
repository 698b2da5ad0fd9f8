//! shardmesh-gossip (stub)
