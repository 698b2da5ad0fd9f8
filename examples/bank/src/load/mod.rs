//! `bank-load`: drives keyed traffic at the bank, then proves no money was lost.
//!
//! Phases ([`runner`]): read starting balances; run the deterministic
//! operation sequence ([`workload`]) for a bounded time and count; re-send
//! every ambiguous write with its op id until a definite answer; re-send a
//! sample of acknowledged writes to check they keep their first answer; read
//! the final balances and check them ([`verify`]); report ([`report`]).

pub mod args;
pub mod client;
pub mod groups;
pub mod report;
pub mod runner;
pub mod stats;
pub mod verify;
pub mod workload;
