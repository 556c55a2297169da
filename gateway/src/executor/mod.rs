//! Executes a [`Plan`] against the subgraphs and produces the merged (not yet projected) data.
//!
//! Shape of an execution: one [`Value`] holds everything fetched so far. Fetch nodes
//! read it to build their requests and write their results into it. The value lives behind a
//! `std::sync::Mutex` that is only held for synchronous reads and merges, never across an
//! `.await`, so `Parallel` branches really run concurrently.
//!
//! Failures never abort the execution: a failed fetch records a client-safe error with a path
//! and leaves its part of the data missing; projection later turns that into `null`s.

mod data;
pub(crate) mod dedupe;
mod fetch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use serde_json::Map;

use crate::cache::ResponseCache;
use crate::error::GraphQLError;
use crate::plan::{Plan, PlanNode};
use crate::schema::SchemaModel;
use crate::transport::{HttpTransport, SubgraphTransport, SubgraphUploads};
use crate::value::{Object, Value};

pub(crate) use data::typename;
pub(crate) use fetch::FetchFailure;

/// The gateway-wide registry of in-flight subgraph queries.
pub(crate) type SubgraphDedupe = dedupe::Dedupe<FetchFailure>;

/// Hook run on the headers of every subgraph request.
pub type RequestHook = Arc<dyn Fn(&mut http::HeaderMap) + Send + Sync>;

/// Hook run once per client request with the request's span and the client's headers,
/// before anything else happens in that span (e.g. to continue the client's W3C trace).
pub type SpanHook = Arc<dyn Fn(&tracing::Span, &http::HeaderMap) + Send + Sync>;

/// Which transport serves which subgraph.
pub(crate) struct Transports {
    pub explicit: HashMap<String, Arc<dyn SubgraphTransport>>,
    pub http: Arc<HttpTransport>,
    /// Subgraphs whose fetches have their own bound (the rest: `FetchOptions::timeout`).
    pub timeouts: HashMap<String, Duration>,
}

impl Transports {
    pub fn get(&self, subgraph: &str) -> Arc<dyn SubgraphTransport> {
        match self.explicit.get(subgraph) {
            Some(transport) => transport.clone(),
            None => self.http.clone(),
        }
    }
}

/// How this execution's subgraph requests are made.
pub(crate) struct FetchOptions<'a> {
    /// Client headers selected for forwarding; copied into every subgraph request.
    pub headers: http::HeaderMap,
    pub request_hook: Option<RequestHook>,
    pub timeout: Duration,
    /// Whether the operation is a mutation: its root fetches must not be sent twice.
    pub mutation: bool,
    /// Set when this execution's subgraph queries may be shared with identical in-flight
    /// ones (query operations only: a mutation's fetches must all run).
    pub dedupe: Option<&'a SubgraphDedupe>,
    /// Files of an upload request and the variables holding them.
    pub uploads: Option<(Vec<String>, SubgraphUploads)>,
    /// Set when this execution's fetches may be answered from the response cache (query
    /// operations only).
    pub cache: Option<&'a ResponseCache>,
}

/// How long a plan node took, and how much of that was spent waiting for subgraphs along
/// its critical path: all of a sequence's waits, and the waits of the parallel branch that
/// finished last. The rest of a request's time is the gateway's own overhead.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: Duration,
    subgraphs: Duration,
}

/// Everything one plan execution needs; lives for one client request.
pub(crate) struct Execution<'a> {
    pub transports: &'a Transports,
    pub schema: &'a SchemaModel,
    /// Coerced client variables (defaults applied).
    pub variables: &'a Map<String, serde_json::Value>,
    pub headers: http::HeaderMap,
    pub request_hook: Option<RequestHook>,
    pub timeout: Duration,
    pub mutation: bool,
    pub dedupe: Option<&'a SubgraphDedupe>,
    pub uploads: Option<(Vec<String>, SubgraphUploads)>,
    pub cache: Option<&'a ResponseCache>,
    pub data: Mutex<Value>,
    pub errors: Mutex<Vec<GraphQLError>>,
    /// Signalled each time a fetch has merged its result (or recorded its failure): for a
    /// watcher that acts as soon as part of the data is there (`@defer`'s primary payload).
    pub fetched: tokio::sync::Notify,
}

impl<'a> Execution<'a> {
    pub fn new(
        transports: &'a Transports,
        schema: &'a SchemaModel,
        variables: &'a Map<String, serde_json::Value>,
        options: FetchOptions<'a>,
    ) -> Self {
        Self {
            transports,
            schema,
            variables,
            headers: options.headers,
            request_hook: options.request_hook,
            timeout: options.timeout,
            mutation: options.mutation,
            dedupe: options.dedupe,
            uploads: options.uploads,
            cache: options.cache,
            data: Mutex::new(Value::Object(Object::new())),
            errors: Mutex::new(Vec::new()),
            fetched: tokio::sync::Notify::new(),
        }
    }

    /// Runs the plan; afterwards `data` and `errors` hold the outcome. Returns how long
    /// the execution waited for subgraphs along its critical path (see [`Timing`]).
    pub async fn run(&self, plan: &Plan) -> Duration {
        match &plan.root {
            Some(root) => self.run_node(root).await.subgraphs,
            None => Duration::ZERO,
        }
    }

    pub fn into_parts(self) -> (Value, Vec<GraphQLError>) {
        (
            self.data.into_inner().unwrap_or_else(|p| p.into_inner()),
            self.errors.into_inner().unwrap_or_else(|p| p.into_inner()),
        )
    }

    fn run_node<'n>(&'n self, node: &'n PlanNode) -> BoxFuture<'n, Timing> {
        Box::pin(async move {
            let started = Instant::now();
            let subgraphs = match node {
                PlanNode::Root(fetch) => {
                    let waited = self.root_fetch(fetch).await;
                    self.fetched.notify_one();
                    waited
                }
                PlanNode::Entities(fetch) => {
                    let waited = self.entity_fetch(fetch).await;
                    self.fetched.notify_one();
                    waited
                }
                PlanNode::Sequence(nodes) => {
                    let mut waited = Duration::ZERO;
                    for node in nodes {
                        waited += self.run_node(node).await.subgraphs;
                    }
                    waited
                }
                PlanNode::Parallel(nodes) => {
                    let branches = join_all(nodes.iter().map(|node| self.run_node(node))).await;
                    // The branch that took longest is the one the client waited for.
                    branches
                        .into_iter()
                        .max_by_key(|t| t.wall)
                        .map_or(Duration::ZERO, |t| t.subgraphs)
                }
                PlanNode::Condition {
                    variable,
                    if_true,
                    if_false,
                } => {
                    let condition = self
                        .variables
                        .get(variable)
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false);
                    let branch = if condition { if_true } else { if_false };
                    match branch {
                        Some(branch) => self.run_node(branch).await.subgraphs,
                        None => Duration::ZERO,
                    }
                }
            };
            Timing {
                wall: started.elapsed(),
                subgraphs,
            }
        })
    }

    fn push_errors(&self, errors: impl IntoIterator<Item = GraphQLError>) {
        let mut guard = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        guard.extend(errors);
    }
}
