//! The [`Gateway`]: a loaded supergraph plus transports, executing client requests.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::Instrument;

use crate::admission::append_errors;
use crate::authorization::{Access, AccessModel, Filtered};
use crate::cache::ResponseCache;
use crate::demand::cost::CostModel;
use crate::error::{GatewayError, GraphQLError, RequestError};
use crate::executor::{Execution, FetchOptions, SubgraphDedupe, Transports};
pub use crate::gateway_config::GatewayConfig;
use crate::measure::{self, OperationLabels, Outcome};
use crate::operation::{OperationKind, PreparedOperation, Preparer};
use crate::operation_cache::OperationCache;
use crate::persisted::Persisted;
use crate::planner::{QueryPlanner, SchemaDocument};
use crate::rate_limit::RateLimiter;
use crate::request::GraphQLRequest;
use crate::schema::SchemaModel;
use crate::selection::CollectContext;
use crate::subscription::Subscriptions;
use crate::traffic::{ReplicaConfig, Upstreams};
use crate::transport::{HttpSubgraph, HttpTransport, SubgraphTransport, SubgraphUploads};
use crate::upload::{variable_at_mut, UploadRequest};
use crate::{introspection, projection::Projector};

/// How the request arrived; GET may not run mutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// Everything derived from one supergraph. Replaced as a whole on reload; a request holds
/// the `Arc` it started with, so a reload never changes a request halfway.
pub(crate) struct Supergraph {
    pub(crate) sdl: String,
    pub(crate) planner: QueryPlanner,
    pub(crate) api_schema: Arc<SchemaDocument>,
    pub(crate) model: SchemaModel,
    pub(crate) transports: Transports,
    pub(crate) preparer: Preparer,
    pub(crate) operations: OperationCache,
    /// `@cost` and `@listSize` of this supergraph.
    pub(crate) costs: CostModel,
    /// `@authenticated`, `@requiresScopes` and `@policy` of this supergraph.
    pub(crate) access: AccessModel,
    /// Operations with what a caller may not see taken out, per (text, name, access).
    pub(crate) filtered: moka::sync::Cache<(String, Option<String>, Access), Arc<Filtered>>,
}

/// A complete GraphQL response (`data`, `errors`) as JSON text, written without building a
/// value tree for it.
pub(crate) struct ResponseJson {
    pub body: Vec<u8>,
    /// Whether `body` has `errors`.
    pub has_errors: bool,
    /// How long the execution waited for subgraphs along its critical path.
    pub subgraph_wait: std::time::Duration,
}

