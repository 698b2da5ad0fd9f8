//! Feeds arbitrary bytes to every decoder a remote peer can reach: the seal,
//! the UDP message codec, the push-pull codec, broadcast items, and a whole
//! protocol core. Any panic is a bug.
//!
//! Run (bounded): `cd sidecar/gossip/fuzz && mkdir -p target/corpus && cargo +nightly fuzz run decode target/corpus seeds/decode -- -max_total_time=60`
//! (`seeds/decode`: 64 inputs under 4 KiB picked across the size range of a 60 s run's merged corpus.)
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shardmesh_gossip::core::Core;
use shardmesh_gossip::keyring::{Channel, Keyring};
use shardmesh_gossip::sim::{addr, meta};
use shardmesh_gossip::wire::{self, PushPull, Wire, MAX_FRAME, MAX_PLAIN};
use shardmesh_gossip::{NodeId, NoopObserver, Timing};

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode::<Wire>(data, MAX_PLAIN);
    let _ = wire::decode_item(data);
    if let Ok(state) = wire::decode::<PushPull>(data, MAX_FRAME) {
        let mut core = core();
        let _ = core.apply_push_pull(Duration::from_secs(1), state);
        core.handle_timers(Duration::from_secs(5));
    }
    if let Ok(ring) = Keyring::new(&[[1; 32]]) {
        let _ = ring.open(Channel::Udp, data);
    }
    let mut core = core();
    let _ = core.handle_udp(Duration::from_millis(1), addr(1), data);
    core.handle_timers(Duration::from_secs(3));
    while core.poll_output().is_some() {}
    let _ = core.take_view();
});

fn core() -> Core {
    let id = NodeId {
        addr: addr(0),
        generation: 1,
    };
    match Core::new(id, meta(0), Timing::lan(), 1, Arc::new(NoopObserver)) {
        Ok(c) => c,
        Err(e) => panic!("core: {e}"),
    }
}
