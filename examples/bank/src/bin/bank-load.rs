//! `bank-load`: load and verification tool for the bank (see examples/README.md).
//!
//! Exit status: 0 verification passed, 1 verification failed or nothing
//! could be verified, 2 bad command line.

use shardmesh_bank::load::args::LoadConfig;
use shardmesh_bank::load::runner;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match LoadConfig::parse(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("bank-load: {msg}");
            std::process::exit(2);
        }
    };
    let summary = match runner::run(&cfg).await {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("bank-load: {msg}");
            std::process::exit(1);
        }
    };
    print!("{}", summary.render());
    if let Some(path) = &cfg.json {
        let written = serde_json::to_vec_pretty(&summary)
            .map_err(|e| e.to_string())
            .and_then(|j| std::fs::write(path, j).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("bank-load: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    if !summary.verification.passed {
        std::process::exit(1);
    }
}
