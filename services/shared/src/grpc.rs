//! gRPC plumbing shared by every service: one channel type for both runtimes,
//! servers with the standard health and reflection services, and W3C trace
//! context in the metadata of every call.
//!
//! In distributed mode a [`GrpcChannel`] is a lazily connecting tonic channel;
//! in embedded mode it calls the target service's router in process. Both go
//! through the same generated clients and servers, so the code path is one.

use std::convert::Infallible;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// A channel any generated client can use, remote or in process.
pub type GrpcChannel = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

fn with_trace_context(req: http::Request<Body>) -> http::Request<Body> {
    let mut req = req;
    crate::telemetry::inject_headers(req.headers_mut());
    req
}

/// A channel to a remote gRPC server; connects on first use and reconnects.
pub fn remote(url: &str) -> Result<GrpcChannel, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect_lazy();
    let svc = ServiceBuilder::new()
        .map_request(with_trace_context)
        .service(channel)
        .map_err(BoxError::from);
    Ok(BoxCloneSyncService::new(svc))
}

/// A channel that calls `routes` in process.
pub fn in_process(routes: Routes) -> GrpcChannel {
    let svc = ServiceBuilder::new()
        .map_request(with_trace_context)
        .service(routes)
        .map_err(|e: Infallible| -> BoxError { match e {} });
    BoxCloneSyncService::new(svc)
}

/// Routes for one service plus the standard health (reporting it SERVING) and
/// reflection services, so `grpcurl` and `grpc_health_probe` work against it.
pub async fn service_routes<S>(service: S) -> Routes
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(S::NAME, tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid");
    Routes::new(service).add_service(health).add_service(reflection)
}

/// Serves `routes` on `listener` until `shutdown` completes, with a tracing
/// span per call that continues the caller's trace.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .trace_fn(|req: &http::Request<()>| {
            let span = tracing::info_span!("grpc.request", path = %req.uri().path());
            crate::telemetry::set_parent_from_headers(&span, req.headers());
            span
        })
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
