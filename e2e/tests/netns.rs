//! Network faults between pods in their own network namespaces (root only;
//! prints why and passes otherwise). 1) 10 % of gossip packets dropped on
//! every pod's link under load: no member is ever declared dead. 2) One
//! replica cut off: it stops serving (`no-owner`), the majority serves every
//! shard, no shard is served on both sides, and after the heal the balances
//! written during the cut are all still there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shardmesh_e2e::netns::Netns;
use shardmesh_e2e::{bins, mesh, poll};

const PODS: u32 = 3;
const BLOCK: u8 = 106;

/// The scenarios run one at a time: two meshes under load on two shared
/// cores starve gossip enough for false suspicions, which is not what
/// either scenario is about.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn owned(ns: &Netns, i: u32) -> Option<(u64, bool)> {
    let d = ns.debug(i, "shards")?;
    Some((
        d["owned"].as_u64()?,
        d["hasMajority"].as_bool().unwrap_or(false),
    ))
}

fn load(ns: &Netns, i: u32, name: &str, secs: &str) -> (bool, String) {
    let bin = bins::bin("bank-load");
    let target = format!("http://{}:7400", ns.ip(i));
    let out = ns.exec(
        i,
        &[
            bin.to_str().unwrap(),
            "--target",
            &target,
            "--duration",
            secs,
            "--concurrency",
            "8",
            "--accounts",
            "50",
            "--account-prefix",
            name,
            "--run-id",
            name,
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn balances(ns: &Netns, prefix: &str) -> Vec<String> {
    (0..50)
        .map(|k| {
            let url = format!("http://{}:7400/accounts/{prefix}-{k}", ns.ip(0));
            ns.curl(0, &url, &["x-shardmesh-service: bank"]).1
        })
        .collect()
}

/// Namespaces and a ready mesh in them, or `None` (printed why) when this
/// machine cannot make namespaces.
fn setup(tag: &str, block: u8) -> Option<(Netns, mesh::Mesh)> {
    if let Some(why) = Netns::unavailable() {
        println!("SKIP: network-namespace scenarios: {why}");
        return None;
    }
    let prefix = format!("sm{tag}{}", std::process::id() % 100_000);
    let ns = Netns::create(&prefix, block, PODS).expect("create namespaces");
    let m = mesh::Mesh::up(
        &format!("netns-{tag}"),
        &mesh::bank_manifest(PODS, "", ""),
        block,
        &["--netns", &prefix],
    );
    poll(Duration::from_secs(40), || {
        all_owned(&ns, &[0, 1, 2]).then_some(())
    })
    .unwrap_or_else(|| panic!("mesh in namespaces not ready: {}", m.log()));
    Some((ns, m))
}

fn all_owned(ns: &Netns, pods: &[u32]) -> bool {
    let sum: u64 = pods.iter().filter_map(|i| owned(ns, *i)).map(|o| o.0).sum();
    sum == 30
}

#[test]
fn ten_percent_gossip_loss_declares_no_live_member_dead() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some((ns, m)) = setup("l", BLOCK) else {
        return;
    };
    let prefix = ns.prefix.clone();
    // 10 % gossip loss, both ways, on every pod, under load.
    // One lossy hook per packet: every gossip packet is dropped with 10 %
    // probability where it arrives (probes and acks alike).
    const LOSSY: &str = "table inet lossy {\n chain in { type filter hook input priority 0; udp dport 7946 numgen random mod 10 == 0 drop; }\n}\n";
    for i in 0..PODS {
        ns.nft(i, LOSSY);
    }
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (prefix, done) = (prefix.clone(), done.clone());
        std::thread::spawn(move || {
            let ns = Netns {
                prefix,
                block: BLOCK,
                pods: 0,
            };
            let mut deaths = Vec::new();
            // Watches the whole bank-load run (load, resolve, verify phases).
            let end = std::time::Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                for i in 0..PODS {
                    if let Some(d) = ns.debug(i, "members") {
                        for mem in d["members"].as_array().into_iter().flatten() {
                            if mem["health"] == "dead" {
                                deaths.push(format!("{} saw {} dead", i, mem["pod"]));
                            }
                        }
                    }
                }
            }
            deaths
        })
    };
    let (ok, text) = load(&ns, 0, "loss", "12");
    done.store(true, Ordering::Relaxed);
    let deaths = watcher.join().unwrap();
    for i in 0..PODS {
        ns.exec(i, &["nft", "delete", "table", "inet", "lossy"]);
    }
    println!("10 % gossip loss for 12 s: false deaths {deaths:?}\n{text}");
    assert!(
        deaths.is_empty(),
        "false deaths under 10 % loss: {deaths:?}"
    );
    assert!(ok, "{text}");

    drop(m);
}

#[test]
fn a_cut_off_replica_stops_serving_and_the_money_survives_the_heal() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some((ns, m)) = setup("p", BLOCK + 1) else {
        return;
    };
    // Cut pod 2 off from the others.
    let cut = format!(
        "table inet cut {{\n chain in {{ type filter hook input priority 0; ip saddr {{ {a}, {b} }} drop; }}\n chain out {{ type filter hook output priority 0; ip daddr {{ {a}, {b} }} drop; }}\n}}\n",
        a = ns.ip(0),
        b = ns.ip(1)
    );
    ns.nft(2, &cut);
    let split = poll(Duration::from_secs(40), || {
        let minority = owned(&ns, 2)?;
        (minority == (0, false) && all_owned(&ns, &[0, 1])).then_some(())
    });
    assert!(
        split.is_some(),
        "no clean split: minority {:?}",
        owned(&ns, 2)
    );
    let (head, _) = ns.curl(
        2,
        &format!("http://{}:7400/accounts/alice", ns.ip(2)),
        &["x-shardmesh-service: bank"],
    );
    println!("minority answer: {}", head.lines().next().unwrap_or(""));
    assert!(head.contains("x-shardmesh-error: no-owner"), "{head}");
    let (ok, text) = load(&ns, 0, "cut", "6");
    println!("majority side during the cut:\n{text}");
    assert!(ok, "{text}");
    let before = balances(&ns, "cut");

    // Heal: every shard served once more across all three, balances intact.
    ns.exec(2, &["nft", "delete", "table", "inet", "cut"]);
    let healed = poll(Duration::from_secs(60), || {
        let o2 = owned(&ns, 2)?;
        (o2.0 > 0 && all_owned(&ns, &[0, 1, 2])).then_some(())
    });
    assert!(healed.is_some(), "not healed: {:?}", owned(&ns, 2));
    assert_eq!(
        balances(&ns, "cut"),
        before,
        "balances changed across the heal"
    );
    let (ok, text) = load(&ns, 0, "healed", "4");
    println!("after the heal:\n{text}");
    assert!(ok, "{text}");
    drop(m);
}
