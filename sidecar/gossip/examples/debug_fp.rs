use shardmesh_gossip::sim::{addr, Link, Net, Sim};
use shardmesh_gossip::Timing;
use std::time::Duration;
fn main() {
    let seeds: Vec<u64> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    for seed in seeds {
        let mut sim = Sim::converged(100, Timing::lan(), Net::default(), seed);
        sim.run_until(Duration::from_secs(10), |_| {});
        sim.net.loss = 0.10;
        sim.net.links.insert(
            (1, 2),
            Link {
                loss: 1.0,
                extra_latency: Duration::ZERO,
            },
        );
        let mut hist: std::collections::HashMap<std::net::SocketAddr, Vec<String>> =
            Default::default();
        sim.run_until(Duration::from_secs(610), |s| {
            for d in s.core.take_downs() {
                if d.by_self {
                    println!(
                        "seed {seed} t={:.2} node {} declared {:?} (health {})",
                        s.now.as_secs_f64(),
                        s.node,
                        d.member,
                        s.core.local_health()
                    );
                }
            }
            let _ = &mut hist;
        });
        let _ = addr(0);
    }
}