impl ResponseJson {
    pub fn into_value(self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What outlives a reload.
struct Shared {
    current: ArcSwap<Supergraph>,
    config: GatewayConfig,
    /// Transports given by the embedder (in-process subgraphs), kept across reloads.
    explicit: HashMap<String, Arc<dyn SubgraphTransport>>,
    /// `None` when deduplication is switched off.
    dedupe: Option<SubgraphDedupe>,
    /// HTTP subgraphs' replicas and their state, kept across reloads.
    upstreams: Arc<Upstreams>,
    /// Answers of cacheable fetches (kept across reloads; evicted by events).
    cache: ResponseCache,
    pub(crate) subscriptions: Subscriptions,
    operation_labels: OperationLabels,
    readiness: crate::http::ready::Readiness,
    persisted: Persisted,
}

/// A federation gateway over one supergraph, which [`Gateway::reload`] can replace while
/// requests are in flight. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("planner", &self.shared.current.load().planner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Supergraph {
    fn load(
        sdl: &str,
        config: &GatewayConfig,
        explicit: &HashMap<String, Arc<dyn SubgraphTransport>>,
        upstreams: &Upstreams,
    ) -> Result<Self, GatewayError> {
        let planner = QueryPlanner::new(sdl)?;
        // The supergraph as written, with its demand-control and authorization directives
        // (read from it once for both); the planner accepted it, so it parses.
        let directives = crate::planner::parse_schema(sdl).unwrap_or_else(|error| {
            tracing::warn!(%error, "the supergraph's directives could not be read");
            crate::planner::SchemaDocument {
                definitions: Vec::new(),
            }
        });
        let mut urls: HashMap<String, String> = planner
            .subgraphs()
            .iter()
            .map(|s| (s.name.clone(), s.url.clone()))
            .collect();
        crate::measure::register(urls.keys().map(String::as_str));
        for (name, url) in &config.url_overrides {
            if !urls.contains_key(name) {
                return Err(GatewayError::UnknownSubgraph(name.clone()));
            }
            urls.insert(name.clone(), url.clone());
        }
        for name in explicit.keys() {
            if !urls.contains_key(name) {
                tracing::warn!(subgraph = %name, "transport given for a subgraph the supergraph does not declare");
            }
        }
        if let Some(name) = config
            .traffic
            .subgraphs
            .keys()
            .find(|n| !urls.contains_key(*n))
        {
            return Err(GatewayError::UnknownSubgraph(name.clone()));
        }
        let timeouts: HashMap<String, Duration> = config
            .traffic
            .subgraphs
            .iter()
            .filter_map(|(name, own)| Some((name.clone(), own.timeout?)))
            .collect();
        let http_subgraphs = urls
            .into_iter()
            .filter(|(name, _)| !explicit.contains_key(name))
            .map(|(name, url)| {
                let replicas = match config.traffic.subgraphs.get(&name) {
                    Some(own) if !own.replicas.is_empty() => own.replicas.clone(),
                    _ => vec![ReplicaConfig::new(url)],
                };
                HttpSubgraph {
                    timeout: timeouts
                        .get(&name)
                        .copied()
                        .unwrap_or(config.subgraph_timeout),
                    h2c: config.h2c_subgraphs.contains(&name),
                    replicas,
                    name,
                }
            })
            .collect::<Vec<_>>();
        upstreams.retain(&http_subgraphs.iter().map(|s| s.name.clone()).collect());
        let http = HttpTransport::new(
            http_subgraphs,
            &config.traffic,
            upstreams,
            config.subgraph_timeout,
            config.subgraph_ca_pem.as_deref(),
        )
        .map_err(|e| GatewayError::HttpClient(e.to_string()))?;
        // The gateway itself implements `@defer`, so its API schema declares it.
        let mut api_schema = (**planner.api_schema()).clone();
        if let Ok(directive) = crate::planner::parse_schema(crate::defer::DIRECTIVE_SDL) {
            api_schema.definitions.extend(directive.definitions);
        }
        let api_schema = Arc::new(api_schema);
        let model = SchemaModel::from_document(&api_schema);
        Ok(Self {
            sdl: sdl.to_string(),
            planner,
            api_schema,
            model,
            transports: Transports {
                explicit: explicit.clone(),
                http: Arc::new(http),
                timeouts,
            },
            preparer: Preparer::new(config.demand.clone()),
            operations: OperationCache::new(config.plan_cache_size),
            costs: CostModel::from_document(&directives),
            access: AccessModel::from_document(&directives),
            filtered: moka::sync::Cache::new(config.plan_cache_size.max(1)),
        })
    }
}

impl Gateway {
    /// Loads the supergraph. Subgraphs without an entry in `transports` are called over HTTP
    /// at their `@join__graph(url:)` (or `config.url_overrides`).
    pub fn new(
        supergraph_sdl: &str,
        config: GatewayConfig,
        transports: HashMap<String, Arc<dyn SubgraphTransport>>,
    ) -> Result<Self, GatewayError> {
        let mut config = config;
        // Consistent hashing reads its header from the subgraph request.
        let hashed = std::iter::once(&config.traffic.balance)
            .chain(
                config
                    .traffic
                    .subgraphs
                    .values()
                    .filter_map(|s| s.balance.as_ref()),
            )
            .filter_map(|balance| match balance {
                crate::traffic::Balance::ConsistentHash { header } => Some(header.clone()),
                _ => None,
            })
            .collect::<Vec<_>>();
        for header in hashed {
            if !config.forward_headers.contains(&header) {
                config.forward_headers.push(header);
            }
        }
        let upstreams = Arc::new(Upstreams::default());
        let supergraph = Supergraph::load(supergraph_sdl, &config, &transports, &upstreams)?;
        Ok(Self {
            shared: Arc::new(Shared {
                upstreams,
                cache: ResponseCache::new(config.response_cache.clone()),
                current: ArcSwap::from_pointee(supergraph),
                dedupe: config
                    .dedupe_subgraph_requests
                    .then(|| SubgraphDedupe::new(config.dedupe_ignored_headers.clone())),
                subscriptions: Subscriptions::new(&config),
                operation_labels: OperationLabels::default(),
                readiness: Default::default(),
                persisted: Persisted::new(config.persisted.clone()),
                config,
                explicit: transports,
            }),
        })
    }

