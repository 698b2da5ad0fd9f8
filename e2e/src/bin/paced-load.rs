//! paced-load: an open-loop HTTP/1.1 load generator at a constant rate, for
//! latency at a given load (docs/benchmarks/sidecar.md, "added p99 at half
//! of saturation").
//!
//! wrk is closed-loop: with its `delay()` hook the requests of all
//! connections leave together at each millisecond tick of its event loop,
//! so at a moderate rate a proxy sees bursts of dozens of requests and the
//! measured latency is mostly the burst queueing behind them. Debian has no
//! wrk2, so this does what wrk2 does: request `g` is due at `g / rate`
//! seconds, spread over the connections in turn, and its latency runs from
//! when it was due (not when it was sent), so a stall is not hidden by the
//! requests it delayed (coordinated omission).
//!
//! Usage: paced-load --target HOST:PORT [--path /bench] [--header 'k: v']...
//!        --rate REQ_PER_S [--connections 32] [--duration 10] [--warmup 2]
//! Prints one line: `rate=… achieved=… p50_us=… p90_us=… p99_us=…
//! p999_us=… max_us=… errors=…`. Only content-length responses are read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response head read.
const MAX_HEAD: usize = 16 * 1024;

struct Args {
    target: String,
    path: String,
    headers: Vec<String>,
    rate: f64,
    connections: usize,
    duration: Duration,
    warmup: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        target: String::new(),
        path: "/bench".into(),
        headers: Vec::new(),
        rate: 0.0,
        connections: 32,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--target" => args.target = value.clone(),
            "--path" => args.path = value.clone(),
            "--header" => args.headers.push(value.clone()),
            "--rate" => args.rate = number()?,
            "--connections" => args.connections = number()? as usize,
            "--duration" => args.duration = Duration::from_secs_f64(number()?),
            "--warmup" => args.warmup = Duration::from_secs_f64(number()?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.target.is_empty() {
        return Err("--target is required".into());
    }
    if !(1.0..=1_000_000.0).contains(&args.rate) {
        return Err("--rate must be 1 to 1,000,000".into());
    }
    if !(1..=1000).contains(&args.connections) {
        return Err("--connections must be 1 to 1,000".into());
    }
    if args.duration > Duration::from_secs(300) || args.warmup > Duration::from_secs(60) {
        return Err("--duration at most 300 s, --warmup at most 60 s".into());
    }
    Ok(args)
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("paced-load: {e}");
            std::process::exit(2);
        }
    };
    let mut request = format!("GET {} HTTP/1.1\r\nhost: {}\r\n", args.path, args.target);
    for h in &args.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request: Arc<[u8]> = Arc::from(request.into_bytes());
    // Every connection starts from the same instant, a little ahead.
    let start = Instant::now() + Duration::from_millis(100);
    let threads: Vec<_> = (0..args.connections)
        .map(|i| {
            let args = args.clone();
            let request = request.clone();
            std::thread::spawn(move || run_connection(&args, &request, start, i))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        match t.join() {
            Ok(tally) => {
                all.extend(tally.latencies_us);
                errors += tally.errors;
            }
            Err(_) => errors += 1,
        }
    }
    all.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.is_empty() {
            return 0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i]
    };
    println!(
        "rate={:.0} achieved={:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} errors={}",
        args.rate,
        all.len() as f64 / args.duration.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0),
        errors
    );
}

/// Sends connection `index`'s share of the schedule: requests `index`,
/// `index + connections`, … each at its due time.
fn run_connection(args: &Args, request: &[u8], start: Instant, index: usize) -> Tally {
    let mut tally = Tally::default();
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let offset = Duration::from_secs_f64(index as f64 / args.rate);
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut stream = None;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut k: u32 = 0;
    loop {
        let due = start + offset + interval * k;
        k = k.saturating_add(1);
        if due >= end {
            return tally;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let ok = stream
            .take()
            .or_else(|| connect(&args.target))
            .and_then(|mut s| exchange(&mut s, request, &mut buf).then_some(s));
        let done = Instant::now();
        match ok {
            Some(s) => {
                stream = Some(s);
                if due >= measure_from {
                    let us = done.saturating_duration_since(due).as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            None if due >= measure_from => tally.errors += 1,
            None => {}
        }
    }
}

fn connect(target: &str) -> Option<TcpStream> {
    let s = TcpStream::connect(target).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(s)
}

/// One request and its whole response; false on any error or a status
/// other than 2xx.
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) -> bool {
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut have = 0;
    let head_end = loop {
        if let Some(i) = find(&buf[..have], b"\r\n\r\n") {
            break i + 4;
        }
        if have == buf.len() {
            return false;
        }
        match stream.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => have += n,
        }
    };
    let head = &buf[..head_end];
    if !head.starts_with(b"HTTP/1.1 2") {
        return false;
    }
    let Some(length) = content_length(head) else {
        return false;
    };
    let mut body_have = have - head_end;
    while body_have < length {
        let want = (length - body_have).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => body_have += n,
        }
    }
    body_have == length
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}
