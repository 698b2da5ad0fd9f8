//! The app's HTTP side: server loop, routes, JSON answers, and a client.

pub mod client;
pub mod headers;
pub mod respond;
pub mod routes;
pub mod server;
