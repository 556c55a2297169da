//! Test support for the service crates (feature `testing`, enabled only in
//! their dev-dependencies).
//!
//! [`Backend::all`] lists the backends a test should run against: the embedded
//! ones (SQLite, the in-process bus and cache) always, and the distributed ones
//! (PostgreSQL, RabbitMQ, Redis) when `scripts/test` started them and exported
//! `FLOWFLEET_TEST_{DATABASE,AMQP,REDIS}_URL`. [`Backend::start`] builds the
//! infrastructure through [`Infra::start`], the same path the binary takes, on
//! fresh resources (a new data directory, PostgreSQL database, exchange and
//! Redis key prefix), so tests running in parallel never see each other's data.
//! The distributed backend keeps files where production does, in an S3-compatible
//! bucket (the s3s-fs server `scripts/test` starts, `FLOWFLEET_TEST_S3_URL`), under a
//! fresh prefix; the embedded one in the data directory.
//!
//! Membership answers come from the real auth service (`flowfleet_auth::testing`, which
//! cannot live here: it depends on this crate).

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Infra;
use flowfleet_runtime::cache::MemoryCache;
use flowfleet_runtime::clock::SystemClock;
use flowfleet_runtime::config::Config;
use flowfleet_runtime::config::{Mode, ServiceName};
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::events::EventBus;
use flowfleet_security::identity::{DeferredJwks, TokenVerifier};

/// Infrastructure a test runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite files, the in-process bus and the in-memory cache.
    Embedded,
    /// PostgreSQL, RabbitMQ and Redis servers.
    Distributed {
        /// An administrative URL; each test creates its own database through it.
        database_url: String,
        amqp_url: String,
        redis_url: String,
        /// The S3 bucket files go to, when one was started.
        s3: Option<S3Bucket>,
    },
}

/// An S3-compatible bucket, from `FLOWFLEET_TEST_S3_URL`
/// (`http://<access key>:<secret>@<host:port>/<bucket>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Bucket {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Bucket {
    pub fn parse(url: &str) -> Option<S3Bucket> {
        let (scheme, rest) = url.split_once("://")?;
        let (credentials, rest) = rest.split_once('@')?;
        let (access_key_id, secret_access_key) = credentials.split_once(':')?;
        let (host, bucket) = rest.split_once('/')?;
        Some(S3Bucket {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.trim_end_matches('/').to_string(),
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
        })
    }

    /// The `FLOWFLEET_STORAGE__*` environment that points a `flowfleet` process at this
    /// bucket, under `prefix`.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("BACKEND", "s3"),
            ("S3_ENDPOINT", self.endpoint.as_str()),
            ("S3_BUCKET", self.bucket.as_str()),
            ("S3_ACCESS_KEY_ID", self.access_key_id.as_str()),
            ("S3_SECRET_ACCESS_KEY", self.secret_access_key.as_str()),
            ("S3_PREFIX", prefix),
        ]
        .into_iter()
        .map(|(key, value)| (format!("FLOWFLEET_STORAGE__{key}"), value.to_string()))
        .collect()
    }

    /// Points `config.storage` at this bucket, under `prefix`.
    pub fn configure(&self, config: &mut Config, prefix: &str) {
        config.storage.backend = "s3".into();
        config.storage.s3_endpoint = self.endpoint.clone();
        config.storage.s3_bucket = self.bucket.clone();
        config.storage.s3_access_key_id = self.access_key_id.clone();
        config.storage.s3_secret_access_key = self.secret_access_key.clone();
        config.storage.s3_prefix = prefix.to_string();
    }
}

