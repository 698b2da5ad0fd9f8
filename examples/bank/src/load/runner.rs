//! The phases of a `bank-load` run: baseline, load, resolve, replay, read, verify.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::load::args::LoadConfig;
use crate::load::client::{Answer, LoadClient};
use crate::load::report::Summary;
use crate::load::stats::Stats;
use crate::load::verify::{verify, Record, State};
use crate::load::workload::{plan, Kind, Planned};

/// First pause between re-sends of an ambiguous operation; doubles up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between re-sends.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Runs every phase and returns the summary (`Err` only when nothing can be verified).
pub async fn run(cfg: &LoadConfig) -> Result<Summary, String> {
    let client = Arc::new(LoadClient::new(
        cfg.targets.clone(),
        cfg.timeout,
        cfg.prefix.clone(),
        cfg.run_id.clone(),
    ));
    let baseline = read_balances(&client, cfg).await;
    let baseline: Vec<u64> = baseline
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            b.ok_or_else(|| {
                format!(
                    "could not read the starting balance of {}",
                    client.account(i as u32)
                )
            })
        })
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    let (mut stats, mut records) = load(&client, cfg).await;
    let elapsed = started.elapsed();

    let ambiguous: Vec<usize> = (0..records.len())
        .filter(|i| records[*i].state == State::Ambiguous)
        .collect();
    let to_resolve: Vec<Planned> = ambiguous.iter().map(|i| records[*i].plan.clone()).collect();
    let deadline = Instant::now() + cfg.resolve_timeout;
    let resolved = parallel(to_resolve, cfg.concurrency, {
        let client = Arc::clone(&client);
        let attempts = cfg.resolve_attempts;
        move |p| {
            let client = Arc::clone(&client);
            async move { definite(&client, &p, attempts, deadline).await }
        }
    })
    .await;
    let mut resend_requests = 0u64;
    for (i, result) in ambiguous.iter().zip(resolved) {
        let Some((answer, sent)) = result else {
            continue;
        };
        resend_requests += sent;
        if let Some((applied, status, body)) = answer {
            let r = &mut records[*i];
            r.state = if applied {
                State::Applied
            } else {
                State::NotApplied
            };
            r.first = Some((status, body.to_string().into()));
        }
    }

    let mismatches = replay(&client, cfg, &records).await;
    let actual = read_balances(&client, cfg).await;
    let verdict = verify(&records, &baseline, &actual, &mismatches.1);
    let percentiles = stats.percentiles();
    Ok(Summary::new(
        cfg,
        &stats,
        percentiles,
        elapsed,
        &records,
        resend_requests,
        mismatches.0,
        verdict,
    ))
}

