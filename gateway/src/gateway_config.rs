//! [`GatewayConfig`]: everything a [`crate::Gateway`] is told at start-up, with defaults
//! that serve a supergraph as-is (no rate limits, no response cache, one URL per subgraph).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::authorization::{AccessCheck, PolicyHook};
use crate::demand::DemandControl;
use crate::executor::{RequestHook, SpanHook};
use crate::persisted::PersistedConfig;
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::subscription::SubscriptionConfig;
use crate::upload::UploadLimits;

#[derive(Clone)]
pub struct GatewayConfig {
    /// Whether `__schema` / `__type` are answered.
    pub introspection: bool,
    /// Bound of each subgraph fetch (its retries included), whatever the transport;
    /// `traffic.subgraphs[..].timeout` overrides it per subgraph.
    pub subgraph_timeout: Duration,
    /// Subgraph name -> URL, replacing the supergraph's `@join__graph(url:)`.
    pub url_overrides: HashMap<String, String>,
    /// Replicas, balancing, health checks, retries, breakers and bulkheads of HTTP
    /// subgraphs; a subgraph with replicas here is not reached at its one URL.
    pub traffic: crate::traffic::TrafficConfig,
    /// Which subgraph answers may be kept, and where (off by default).
    pub response_cache: crate::cache::CacheConfig,
    /// Subgraphs reached over cleartext HTTP/2 (h2c, prior knowledge). HTTPS subgraphs get
    /// HTTP/2 by ALPN without being listed.
    pub h2c_subgraphs: HashSet<String>,
    /// Extra certificate authorities (PEM) trusted for HTTPS subgraphs, besides the public
    /// web roots.
    pub subgraph_ca_pem: Option<Vec<u8>>,
    /// Send a `Server-Timing` header with the gateway's own time and the time it waited for
    /// subgraphs. Off by default: it tells clients how fast the subgraphs are.
    pub server_timing: bool,
    /// Client headers copied into every subgraph request.
    pub forward_headers: Vec<http::HeaderName>,
    /// Called on the headers of every subgraph request (e.g. to inject W3C trace context).
    pub request_hook: Option<RequestHook>,
    /// Called with each client request's span and headers (e.g. to adopt the client's trace).
    pub span_hook: Option<SpanHook>,
    /// Entries of each level of the prepared-operation (query plan) cache.
    pub plan_cache_size: u64,
    /// Let concurrent query operations share identical in-flight subgraph requests, and
    /// identical subscriptions share one upstream stream.
    pub dedupe_subgraph_requests: bool,
    /// Forwarded headers that vary per request without changing the answer (a sealed,
    /// timestamped client address, say): left out when deciding whether two subgraph
    /// requests are identical. Trace context is always left out.
    pub dedupe_ignored_headers: Vec<http::HeaderName>,
    /// Subscriptions: limits, buffers, heartbeats, credential checks.
    pub subscriptions: SubscriptionConfig,
    /// Whether browsers asking for `GET /graphql` (Accept: text/html) get GraphiQL.
    pub graphiql: bool,
    /// Most operations accepted in one batched request (a JSON array); 0 disables batching.
    pub max_batch_size: usize,
    /// Limits of multipart file uploads (`max_files: 0` refuses them).
    pub uploads: UploadLimits,
    /// Largest JSON request body, in bytes.
    pub max_request_bytes: usize,
    /// Rate limits (off by default) and where their buckets live.
    pub rate_limiter: RateLimiter,
    /// Which other origins' pages may call the gateway (none by default).
    pub cors: crate::http::CorsConfig,
    /// Limits on an operation's shape and cost (none by default).
    pub demand: DemandControl,
    /// Automatic persisted queries (on by default, in memory) and trusted documents.
    pub persisted: PersistedConfig,
    /// Decides the `@policy` names of the supergraph for a caller; without one, no
    /// policy is granted (fields that need one are left out).
    pub policy: Option<PolicyHook>,
    /// What a WebSocket's `connection_init` credential holds; without it, a WebSocket's
    /// operations get the access of its upgrade request.
    pub access_check: Option<AccessCheck>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            introspection: true,
            subgraph_timeout: Duration::from_secs(30),
            url_overrides: HashMap::new(),
            traffic: Default::default(),
            response_cache: Default::default(),
            h2c_subgraphs: HashSet::new(),
            subgraph_ca_pem: None,
            server_timing: false,
            forward_headers: vec![
                http::header::AUTHORIZATION,
                http::HeaderName::from_static("traceparent"),
                http::HeaderName::from_static("tracestate"),
            ],
            request_hook: None,
            span_hook: None,
            graphiql: true,
            max_batch_size: 32,
            uploads: UploadLimits::default(),
            max_request_bytes: 2 * 1024 * 1024,
            plan_cache_size: 1024,
            dedupe_subgraph_requests: true,
            dedupe_ignored_headers: Vec::new(),
            subscriptions: SubscriptionConfig::default(),
            rate_limiter: RateLimiter::local(RateLimitConfig::off()),
            cors: Default::default(),
            demand: DemandControl::default(),
            persisted: PersistedConfig::default(),
            policy: None,
            access_check: None,
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("introspection", &self.introspection)
            .field("subgraph_timeout", &self.subgraph_timeout)
            .field("url_overrides", &self.url_overrides)
            .field("traffic", &self.traffic)
            .field("response_cache", &self.response_cache)
            .field("h2c_subgraphs", &self.h2c_subgraphs)
            .field(
                "subgraph_ca_pem",
                &self.subgraph_ca_pem.as_ref().map(Vec::len),
            )
            .field("forward_headers", &self.forward_headers)
            .field("request_hook", &self.request_hook.is_some())
            .field("span_hook", &self.span_hook.is_some())
            .field("graphiql", &self.graphiql)
            .field("max_batch_size", &self.max_batch_size)
            .field("uploads", &self.uploads)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("plan_cache_size", &self.plan_cache_size)
            .field("dedupe_subgraph_requests", &self.dedupe_subgraph_requests)
            .field("dedupe_ignored_headers", &self.dedupe_ignored_headers)
            .field("subscriptions", &self.subscriptions)
            .field("rate_limits", self.rate_limiter.config())
            .field("cors", &self.cors)
            .field("demand", &self.demand)
            .field("persisted", &self.persisted)
            .field("policy", &self.policy.is_some())
            .finish()
    }
}
