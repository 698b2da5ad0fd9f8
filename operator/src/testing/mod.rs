//! Test utilities, compiled into the library so that integration tests and
//! the benchmark binary can use them: object builders and an in-memory API server.

pub mod fake_api;
pub mod fixtures;
