//! Configuration: one TOML file plus `FLOWFLEET_*` environment overrides.
//!
//! Every field has a default that works for `flowfleet dev`, so an empty file (or
//! no file at all) is a valid configuration. Environment variables use `__` as the
//! nesting separator: `FLOWFLEET_DATABASE__URL` sets `database.url`, and
//! `FLOWFLEET_SERVICES__WORKFLOW__GRPC_URL` sets `services.workflow.grpc_url`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod cache;
mod edge;
mod traffic;
pub use cache::{CachePolicySettings, ResponseCacheSettings};
pub use edge::{
    CorsSettings, DemandControlConfig, EffectiveRateLimits, PersistedQueriesConfig,
    RateLimitsConfig,
};
pub use traffic::{SubgraphTrafficSettings, TrafficSettings};

/// Which infrastructure backs the fleet. The code path is the same; only the
/// implementations behind the store, queue, cache and blob traits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SQLite files, in-process queue and cache, local-disk blobs.
    #[default]
    Embedded,
    /// PostgreSQL, RabbitMQ, Redis and S3-compatible object storage.
    Distributed,
}

/// The six services of the fleet, in the order of their default ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    Workflow,
    Execution,
    Auth,
    Notification,
    Analytics,
    Storage,
}

impl ServiceName {
    pub const ALL: [ServiceName; 6] = [
        ServiceName::Workflow,
        ServiceName::Execution,
        ServiceName::Auth,
        ServiceName::Notification,
        ServiceName::Analytics,
        ServiceName::Storage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Workflow => "workflow",
            ServiceName::Execution => "execution",
            ServiceName::Auth => "auth",
            ServiceName::Notification => "notification",
            ServiceName::Analytics => "analytics",
            ServiceName::Storage => "storage",
        }
    }

    fn index(self) -> u16 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as u16
    }

    /// Default HTTP (GraphQL subgraph) port: 8101..8106.
    pub fn default_http_port(self) -> u16 {
        8101 + self.index()
    }

    /// Default gRPC port: 9101..9106.
    pub fn default_grpc_port(self) -> u16 {
        9101 + self.index()
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown service `{s}`; expected one of: workflow, execution, auth, notification, analytics, storage"
                )
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub mode: Mode,
    /// Where embedded mode keeps its SQLite files and blobs.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub amqp: AmqpConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub security: SecurityConfig,
    pub gateway: GatewayConfig,
    pub storage: StorageConfig,
    pub worker: WorkerConfig,
    /// The `http_request` node's guard against reaching internal addresses.
    pub http_request: HttpRequestConfig,
    /// Cron schedules and webhooks that start executions.
    pub triggers: TriggersConfig,
    /// How notifications leave the platform (e-mail, webhooks, SMS).
    pub notification: NotificationConfig,
    /// How long dashboards' facts and rollups are kept, and how often facts are rolled up.
    pub analytics: AnalyticsConfig,
    /// Where each service listens and is reached (distributed mode).
    pub services: BTreeMap<ServiceName, ServiceEndpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL for distributed mode. Each service uses its own schema in it
    /// (named after the service) unless `services.<name>.database_url` overrides it.
    pub url: String,
    pub max_connections: u32,
    /// Run each service's migrations when it starts (off in production, where the
    /// migration Job runs `flowfleet migrate`).
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AmqpConfig {
    pub url: String,
    pub exchange: String,
    pub prefetch: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// Empty means the in-memory cache, even in distributed mode.
    pub url: String,
    /// Prefix of every key this fleet writes (so fleets can share one Redis).
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: String::new(),
            key_prefix: "flowfleet:".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP endpoint, e.g. `http://127.0.0.1:4318`. Empty disables export.
    pub otlp_endpoint: String,
    /// `pretty` (development) or `json` (production).
    pub log_format: String,
    /// An `EnvFilter` directive such as `info,flowfleet=debug`, for logs only. `RUST_LOG` wins.
    pub log_level: String,
    /// An `EnvFilter` directive choosing which spans are traced (and exported), kept apart
    /// from `log_level` so quiet logs do not break traces.
    pub trace_level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Lifetime of access tokens, in seconds.
    pub access_token_ttl_secs: u64,
    /// How long a sign-in lasts without being refreshed, in seconds: each refresh token
    /// rotation extends the session by this much.
    pub refresh_token_ttl_secs: u64,
    /// Days a signing key signs access tokens before a new one takes over. A retired key
    /// stays in the JWKS until every token it signed has expired.
    pub signing_key_rotation_days: u64,
    /// Failed sign-ins allowed per account within `login_lockout_secs`; more lock the
    /// account's sign-in until that window closes.
    pub login_max_failures: u64,
    /// Failed sign-ins allowed from one client address within `login_lockout_secs`, across
    /// accounts; more lock sign-in from that address until the window closes.
    pub login_max_failures_per_ip: u64,
    pub login_lockout_secs: u64,
    /// Keys sealing stored secrets, `kid:base64-of-32-bytes` each (`flowfleet secret-key`
    /// makes one). Empty in embedded mode: a key is generated into `<data_dir>/secret-keys`.
    /// Distributed processes must all have the same keys.
    pub secret_keys: Vec<String>,
    /// The key id new secrets are sealed with; empty means the last of `secret_keys`.
    pub active_secret_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    pub host: String,
    pub port: u16,
    /// A supergraph file to serve. Empty means: compose from the services' SDL.
    pub supergraph: String,
    pub introspection: bool,
    /// Serve GraphiQL to browsers at `GET /graphql`.
    pub graphiql: bool,
    /// Most operations in one batched request (a JSON array body); 0 disables batching.
    pub max_batch_size: usize,
    /// Files per multipart upload request; 0 refuses uploads.
    pub upload_max_files: usize,
    /// Largest uploaded file, in bytes (streamed to the subgraph, never buffered).
    pub upload_max_file_bytes: u64,
    /// Largest JSON request body, in bytes.
    pub max_request_bytes: usize,
    /// Entries of each level of the query-plan cache (exact text, normalized text).
    pub plan_cache_size: u64,
    /// Let concurrent requests share one in-flight subgraph query with identical
    /// operation, variables and forwarded headers.
    pub dedupe_subgraph_requests: bool,
    /// How often the supergraph's source (the file, or the subgraphs' SDL) is checked for
    /// changes, which are loaded without dropping requests. 0 disables hot reload.
    pub reload_interval_ms: u64,
    /// Subgraphs reached over cleartext HTTP/2 (h2c); HTTPS subgraphs negotiate HTTP/2.
    pub h2c_subgraphs: Vec<String>,
    /// PEM file of extra certificate authorities trusted for HTTPS subgraphs (an internal
    /// CA, a service mesh's); empty trusts only the public web roots.
    pub subgraph_ca_file: String,
    /// Answer with a `Server-Timing` header (the gateway's own time and its subgraph wait).
    /// Off by default: it tells clients how fast the subgraphs are.
    pub server_timing: bool,
    /// Proxies in front of the gateway (an Ingress controller, a load balancer), as IP
    /// addresses or CIDR ranges. A request from one of them is attributed to the address it
    /// reports in `X-Forwarded-For` (the nearest one that is not itself trusted); from any
    /// other peer, `X-Forwarded-For` is ignored, so clients cannot pick their own address.
    pub trusted_proxies: Vec<String>,
    pub subgraph_timeout_ms: u64,
    /// Per-subgraph URL overrides (subgraph name → URL of its GraphQL endpoint). Several
    /// replicas of one subgraph go in `[gateway.traffic.subgraphs.<name>] urls`.
    pub subgraph_urls: BTreeMap<String, String>,
    /// Streaming connections (WebSocket, SSE, multipart) open at once in one gateway.
    pub subscription_max_connections: usize,
    /// Operations running at once on one WebSocket.
    pub subscription_max_per_connection: usize,
    /// Subscriptions one credential holds open at once in one gateway.
    pub subscription_max_per_credential: usize,
    /// Events buffered per subscription before it counts as behind (and is told so).
    pub subscription_buffer: usize,
    /// Keep-alive interval of streaming connections (WebSocket pings, SSE comments,
    /// multipart heartbeats).
    pub subscription_heartbeat_ms: u64,
    /// How often a running subscription's credential is checked again, besides when it
    /// expires (a revoked API key or signed-out session ends its subscriptions).
    pub subscription_recheck_ms: u64,
    /// Rate limits per client address, user, API key and overall (`[gateway.rate_limits]`).
    pub rate_limits: RateLimitsConfig,
    /// Cross-origin access for pages of other origins (`[gateway.cors]`).
    pub cors: CorsSettings,
    /// Limits on an operation's shape and cost (`[gateway.demand_control]`).
    pub demand_control: DemandControlConfig,
    /// Automatic persisted queries and trusted documents (`[gateway.persisted_queries]`).
    pub persisted_queries: PersistedQueriesConfig,
    /// Subgraph replicas, balancing, health checks, retries, breakers, bulkheads
    /// (`[gateway.traffic]`).
    pub traffic: TrafficSettings,
    /// Which subgraph answers the gateway keeps (`[gateway.response_cache]`).
    pub response_cache: ResponseCacheSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// `local` (a directory; the default) or `s3`.
    pub backend: String,
    /// Directory for the `local` backend. Empty means `<data_dir>/blobs`.
    pub local_path: String,
    pub s3_bucket: String,
    /// An S3-compatible server's URL (empty: AWS).
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Keys under this prefix of the bucket (empty: the whole bucket).
    pub s3_prefix: String,
    /// Credentials; empty means the usual AWS environment (`AWS_ACCESS_KEY_ID`, ...,
    /// or an instance or pod role).
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    /// Largest file accepted, in bytes (at most 2 GiB - 1, GraphQL's `Int`).
    pub max_file_bytes: u64,
    /// What each workspace may store: bytes of all its files, and how many.
    pub quota_bytes: u64,
    pub quota_files: u64,
    /// How often the cleanup job (retention policies, abandoned staging blobs) runs;
    /// once per period across replicas.
    pub cleanup_interval_secs: u64,
    /// Lifetime of signed download URLs, in seconds.
    pub url_ttl_secs: u64,
    /// Base URL clients use to reach the storage service's HTTP endpoints
    /// (through the gateway in `flowfleet dev`). Empty means the service's own URL.
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Tasks a worker process runs at once: it starts at `min_concurrency` and grows
    /// towards `max_concurrency` while tasks wait, shrinking back when idle.
    pub min_concurrency: usize,
    #[serde(alias = "concurrency")]
    pub max_concurrency: usize,
    /// A running step's lease: a worker renews it every third of this; a step whose
    /// worker stopped renewing for this long is taken over by another worker.
    pub lease_ms: u64,
    /// Retry backoff: `retry_base_ms · 2^(attempt-1)`, capped at `retry_cap_ms`, half
    /// of it random (jitter).
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    /// On shutdown, how long in-flight steps may finish before they go back to the
    /// queue for another worker.
    pub shutdown_grace_ms: u64,
    /// How often a worker looks for steps whose task never reached the queue or
    /// whose worker died.
    pub sweep_interval_ms: u64,
    /// Where `flowfleet worker` serves `/metrics` and `/health`.
    pub host: String,
    pub metrics_port: u16,
    /// A step output whose JSON is larger than this is stored as a file (an artifact
    /// of the execution) and the step keeps a reference to it; the steps after it read
    /// the file back. `foreach` and `webhook_response` outputs always stay inline.
    pub max_inline_output_bytes: usize,
    /// The largest stored output a step reads back as its input.
    pub max_output_file_bytes: u64,
    /// How often a worker pool reports its slots, busy time, finished steps and the
    /// queue's backlog (`worker.sampled`, for analytics).
    pub sample_interval_ms: u64,
    /// Whether workers publish `step.finished` for every attempt they settle (analytics'
    /// node statistics come from it). Off saves one outbox row and one event per step;
    /// `scripts/bench execution --paired` measures the difference.
    pub step_events: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TriggersConfig {
    /// Whether this process's execution service runs the cron scheduler (one
    /// replica at a time holds its lease, whatever this says on the others).
    pub cron: bool,
    /// How often the scheduler looks for due schedules.
    pub cron_tick_ms: u64,
    /// The scheduler's lease: another replica takes over this long after the
    /// holder stopped renewing it.
    pub cron_lease_ms: u64,
    /// Webhook request bodies larger than this are refused (413).
    pub webhook_max_body_bytes: usize,
}

impl Default for TriggersConfig {
    fn default() -> Self {
        TriggersConfig {
            cron: true,
            cron_tick_ms: 1_000,
            cron_lease_ms: 10_000,
            webhook_max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalyticsConfig {
    /// Days minute rollups are kept (quarter-hour and day rollups are kept with the
    /// workspace); `MINUTE` buckets reach back this far.
    pub minute_rollup_days: i64,
    /// How often new facts are folded into rollups; dashboards lag facts by about this.
    pub roll_interval_ms: u64,
    /// Facts rolled per transaction.
    pub roll_batch: i64,
    /// Days raw facts (executions, step attempts) are kept; rollups outlive them.
    pub fact_days: i64,
    /// Days quarter-hour and day rollups, activity and recoveries are kept.
    pub rollup_days: i64,
    /// How often the retention cleanup runs (once per period across replicas).
    pub cleanup_interval_secs: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            minute_rollup_days: 3,
            roll_interval_ms: 1_000,
            roll_batch: 2_000,
            fact_days: 30,
            rollup_days: 400,
            cleanup_interval_secs: 3_600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationConfig {
    /// Internal addresses webhook and SMS channels may reach (as `http_request.allow`):
    /// CIDR networks or host names. Empty: only public addresses. SMTP relays are
    /// configured by admins and may be local, so they are not checked.
    pub allow: Vec<String>,
    /// Attempts of one delivery before it is `FAILED`.
    pub max_attempts: u32,
    /// The wait after a first failed attempt; it doubles (with jitter) up to the cap.
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    /// How long one attempt may take (connect, send, answer).
    pub timeout_ms: u64,
    /// Where people open the Studio: execution links in messages start with it.
    pub app_url: String,
    /// Deliveries one process sends at once.
    pub concurrency: u16,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            allow: Vec::new(),
            max_attempts: 5,
            retry_base_ms: 2_000,
            retry_cap_ms: 300_000,
            timeout_ms: 15_000,
            app_url: "http://127.0.0.1:4000".into(),
            concurrency: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpRequestConfig {
    /// Addresses `http_request` may reach although they are internal (loopback,
    /// private, link-local, CGNAT…): CIDR networks (`10.1.0.0/16`, `127.0.0.1/32`) or
    /// host names (`billing.internal`). Empty: only public addresses.
    pub allow: Vec<String>,
    /// Larger responses fail the step.
    pub max_response_bytes: usize,
    /// Redirects followed at most (each one checked like the first request).
    pub max_redirects: usize,
}

impl Default for HttpRequestConfig {
    fn default() -> Self {
        HttpRequestConfig {
            allow: Vec::new(),
            max_response_bytes: 10 * 1024 * 1024,
            max_redirects: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceEndpoint {
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    /// How other processes reach this service's GraphQL endpoint.
    pub http_url: String,
    /// How other processes reach this service's gRPC server.
    pub grpc_url: String,
    /// Overrides `database.url` for this service (e.g. a per-service role).
    pub database_url: String,
}

impl Default for Config {
    fn default() -> Self {
        let services = ServiceName::ALL
            .into_iter()
            .map(|s| (s, ServiceEndpoint::default_for(s)))
            .collect();
        Config {
            mode: Mode::Embedded,
            data_dir: PathBuf::from(".flowfleet"),
            database: DatabaseConfig::default(),
            amqp: AmqpConfig::default(),
            redis: RedisConfig::default(),
            telemetry: TelemetryConfig::default(),
            security: SecurityConfig::default(),
            gateway: GatewayConfig::default(),
            storage: StorageConfig::default(),
            worker: WorkerConfig::default(),
            http_request: HttpRequestConfig::default(),
            triggers: TriggersConfig::default(),
            notification: NotificationConfig::default(),
            analytics: AnalyticsConfig::default(),
            services,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "postgres://flowfleet:flowfleet@127.0.0.1:5432/flowfleet".into(),
            max_connections: 10,
            migrate_on_start: true,
        }
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "flowfleet.events".into(),
            prefetch: 32,
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: String::new(),
            log_format: "pretty".into(),
            log_level: "info".into(),
            trace_level: "info".into(),
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            jwt_issuer: "flowfleet".into(),
            jwt_audience: "flowfleet".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            signing_key_rotation_days: 30,
            login_max_failures: 5,
            login_max_failures_per_ip: 30,
            login_lockout_secs: 15 * 60,
            secret_keys: Vec::new(),
            active_secret_key: String::new(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            host: "127.0.0.1".into(),
            port: 4000,
            supergraph: String::new(),
            introspection: true,
            graphiql: true,
            max_batch_size: 32,
            upload_max_files: 10,
            upload_max_file_bytes: 50 * 1024 * 1024,
            max_request_bytes: 2 * 1024 * 1024,
            plan_cache_size: 1024,
            dedupe_subgraph_requests: true,
            reload_interval_ms: 5_000,
            h2c_subgraphs: Vec::new(),
            subgraph_ca_file: String::new(),
            server_timing: false,
            trusted_proxies: Vec::new(),
            subgraph_timeout_ms: 10_000,
            subgraph_urls: BTreeMap::new(),
            subscription_max_connections: 10_000,
            subscription_max_per_connection: 100,
            subscription_max_per_credential: 500,
            subscription_buffer: 64,
            subscription_heartbeat_ms: 10_000,
            subscription_recheck_ms: 60_000,
            rate_limits: RateLimitsConfig::default(),
            cors: CorsSettings::default(),
            demand_control: DemandControlConfig::default(),
            persisted_queries: PersistedQueriesConfig::default(),
            traffic: TrafficSettings::default(),
            response_cache: ResponseCacheSettings::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: "local".into(),
            local_path: String::new(),
            s3_bucket: String::new(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_prefix: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            max_file_bytes: 100 * 1024 * 1024,
            quota_bytes: 10 * 1024 * 1024 * 1024,
            quota_files: 100_000,
            cleanup_interval_secs: 3600,
            url_ttl_secs: 3600,
            public_url: String::new(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            min_concurrency: 2,
            max_concurrency: 16,
            lease_ms: 30_000,
            retry_base_ms: 1_000,
            retry_cap_ms: 300_000,
            shutdown_grace_ms: 10_000,
            sweep_interval_ms: 2_000,
            host: "127.0.0.1".into(),
            metrics_port: 9100,
            max_inline_output_bytes: 256 * 1024,
            max_output_file_bytes: 64 * 1024 * 1024,
            sample_interval_ms: 10_000,
            step_events: true,
        }
    }
}

impl ServiceEndpoint {
    pub fn default_for(s: ServiceName) -> Self {
        let (http_port, grpc_port) = (s.default_http_port(), s.default_grpc_port());
        ServiceEndpoint {
            host: "127.0.0.1".into(),
            http_port,
            grpc_port,
            http_url: String::new(),
            grpc_url: String::new(),
            database_url: String::new(),
        }
    }
}

impl Default for ServiceEndpoint {
    fn default() -> Self {
        ServiceEndpoint::default_for(ServiceName::Workflow)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then the TOML file (if given; it must exist), then
    /// `FLOWFLEET_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("FLOWFLEET_").split("__"));
        figment.extract().map_err(|e| ConfigError(e.to_string()))
    }

    /// The `FLOWFLEET_*` variables among `vars` that name no configuration key: a typo, or a
    /// key from another version. They are ignored when loading (as unknown keys are), so
    /// `flowfleet check` reports them. `FLOWFLEET_CONFIG` (the file's path) is the command
    /// line's, not a key.
    pub fn unknown_variables(&self, vars: impl IntoIterator<Item = String>) -> Vec<String> {
        let loaded = serde_json::to_value(self).expect("the configuration serializes");
        vars.into_iter()
            .filter(|name| name != "FLOWFLEET_CONFIG")
            .filter(|name| {
                let Some(key) = name.strip_prefix("FLOWFLEET_") else {
                    return false;
                };
                let mut at = &loaded;
                for part in key.to_lowercase().split("__") {
                    match at.get(part) {
                        Some(next) => at = next,
                        None => return true,
                    }
                }
                false
            })
            .collect()
    }

    /// Where a service listens and is reached. An endpoint overridden only partly
    /// (say, just its ports) derives its URLs from its host and ports.
    pub fn service(&self, s: ServiceName) -> ServiceEndpoint {
        let mut e = self
            .services
            .get(&s)
            .cloned()
            .unwrap_or_else(|| ServiceEndpoint::default_for(s));
        if e.http_url.is_empty() {
            e.http_url = format!("http://{}:{}", e.host, e.http_port);
        }
        if e.grpc_url.is_empty() {
            e.grpc_url = format!("http://{}:{}", e.host, e.grpc_port);
        }
        e
    }

    /// The database URL a service connects to in distributed mode.
    pub fn database_url_for(&self, s: ServiceName) -> String {
        let e = self.service(s);
        if e.database_url.is_empty() {
            self.database.url.clone()
        } else {
            e.database_url
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_a_file() {
        let c = Config::default();
        assert_eq!(c.mode, Mode::Embedded);
        assert_eq!(c.service(ServiceName::Storage).http_port, 8106);
        assert_eq!(c.service(ServiceName::Workflow).grpc_port, 9101);
    }

    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowfleet.toml");
        std::fs::write(
            &file,
            "mode = \"distributed\"\n[gateway]\nport = 5000\n[services.auth]\nhttp_port = 9999\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("FLOWFLEET_GATEWAY__PORT", "6000");
            let c = Config::load(Some(&file)).unwrap();
            assert_eq!(c.mode, Mode::Distributed);
            assert_eq!(c.gateway.port, 6000);
            assert_eq!(c.service(ServiceName::Auth).http_port, 9999);
            assert_eq!(
                c.service(ServiceName::Auth).http_url,
                "http://127.0.0.1:9999"
            );
            Ok(())
        });
    }

    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn variables_that_name_no_key_are_reported() {
        figment::Jail::expect_with(|jail| {
            let vars = [
                ("FLOWFLEET_GATEWAY__PORT", "6000"),
                ("FLOWFLEET_SERVICES__AUTH__HOST", "0.0.0.0"),
                ("FLOWFLEET_GATEWAY__TRAFFIC__RETRY_ATTEMPTS", "2"),
                ("FLOWFLEET_GATEWAY__PROT", "6001"),
                ("FLOWFLEET_SERVICES__AUTH__HOSTNAME", "x"),
                ("FLOWFLEET_NOPE", "1"),
                ("FLOWFLEET_CONFIG", "/etc/flowfleet.toml"),
            ];
            for (name, value) in vars {
                jail.set_env(name, value);
            }
            let c = Config::load(None).unwrap();
            assert_eq!(
                c.unknown_variables(vars.iter().map(|(name, _)| name.to_string())),
                [
                    "FLOWFLEET_GATEWAY__PROT",
                    "FLOWFLEET_SERVICES__AUTH__HOSTNAME",
                    "FLOWFLEET_NOPE"
                ]
            );
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = Config::load(Some(Path::new("/nonexistent/flowfleet.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
