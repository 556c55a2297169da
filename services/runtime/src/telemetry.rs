//! Tracing, OTLP export, W3C trace-context propagation and Prometheus metrics.
//!
//! The OpenTelemetry layer is always installed, with or without an exporter, so
//! that every span has a real trace and span id and W3C `traceparent` headers
//! flow across HTTP, gRPC metadata and AMQP headers even when nothing collects
//! them. OTLP export (over HTTP/protobuf, which Jaeger, Tempo and any collector
//! accept) is added only when `telemetry.otlp_endpoint` is set.
//!
//! Two process-wide registries exist because their crates are built that way:
//! the `tracing` subscriber and the `metrics` recorder. Both are installed once,
//! idempotently, by [`init`] and [`metrics_handle`].

use std::collections::HashMap;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::TelemetryConfig;

/// Keeps the tracer provider alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Installs the tracing subscriber (logs + OpenTelemetry). Later calls in the same
/// process (tests start many apps) keep the first subscriber and return an inert guard.
pub fn init(service_name: &str, cfg: &TelemetryConfig) -> TelemetryGuard {
    if INSTALLED.get().is_some() {
        return TelemetryGuard { provider: None };
    }
    // Install the metrics recorder now: counters recorded before the first scrape would
    // otherwise go to the no-op recorder and be lost.
    metrics_handle();
    // Spans are only turned into OpenTelemetry spans when they are exported: without an
    // endpoint the layer would build and drop a span (ids, attributes, timing) for every
    // request, task and subgraph fetch, for nothing (measured: several percent of the
    // gateway's throughput). Trace context still crosses hops only while exporting.
    let mut provider = None;
    if !cfg.otlp_endpoint.is_empty() {
        let endpoint = format!("{}/v1/traces", cfg.otlp_endpoint.trim_end_matches('/'));
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
        {
            Ok(exporter) => {
                provider = Some(
                    SdkTracerProvider::builder()
                        .with_resource(
                            Resource::builder()
                                .with_service_name(service_name.to_string())
                                .build(),
                        )
                        .with_batch_exporter(exporter)
                        .build(),
                );
            }
            Err(e) => eprintln!("flowfleet: OTLP exporter disabled: {e}"),
        }
    }
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("flowfleet")));
    // Per-layer filters: what is logged and what is traced are chosen separately.
    let log_filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&cfg.log_level))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let trace_filter =
        EnvFilter::try_new(&cfg.trace_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(otel.with_filter(trace_filter));
    let result = if cfg.log_format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_filter(log_filter()),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_filter(log_filter()),
            )
            .try_init()
    };
    let _ = INSTALLED.set(());
    match result {
        Ok(()) => TelemetryGuard { provider },
        Err(_) => TelemetryGuard { provider: None },
    }
}

/// The process's Prometheus recorder; installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's);
            // ours still renders what it records through its handle.
            let _ = metrics::set_global_recorder(recorder);
            crate::series::register_process();
            handle
        })
        .clone()
}

/// Where every long-running process answers that it is up (liveness probes).
pub const HEALTH_PATH: &str = "/health";
/// Where every long-running process serves its Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// `GET /health` (the process is up) and `GET /metrics`: what every long-running
/// process serves beside its own routes.
pub fn ops_routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route(
            HEALTH_PATH,
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(METRICS_PATH, axum::routing::get(metrics_endpoint))
}

/// An axum handler body for `GET /metrics`.
pub async fn metrics_endpoint() -> impl axum::response::IntoResponse {
    crate::series::collect_process();
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics_handle().render(),
    )
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's W3C trace context (`traceparent`, `tracestate`) into headers.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context carried by `headers`, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(cx);
    }
}

/// The current span's trace context as a string map (carried in AMQP headers and
/// in outbox rows, so an event continues the trace of the change that caused it).
pub fn current_context_map() -> HashMap<String, String> {
    let mut map = HashMap::new();
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut map);
    map
}

/// Makes `span` a child of a trace context stored as a string map.
pub fn set_parent_from_map(span: &tracing::Span, map: &HashMap<String, String>) {
    if map.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(map);
        let _ = span.set_parent(cx);
    }
}

/// The trace id of the current span, as 32 hex digits (for logs and tests).
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string()
}
