//! Scale-out 3 → 5 and scale-in 5 → 3 with `local scale` under steady load:
//! shards hand off (release → acquire) without a single failed request, and
//! the money check passes.

use std::time::Duration;

use shardmesh_e2e::{http, load, mesh};

#[test]
fn scale_out_and_in_under_load_fails_no_request() {
    let m = mesh::Mesh::up("scale", &mesh::bank_manifest(3, "", ""), 103, &[]);
    m.wait_ready(Duration::from_secs(30));
    // bank-0..2 live through the whole run, so clients use their outbound listeners.
    let targets: Vec<String> = ["bank-0", "bank-1", "bank-2"]
        .iter()
        .map(|p| m.pod_field(p, "outbound"))
        .collect();
    let admin0 = m.pod_field("bank-0", "admin");
    let run = load::Load::start(
        &m.dir,
        "scale",
        &targets,
        &[
            "--duration",
            "20",
            "--concurrency",
            "16",
            "--accounts",
            "200",
        ],
    );
    http::wait_traffic(&admin0, 1000.0, Duration::from_secs(20));
    let out = m.scale("bank", 5);
    println!("scale 3 -> 5 ready in {:.2} s", out.as_secs_f64());
    assert_eq!(m.pods("bank").len(), 5);
    http::wait_traffic(&admin0, 1000.0, Duration::from_secs(20));
    let inn = m.scale("bank", 3);
    println!("scale 5 -> 3 ready in {:.2} s", inn.as_secs_f64());
    assert_eq!(m.pods("bank").len(), 3);

    let result = run.finish();
    println!("{}", result.output);
    assert_eq!(result.failed(), 0, "{}", result.output);
    assert!(result.verified(), "{}", result.output);
}
