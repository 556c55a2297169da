//! What every Flowfleet service needs: configuration, telemetry, the database
//! handle, events (bus, outbox, consumers), cache, blobs, caller verification,
//! workspace access checks, sealing of stored secrets, gRPC and GraphQL plumbing.
//!
//! Infrastructure sits behind small traits chosen by configuration at start-up
//! ([`Infra::start`]); embedded and distributed modes differ only there.

pub mod access;
pub mod api_keys;
pub mod auth;
pub mod blob;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod counters;
pub mod db;
pub mod definition;
pub mod error;
pub mod events;
pub mod grpc;
pub mod privacy;
pub mod proto;
pub mod queue;
pub mod runtime;
pub mod secrets;
pub mod service_auth;
pub mod sessions;
pub mod subgraph;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validation;

pub use runtime::{Infra, ServiceParts};
