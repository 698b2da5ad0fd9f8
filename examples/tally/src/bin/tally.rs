//! `tally`: serves `tally.Tally` over h2c on `TALLY_LISTEN` (or `--listen
//! ADDR`; default `127.0.0.1:8080`), answering as `SHARDMESH_POD_NAME`.
//!
//! ```sh
//! shardmesh-operator local up examples/tally.yaml
//! ```

use std::net::SocketAddr;

use shardmesh_tally::{Tally, TallyServer};

#[tokio::main]
async fn main() {
    let mut listen = std::env::var("TALLY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("usage: tally [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tally: bad listen address {listen:?}: {e}");
            std::process::exit(2);
        }
    };
    let pod = std::env::var("SHARDMESH_POD_NAME").unwrap_or_else(|_| "tally".into());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // HTTP/1.1 too: the sidecar's shard callbacks (`POST /shardmesh/...`)
    // get gRPC's UNIMPLEMENTED in a 200, which counts as done (stateless).
    let served = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_service(TallyServer::new(Tally::new(pod)))
        .serve_with_shutdown(addr, shutdown)
        .await;
    if let Err(e) = served {
        eprintln!("tally: {e}");
        std::process::exit(1);
    }
}
