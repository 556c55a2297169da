//! Running a Flowfleet service: [`Infra`] chooses the infrastructure the
//! configuration names at start-up, each service's constructor turns it into
//! [`ServiceParts`], and [`serve`] runs those parts (subgraph, gRPC, HTTP
//! routes, background tasks) until shutdown. [`subgraph`] holds the GraphQL
//! Federation plumbing every subgraph shares ([`uploads`] its files), [`privacy`] the per-service side
//! of account export and erasure, and `testing` (feature `testing`) the
//! backends the service test suites run against.

pub mod infra;
pub mod privacy;
pub mod ready;
pub mod subgraph;
#[cfg(feature = "testing")]
pub mod testing;
pub mod uploads;

pub use infra::{serve, Infra, ServiceParts};
