//! `local status` (members, shards, breakers of a running mesh, from the
//! state file and the sidecars' admin endpoints) and `local scale NAME N`
//! (written to the control file, which the running `up` polls).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::state::{self, Control, RunState};
use super::{probe, table, LocalError};

/// Timeout of one admin request.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How often `scale` re-reads the state file while it waits.
const POLL: Duration = Duration::from_millis(200);

/// Prints the mesh of the run in `run_dir` (default: the latest).
pub async fn status(run_dir: Option<PathBuf>, as_json: bool) -> Result<(), LocalError> {
    let dir = state::resolve_run_dir(run_dir)?;
    let st: RunState = state::read_json(&dir.join(state::STATE_FILE))?;
    let alive = runner_alive(st.runner_pid) && !st.stopped;
    let mut pods = Vec::new();
    for svc in &st.services {
        for pod in &svc.pods {
            let shards = get_json(&pod.admin, "/debug/shards").await;
            let metrics = probe::get(&pod.admin, "/metrics", TIMEOUT).await;
            let breakers: Vec<Value> = metrics
                .map(|(_, text)| probe::breakers(&text))
                .unwrap_or_default()
                .into_iter()
                .map(|(peer, state)| json!({"peer": peer, "state": state}))
                .collect();
            pods.push(json!({
                "pod": pod.name,
                "service": svc.name,
                "phase": pod.phase,
                "owned": shards.as_ref().and_then(|d| d["owned"].as_u64()),
                "hasMajority": shards.as_ref().and_then(|d| d["hasMajority"].as_bool()),
                "breakers": breakers,
            }));
        }
    }
    let first_admin = st
        .services
        .iter()
        .flat_map(|s| &s.pods)
        .find(|p| p.ready)
        .map(|p| p.admin.clone());
    let members = match first_admin {
        Some(admin) => get_json(&admin, "/debug/members").await,
        None => None,
    };
    if as_json {
        let doc = json!({"runnerAlive": alive, "state": st, "pods": pods, "members": members});
        println!("{doc:#}");
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} ({})",
        st.run_dir,
        if alive { "running" } else { "not running" }
    );
    out.push_str(&table::render(&st));
    out.push_str(&table::summary(&st));
    out.push_str("\nmembers (gossip view of one pod):\n");
    match members.as_ref().and_then(|m| m["members"].as_array()) {
        Some(list) => {
            for m in list {
                let _ = writeln!(
                    out,
                    "  {:<16} {:<10} {:<8} {}",
                    m["pod"].as_str().unwrap_or("?"),
                    m["service"].as_str().unwrap_or("?"),
                    m["health"].as_str().unwrap_or("?"),
                    m["state"].as_str().unwrap_or(""),
                );
            }
        }
        None => out.push_str("  (no ready pod answered)\n"),
    }
    out.push_str("\nbreakers not closed:\n");
    let mut any = false;
    for p in &pods {
        for b in p["breakers"].as_array().into_iter().flatten() {
            any = true;
            let _ = writeln!(
                out,
                "  {} -> {}: {}",
                p["pod"].as_str().unwrap_or("?"),
                b["peer"].as_str().unwrap_or("?"),
                b["state"].as_str().unwrap_or("?")
            );
        }
    }
    if !any {
        out.push_str("  none\n");
    }
    print!("{out}");
    Ok(())
}

/// Asks the running `up` to run `replicas` pods of `name`; waits up to
/// `wait_secs` for them to be ready (0: returns at once).
pub async fn scale(
    run_dir: Option<PathBuf>,
    name: &str,
    replicas: u32,
    wait_secs: u64,
) -> Result<(), LocalError> {
    let dir = state::resolve_run_dir(run_dir)?;
    let st: RunState = state::read_json(&dir.join(state::STATE_FILE))?;
    if !runner_alive(st.runner_pid) || st.stopped {
        return Err(LocalError::State(format!(
            "the local mesh of {} is not running",
            dir.display()
        )));
    }
    if !st.services.iter().any(|s| s.name == name) {
        return Err(LocalError::State(format!(
            "no service {name} in this mesh (it has: {})",
            st.services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let path = dir.join(state::CONTROL_FILE);
    let mut control: Control = state::read_json(&path).unwrap_or_default();
    control.seq += 1;
    control.replicas.insert(name.to_string(), replicas);
    state::write_json(&path, &control)?;
    println!("{name}: scaling to {replicas}");
    if wait_secs == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let Ok(st) = state::read_json::<RunState>(&dir.join(state::STATE_FILE)) else {
            continue;
        };
        let done = st.control_seq >= control.seq
            && st.ready
            && st
                .services
                .iter()
                .any(|s| s.name == name && s.pods.len() as u32 == replicas);
        if done {
            print!("{}", table::summary(&st));
            return Ok(());
        }
    }
    Err(LocalError::State(format!(
        "{name} did not reach {replicas} ready pods in {wait_secs} s (see `local status`)"
    )))
}

async fn get_json(admin: &str, path: &str) -> Option<Value> {
    let (_, body) = probe::get(admin, path, TIMEOUT).await?;
    serde_json::from_str(&body).ok()
}

fn runner_alive(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}
