//! gRPC plumbing shared by every service: one channel type for both runtimes,
//! servers with the standard health and reflection services, and W3C trace
//! context in the metadata of every call.
//!
//! In distributed mode a [`GrpcChannel`] is a lazily connecting tonic channel;
//! in embedded mode it calls the target service's router in process. Both go
//! through the same generated clients and servers, so the code path is one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Interceptor, Routes};
use tonic::transport::{Channel, Endpoint};

tokio::task_local! {
    /// The verified bearer credential of the user request being served.
    static ACTING_FOR: Arc<str>;
}

/// Runs `work` on behalf of the caller whose verified bearer `credential` it is: gRPC calls
/// made inside carry it, so the services they reach check that caller's rights.
pub async fn acting_for<F: std::future::Future>(credential: Option<&str>, work: F) -> F::Output {
    match credential {
        Some(credential) => ACTING_FOR.scope(Arc::from(credential), work).await,
        None => work.await,
    }
}

/// [`acting_for`] for a stream: each poll of `stream` (where a subscription's resolvers
/// run) happens on behalf of the caller.
pub fn acting_for_stream<S>(
    credential: Option<&str>,
    stream: S,
) -> futures::stream::BoxStream<'static, S::Item>
where
    S: futures::Stream + Send + 'static,
{
    use futures::StreamExt as _;
    let Some(credential) = credential.map(Arc::<str>::from) else {
        return stream.boxed();
    };
    let mut stream = Box::pin(stream);
    futures::stream::poll_fn(move |cx| {
        ACTING_FOR.sync_scope(credential.clone(), || stream.as_mut().poll_next(cx))
    })
    .boxed()
}

/// Runs `work` as this service, even inside a user's request: for the questions a service
/// asks for itself while serving someone (e.g. the caller's membership, to authorize them),
/// which the caller's own credential may not ask.
pub async fn as_service<F: std::future::Future>(work: F) -> F::Output {
    ACTING_FOR.scope(Arc::from(""), work).await
}

/// Makes the credential a service's own calls carry (`flowfleet_security::service_auth`
/// implements it; this crate only attaches what it is given).
pub trait CallCredentials: Send + Sync + 'static {
    /// The current credential, or `None` if none can be made (the call then goes out
    /// without one and the receiver refuses it).
    fn credential(&self) -> Option<String>;
}

/// Puts the current span's W3C trace context into every call's metadata, and the caller's
/// credential: the user's being served ([`acting_for`]), or else (and within [`as_service`])
/// this service's own.
#[derive(Clone, Default)]
pub struct CallInterceptor {
    service: Option<Arc<dyn CallCredentials>>,
}

impl std::fmt::Debug for CallInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallInterceptor")
            .field("has_service_credentials", &self.service.is_some())
            .finish()
    }
}

impl Interceptor for CallInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let mut headers = http::HeaderMap::new();
        crate::telemetry::inject_headers(&mut headers);
        for (name, value) in headers.iter() {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()),
                tonic::metadata::AsciiMetadataValue::try_from(value.as_bytes()),
            ) {
                request.metadata_mut().insert(key, value);
            }
        }
        let credential = ACTING_FOR
            .try_with(|c| c.to_string())
            .ok()
            .filter(|c| !c.is_empty())
            .or_else(|| {
                self.service
                    .as_ref()
                    .and_then(|service| service.credential())
            });
        if let Some(credential) = credential {
            if let Ok(value) =
                tonic::metadata::AsciiMetadataValue::try_from(format!("Bearer {credential}"))
            {
                request.metadata_mut().insert("authorization", value);
            }
        }
        Ok(request)
    }
}

/// A channel any generated client can use, remote or in process.
pub type GrpcChannel = InterceptedService<Channel, CallInterceptor>;

/// A channel to a remote gRPC server; connects on first use and reconnects. Calls made
/// outside a user's request carry `service`'s credential.
pub fn remote(
    url: &str,
    service: Option<Arc<dyn CallCredentials>>,
) -> Result<GrpcChannel, tonic::transport::Error> {
    let channel = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(InterceptedService::new(
        channel,
        CallInterceptor { service },
    ))
}

/// A channel to `routes` served in this process over in-memory pipes: the
/// same HTTP/2 framing, codecs and server as over TCP, without a socket.
pub fn in_process(routes: Routes, service: Option<Arc<dyn CallCredentials>>) -> GrpcChannel {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<tokio::io::DuplexStream>();
    tokio::spawn(async move {
        let incoming = UnboundedReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
        if let Err(e) = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "in-process gRPC server stopped");
        }
    });
    let connector = tower::service_fn(move |_: http::Uri| {
        let tx = tx.clone();
        async move {
            let (client, server) = tokio::io::duplex(256 * 1024);
            tx.send(server)
                .map_err(|_| std::io::Error::other("the in-process gRPC server has stopped"))?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
        }
    });
    let channel =
        Endpoint::from_static("http://in-process.invalid").connect_with_connector_lazy(connector);
    InterceptedService::new(channel, CallInterceptor { service })
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
    Routes::new(service)
        .add_service(health)
        .add_service(reflection)
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
