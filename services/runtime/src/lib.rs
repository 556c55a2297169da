//! The infrastructure every Flowfleet service runs on: configuration, telemetry,
//! the database handle, events (bus, outbox, consumers), the step task queue,
//! cache, blobs, gRPC plumbing, and the API error type every edge maps to.
//!
//! Each piece of infrastructure sits behind a small trait with an embedded
//! implementation (SQLite, in-process bus and queue, in-memory cache, local
//! files) and a distributed one (PostgreSQL, RabbitMQ, Redis, S3); which one a
//! process uses is chosen once at start-up (`flowfleet_host::Infra::start`).
//! Nothing here knows who is calling: that is `flowfleet-security`.

pub mod amqp;
pub mod blob;
pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod files;
pub mod grpc;
pub mod proto;
pub mod queue;
pub mod series;
pub mod telemetry;
