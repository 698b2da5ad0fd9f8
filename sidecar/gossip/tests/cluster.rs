//! Real UDP/TCP on loopback: five members in one process form a cluster from
//! one seed, detect a crash, see the crashed member rejoin under a higher
//! incarnation, ignore a wrongly keyed packet, and show a graceful leave.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_gossip::keyring::Channel;
use shardmesh_gossip::{
    BadPacket, Gossip, GossipHandle, GossipObserver, GossipSettings, Health, Keyring, MemberMeta,
    MembershipView, Seeds, Timing,
};
use tokio::time::Instant;

#[derive(Default)]
struct Counts(Mutex<HashMap<&'static str, u64>>);

impl Counts {
    fn get(&self, k: &str) -> u64 {
        self.0.lock().unwrap().get(k).copied().unwrap_or(0)
    }
    fn add(&self, k: &'static str) {
        *self.0.lock().unwrap().entry(k).or_default() += 1;
    }
}

impl GossipObserver for Counts {
    fn bad_packet(&self, reason: BadPacket) {
        self.add(reason.as_str());
    }
    fn suspicion(&self) {
        self.add("suspicion");
    }
}

fn timing() -> Timing {
    Timing {
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(40),
        indirect_probes: 3,
        suspicion_multiplier: 4,
        retransmit_multiplier: 4,
        push_pull_interval: Duration::from_secs(1),
        lifeguard: true,
        tombstone: Duration::from_secs(3600),
    }
}

fn keyring() -> Keyring {
    Keyring::new(&[[42; 32]]).unwrap()
}

fn meta(i: usize) -> MemberMeta {
    MemberMeta {
        service: "bank".into(),
        pod: format!("bank-{i}"),
        inbound: format!("127.0.0.1:{}", 17401 + i),
        admin: format!("127.0.0.1:{}", 17402 + i),
        ..MemberMeta::default()
    }
}

async fn start(i: usize, listen: SocketAddr, seeds: Seeds, obs: Arc<Counts>) -> GossipHandle {
    let mut s = GossipSettings::new(&Default::default(), listen, seeds);
    s.timing = timing();
    s.join_backoff = Duration::from_millis(50);
    s.join_backoff_max = Duration::from_millis(400);
    s.tcp_timeout = Duration::from_secs(2);
    Gossip::start(s, meta(i), keyring(), obs, std::future::pending())
        .await
        .unwrap()
}

/// Polls every view until `pred` holds for all, or fails after `within`.
async fn wait_all(
    handles: &[&GossipHandle],
    within: Duration,
    what: &str,
    pred: impl Fn(&MembershipView) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        if handles.iter().all(|h| pred(&h.view().borrow())) {
            return;
        }
        if Instant::now() > deadline {
            let views: Vec<_> = handles
                .iter()
                .map(|h| {
                    h.view()
                        .borrow()
                        .members
                        .iter()
                        .map(|m| format!("{}:{:?}:{}", m.meta.pod, m.health, m.incarnation))
                        .collect::<Vec<_>>()
                })
                .collect();
            panic!("timed out waiting for {what}; views: {views:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn health_of(v: &MembershipView, pod: &str) -> Option<Health> {
    v.get(pod).map(|m| m.health)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_detect_crash_rejoin_bad_key_and_leave() {
    let obs = Arc::new(Counts::default());
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let seed = start(0, any, Seeds::None, obs.clone()).await;
    let seeds = Seeds::Static(vec![seed.local_addr().to_string()]);
    let mut others = Vec::new();
    for i in 1..5 {
        others.push(start(i, any, seeds.clone(), obs.clone()).await);
    }
    let formed = Instant::now();
    {
        let all: Vec<&GossipHandle> = std::iter::once(&seed).chain(others.iter()).collect();
        wait_all(&all, Duration::from_secs(10), "5 alive members", |v| {
            v.members.len() == 5 && v.alive().count() == 5
        })
        .await;
    }
    eprintln!("cluster of 5 formed in {:?}", formed.elapsed());

    // Crash bank-4: drop its handle without leaving.
    let crashed = others.pop().unwrap();
    let crashed_addr = crashed.local_addr();
    let before = seed.view().borrow().get("bank-4").unwrap().incarnation;
    drop(crashed);
    let crash_at = Instant::now();
    {
        let survivors: Vec<&GossipHandle> = std::iter::once(&seed).chain(others.iter()).collect();
        // Configured: probe 100 ms, suspicion ≤ 400 ms at n = 5, plus
        // dissemination (under 1 s). The deadline is generous because this
        // runs beside the rest of the suite on 2 cores; the time is printed,
        // and the simulator benchmark measures detection properly.
        wait_all(&survivors, Duration::from_secs(10), "bank-4 dead", |v| {
            health_of(v, "bank-4") == Some(Health::Dead)
        })
        .await;
    }
    let detect = crash_at.elapsed();
    eprintln!("crash of bank-4 known dead everywhere after {detect:?}");
    assert!(obs.get("suspicion") >= 1);

    // Restart it at the same address: it rejoins under a higher incarnation.
    let restarted = start(4, crashed_addr, seeds.clone(), obs.clone()).await;
    {
        let all: Vec<&GossipHandle> = std::iter::once(&seed)
            .chain(others.iter())
            .chain([&restarted])
            .collect();
        wait_all(&all, Duration::from_secs(10), "bank-4 back alive", |v| {
            v.get("bank-4")
                .is_some_and(|m| m.health == Health::Alive && m.incarnation > before)
        })
        .await;
    }

    // A packet sealed with another key is counted and ignored.
    let auth_before = obs.get("auth");
    let stranger = Keyring::new(&[[7; 32]]).unwrap();
    let sock = tokio::net::UdpSocket::bind(any).await.unwrap();
    let forged = stranger.seal(Channel::Udp, b"\x01not for you");
    sock.send_to(&forged, seed.local_addr()).await.unwrap();
    sock.send_to(b"garbage", seed.local_addr()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while obs.get("auth") == auth_before || obs.get("truncated") == 0 {
        assert!(Instant::now() < deadline, "bad packets not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seed.view().borrow().alive().count(), 5);

    // Graceful leave of bank-3 shows Left, not Dead.
    let leaver = others.pop().unwrap();
    leaver.leave().await.unwrap();
    {
        let rest: Vec<&GossipHandle> = std::iter::once(&seed)
            .chain(others.iter())
            .chain([&restarted])
            .collect();
        wait_all(&rest, Duration::from_secs(5), "bank-3 left", |v| {
            health_of(v, "bank-3") == Some(Health::Left)
        })
        .await;
    }
    drop(leaver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_changes_and_app_broadcasts_spread() {
    let obs = Arc::new(Counts::default());
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let a = start(0, any, Seeds::None, obs.clone()).await;
    let b = start(
        1,
        any,
        Seeds::Static(vec![a.local_addr().to_string()]),
        obs.clone(),
    )
    .await;
    wait_all(&[&a, &b], Duration::from_secs(10), "2 alive", |v| {
        v.alive().count() == 2
    })
    .await;

    let mut changed = meta(1);
    changed.state = shardmesh_gossip::MemberStatus::Serving;
    changed.tags.insert("shards".into(), "20".into());
    b.update_meta(changed.clone()).await.unwrap();
    wait_all(&[&a], Duration::from_secs(5), "new metadata", |v| {
        v.get("bank-1").is_some_and(|m| m.meta == changed)
    })
    .await;

    let mut rx = a.broadcasts();
    b.broadcast(bytes::Bytes::from_static(b"release shard 3"))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.data[..], b"release shard 3");
    assert_eq!(msg.from, b.local_addr());

    let too_big = bytes::Bytes::from(vec![0u8; 4096]);
    assert!(b.broadcast(too_big).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_seed_is_re_resolved_and_a_lone_member_keeps_retrying() {
    let obs = Arc::new(Counts::default());
    // Reserve a port for the seed that does not exist yet.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let b = start(1, any, Seeds::Dns(format!("localhost:{port}")), obs.clone()).await;
    // Not a wait for a result: let a few join attempts (50 ms backoff) fail
    // against the missing seed before it appears, so the join below proves
    // re-resolution and retrying rather than a lucky first attempt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.view().borrow().alive().count(), 1);
    let a = start(
        0,
        SocketAddr::from(([127, 0, 0, 1], port)),
        Seeds::None,
        obs,
    )
    .await;
    wait_all(
        &[&a, &b],
        Duration::from_secs(10),
        "joined through DNS",
        |v| v.alive().count() == 2,
    )
    .await;
}
