//! shardmesh-shards (stub)