impl Backend {
    /// Embedded, plus distributed when the servers' URLs are set. With
    /// `FLOWFLEET_TEST_REQUIRE_INFRA` set (as `scripts/test` does), missing URLs fail the test
    /// instead of silently testing one backend only.
    pub fn all() -> Vec<Backend> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let distributed = match (
            var("FLOWFLEET_TEST_DATABASE_URL"),
            var("FLOWFLEET_TEST_AMQP_URL"),
            var("FLOWFLEET_TEST_REDIS_URL"),
        ) {
            (Some(database_url), Some(amqp_url), Some(redis_url)) => {
                let s3 = var("FLOWFLEET_TEST_S3_URL").map(|url| {
                    S3Bucket::parse(&url).unwrap_or_else(|| {
                        panic!("FLOWFLEET_TEST_S3_URL `{url}` is not http://KEY:SECRET@HOST:PORT/BUCKET")
                    })
                });
                assert!(
                    s3.is_some() || var("FLOWFLEET_TEST_REQUIRE_INFRA").is_none(),
                    "FLOWFLEET_TEST_REQUIRE_INFRA is set but FLOWFLEET_TEST_S3_URL is missing; \
                     run the tests through scripts/test"
                );
                Some(Backend::Distributed {
                    database_url,
                    amqp_url,
                    redis_url,
                    s3,
                })
            }
            _ => {
                assert!(
                    var("FLOWFLEET_TEST_REQUIRE_INFRA").is_none(),
                    "FLOWFLEET_TEST_REQUIRE_INFRA is set but FLOWFLEET_TEST_DATABASE_URL, \
                     _AMQP_URL or _REDIS_URL is missing; run the tests through scripts/test"
                );
                eprintln!("distributed backends skipped: run through scripts/test to include them");
                None
            }
        };
        std::iter::once(Backend::Embedded)
            .chain(distributed)
            .collect()
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Distributed { .. } => "distributed",
        }
    }

    /// Fresh infrastructure on this backend (see the module docs).
    /// A configuration for this backend on a fresh data directory (and, distributed, a
    /// fresh database, exchange and Redis prefix), kept until the directory is dropped.
    pub async fn config(&self) -> (Config, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.database.migrate_on_start = true;
        // Test fleets send far more than a person would, from one address; the tests of
        // rate limits switch them on with the figures they need.
        config.gateway.rate_limits.enabled = false;
        if let Backend::Distributed {
            database_url,
            amqp_url,
            redis_url,
            s3,
        } = self
        {
            let unique = Uuid::now_v7().simple().to_string();
            config.mode = Mode::Distributed;
            config.database.url = fresh_database(database_url, &format!("t_{unique}")).await;
            config.database.max_connections = 4;
            config.amqp.url = amqp_url.clone();
            config.amqp.exchange = format!("t_{unique}");
            config.redis.url = redis_url.clone();
            config.redis.key_prefix = format!("t_{unique}:");
            config.security.secret_keys = vec![
                flowfleet_security::secrets::SecretKeyRing::generate_entry("test").expect("a key"),
            ];
            if let Some(bucket) = s3 {
                bucket.configure(&mut config, &format!("t_{unique}"));
            }
        }
        (config, dir)
    }

    pub async fn start(&self) -> TestInfra {
        let (config, dir) = self.config().await;
        let shutdown = CancellationToken::new();
        let infra = Infra::start(
            Arc::new(config),
            Arc::new(DeferredJwks::default()),
            shutdown.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("starting the {} infrastructure: {e:#}", self.name()));
        TestInfra {
            infra,
            _dir: dir,
            shutdown,
        }
    }
}

/// Creates database `name` through the administrative `url` and returns its URL.
pub async fn fresh_database(url: &str, name: &str) -> String {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .expect("connecting to FLOWFLEET_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("creating a test database");
    let _ = admin.close().await;
    let (base, _) = url
        .rsplit_once('/')
        .expect("a database URL ends in /<name>");
    format!("{base}/{name}")
}

/// Running test infrastructure; its background work stops when dropped.
pub struct TestInfra {
    pub infra: Infra,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl TestInfra {
    /// `service`'s database on this backend, migrated.
    pub async fn db(&self, service: ServiceName, migrations: &Migrations) -> Db {
        self.infra
            .db(service, migrations)
            .await
            .unwrap_or_else(|e| panic!("opening the {service} database: {e:#}"))
    }
}

impl Drop for TestInfra {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Embedded-mode infrastructure on `data_dir` with the given bus.
pub fn embedded_infra(data_dir: &Path, bus: Arc<dyn EventBus>) -> Infra {
    let config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    Infra {
        config: Arc::new(config),
        bus,
        queue: Arc::new(flowfleet_runtime::queue::memory::MemoryQueue::new()),
        cache: Arc::new(MemoryCache::default()),
        redis: None,
        clock: Arc::new(SystemClock),
        verifier: Arc::new(TokenVerifier::new(
            Arc::new(DeferredJwks::default()),
            "flowfleet",
            "flowfleet",
        )),
        secrets: Arc::new(
            flowfleet_security::secrets::SecretKeyRing::new(
                &[
                    flowfleet_security::secrets::SecretKeyRing::generate_entry("test")
                        .expect("a key"),
                ],
                None,
            )
            .expect("a key ring"),
        ),
        shutdown: CancellationToken::new(),
        readiness: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_the_endpoint_bucket_and_keys() {
        let b = S3Bucket::parse("http://ak:sk@127.0.0.1:58014/files").unwrap();
        assert_eq!(b.endpoint, "http://127.0.0.1:58014");
        assert_eq!(b.bucket, "files");
        assert_eq!(
            (b.access_key_id.as_str(), b.secret_access_key.as_str()),
            ("ak", "sk")
        );
        assert!(S3Bucket::parse("http://127.0.0.1:58014/files").is_none());
    }
}
