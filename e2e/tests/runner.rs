//! The local runner cleans up after itself: SIGHUP (a closed terminal)
//! stops every pod like Ctrl-C; a SIGKILL of the runner takes its pods with
//! it (parent-death signal); and a second `up` on addresses that are taken
//! exits at once, naming the address and the process holding it, instead
//! of crash-looping its apps.

use std::time::Duration;

use shardmesh_e2e::{mesh, poll};

fn wait_all_gone(pids: &[u32]) -> bool {
    poll(Duration::from_secs(20), || {
        pids.iter().all(|p| !mesh::alive(*p)).then_some(())
    })
    .is_some()
}

#[test]
fn hangup_stops_every_pod() {
    let mut m = mesh::Mesh::up("runner-hup", &mesh::bank_manifest(2, "", ""), 109, &[]);
    m.wait_ready(Duration::from_secs(60));
    let pids = mesh::all_pids(&m.state());
    assert_eq!(pids.len(), 4, "two pods, app and sidecar each");
    m.signal_runner("HUP");
    let status = m.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "up did not stop cleanly on SIGHUP: {status:?}\n{}",
        m.log()
    );
    assert!(
        wait_all_gone(&pids),
        "pods left running after SIGHUP: {:?}",
        pids.iter().filter(|p| mesh::alive(**p)).collect::<Vec<_>>()
    );
}

#[test]
fn killed_runner_takes_its_pods_and_a_second_run_names_a_taken_address() {
    let mut first = mesh::Mesh::up("runner-kill", &mesh::bank_manifest(2, "", ""), 110, &[]);
    first.wait_ready(Duration::from_secs(60));
    let pids = mesh::all_pids(&first.state());
    assert_eq!(pids.len(), 4);

    // A second run on the same addresses refuses to start.
    let mut second = mesh::Mesh::up("runner-taken", &mesh::bank_manifest(2, "", ""), 110, &[]);
    let status = second.wait_exit(Duration::from_secs(30));
    let log = second.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second up on taken addresses did not fail: {status:?}\n{log}"
    );
    assert!(
        log.contains("127.110.0.10:"),
        "the address is not named:\n{log}"
    );
    assert!(
        log.contains("already in use by pid "),
        "the holder is not named:\n{log}"
    );
    assert!(
        !log.contains("restart #"),
        "it crash-looped instead:\n{log}"
    );

    first.signal_runner("KILL");
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        wait_all_gone(&pids),
        "pods outlived a SIGKILLed runner: {:?}",
        pids.iter().filter(|p| mesh::alive(**p)).collect::<Vec<_>>()
    );
}
