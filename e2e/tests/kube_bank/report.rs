//! The suite's figures: one row per scenario (time to Ready, recovery,
//! traffic and the money check), printed as a Markdown table at the end and
//! as each scenario finishes, so a failed run still shows what it measured.

use std::time::Duration;

use crate::series::Traffic;

/// What one scenario measured.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Time until the pods the scenario changed were Ready again.
    pub ready: Option<Duration>,
    /// Time from the fault until every key was served again through the client.
    pub recovery: Option<Duration>,
    /// Requests under load.
    pub requests: u64,
    /// Their success rate.
    pub success: f64,
    /// Failures by reason.
    pub reasons: Vec<(String, u64)>,
    /// The money check of every segment passed (`None`: no load in this scenario).
    pub money: Option<bool>,
    /// Anything else worth a column (e.g. "PDB refused 2 evictions").
    pub note: String,
}

// === impl Row ===

impl Row {
    /// A row for `scenario` with the figures of `traffic`.
    pub fn new(scenario: &str, traffic: Option<&Traffic>) -> Self {
        let mut row = Row {
            scenario: scenario.into(),
            ..Row::default()
        };
        if let Some(t) = traffic {
            row.requests = t.requests();
            row.success = t.success_rate();
            row.reasons = t.by_reason().into_iter().collect();
            row.money = Some(t.verified());
        }
        row
    }

    /// One Markdown table line.
    pub fn line(&self) -> String {
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()));
        let reasons = if self.reasons.is_empty() {
            "-".to_string()
        } else {
            self.reasons
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let money = match self.money {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "-",
        };
        let success = if self.requests == 0 {
            "-".to_string()
        } else {
            format!("{:.3} %", self.success * 100.0)
        };
        format!(
            "| {} | {} | {} | {} | {success} | {reasons} | {money} | {} |",
            self.scenario,
            secs(self.ready),
            secs(self.recovery),
            self.requests,
            self.note
        )
    }
}

/// The table header.
pub const HEADER: &str = "| scenario | Ready after | every key served again after | requests | success | failures by reason | money check | note |\n|---|---|---|---|---|---|---|---|";

/// Prints the whole table.
pub fn print(rows: &[Row]) {
    println!(
        "\nbank on Kubernetes (one node, bank-load through the client pod's outbound listener):"
    );
    println!("{HEADER}");
    for row in rows {
        println!("{}", row.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_prints_its_figures() {
        let row = Row {
            scenario: "crash".into(),
            ready: Some(Duration::from_millis(8400)),
            recovery: None,
            requests: 2000,
            success: 0.9985,
            reasons: vec![("no-owner".into(), 3)],
            money: Some(true),
            note: "restarts 1".into(),
        };
        assert_eq!(
            row.line(),
            "| crash | 8.4 s | - | 2000 | 99.850 % | no-owner=3 | ok | restarts 1 |"
        );
    }
}
