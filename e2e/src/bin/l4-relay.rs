//! `l4-relay --listen ADDR --upstream ADDR`: the floor of the sidecar
//! benchmark (`scripts/bench/sidecar.sh`).
//!
//! A TCP relay with no HTTP at all: each client connection gets its own
//! upstream connection and the bytes are copied both ways
//! (`tokio::io::copy_bidirectional`) on one current-thread runtime. It makes
//! the same system calls per request as an HTTP proxy with keep-alive
//! upstreams (a read and a write on each side) and almost nothing else, so
//! its CPU per request is what any proxy on this machine pays before it does
//! any work of its own: mostly the kernel's loopback TCP. It is a yardstick,
//! not a proxy: it neither parses nor routes, and it holds one upstream
//! connection per client connection.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: l4-relay --listen ADDR --upstream ADDR";

/// Parsed command line.
struct Args {
    /// Where to listen, e.g. `127.0.0.1:18084`.
    listen: SocketAddr,
    /// Where every connection is relayed to.
    upstream: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let (mut listen, mut upstream) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let addr = || value.parse().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--listen" => listen = Some(addr()?),
            "--upstream" => upstream = Some(addr()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("l4-relay: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("l4-relay: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l4-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(relay(client, args.upstream));
    }
}

/// Copies one client connection to its own upstream connection and back
/// until either side closes; errors only end that pair.
async fn relay(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if client.set_nodelay(true).is_err() || server.set_nodelay(true).is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
