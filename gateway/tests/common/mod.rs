//! Test support: the benchmark subgraphs served on ephemeral ports, an in-process transport,
//! and the reference computation of the benchmark query's expected response.

#![allow(dead_code)]

pub mod subgraphs;

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Executor;
use axum::Router;
use flowfleet_gateway::value::Value as ResponseValue;
use flowfleet_gateway::{
    serve, Gateway, GatewayConfig, ResponseStream, SubgraphRequest, SubgraphTransport,
    TransportError,
};
use serde_json::{json, Value};

pub const SUBGRAPHS: [&str; 4] = ["accounts", "inventory", "products", "reviews"];

pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bench")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

async fn serve_schema<E: Executor>(schema: E) -> String {
    serve_counted(schema, Arc::default()).await
}

/// Serves `schema`, counting in `streams` the event streams (SSE responses) it has open:
/// one from the request until the gateway drops the response.
async fn serve_counted<E: Executor>(
    schema: E,
    streams: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let app = Router::new()
        .route("/graphql", flowfleet_bench::endpoint(schema))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let streams = streams.clone();
                async move {
                    let is_stream = request
                        .headers()
                        .get("accept")
                        .is_some_and(|v| v.to_str().unwrap_or("").contains("text/event-stream"));
                    let response = next.run(request).await;
                    if !is_stream {
                        return response;
                    }
                    let guard = StreamGuard::open(streams);
                    response.map(|body| {
                        use futures::StreamExt as _;
                        axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
                            let _ = &guard;
                            chunk
                        }))
                    })
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("subgraph server");
    });
    format!("http://{addr}/graphql")
}

/// Running benchmark subgraphs: name -> URL.
pub struct Subgraphs {
    pub urls: HashMap<String, String>,
    /// Event streams the reviews subgraph has open now.
    pub reviews_streams: Arc<std::sync::atomic::AtomicUsize>,
}

impl Subgraphs {
    pub async fn start() -> Self {
        let mut urls = HashMap::new();
        urls.insert(
            "accounts".to_string(),
            serve_schema(subgraphs::accounts()).await,
        );
        urls.insert(
            "inventory".to_string(),
            serve_schema(subgraphs::inventory()).await,
        );
        urls.insert(
            "products".to_string(),
            serve_schema(subgraphs::products()).await,
        );
        let reviews_streams = Arc::<std::sync::atomic::AtomicUsize>::default();
        urls.insert(
            "reviews".to_string(),
            serve_counted(subgraphs::reviews(), reviews_streams.clone()).await,
        );
        Self {
            urls,
            reviews_streams,
        }
    }

    /// A gateway over `supergraph` that reaches these subgraphs over HTTP.
    pub fn gateway(&self, supergraph: &str) -> Gateway {
        let config = GatewayConfig {
            url_overrides: self.urls.clone(),
            ..GatewayConfig::default()
        };
        Gateway::new(supergraph, config, HashMap::new()).expect("gateway")
    }
}

/// The subgraphs' SDL as they publish it for composition (`_service { sdl }`).
pub async fn subgraph_sdl(url: &str) -> String {
    let response: Value = reqwest::Client::new()
        .post(url)
        .json(&json!({"query": "{ _service { sdl } }"}))
        .send()
        .await
        .expect("sdl request")
        .json()
        .await
        .expect("sdl json");
    response["data"]["_service"]["sdl"]
        .as_str()
        .expect("sdl")
        .to_string()
}

/// Calls an async-graphql schema in-process (the embedded-mode transport shape); the
/// counter holds how many of its subscription streams are open.
pub struct InProcess<E: Executor>(pub E, pub Arc<std::sync::atomic::AtomicUsize>);

impl<E: Executor> InProcess<E> {
    pub fn new(schema: E) -> Self {
        Self(schema, Arc::default())
    }
}

#[async_trait::async_trait]
impl<E: Executor> SubgraphTransport for InProcess<E> {
    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        let variables = async_graphql::Variables::from_json(Value::Object(request.variables));
        let mut gql = async_graphql::Request::new(request.query).variables(variables);
        if let Some(name) = request.operation_name {
            gql = gql.operation_name(name);
        }
        let response = self.0.execute(gql).await;
        serde_json::to_value(response)
            .map(Into::into)
            .map_err(|e| TransportError::Other(e.to_string()))
    }

    async fn subscribe(&self, request: SubgraphRequest) -> Result<ResponseStream, TransportError> {
        use futures::StreamExt as _;
        let variables = async_graphql::Variables::from_json(Value::Object(request.variables));
        let gql = async_graphql::Request::new(request.query).variables(variables);
        let guard = StreamGuard::open(self.1.clone());
        Ok(self
            .0
            .execute_stream(gql, None)
            .map(move |response| {
                let _ = &guard;
                serde_json::to_value(response)
                    .map(Into::into)
                    .map_err(|e| TransportError::Other(e.to_string()))
            })
            .boxed())
    }
}

/// Counts a subgraph's open subscription streams: one while its stream exists.
struct StreamGuard(Arc<std::sync::atomic::AtomicUsize>);

impl StreamGuard {
    fn open(count: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// All four subgraphs as in-process transports.
pub fn in_process_transports() -> HashMap<String, Arc<dyn SubgraphTransport>> {
    let mut map: HashMap<String, Arc<dyn SubgraphTransport>> = HashMap::new();
    map.insert(
        "accounts".into(),
        Arc::new(InProcess::new(subgraphs::accounts())),
    );
    map.insert(
        "inventory".into(),
        Arc::new(InProcess::new(subgraphs::inventory())),
    );
    map.insert(
        "products".into(),
        Arc::new(InProcess::new(subgraphs::products())),
    );
    map.insert(
        "reviews".into(),
        Arc::new(InProcess::new(subgraphs::reviews())),
    );
    map
}

/// Serves `gateway` on an ephemeral port; returns the base URL.
pub async fn start_gateway(gateway: &Gateway) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = gateway.router();
    tokio::spawn(serve(listener, router, std::future::pending()));
    format!("http://{addr}")
}

/// Serves a gateway over `supergraph` with `config` and the in-process benchmark
/// subgraphs; returns the base URL.
pub async fn start_configured(supergraph: &str, config: GatewayConfig) -> String {
    let gateway = Gateway::new(supergraph, config, in_process_transports()).expect("gateway");
    start_gateway(&gateway).await
}

/// POSTs `body` as a current GraphQL-over-HTTP client (accepting
/// `application/graphql-response+json`, so request errors come back as 4xx).
pub async fn post_strict(base: &str, body: Value) -> (u16, Value) {
    post_with(
        base,
        body,
        &[("accept", "application/graphql-response+json")],
    )
    .await
}

pub async fn post(base: &str, body: Value) -> (u16, Value) {
    post_with(base, body, &[]).await
}

/// POSTs `body` with `headers` besides the JSON content type.
pub async fn post_with(base: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let request = headers.iter().fold(
        reqwest::Client::new().post(format!("{base}/graphql")),
        |request, (name, value)| request.header(*name, *value),
    );
    let response = request.json(&body).send().await.expect("gateway request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}
