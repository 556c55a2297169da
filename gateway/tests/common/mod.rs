//! Test support: the benchmark subgraphs served on ephemeral ports, an in-process transport,
//! and the reference computation of the benchmark query's expected response.

#![allow(dead_code)]

pub mod subgraphs;

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Executor;
use async_graphql_axum::GraphQL;
use axum::routing::post_service;
use axum::Router;
use flowfleet_gateway::value::Value as ResponseValue;
use flowfleet_gateway::{
    serve, Gateway, GatewayConfig, SubgraphRequest, SubgraphTransport, TransportError,
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
    let app = Router::new().route("/graphql", post_service(GraphQL::new(schema)));
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
        urls.insert(
            "reviews".to_string(),
            serve_schema(subgraphs::reviews()).await,
        );
        Self { urls }
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

/// Calls an async-graphql schema in-process (the embedded-mode transport shape).
pub struct InProcess<E: Executor>(pub E);

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
}

/// All four subgraphs as in-process transports.
pub fn in_process_transports() -> HashMap<String, Arc<dyn SubgraphTransport>> {
    let mut map: HashMap<String, Arc<dyn SubgraphTransport>> = HashMap::new();
    map.insert(
        "accounts".into(),
        Arc::new(InProcess(subgraphs::accounts())),
    );
    map.insert(
        "inventory".into(),
        Arc::new(InProcess(subgraphs::inventory())),
    );
    map.insert(
        "products".into(),
        Arc::new(InProcess(subgraphs::products())),
    );
    map.insert("reviews".into(), Arc::new(InProcess(subgraphs::reviews())));
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

pub async fn post(base: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&body)
        .send()
        .await
        .expect("gateway request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}