/// The load phase: `concurrency` workers take operation numbers in order
/// until the time or the request budget runs out.
async fn load(client: &Arc<LoadClient>, cfg: &LoadConfig) -> (Stats, Vec<Record>) {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let ticker = cfg.progress.then(|| {
        let (next, failed, max) = (Arc::clone(&next), Arc::clone(&failed), cfg.max_requests);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let secs = started.elapsed().as_secs_f64();
                let sent = next.load(Ordering::Relaxed).min(max);
                let failed = failed.load(Ordering::Relaxed);
                eprintln!(
                    "bank-load: {secs:.0} s: {sent} requests ({:.0}/s), {failed} failed",
                    sent as f64 / secs
                );
            }
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.concurrency {
        let (client, next, cfg) = (Arc::clone(client), Arc::clone(&next), cfg.clone());
        let failed = Arc::clone(&failed);
        tasks.spawn(async move {
            let mut stats = Stats::default();
            let mut records = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cfg.max_requests {
                    break;
                }
                let p = plan(cfg.seed, i, cfg.accounts, &cfg.mix);
                let sent = client.send(&p).await;
                failed.fetch_add(u64::from(sent.failed), Ordering::Relaxed);
                stats.record(p.kind, &sent);
                if let Some(w) = &cfg.watch {
                    stats
                        .groups
                        .entry(w.group(&p, &cfg.prefix))
                        .or_default()
                        .record(&sent);
                }
                if p.kind == Kind::Balance {
                    continue;
                }
                let (state, first) = match sent.answer {
                    Answer::Definite {
                        applied,
                        status,
                        body,
                    } => (
                        if applied {
                            State::Applied
                        } else {
                            State::NotApplied
                        },
                        Some((status, body.to_string().into_boxed_str())),
                    ),
                    Answer::Ambiguous => (State::Ambiguous, None),
                };
                records.push(Record {
                    plan: p,
                    state,
                    first,
                    was_ambiguous: state == State::Ambiguous,
                });
            }
            (stats, records)
        });
    }
    let mut stats = Stats::default();
    let mut records = Vec::new();
    while let Some(done) = tasks.join_next().await {
        // A worker cannot panic short of a bug; its requests are then simply missing.
        if let Ok((s, r)) = done {
            stats.merge(s);
            records.extend(r);
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    records.sort_by_key(|r| r.plan.index);
    (stats, records)
}

/// Re-sends `p` until a definite answer, at most `attempts` times and until `deadline`.
/// Returns the answer (applied, status, body) if one came, and how many requests it took.
async fn definite(
    client: &LoadClient,
    p: &Planned,
    attempts: u32,
    deadline: Instant,
) -> (Option<(bool, u16, serde_json::Value)>, u64) {
    let mut backoff = BACKOFF;
    for n in 1..=u64::from(attempts) {
        if let Answer::Definite {
            applied,
            status,
            body,
        } = client.send(p).await.answer
        {
            return (Some((applied, status, body)), n);
        }
        if n == u64::from(attempts) || Instant::now() + backoff > deadline {
            return (None, n);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    (None, 0)
}

/// Re-sends up to `--replay` writes that were answered at once, spread over
/// the run, and lists those whose answer changed. Returns (re-sent, mismatches).
async fn replay(
    client: &Arc<LoadClient>,
    cfg: &LoadConfig,
    records: &[Record],
) -> (u64, Vec<String>) {
    let acked: Vec<&Record> = records
        .iter()
        .filter(|r| !r.was_ambiguous && r.first.is_some())
        .collect();
    if cfg.replay == 0 || acked.is_empty() {
        return (0, Vec::new());
    }
    let step = acked.len().div_ceil(cfg.replay).max(1);
    let picked: Vec<(Planned, (u16, Box<str>))> = acked
        .iter()
        .step_by(step)
        .filter_map(|r| r.first.clone().map(|f| (r.plan.clone(), f)))
        .collect();
    let count = picked.len() as u64;
    let deadline = Instant::now() + cfg.resolve_timeout;
    let results = parallel(picked, cfg.concurrency, {
        let client = Arc::clone(client);
        let attempts = cfg.resolve_attempts;
        move |(p, first): (Planned, (u16, Box<str>))| {
            let client = Arc::clone(&client);
            async move {
                let (again, _) = definite(&client, &p, attempts, deadline).await;
                match again {
                    Some((_, status, body))
                        if (status, decision(&body)) == (first.0, decision(&parse(&first.1))) =>
                    {
                        None
                    }
                    Some((_, status, body)) => Some(format!(
                        "op {} ({}) re-sent: first answer {} {}, now {} {}",
                        client.op_id(p.index),
                        p.kind.name(),
                        first.0,
                        first.1,
                        status,
                        body
                    )),
                    // No definite answer now is not evidence of a wrong one.
                    None => None,
                }
            }
        }
    })
    .await;
    (count, results.into_iter().flatten().flatten().collect())
}

/// The part of an answer that must not change when an op is re-sent: all of
/// it but the free-text `message` (a resumed saga may explain itself differently).
fn decision(body: &serde_json::Value) -> serde_json::Value {
    let mut body = body.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("message");
    }
    body
}

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Reads every account's balance, re-trying failures within the resolve budget.
async fn read_balances(client: &Arc<LoadClient>, cfg: &LoadConfig) -> Vec<Option<u64>> {
    let deadline = Instant::now() + cfg.resolve_timeout;
    let attempts = cfg.resolve_attempts;
    parallel((0..cfg.accounts).collect(), cfg.concurrency, {
        let client = Arc::clone(client);
        move |i: u32| {
            let client = Arc::clone(&client);
            async move {
                let mut backoff = BACKOFF;
                for _ in 0..attempts {
                    if let (_, Some(b)) = client.balance(i).await {
                        return Some(b);
                    }
                    if Instant::now() + backoff > deadline {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                None
            }
        }
    })
    .await
    .into_iter()
    .map(Option::flatten)
    .collect()
}

/// Runs `f` over `items` with at most `workers` at a time; results keep the
/// items' order (`None` only if a task panicked).
async fn parallel<T, R, F, Fut>(items: Vec<T>, workers: usize, f: F) -> Vec<Option<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + Send,
{
    let n = items.len();
    let queue = Arc::new(Mutex::new(items.into_iter().enumerate()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.clamp(1, n.max(1)) {
        let (queue, f) = (Arc::clone(&queue), f.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let item = queue.lock().ok().and_then(|mut q| q.next());
                let Some((i, t)) = item else { break };
                out.push((i, f(t).await));
            }
            out
        });
    }
    let mut slots: Vec<Option<R>> = (0..n).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        for (i, r) in done.unwrap_or_default() {
            slots[i] = Some(r);
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_sent_answers_are_compared_without_their_message() {
        let a =
            serde_json::json!({"error": "transfer-failed", "message": "deposit failed: timeout"});
        let b = serde_json::json!({"error": "transfer-failed", "message": "deposit refused: Cancelled"});
        assert_eq!(decision(&a), decision(&b));
        let c = serde_json::json!({"balance": 5});
        assert_ne!(decision(&c), decision(&serde_json::json!({"balance": 6})));
    }

    #[tokio::test]
    async fn parallel_keeps_order_and_bounds_workers() {
        let running = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
        let out = parallel((0..50u64).collect(), 4, move |i| {
            let (r, p) = (Arc::clone(&r), Arc::clone(&p));
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                r.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..50u64).map(|i| Some(i * 2)).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }
}
