//! The [`Gateway`]: a loaded supergraph plus transports, executing client requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::Instrument;

use crate::error::{GatewayError, GraphQLError, RequestError};
use crate::executor::{Execution, RequestHook, SpanHook, Transports};
use crate::operation::{coerce_variables, OperationKind, PreparedOperation, Preparer};
use crate::planner::{QueryPlanner, SchemaDocument};
use crate::request::GraphQLRequest;
use crate::schema::SchemaModel;
use crate::selection::CollectContext;
use crate::transport::{HttpTransport, SubgraphTransport};
use crate::{introspection, projection::Projector};

/// Upper bound of cached prepared operations; the cache is cleared when it is reached
/// (simple, and prepared operations are cheap to rebuild).
const OPERATION_CACHE_LIMIT: usize = 1024;

#[derive(Clone)]
pub struct GatewayConfig {
    /// Whether `__schema` / `__type` are answered.
    pub introspection: bool,
    /// Bound for each subgraph request, whatever the transport.
    pub subgraph_timeout: Duration,
    /// Subgraph name -> URL, replacing the supergraph's `@join__graph(url:)`.
    pub url_overrides: HashMap<String, String>,
    /// Client headers copied into every subgraph request.
    pub forward_headers: Vec<http::HeaderName>,
    /// Called on the headers of every subgraph request (e.g. to inject W3C trace context).
    pub request_hook: Option<RequestHook>,
    /// Called with each client request's span and headers (e.g. to adopt the client's trace).
    pub span_hook: Option<SpanHook>,
    /// Whether browsers asking for `GET /graphql` (Accept: text/html) get GraphiQL.
    pub graphiql: bool,
    /// Most operations accepted in one batched request (a JSON array); 0 disables batching.
    pub max_batch_size: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            introspection: true,
            subgraph_timeout: Duration::from_secs(30),
            url_overrides: HashMap::new(),
            forward_headers: vec![
                http::header::AUTHORIZATION,
                http::HeaderName::from_static("traceparent"),
                http::HeaderName::from_static("tracestate"),
            ],
            request_hook: None,
            span_hook: None,
            graphiql: true,
            max_batch_size: 32,
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("introspection", &self.introspection)
            .field("subgraph_timeout", &self.subgraph_timeout)
            .field("url_overrides", &self.url_overrides)
            .field("forward_headers", &self.forward_headers)
            .field("request_hook", &self.request_hook.is_some())
            .field("span_hook", &self.span_hook.is_some())
            .field("graphiql", &self.graphiql)
            .field("max_batch_size", &self.max_batch_size)
            .finish()
    }
}

/// How the request arrived; GET may not run mutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// (query text, operation name): everything a prepared operation depends on besides the schema.
type CacheKey = (String, Option<String>);

struct Inner {
    planner: QueryPlanner,
    api_schema: Arc<SchemaDocument>,
    model: SchemaModel,
    transports: Transports,
    config: GatewayConfig,
    preparer: Preparer,
    cache: Mutex<HashMap<CacheKey, Arc<PreparedOperation>>>,
}

/// A federation gateway over one supergraph. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("planner", &self.inner.planner)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
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
        let planner = QueryPlanner::new(supergraph_sdl)?;
        let mut urls: HashMap<String, String> = planner
            .subgraphs()
            .iter()
            .map(|s| (s.name.clone(), s.url.clone()))
            .collect();
        for (name, url) in &config.url_overrides {
            if !urls.contains_key(name) {
                return Err(GatewayError::UnknownSubgraph(name.clone()));
            }
            urls.insert(name.clone(), url.clone());
        }
        for name in transports.keys() {
            if !urls.contains_key(name) {
                tracing::warn!(subgraph = %name, "transport given for a subgraph the supergraph does not declare");
            }
        }
        let http = HttpTransport::new(urls, config.subgraph_timeout)
            .map_err(|e| GatewayError::HttpClient(e.to_string()))?;
        let api_schema = planner.api_schema().clone();
        let model = SchemaModel::from_document(&api_schema);
        Ok(Self {
            inner: Arc::new(Inner {
                planner,
                api_schema,
                model,
                transports: Transports {
                    explicit: transports,
                    http: Arc::new(http),
                },
                config,
                preparer: Preparer::default(),
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Names of the subgraphs the supergraph declares, sorted.
    pub fn subgraph_names(&self) -> Vec<String> {
        self.inner
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
            Ok(body) => body,
            Err(error) => error.to_response(),
        }
    }

    pub(crate) async fn execute_with(
        &self,
        req: GraphQLRequest,
        headers: &http::HeaderMap,
        method: Method,
    ) -> Result<Value, RequestError> {
        let span = tracing::info_span!(
            "graphql_request",
            operation_name = req.operation_name.as_deref().unwrap_or("")
        );
        if let Some(hook) = &self.inner.config.span_hook {
            hook(&span, headers);
        }
        self.run(req, headers, method).instrument(span).await
    }

    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    fn prepared(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedOperation>, RequestError> {
        let inner = &self.inner;
        let key = (query.to_string(), operation_name.map(str::to_string));
        if let Some(hit) = inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let prepared = inner.preparer.prepare(
            &inner.planner,
            &inner.api_schema,
            &inner.model,
            query,
            operation_name,
        )?;
        let mut cache = inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= OPERATION_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, prepared.clone());
        Ok(prepared)
    }

    async fn run(
        &self,
        req: GraphQLRequest,
        headers: &http::HeaderMap,
        method: Method,
    ) -> Result<Value, RequestError> {
        let inner = &self.inner;
        if req.query.trim().is_empty() {
            return Err(RequestError::BadRequest("The request has no query.".into()));
        }
        let operation = self.prepared(&req.query, req.operation_name.as_deref())?;
        if method == Method::Get && operation.kind == OperationKind::Mutation {
            return Err(RequestError::MutationOverGet);
        }
        if operation.uses_introspection && !inner.config.introspection {
            return Err(RequestError::IntrospectionDisabled);
        }
        let variables = coerce_variables(&operation.variables, req.variables.as_ref())?;

        let mut forwarded = http::HeaderMap::new();
        for name in &inner.config.forward_headers {
            for value in headers.get_all(name) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        let execution = Execution::new(
            &inner.transports,
            &inner.model,
            &variables,
            forwarded,
            inner.config.request_hook.clone(),
            inner.config.subgraph_timeout,
        );
        execution.run(&operation.plan).await;
        let (mut data, errors) = execution.into_parts();

        let ctx = CollectContext {
            schema: &inner.model,
            fragments: &operation.fragments,
            variables: &variables,
        };
        if operation.uses_introspection {
            if let Value::Object(map) = &mut data {
                introspection::resolve_root(
                    &ctx,
                    &operation.root_type,
                    &operation.selection_set,
                    map,
                );
            }
        }
        let mut projector = Projector::new(&ctx, &errors);
        let projected =
            projector.project_root(&operation.root_type, &operation.selection_set, &data);

        let mut all_errors: Vec<GraphQLError> = errors;
        all_errors.append(&mut projector.errors);
        let mut body = Map::new();
        body.insert("data".into(), projected);
        if !all_errors.is_empty() {
            body.insert(
                "errors".into(),
                Value::Array(all_errors.iter().map(GraphQLError::to_json).collect()),
            );
        }
        Ok(Value::Object(body))
    }
}