    /// Replaces the supergraph. Requests already running finish on the one they started
    /// with; new requests use the new one. On error the current supergraph stays.
    /// Returns `false` when `supergraph_sdl` is the one already loaded (nothing to do).
    pub fn reload(&self, supergraph_sdl: &str) -> Result<bool, GatewayError> {
        if self.shared.current.load().sdl == supergraph_sdl {
            return Ok(false);
        }
        let next = Supergraph::load(
            supergraph_sdl,
            &self.shared.config,
            &self.shared.explicit,
            &self.shared.upstreams,
        )?;
        self.shared.current.store(Arc::new(next));
        // Verdicts depend on the schema; kept answers stay until their age or an event.
        self.shared.cache.reloaded();
        // Open subscriptions re-check their operation against the new supergraph.
        self.shared.subscriptions.reloaded();
        tracing::info!(subgraphs = ?self.subgraph_names(), "supergraph reloaded");
        Ok(true)
    }

    /// Evicts the cached answers about the entity `typename` with `id` (and those that
    /// select its type under another one), here and in the shared store. Called for the
    /// services' events (`workflow.published` evicts that workflow).
    pub async fn invalidate(&self, typename: &str, id: &str) {
        let tags = [crate::cache::entity_tag(typename, id), typename.to_string()];
        self.shared.cache.invalidate(&tags).await;
    }

    /// Says whether the events that evict cached answers are arriving (see
    /// [`Gateway::invalidate`]); while they are not, the response cache is bypassed.
    /// A gateway starts fed.
    pub fn set_cache_fed(&self, fed: bool) {
        self.shared.cache.set_fed(fed);
    }

    /// Evicts every private cached answer: called when who may see what changes (a member
    /// removed or given another role, a user deleted).
    pub async fn invalidate_private(&self) {
        let tags = [crate::cache::PRIVATE_TAG.to_string()];
        self.shared.cache.invalidate(&tags).await;
    }

    /// The supergraph SDL being served.
    pub fn supergraph(&self) -> String {
        self.shared.current.load().sdl.clone()
    }

    /// Names of the subgraphs the supergraph declares, sorted.
    pub fn subgraph_names(&self) -> Vec<String> {
        self.shared
            .current
            .load()
            .planner
            .subgraphs()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Executes a request and returns the full response body (`data` and/or `errors`).
    /// Request errors (parse, validation, bad input) give a body with `errors` only.
    pub async fn execute(&self, req: GraphQLRequest, headers: &http::HeaderMap) -> Value {
        match self.execute_with(req, headers, Method::Post).await {
            Ok(body) => body.into_value(),
            Err(error) => error.to_response(),
        }
    }

    pub(crate) async fn execute_with(
        &self,
        req: GraphQLRequest,
        headers: &http::HeaderMap,
        method: Method,
    ) -> Result<ResponseJson, RequestError> {
        let span = self.request_span(&req, headers);
        let started = std::time::Instant::now();
        let name = req.operation_name.clone();
        let result = self.run(req, headers, method).instrument(span).await;
        let (label, outcome) = match &result {
            Ok(json) => (
                self.shared.operation_labels.label(name.as_deref()),
                if json.has_errors {
                    Outcome::Errors
                } else {
                    Outcome::Ok
                },
            ),
            // A refused operation's name was not checked against a document.
            Err(_) => (smol_str::SmolStr::new_static("(refused)"), Outcome::Refused),
        };
        measure::operation(&label, outcome, started.elapsed());
        result
    }

    /// The span of one client operation, continuing the client's trace when a hook says how.
    pub(crate) fn request_span(
        &self,
        req: &GraphQLRequest,
        headers: &http::HeaderMap,
    ) -> tracing::Span {
        let span = tracing::info_span!(
            "graphql_request",
            operation_name = req.operation_name.as_deref().unwrap_or("")
        );
        if let Some(hook) = &self.shared.config.span_hook {
            hook(&span, headers);
        }
        span
    }

    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }

    /// The trusted documents in force, to reload them ([`crate::persisted::watch_manifest`]).
    pub fn trusted_documents(&self) -> Option<crate::persisted::TrustedDocuments> {
        self.shared.config.persisted.trusted.clone()
    }

    pub(crate) fn persisted(&self) -> &Persisted {
        &self.shared.persisted
    }

    pub(crate) fn readiness(&self) -> &crate::http::ready::Readiness {
        &self.shared.readiness
    }

    pub(crate) fn rate_limiter(&self) -> &RateLimiter {
        &self.shared.config.rate_limiter
    }

