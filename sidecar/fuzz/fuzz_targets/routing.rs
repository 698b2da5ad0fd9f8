//! Feeds arbitrary input to what a caller controls in routing: the
//! `x-shardmesh-service` / `Host` headers, the key header and the path
//! (matched against path templates), plus path-template parsing itself.
//! Any panic is a bug.
//!
//! Run (bounded): `cd sidecar/fuzz && mkdir -p target/corpus && cargo +nightly fuzz run routing target/corpus corpus/routing -- -max_total_time=60`
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shardmesh_config::{PathTemplate, SidecarConfig};
use shardmesh_sidecar::routing::target::resolve;
use shardmesh_sidecar::routing::RoutingTable;

fn table() -> &'static RoutingTable {
    static TABLE: OnceLock<RoutingTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let yaml = "pod: { name: bank-0, service: bank }\n\
            services:\n\
            \x20 - name: bank\n    shards: 16\n    routing: { keyFromPath: \"/accounts/{key}\" }\n    members: [{ name: bank-0, inbound: \"127.0.0.1:7401\" }]\n\
            \x20 - name: web\n    shards: 4\n    routing: { keyHeader: x-user }\n    members: [{ name: web-0, inbound: \"127.0.0.1:7402\" }]\n";
        let config = match SidecarConfig::from_yaml(yaml) {
            Ok(c) => c,
            Err(e) => panic!("fixture: {e}"),
        };
        match RoutingTable::from_static_config(&config) {
            Ok(t) => t,
            Err(e) => panic!("fixture: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xff: service or host, key header, path, template.
    let mut parts = data.split(|b| *b == 0xff);
    let service = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let template = parts.next().unwrap_or_default();

    if let Ok(t) = std::str::from_utf8(template) {
        if let Ok(parsed) = PathTemplate::parse(t) {
            if let Ok(p) = std::str::from_utf8(path) {
                let _ = parsed.extract(p);
            }
        }
    }
    let mut req = http::Request::builder();
    if let Ok(p) = std::str::from_utf8(path) {
        req = req.uri(p);
    }
    let as_host = service.first().is_some_and(|b| b & 1 == 1);
    if as_host {
        req = req.header(http::header::HOST, service);
    } else {
        req = req.header("x-shardmesh-service", service);
    }
    req = req.header("x-user", key);
    if let Ok(req) = req.body(()) {
        let _ = resolve(&req, table());
    }
});
