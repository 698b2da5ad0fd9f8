//! The table of pods, as `up` shows it live and `status` prints it.

use std::fmt::Write as _;

use super::state::RunState;

/// The pods of `state` as an aligned text table (one line per pod, plus a header).
pub fn render(state: &RunState) -> String {
    let mut rows = vec![[
        "POD".to_string(),
        "STATE".into(),
        "READY".into(),
        "SHARDS".into(),
        "REQ/S".into(),
        "RESTARTS".into(),
        "OUTBOUND".into(),
        "LAST EXIT".into(),
    ]];
    for svc in &state.services {
        for pod in &svc.pods {
            rows.push([
                pod.name.clone(),
                pod.phase.clone(),
                if pod.ready { "yes" } else { "no" }.into(),
                pod.shards_owned
                    .map_or("-".into(), |n| format!("{n}/{}", svc.shards)),
                format!("{:.0}", pod.rps),
                pod.restarts.to_string(),
                pod.outbound.clone(),
                pod.last_exit.clone().unwrap_or_default(),
            ]);
        }
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// One line per service: `bank: 3/3 ready, 30/30 shards owned`.
pub fn summary(state: &RunState) -> String {
    let mut out = String::new();
    for svc in &state.services {
        let ready = svc.pods.iter().filter(|p| p.ready).count();
        let owned: u32 = svc.pods.iter().filter_map(|p| p.shards_owned).sum();
        let _ = writeln!(
            out,
            "{}: {ready}/{} pods ready, {owned}/{} shards served",
            svc.name, svc.replicas, svc.shards
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::state::{PodState, ServiceState};

    #[test]
    fn aligns_one_row_per_pod() {
        let state = RunState {
            services: vec![ServiceState {
                name: "bank".into(),
                replicas: 2,
                shards: 20,
                pods: vec![
                    PodState {
                        name: "bank-0".into(),
                        phase: "running".into(),
                        ready: true,
                        shards_owned: Some(10),
                        outbound: "127.0.0.10:7400".into(),
                        ..Default::default()
                    },
                    PodState {
                        name: "bank-1".into(),
                        phase: "restarting".into(),
                        last_exit: Some("app signal 9".into()),
                        ..Default::default()
                    },
                ],
            }],
            ..Default::default()
        };
        let table = render(&state);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("bank-0  running     yes    10/20"),
            "{table}"
        );
        assert!(lines[2].ends_with("app signal 9"), "{table}");
        assert_eq!(
            summary(&state),
            "bank: 1/2 pods ready, 10/20 shards served\n"
        );
    }
}
