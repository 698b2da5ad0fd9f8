//! Sends planned operations to the targets and sorts the answers.
//!
//! An answer is *definite* when the bank itself decided (200, or a business
//! 409 such as `insufficient-funds`, or 400): then we know whether the
//! operation was applied. Anything else — a timeout, a transport error, a
//! mesh error (`x-shardmesh-error`), a 5xx, `stale-epoch`, `transfer-pending`
//! — is *ambiguous*: the operation may or may not have run, and the same op
//! id must be re-sent until a definite answer says which.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;

use crate::http::client::{HttpClient, Reply, SendError};
use crate::http::headers;
use crate::load::workload::{Kind, Planned};

/// What an answer means for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The bank decided; `applied` tells whether money moved.
    Definite {
        /// Money moved (always false for reads).
        applied: bool,
        /// HTTP status.
        status: u16,
        /// JSON body (compared when the op is re-sent).
        body: serde_json::Value,
    },
    /// Unknown outcome; re-send the same op.
    Ambiguous,
}

/// One request's result, with what the report counts.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Time from send to full answer.
    pub latency: Duration,
    /// `"200"`, `"503"`, … or `"timeout"` / `"connect"` / `"transport"`.
    pub status: String,
    /// `x-shardmesh-error` reason, or `timeout` / `transport` for client-side failures.
    pub reason: Option<String>,
    /// `error` field of a non-200 answer the app made.
    pub app_error: Option<String>,
    /// Meaning for verification.
    pub answer: Answer,
    /// Not a 200 and not an expected business refusal.
    pub failed: bool,
    /// Targets skipped because they refused the connection.
    pub failovers: u32,
    /// For a failed request: who answered and why, as the report's samples.
    pub detail: Option<String>,
}

/// The targets and how operations are named.
#[derive(Debug)]
pub struct LoadClient {
    /// Pooled HTTP client.
    http: HttpClient,
    /// Base URLs, used round-robin.
    targets: Vec<String>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Account name prefix.
    prefix: String,
    /// Run id, part of every op id.
    run_id: String,
}

// === impl LoadClient ===

impl LoadClient {
    /// A client over `targets` (non-empty) with a per-request `timeout`.
    pub fn new(targets: Vec<String>, timeout: Duration, prefix: String, run_id: String) -> Self {
        LoadClient {
            http: HttpClient::new(timeout),
            targets,
            next: AtomicUsize::new(0),
            prefix,
            run_id,
        }
    }

    /// Name of account number `i`.
    pub fn account(&self, i: u32) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Op id of operation `index`.
    pub fn op_id(&self, index: u64) -> String {
        format!("{}-{index}", self.run_id)
    }

    /// Target number `first + k`, round the list.
    fn target(&self, first: usize, k: usize) -> &str {
        let i = first.wrapping_add(k) % self.targets.len().max(1);
        self.targets.get(i).map(String::as_str).unwrap_or_default()
    }

    /// Reads the balance of account number `i`.
    pub async fn balance(&self, i: u32) -> (Sent, Option<u64>) {
        let p = Planned {
            index: 0,
            kind: Kind::Balance,
            account: i,
            to: i,
            amount: 0,
        };
        let sent = self.send(&p).await;
        let balance = match &sent.answer {
            Answer::Definite {
                status: 200, body, ..
            } => body.get("balance").and_then(|b| b.as_u64()),
            _ => None,
        };
        (sent, balance)
    }

    /// Sends planned operation `p` (writes with op id [`Self::op_id`]).
    ///
    /// A target that refuses the connection (its sidecar is down) certainly
    /// got nothing, so the request moves on to the next target at once, as a
    /// client with several ingress points would; such moves are counted.
    pub async fn send(&self, p: &Planned) -> Sent {
        let start = Instant::now();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut failovers = 0;
        loop {
            let sent = self
                .send_once(p, self.target(first, failovers), start)
                .await;
            let refused = sent.status == "connect";
            if !refused || failovers + 1 >= self.targets.len() {
                return Sent {
                    failovers: failovers as u32,
                    ..sent
                };
            }
            failovers += 1;
        }
    }

