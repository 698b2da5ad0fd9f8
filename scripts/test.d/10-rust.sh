#!/usr/bin/env bash
# Formatting, lints, and every Rust test in the workspace.
set -euo pipefail
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --release --locked --bins
cargo test --workspace --locked --no-fail-fast
