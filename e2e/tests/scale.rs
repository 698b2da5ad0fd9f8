//! Scale-out 3 → 5 and scale-in 5 → 3 with `local scale` under steady load:
//! shards hand off (release → acquire), and each phase's bank-load run ends
//! with the money check. Neither phase may fail a request: on scale-in the
//! leaving sidecar announces `leaving`, keeps serving until the others
//! route to the new owners (who hold requests until the handoff), hands its
//! shards off, and closes its listeners only once no request arrives.

use std::time::Duration;

use shardmesh_e2e::load::LoadResult;
use shardmesh_e2e::{http, load, mesh};

fn report(phase: &str, result: &LoadResult) {
    println!("{phase}:\n{}", result.output);
    println!(
        "{phase}: {} failed of {} requests",
        result.failed(),
        result.requests()
    );
    assert!(result.verified(), "{phase}: {}", result.output);
}

#[test]
fn scale_out_and_in_under_load_keeps_money_and_requests() {
    let m = mesh::Mesh::up("scale", &mesh::bank_manifest(3, "", ""), 103, &[]);
    m.wait_ready(Duration::from_secs(30));
    // bank-0..2 live through the whole run, so clients use their outbound listeners.
    let targets: Vec<String> = ["bank-0", "bank-1", "bank-2"]
        .iter()
        .map(|p| m.pod_field(p, "outbound"))
        .collect();
    let admin0 = m.pod_field("bank-0", "admin");
    let args = [
        "--duration",
        "8",
        "--concurrency",
        "16",
        "--accounts",
        "200",
    ];

    let run = load::Load::start(&m.dir, "scale-out", &targets, &args);
    http::wait_traffic(&admin0, 1000.0, Duration::from_secs(20));
    let took = m.scale("bank", 5);
    println!("scale 3 -> 5 ready in {:.2} s", took.as_secs_f64());
    assert_eq!(m.pods("bank").len(), 5);
    let out = run.finish();
    report("scale-out", &out);
    assert_eq!(out.failed(), 0, "scale-out: {}", out.output);

    let run = load::Load::start(&m.dir, "scale-in", &targets, &args);
    http::wait_traffic(&admin0, 1000.0, Duration::from_secs(20));
    let took = m.scale("bank", 3);
    println!("scale 5 -> 3 ready in {:.2} s", took.as_secs_f64());
    assert_eq!(m.pods("bank").len(), 3);
    let inn = run.finish();
    report("scale-in", &inn);
    assert_eq!(inn.failed(), 0, "scale-in: {}", inn.output);
}