    pub(crate) fn subscriptions(&self) -> &Subscriptions {
        &self.shared.subscriptions
    }

    /// The supergraph being served now.
    pub(crate) fn current(&self) -> Arc<Supergraph> {
        self.shared.current.load_full()
    }

    pub(crate) fn transport(supergraph: &Supergraph, subgraph: &str) -> Arc<dyn SubgraphTransport> {
        supergraph.transports.get(subgraph)
    }

    pub(crate) fn prepared(
        supergraph: &Supergraph,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedOperation>, RequestError> {
        let (prepared, lookup) =
            supergraph
                .operations
                .get_or_prepare(query, operation_name, || {
                    supergraph.preparer.prepare(
                        &supergraph.planner,
                        &supergraph.api_schema,
                        &supergraph.model,
                        query,
                        operation_name,
                    )
                })?;
        tracing::trace!(?lookup, "operation cache");
        measure::plan_cache(lookup != crate::operation_cache::Lookup::Miss);
        Ok(prepared)
    }

    async fn run(
        &self,
        req: GraphQLRequest,
        headers: &http::HeaderMap,
        method: Method,
    ) -> Result<ResponseJson, RequestError> {
        let admitted = self.admit(&req, method)?;
        if admitted.nothing_left {
            let mut body = b"{\"data\":null}".to_vec();
            append_errors(&mut body, false, &admitted.denied);
            return Ok(ResponseJson {
                body,
                has_errors: true,
                subgraph_wait: std::time::Duration::ZERO,
            });
        }
        if admitted.operation.kind == OperationKind::Subscription {
            return Err(RequestError::Unsupported(
                "A subscription needs a streaming transport: a WebSocket (graphql-transport-ws), \
                 `Accept: text/event-stream` (SSE) or `Accept: multipart/mixed;subscriptionSpec=\"1.0\"`."
                    .into(),
            ));
        }
        let mut response = self
            .execute_prepared(
                &admitted.supergraph,
                &admitted.operation,
                &admitted.variables,
                headers,
                None,
            )
            .await;
        if !admitted.denied.is_empty() {
            append_errors(&mut response.body, response.has_errors, &admitted.denied);
            response.has_errors = true;
        }
        if crate::demand::wants_cost(req.extensions.as_ref()) {
            self.report_cost(&admitted, &mut response);
        }
        Ok(response)
    }

    /// Executes a multipart upload request: the files stream to the one subgraph request
    /// whose operation uses their variables.
    pub(crate) async fn execute_upload(
        &self,
        upload: UploadRequest,
        headers: &http::HeaderMap,
    ) -> Result<ResponseJson, RequestError> {
        let span = self.request_span(&upload.request, headers);
        // The files' `null` placeholders stand for values that will be there: variable
        // coercion must not refuse them as nulls in non-null positions.
        let placeholders: Vec<&str> = upload
            .files
            .map
            .iter()
            .flat_map(|(_, paths)| paths.iter().map(String::as_str))
            .collect();
        let mut request = upload.request.clone();
        if let Some(variables) = request.variables.as_mut() {
            for path in &placeholders {
                if let Some(value) = variable_at_mut(variables, path) {
                    *value = Value::String("<upload>".into());
                }
            }
        }
        let mut admitted = span.in_scope(|| self.admit(&request, Method::Post))?;
        for path in &placeholders {
            if let Some(value) = variable_at_mut(&mut admitted.variables, path) {
                *value = Value::Null;
            }
        }
        admitted.whole_or_refused()?;
        let names = upload.files.variables();
        if admitted.operation.plan.fetches_using(&names) > 1 {
            return Err(RequestError::BadRequest(
                "The files of one request must go to one subgraph request; this operation \
                 uses them in several."
                    .into(),
            ));
        }
        let too_large = upload.files.too_large.clone();
        let uploads = SubgraphUploads::new(upload.files);
        let body = self
            .execute_prepared(
                &admitted.supergraph,
                &admitted.operation,
                &admitted.variables,
                headers,
                Some((names, uploads)),
            )
            .instrument(span)
            .await;
        if too_large.load(std::sync::atomic::Ordering::SeqCst) {
            let limit = self.shared.config.uploads.max_file_bytes;
            return Err(RequestError::PayloadTooLarge(format!(
                "A file is larger than the limit of {limit} bytes."
            )));
        }
        Ok(body)
    }

    /// Runs a prepared operation: fetch, merge, introspection, projection. Never fails:
    /// subgraph failures become errors next to partial data.
    pub(crate) async fn execute_prepared(
        &self,
        supergraph: &Supergraph,
        operation: &PreparedOperation,
        variables: &Map<String, Value>,
        headers: &http::HeaderMap,
        uploads: Option<(Vec<String>, SubgraphUploads)>,
    ) -> ResponseJson {
        let execution = self.execution(supergraph, operation, variables, headers, uploads);
        let subgraph_wait = execution.run(&operation.plan).await;
        if operation.kind == OperationKind::Mutation && self.shared.cache.is_on() {
            // The caller reads their own writes; others once the services' events arrive.
            let caller = headers.get(http::header::AUTHORIZATION);
            let tags = [crate::cache::caller_tag(caller)];
            self.shared.cache.invalidate(&tags).await;
        }
        Self::respond(supergraph, operation, variables, execution, subgraph_wait)
    }

    /// The client headers that go to subgraphs (`GatewayConfig::forward_headers`).
    pub(crate) fn forwarded(&self, headers: &http::HeaderMap) -> http::HeaderMap {
        let mut forwarded = http::HeaderMap::new();
        for name in &self.shared.config.forward_headers {
            for value in headers.get_all(name) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        forwarded
    }

    /// An execution of `operation` for a client who sent `headers`.
    pub(crate) fn execution<'a>(
        &'a self,
        supergraph: &'a Supergraph,
        operation: &PreparedOperation,
        variables: &'a Map<String, Value>,
        headers: &http::HeaderMap,
        uploads: Option<(Vec<String>, SubgraphUploads)>,
    ) -> Execution<'a> {
        let config = &self.shared.config;
        Execution::new(
            &supergraph.transports,
            &supergraph.model,
            variables,
            FetchOptions {
                headers: self.forwarded(headers),
                request_hook: config.request_hook.clone(),
                timeout: config.subgraph_timeout,
                mutation: operation.kind == OperationKind::Mutation,
                cache: (operation.kind == OperationKind::Query && self.shared.cache.is_on())
                    .then_some(&self.shared.cache),
                // A subscription's per-event fetches are queries too.
                dedupe: self
                    .shared
                    .dedupe
                    .as_ref()
                    .filter(|_| operation.kind != OperationKind::Mutation),
                uploads,
            },
        )
    }

