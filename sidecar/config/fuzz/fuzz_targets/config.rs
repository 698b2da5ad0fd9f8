//! Feeds arbitrary text to the sidecar config parser and validator (the
//! operator renders this file, and `local up` reads user manifests into it).
//! Any panic, or unbounded memory, is a bug.
//!
//! Run (bounded): `cd sidecar/config/fuzz && mkdir -p target/corpus && cargo +nightly fuzz run config target/corpus corpus/config -- -max_total_time=60`
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardmesh_config::SidecarConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = SidecarConfig::from_yaml(text) {
        if let Ok(valid) = config.validated() {
            // What parses and validates must render and parse back the same.
            if let Ok(yaml) = valid.to_yaml() {
                match SidecarConfig::from_yaml(&yaml) {
                    Ok(again) => assert_eq!(again, valid, "round trip changed the config"),
                    Err(e) => panic!("rendered config does not parse: {e}\n{yaml}"),
                }
            }
        }
    }
});