    async fn send_once(&self, p: &Planned, base: &str, start: Instant) -> Sent {
        let account = self.account(p.account);
        let op = self.op_id(p.index);
        let mut hdrs = vec![(headers::SERVICE, headers::BANK_SERVICE.to_string())];
        let (method, uri, body) = match p.kind {
            Kind::Balance => (Method::GET, format!("{base}/accounts/{account}"), None),
            Kind::Deposit | Kind::Withdraw => (
                Method::POST,
                format!("{base}/accounts/{account}/{}", p.kind.name()),
                Some(serde_json::json!({ "amount": p.amount, "op": op })),
            ),
            Kind::Transfer => (
                Method::POST,
                format!("{base}/transfers"),
                Some(serde_json::json!({
                    "from": account, "to": self.account(p.to), "amount": p.amount, "op": op,
                })),
            ),
        };
        if p.kind != Kind::Transfer {
            hdrs.push((headers::KEY, account));
        }
        if p.kind != Kind::Balance {
            hdrs.push((headers::IDEMPOTENT, "true".to_string()));
        }
        let sent_at = unix_seconds();
        let reply = self
            .http
            .send(method.clone(), &uri, &hdrs, body.as_ref())
            .await;
        let latency = start.elapsed();
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                let detail = Some(format!("at {sent_at:.3} {method} {uri}: {e:?}"));
                let label = match e {
                    SendError::Timeout => "timeout",
                    SendError::Connect(_) => "connect",
                    SendError::Transport(_) => "transport",
                };
                return Sent {
                    latency,
                    status: label.to_string(),
                    reason: Some(label.to_string()),
                    app_error: None,
                    answer: Answer::Ambiguous,
                    failed: true,
                    failovers: 0,
                    detail,
                };
            }
        };
        let status = reply.status.as_u16();
        let reason = reply.mesh_error();
        // Parsed once for the error, the answer and the failure's detail.
        let body = reply.json();
        let app_error = if status != 200 && reason.is_none() {
            let error = body.get("error").and_then(|e| e.as_str());
            Some(error.unwrap_or("?").to_string())
        } else {
            None
        };
        let (answer, failed) = classify(
            p.kind,
            status,
            reason.is_some(),
            app_error.as_deref(),
            &body,
        );
        let detail = failed.then(|| {
            format!(
                "at {sent_at:.3} {}",
                failure_detail(&method, &uri, &reply, &body)
            )
        });
        Sent {
            latency,
            status: status.to_string(),
            reason,
            app_error,
            answer,
            failed,
            failovers: 0,
            detail,
        }
    }
}

/// Wall-clock time, to line a failure up with the sidecars' logs.
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One line on a failed answer: the request, who answered and the body's
/// `message`, so a report shows why a run failed, not only how often.
fn failure_detail(method: &Method, uri: &str, reply: &Reply, json: &serde_json::Value) -> String {
    let served_by = reply
        .headers
        .get("x-shardmesh-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?");
    let message = json
        .get("message")
        .or_else(|| json.get("error"))
        .and_then(|m| m.as_str())
        .unwrap_or("");
    format!(
        "{method} {uri}: {} from {served_by}: {message}",
        reply.status.as_u16()
    )
}

/// Sorts one answer; returns it with whether it counts as a failed request.
fn classify(
    kind: Kind,
    status: u16,
    from_mesh: bool,
    app_error: Option<&str>,
    body: &serde_json::Value,
) -> (Answer, bool) {
    let definite = |applied: bool, failed: bool| {
        (
            Answer::Definite {
                applied,
                status,
                body: body.clone(),
            },
            failed,
        )
    };
    if from_mesh {
        return (Answer::Ambiguous, true);
    }
    let refusal = matches!(
        (kind, app_error),
        (Kind::Deposit, Some("balance-limit" | "cancelled"))
            | (Kind::Withdraw, Some("insufficient-funds"))
            | (
                Kind::Transfer,
                Some("insufficient-funds" | "transfer-failed")
            )
    );
    match status {
        200 => definite(kind != Kind::Balance, false),
        409 if refusal => definite(false, false),
        400 => definite(false, true),
        _ => (Answer::Ambiguous, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_refusals_are_definite_everything_else_ambiguous() {
        let j = serde_json::Value::Null;
        let c = |k, s, mesh, e| classify(k, s, mesh, e, &j);
        assert!(matches!(
            c(Kind::Deposit, 200, false, None).0,
            Answer::Definite { applied: true, .. }
        ));
        assert!(!c(Kind::Withdraw, 409, false, Some("insufficient-funds")).1);
        assert!(matches!(
            c(Kind::Withdraw, 409, false, Some("stale-epoch")).0,
            Answer::Ambiguous
        ));
        assert!(matches!(
            c(Kind::Transfer, 503, false, Some("transfer-pending")).0,
            Answer::Ambiguous
        ));
        assert!(matches!(
            c(Kind::Deposit, 503, true, None).0,
            Answer::Ambiguous
        ));
        assert!(matches!(
            c(Kind::Transfer, 409, false, Some("transfer-failed")).0,
            Answer::Definite { applied: false, .. }
        ));
        // A mesh-made answer is never the bank's decision, even with a 200-like body.
        assert!(matches!(
            c(Kind::Deposit, 409, true, None).0,
            Answer::Ambiguous
        ));
    }
}
