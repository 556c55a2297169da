//! Flowfleet's Apollo Federation v2 gateway.
//!
//! Layout (each module says why it exists):
//! - [`planner`]: the only module touching the query-planner library; supergraph in, [`plan`] out.
//! - [`compose`]: subgraph SDLs in, a supergraph SDL accepted by our planner and Apollo's gateway out.
//! - `operation`, `operation_cache`: parse, validate and plan a request, cached in two levels.
//! - `admission`: every check before anything is fetched, and what it adds to the response.
//! - `executor`: runs a plan against subgraphs through a [`SubgraphTransport`], sharing
//!   identical in-flight subgraph queries.
//! - [`value`]: the value type of subgraph responses and merged data, built for cheap
//!   lookups and copies.
//! - `projection`, `introspection`, `selection`: shape the merged data into the client's response.
//! - `defer`, `incremental`: `@defer` around a planner that does not plan it.
//! - `upload`: multipart file uploads streamed through to the subgraph that takes them.
//! - `subscription`: federated subscriptions, shared upstream streams, their limits.
//! - [`measure`]: what `/metrics` shows of the gateway (RED per operation and subgraph).
//! - [`authorization`]: `@authenticated`, `@requiresScopes`, `@policy` enforced at the edge.
//! - [`demand`]: limits on an operation's shape and cost, checked before planning.
//! - [`persisted`]: automatic persisted queries and trusted documents.
//! - [`rate_limit`]: token buckets per client, user and API key, local or shared.
//! - [`cache`]: the response cache (subgraph answers kept by policy, evicted by events).
//! - [`traffic`]: subgraph replicas, balancing, health, retries, breakers and bulkheads.
//! - [`http`]: GraphQL over HTTP, stage by stage, and graceful serving.
//! - [`reload`]: watching the supergraph's source and swapping it in without dropping requests.

mod admission;
pub mod authorization;
pub mod cache;
pub mod compose;
mod defer;
pub mod demand;
pub mod error;
mod executor;
mod gateway;
mod gateway_config;
pub mod http;
mod incremental;
mod introspection;
pub mod measure;
mod operation;
mod operation_cache;
pub mod persisted;
pub mod plan;
pub mod planner;
mod projection;
pub mod rate_limit;
pub mod reload;
pub mod request;
mod schema;
mod selection;
mod subscription;
pub mod traffic;
pub mod transport;
mod upload;
pub mod value;

pub use compose::{compose, ComposeError, SubgraphSource};
pub use error::{GatewayError, GraphQLError, PathSegment, RequestError};
pub use executor::{RequestHook, SpanHook};
pub use gateway::{Gateway, GatewayConfig};
pub use http::serve;
pub use reload::{watch, SubgraphEndpoint, SupergraphSource};
pub use request::GraphQLRequest;
pub use subscription::{
    codes as subscription_codes, CredentialCheck, SubscriptionConfig, SubscriptionLimits,
};
pub use transport::{
    HttpTransport, ResponseStream, SubgraphRequest, SubgraphTransport, SubgraphUploads,
    TransportError,
};
pub use upload::UploadLimits;
