//! The memory a sidecar holds per in-flight streaming call is bounded by
//! the replay limit (64 KiB, docs/grpc.md "Retries"), however much the call
//! streams: the outbound sidecar records a call's messages for replay only
//! while they fit in the limit, then streams on without them.
//!
//! `CALLS` concurrent bidirectional `tally.Tally/Chat` calls cross two
//! sidecars to a key's owner. Phase 1: each sends just under the limit and
//! stays open (the most the recorder holds). Phase 2: each streams
//! `STREAMED` more, 32 times the limit. The caller's sidecar's resident
//! memory, read from `/proc` (`VmRSS`, and the peak `VmHWM` after resetting
//! it through `clear_refs`), must grow by at most `CALLS` × limit plus a
//! fixed allowance; a recorder that kept whole streams would hold
//! `CALLS` × `STREAMED` (64 MiB) in phase 2.

use std::time::{Duration, Instant};

use shardmesh_e2e::tally::keyed;
use shardmesh_e2e::{mesh, tally};
use shardmesh_tally::proto::{AddRequest, Chunk};
use shardmesh_tally::TallyClient;
use tokio::sync::{mpsc, Barrier};
use tonic::transport::Channel;

/// Calls in flight at once.
const CALLS: usize = 32;
/// The replay limit (`resilience.retry.maxReplayBodyBytes`' default).
const LIMIT: u64 = 64 * 1024;
/// Message size: four fit under the limit with their gRPC framing.
const CHUNK: usize = 15 * 1024;
/// Messages of phase 1: 60 KiB.
const UNDER_LIMIT: usize = 4;
/// Bytes each call streams in phase 2.
const STREAMED: usize = 2 * 1024 * 1024;
/// Growth allowed beyond `CALLS` × `LIMIT`: the allocator's caches, HTTP/2
/// stream state and buffers of messages in flight.
const ALLOWANCE_KIB: u64 = 12 * 1024;

/// `VmRSS` and `VmHWM` of `pid`, KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets `pid`'s peak resident size to its current one.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

#[test]
fn memory_per_streaming_call_stays_within_the_replay_limit() {
    let m = mesh::Mesh::up("replay-memory", &tally::manifest(2, ""), 112, &[]);
    m.wait_ready(Duration::from_secs(30));
    let outbound = m.pod_field("tally-0", "outbound");
    let sidecar = m.pid("tally-0", "sidecar").expect("tally-0's sidecar pid");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), scenario(&outbound, sidecar))
            .await
            .expect("scenario finished in time")
    });
    let limit_kib = CALLS as u64 * LIMIT / 1024;
    eprintln!(
        "replay memory: {CALLS} calls; tally-0 sidecar RSS {} KiB at rest; \
         phase 1 (60 KiB recorded each) +{} KiB; phase 2 ({} KiB streamed each) \
         peak +{} KiB; bound {limit_kib} + {ALLOWANCE_KIB} KiB; {:?}",
        report.base,
        report.held.saturating_sub(report.base),
        STREAMED / 1024,
        report.peak.saturating_sub(report.base),
        report.took,
    );
    let bound = report.base + limit_kib + ALLOWANCE_KIB;
    assert!(
        report.held <= bound,
        "holding {CALLS} calls at the limit took {} KiB over {} KiB at rest",
        report.held - report.base,
        report.base
    );
    assert!(
        report.peak <= bound,
        "streaming {} KiB per call peaked {} KiB over {} KiB at rest (bound {} KiB)",
        STREAMED / 1024,
        report.peak - report.base,
        report.base,
        bound - report.base
    );
}

struct Report {
    /// RSS with the calls' connection open, before they start.
    base: u64,
    /// RSS with every call open after phase 1.
    held: u64,
    /// Peak RSS during phase 2.
    peak: u64,
    took: Duration,
}

async fn scenario(outbound: &str, sidecar: u32) -> Report {
    let mut client = tally::client(outbound).await;
    // A key another pod owns, so the calls cross both sidecars.
    let mut key = None;
    for i in 0..50 {
        let k = format!("mem-{i}");
        let add = AddRequest {
            key: k.clone(),
            amount: 1,
            ..Default::default()
        };
        let total = client.add(keyed(add, &k)).await.expect("add").into_inner();
        if total.served_by != "tally-0" {
            key = Some(k);
            break;
        }
    }
    let key = key.expect("tally-0 owned every key");
    // Warm up: one call through every phase, so pools and caches exist.
    run_call(client.clone(), key.clone(), None).await;

    let start = Instant::now();
    let (base, _) = memory(sidecar);
    let phase1 = std::sync::Arc::new(Barrier::new(CALLS + 1));
    let phase2 = std::sync::Arc::new(Barrier::new(CALLS + 1));
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let gates = Some((phase1.clone(), phase2.clone()));
            tokio::spawn(run_call(client.clone(), key.clone(), gates))
        })
        .collect();
    phase1.wait().await;
    let (held, _) = memory(sidecar);
    assert!(
        reset_peak(sidecar),
        "cannot reset the peak RSS of {sidecar}"
    );
    phase2.wait().await;
    phase2.wait().await;
    let (_, peak) = memory(sidecar);
    for call in calls {
        call.await.expect("call task");
    }
    Report {
        base,
        held,
        peak: peak.max(held),
        took: start.elapsed(),
    }
}

/// One Chat call: phase 1 under the limit, then (after `gates`' first
/// barrier) phase 2 streaming past it, each message echoed before the
/// next; the call stays open until the second barrier's second round.
async fn run_call(
    mut client: TallyClient<Channel>,
    key: String,
    gates: Option<(std::sync::Arc<Barrier>, std::sync::Arc<Barrier>)>,
) {
    let (tx, rx) = mpsc::channel::<Chunk>(1);
    let chunk = Chunk {
        key: key.clone(),
        data: vec![0x5a; CHUNK],
    };
    tx.send(chunk.clone()).await.expect("first message");
    let r = keyed(tokio_stream::wrappers::ReceiverStream::new(rx), &key);
    let mut echoes = client.chat(r).await.expect("chat").into_inner();
    // The first message's echo, then the rest.
    let got = echoes.message().await.expect("echo").expect("a message");
    assert_eq!(got.data.len(), CHUNK);
    exchange(&tx, &mut echoes, &chunk, UNDER_LIMIT - 1).await;
    if let Some((phase1, _)) = &gates {
        phase1.wait().await;
    }
    if let Some((_, phase2)) = &gates {
        phase2.wait().await;
    }
    exchange(&tx, &mut echoes, &chunk, STREAMED / CHUNK).await;
    if let Some((_, phase2)) = &gates {
        phase2.wait().await;
    }
    drop(tx);
    assert!(
        echoes.message().await.expect("clean end").is_none(),
        "no more messages"
    );
}

/// Sends `n` messages, each after the echo of the last.
async fn exchange(
    tx: &mpsc::Sender<Chunk>,
    echoes: &mut tonic::Streaming<Chunk>,
    chunk: &Chunk,
    n: usize,
) {
    for _ in 0..n {
        tx.send(chunk.clone()).await.expect("send");
        let got = echoes.message().await.expect("echo").expect("a message");
        assert_eq!(got.data.len(), CHUNK);
    }
}
