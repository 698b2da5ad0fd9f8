//! The chaos schedule of issue #18, case 2, as an independent client saw
//! it: 24 workers of keyed deposits, withdrawals, transfers and reads
//! through the pods' outbound listeners for 60 s while the mesh goes
//! through kill -9 of one app (8 s; its sidecar goes down with it and the
//! pod restarts), scale 3 → 5 (25 s), kill -9 of one sidecar (40 s; it
//! restarts alone) and scale 5 → 3 (50 s). Before the fix only 90.9 % of
//! requests succeeded at the first answer (7,078 `circuit-open`): breakers
//! keyed by pod name outlived the restarted processes, and the restarted
//! app's fencing answers counted as failures. The run must end with the
//! money check and >= 99.5 % success, and every failure carries a mesh
//! reason.

use std::time::{Duration, Instant};

use shardmesh_e2e::{http, load, mesh};

#[test]
fn faults_and_scaling_under_load_keep_money_and_availability() {
    let m = mesh::Mesh::up("chaos", &mesh::bank_manifest(3, "", ""), 108, &[]);
    m.wait_ready(Duration::from_secs(60));
    let targets: Vec<String> = ["bank-0", "bank-1", "bank-2"]
        .iter()
        .map(|p| m.pod_field(p, "outbound"))
        .collect();
    let run = load::Load::start(
        &m.dir,
        "chaos",
        &targets,
        &[
            "--duration",
            "60",
            "--concurrency",
            "24",
            "--accounts",
            "200",
            "--timeout-ms",
            "15000",
        ],
    );
    http::wait_traffic(
        &m.pod_field("bank-1", "admin"),
        500.0,
        Duration::from_secs(20),
    );
    let start = Instant::now();
    // The schedule's offsets are the faults' times, not waits for the system.
    let at = |secs: u64| {
        if let Some(left) = Duration::from_secs(secs).checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
    };
    at(8);
    m.signal("bank-0", "app", "KILL");
    at(25);
    let out = m.scale("bank", 5);
    println!("scale 3 -> 5 ready after {:.2} s", out.as_secs_f64());
    at(40);
    m.signal("bank-2", "sidecar", "KILL");
    at(50);
    let inn = m.scale("bank", 3);
    println!("scale 5 -> 3 ready after {:.2} s", inn.as_secs_f64());
    let result = run.finish();
    println!("{}", result.output);
    assert!(result.verified(), "money check failed\n{}", result.output);
    let reasons = result.summary["by_reason"].clone();
    println!("failures by reason: {reasons}");
    for reason in reasons.as_object().into_iter().flatten().map(|(k, _)| k) {
        assert!(
            !matches!(reason.as_str(), "connect" | "transport"),
            "a request failed below HTTP ({reason}) after failing over\n{}",
            result.output
        );
    }
    assert!(
        result.success_rate() >= 0.995,
        "success rate {:.4} < 0.995\n{}",
        result.success_rate(),
        result.output
    );
    let (_, left) = m.stop();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
