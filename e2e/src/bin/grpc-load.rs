//! `grpc-load --target ADDR [--concurrency N] [--duration SECS] [--max N]
//! [--service NAME] [--key KEY] [--connections N]`: the load generator of
//! the gRPC benchmark (`scripts/bench/grpc.sh`).
//!
//! Sends unary `tally.Tally/Add` calls with tonic from `--concurrency`
//! tasks over `--connections` HTTP/2 connections (default 1, as a gRPC
//! client does) for `--duration` seconds or `--max` calls, whichever comes
//! first, and prints one line of JSON: calls, errors, calls/s and latency
//! percentiles in microseconds. With `--service`, every call names the
//! service and key in metadata (through a sidecar); without, none (direct
//! and Envoy).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardmesh_tally::proto::AddRequest;
use shardmesh_tally::TallyClient;
use tonic::transport::Channel;

const USAGE: &str = "usage: grpc-load --target ADDR [--concurrency N] [--duration SECS] [--max N] [--service NAME] [--key KEY] [--connections N]";

struct Args {
    target: String,
    concurrency: usize,
    connections: usize,
    duration: Duration,
    max: u64,
    service: Option<String>,
    key: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        target: String::new(),
        concurrency: 32,
        connections: 1,
        duration: Duration::from_secs(10),
        max: 10_000_000,
        service: None,
        key: "bench-key".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--target" => a.target = value,
            "--concurrency" => a.concurrency = num(&value)?.clamp(1, 10_000) as usize,
            "--connections" => a.connections = num(&value)?.clamp(1, 1_000) as usize,
            "--duration" => a.duration = Duration::from_secs(num(&value)?.clamp(1, 3600)),
            "--max" => a.max = num(&value)?.max(1),
            "--service" => a.service = Some(value),
            "--key" => a.key = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.target.is_empty() {
        return Err("--target is required".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("grpc-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("grpc-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grpc-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<String, String> {
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        let channel = Channel::from_shared(format!("http://{}", args.target))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("connect {}: {e}", args.target))?;
        channels.push(channel);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let start = Instant::now();
    let end = start + args.duration;
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let mut client = TallyClient::new(channels[i % channels.len()].clone());
        let (sent, errors, latencies) = (sent.clone(), errors.clone(), latencies.clone());
        let service = args.service.clone();
        let key = args.key.clone();
        let max = args.max;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < end && sent.fetch_add(1, Ordering::Relaxed) < max {
                let mut req = tonic::Request::new(AddRequest {
                    key: key.clone(),
                    amount: 1,
                    ..Default::default()
                });
                if let Some(s) = &service {
                    if let (Ok(s), Ok(k)) = (s.parse(), key.parse()) {
                        req.metadata_mut().insert("x-shardmesh-service", s);
                        req.metadata_mut().insert("x-shardmesh-key", k);
                    }
                }
                let t = Instant::now();
                if client.add(req).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                mine.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(mine);
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let calls = l.len();
    Ok(format!(
        "{{\"calls\": {calls}, \"errors\": {}, \"calls_per_s\": {:.0}, \"p50_us\": {}, \"p99_us\": {}}}",
        errors.load(Ordering::Relaxed),
        calls as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    ))
}
