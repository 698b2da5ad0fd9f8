//! One gossip member as a process, for the network-namespace test
//! (`scripts/test.d/40-gossip-netns.sh`). Writes its view to `--status FILE`
//! on every change (one `pod health incarnation` line per member) and logs
//! every down verdict it sees to stdout.
//!
//! ```text
//! gossip-node --listen 10.77.0.1:7946 --pod n1 --keyring keys --status /tmp/n1 \
//!     [--seed 10.77.0.2:7946] [--probe-ms 200]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shardmesh_gossip::{Gossip, GossipSettings, Health, Keyring, MemberMeta, NoopObserver, Seeds};

struct Args {
    listen: SocketAddr,
    seeds: Vec<String>,
    pod: String,
    keyring: PathBuf,
    status: PathBuf,
    probe_ms: u64,
}

fn parse() -> Result<Args, String> {
    let mut listen = None;
    let mut seeds = Vec::new();
    let mut pod = None;
    let mut keyring = None;
    let mut status = None;
    let mut probe_ms = 1000;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(v.parse().map_err(|e| format!("--listen: {e}"))?),
            "--seed" => seeds.push(v),
            "--pod" => pod = Some(v),
            "--keyring" => keyring = Some(PathBuf::from(v)),
            "--status" => status = Some(PathBuf::from(v)),
            "--probe-ms" => probe_ms = v.parse().map_err(|e| format!("--probe-ms: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        seeds,
        pod: pod.ok_or("--pod is required")?,
        keyring: keyring.ok_or("--keyring is required")?,
        status: status.ok_or("--status is required")?,
        probe_ms,
    })
}

async fn run(args: Args) -> Result<(), String> {
    let mut tuning = shardmesh_config::GossipTuning {
        probe_interval_ms: args.probe_ms,
        probe_timeout_ms: (args.probe_ms / 2).max(1),
        ..Default::default()
    };
    tuning.push_pull_interval_ms = args.probe_ms * 10;
    let seeds = if args.seeds.is_empty() {
        Seeds::None
    } else {
        Seeds::Static(args.seeds)
    };
    let settings = GossipSettings::new(&tuning, args.listen, seeds);
    let keyring = Keyring::load(&args.keyring).map_err(|e| e.to_string())?;
    let meta = MemberMeta {
        service: "netns".into(),
        pod: args.pod.clone(),
        inbound: args.listen.to_string(),
        admin: args.listen.to_string(),
        ..MemberMeta::default()
    };
    let handle = Gossip::start(
        settings,
        meta,
        keyring,
        Arc::new(NoopObserver),
        std::future::pending(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut view = handle.view();
    let tmp = args.status.with_extension("tmp");
    let mut dead: std::collections::HashSet<String> = Default::default();
    loop {
        let lines: String = {
            let v = view.borrow_and_update();
            for m in &v.members {
                if m.health == Health::Dead
                    && dead.insert(format!("{}/{}", m.meta.pod, m.incarnation))
                {
                    println!("DEAD {} {}", m.meta.pod, m.incarnation);
                }
            }
            v.members
                .iter()
                .map(|m| format!("{} {:?} {}\n", m.meta.pod, m.health, m.incarnation))
                .collect()
        };
        std::fs::write(&tmp, lines).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &args.status).map_err(|e| e.to_string())?;
        if view.changed().await.is_err() {
            return Ok(());
        }
        // Coalesce bursts of changes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gossip-node: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gossip-node: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("gossip-node: {e}");
        std::process::exit(1);
    }
}
