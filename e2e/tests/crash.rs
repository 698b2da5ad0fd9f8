//! Crash: kill -9 one replica (app and sidecar) under load. The others detect
//! it by gossip and re-own its shards; no acknowledged operation is lost
//! (bank-load's money check), and keyed requests for shards whose owners
//! stayed alive succeed >= 99.5 % across the outage, while the killed pod's
//! shards fail only with a mesh reason: the callers hold keyed requests for
//! the unreachable owner until its shards move (within the request deadline)
//! instead of failing them fast. The runner restarts the pod afterwards (its
//! backoff is set long enough to watch the death first) and it rejoins.

use std::time::{Duration, Instant};

use shardmesh_e2e::{http, load, mesh, poll, shards};

fn owned(admin: &str) -> u64 {
    http::admin_json(admin, "/debug/shards")
        .and_then(|d| d["owned"].as_u64())
        .unwrap_or(0)
}

#[test]
fn killed_replica_is_detected_and_its_shards_reowned_without_losing_money() {
    let m = mesh::Mesh::up(
        "crash",
        &mesh::bank_manifest(3, "", ""),
        102,
        &["--restart-backoff-ms", "20000"],
    );
    m.wait_ready(Duration::from_secs(30));
    let out = |p: &str| m.pod_field(p, "outbound");
    let admin0 = m.pod_field("bank-0", "admin");
    let admin2 = m.pod_field("bank-2", "admin");
    let watched = shards::served(&m.pod_field("bank-1", "admin"));
    assert!(!watched.is_empty(), "bank-1 serves nothing");
    let watch = shards::watch_arg(30, &watched);
    // The clients use the survivors' outbound listeners (bank-1's dies with it).
    let run = load::Load::start(
        &m.dir,
        "crash",
        &[out("bank-0"), out("bank-2")],
        &[
            "--duration",
            "15",
            "--concurrency",
            "16",
            "--accounts",
            "200",
            "--timeout-ms",
            "15000",
            "--watch-shards",
            &watch,
        ],
    );
    http::wait_traffic(&admin0, 2000.0, Duration::from_secs(20));
    m.signal("bank-1", "sidecar", "KILL");
    m.signal("bank-1", "app", "KILL");
    let killed = Instant::now();

    let dead = poll(Duration::from_secs(30), || {
        matches!(
            http::member_health(&admin0, "bank-1").as_deref(),
            Some("dead" | "gone")
        )
        .then(|| killed.elapsed())
    })
    .expect("bank-1 declared dead within 30 s");
    let reowned = poll(Duration::from_secs(30), || {
        (owned(&admin0) + owned(&admin2) == 30).then(|| killed.elapsed())
    })
    .expect("every shard re-owned within 30 s");
    println!(
        "detection: bank-1 dead after {:.2} s; all 30 shards served by the survivors after {:.2} s",
        dead.as_secs_f64(),
        reowned.as_secs_f64()
    );

    let result = run.finish();
    println!("{}", result.output);
    println!(
        "success rate of the run across the crash: {:.4}",
        result.success_rate()
    );
    assert!(result.verified(), "{}", result.output);
    let others = result.group_rate("others").unwrap_or(0.0);
    assert!(
        others >= 0.995,
        "live owners' shards succeeded {others:.4} < 0.995\n{}",
        result.output
    );
    let unexplained = result.unexplained_failures("watched");
    assert!(
        unexplained.is_empty(),
        "requests for bank-1's shards failed without a mesh reason: {unexplained:?}\n{}",
        result.output
    );
    assert!(result.success_rate() >= 0.99, "{}", result.output);

    // Once the shards are re-owned, the survivors serve everything.
    let after = load::run(
        &m.dir,
        "crash-after",
        &[out("bank-0"), out("bank-2")],
        &[
            "--duration",
            "5",
            "--concurrency",
            "16",
            "--accounts",
            "200",
        ],
    );
    println!("{}", after.output);
    println!("success rate after re-owning: {:.4}", after.success_rate());
    assert!(after.success_rate() >= 0.99, "{}", after.output);
    assert!(after.verified(), "{}", after.output);

    // Supervision: the runner restarts the pod and it rejoins.
    let back = poll(Duration::from_secs(60), || {
        let p = m.pods("bank").into_iter().find(|p| p["name"] == "bank-1")?;
        (p["restarts"].as_u64() >= Some(1) && m.state()["ready"] == true).then_some(())
    });
    assert!(
        back.is_some(),
        "bank-1 not restarted and ready: {}",
        m.log()
    );
    let (_, left) = m.stop();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