    /// The client's response from what `execution` gathered: introspection, projection,
    /// errors.
    pub(crate) fn respond(
        supergraph: &Supergraph,
        operation: &PreparedOperation,
        variables: &Map<String, Value>,
        execution: Execution<'_>,
        subgraph_wait: std::time::Duration,
    ) -> ResponseJson {
        let (mut data, errors) = execution.into_parts();
        if operation.uses_introspection {
            let ctx = CollectContext {
                schema: &supergraph.model,
                fragments: &operation.fragments,
                variables,
            };
            if let crate::value::Value::Object(map) = &mut data {
                introspection::resolve_root(
                    &ctx,
                    &operation.root_type,
                    &operation.selection_set,
                    map,
                );
            }
        }
        let (body, has_errors) = Self::project(supergraph, operation, variables, &data, errors);
        ResponseJson {
            body,
            has_errors,
            subgraph_wait,
        }
    }

    /// `{"data":...,"errors":[...]}`: `operation`'s selection projected over `data`, with
    /// `errors` and those projection adds. Written without building a value tree.
    pub(crate) fn project(
        supergraph: &Supergraph,
        operation: &PreparedOperation,
        variables: &Map<String, Value>,
        data: &crate::value::Value,
        errors: Vec<GraphQLError>,
    ) -> (Vec<u8>, bool) {
        let ctx = CollectContext {
            schema: &supergraph.model,
            fragments: &operation.fragments,
            variables,
        };
        let mut projector = Projector::new(&ctx, &errors);
        let projected =
            projector.project_root_json(&operation.root_type, &operation.selection_set, data);
        let mut all_errors: Vec<GraphQLError> = errors;
        all_errors.append(&mut projector.errors);
        let mut body = Vec::with_capacity(projected.len() + 16);
        body.extend_from_slice(b"{\"data\":");
        body.extend_from_slice(&projected);
        if !all_errors.is_empty() {
            body.extend_from_slice(b",\"errors\":");
            let _ = serde_json::to_writer(&mut body, &all_errors);
        }
        body.push(b'}');
        (body, !all_errors.is_empty())
    }

    pub(crate) fn supergraph_model(supergraph: &Supergraph) -> &SchemaModel {
        &supergraph.model
    }
}
