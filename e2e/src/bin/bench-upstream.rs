//! `bench-upstream --listen ADDR [--threads N] [--body BYTES]`: the "app" of
//! the sidecar benchmark (`scripts/bench/sidecar.sh`).
//!
//! An HTTP/1.1 server that answers every request with `200` and a small
//! fixed body, as fast as hyper allows, so that a benchmark measures the
//! proxy in front of it and not the app. One tokio worker thread by default
//! (a current-thread runtime), like the one-worker proxies it is compared
//! with. Request bodies are drained, never read into memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const USAGE: &str = "usage: bench-upstream --listen ADDR [--threads N] [--body BYTES]";

/// Parsed command line.
struct Args {
    /// Where to listen, e.g. `127.0.0.1:18080`.
    listen: SocketAddr,
    /// Tokio worker threads; 1 runs a current-thread runtime.
    threads: usize,
    /// Size of the response body.
    body: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut threads = 1;
    let mut body = 13;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--body" => body = value()?.parse().map_err(|e| format!("--body: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(Args {
        listen,
        threads,
        body,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("bench-upstream: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-upstream: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let body = Bytes::from(format!(
        "{:<width$}\n",
        "hello",
        width = args.body.max(1) - 1
    ));
    match runtime.block_on(serve(args.listen, body)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts connections forever; each is served on its own task.
async fn serve(listen: SocketAddr, body: Bytes) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("bench-upstream listening on {}", listener.local_addr()?);
    loop {
        // Accept errors (EMFILE under a connection flood) must not end the server.
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                async move {
                    // Drain the request body so the connection can be reused.
                    let mut incoming = req.into_body();
                    while let Some(Ok(_)) = incoming.frame().await {}
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
