//! The `flowfleet` binary's parts, as a library so that tests can run the whole fleet in
//! their own process: [`fleet`] wires the six services, [`dev`] serves them behind the
//! gateway, [`processes`] is each subcommand.

pub mod cache_events;
pub mod check;
pub mod client_address;
pub mod dev;
pub mod edge_auth;
pub mod edge_config;
pub mod edge_redis;
pub mod fleet;
pub mod jwks;
pub mod processes;
pub mod proxy;
pub mod services;
pub mod subgraph_traffic;
