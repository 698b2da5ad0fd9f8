//! Happy path: `local up` of 3 bank replicas, 10 s of mixed traffic through
//! every pod's outbound listener: zero errors and the money check passes;
//! `local status` reports the mesh; Ctrl-C (SIGTERM) leaves no process behind.

use std::time::Duration;

use shardmesh_e2e::{load, mesh};

#[test]
fn three_replicas_serve_mixed_traffic_without_errors() {
    let m = mesh::Mesh::up("happy", &mesh::bank_manifest(3, "", ""), 101, &[]);
    let setup = m.wait_ready(Duration::from_secs(30));
    println!(
        "set-up: mesh ready {:.2} s after start",
        setup.as_secs_f64()
    );
    assert!(
        m.wait_log(
            "curl -H 'x-shardmesh-service: bank'",
            Duration::from_secs(5)
        ),
        "{}",
        m.log()
    );

    let targets: Vec<String> = m
        .pods("bank")
        .iter()
        .map(|p| p["outbound"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(targets.len(), 3);
    let result = load::run(
        &m.dir,
        "happy",
        &targets,
        &[
            "--duration",
            "10",
            "--concurrency",
            "16",
            "--accounts",
            "200",
        ],
    );
    println!("{}", result.output);
    assert!(
        result.requests() > 1000,
        "too little traffic: {}",
        result.output
    );
    assert_eq!(result.failed(), 0, "{}", result.output);
    assert!(result.verified(), "{}", result.output);

    let (ok, status) = m.cli(&["status"]);
    assert!(ok, "{status}");
    for pod in ["bank-0", "bank-1", "bank-2"] {
        assert!(status.contains(&format!("{pod} ")), "{status}");
    }
    assert!(status.contains("alive"), "{status}");
    assert!(
        status.contains("bank: 3/3 pods ready, 30/30 shards served"),
        "{status}"
    );

    let (took, left) = m.stop();
    println!("stop took {:.2} s", took.as_secs_f64());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
