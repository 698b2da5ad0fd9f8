//! shardmesh-resilience (stub)
