//! The gateway's protections at the edge, from configuration: rate limits, CORS, demand
//! control and persisted operations, with what replicas share kept in Redis
//! ([`crate::edge_redis`]) when the gateway runs distributed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flowfleet_gateway::cache::{CacheConfig, CachePolicy, CacheStore, Scope};
use flowfleet_gateway::demand::DemandControl;
use flowfleet_gateway::http::CorsConfig;
use flowfleet_gateway::persisted::{PersistedConfig, TrustedDocuments, TrustedMode};
use flowfleet_gateway::rate_limit::{RateLimitConfig, RateLimiter};
use flowfleet_runtime::config::{Config, Mode};

use crate::edge_redis::{RedisBuckets, RedisDocuments, RedisResponses, SharedRedis};

/// Whether a piece set to `store` (`auto`, `local`, `redis`) keeps its state in Redis.
fn in_redis(config: &Config, setting: &str, store: &str) -> anyhow::Result<bool> {
    let redis = match store {
        "local" => false,
        "redis" => true,
        "auto" => config.mode == Mode::Distributed && !config.redis.url.is_empty(),
        other => anyhow::bail!("{setting} is `{other}`; use `auto`, `local` or `redis`"),
    };
    if redis && config.redis.url.is_empty() {
        anyhow::bail!("{setting} is `redis` but redis.url is empty");
    }
    Ok(redis)
}

/// The gateway's edge, built once per gateway: the Redis connection is shared by the
/// pieces that use it.
pub struct Edge {
    pub rate_limiter: RateLimiter,
    pub response_cache: CacheConfig,
    pub cors: CorsConfig,
    pub demand: DemandControl,
    pub persisted: PersistedConfig,
}

impl Edge {
    pub fn from_config(config: &Config) -> anyhow::Result<Edge> {
        let mut redis: Option<SharedRedis> = None;
        let mut shared = || -> anyhow::Result<SharedRedis> {
            if let Some(redis) = &redis {
                return Ok(redis.clone());
            }
            let connected = SharedRedis::connect(&config.redis.url, &config.redis.key_prefix)?;
            redis = Some(connected.clone());
            Ok(connected)
        };
        let rate_limiter = {
            let settings = &config.gateway.rate_limits;
            let limits = limiter_config(config);
            if in_redis(config, "gateway.rate_limits.store", &settings.store)? {
                RateLimiter::shared(limits, Arc::new(RedisBuckets::new(shared()?)))
            } else {
                RateLimiter::local(limits)
            }
        };
        let persisted = {
            let settings = &config.gateway.persisted_queries;
            let trusted = match settings.manifest.as_str() {
                "" => None,
                path => Some(
                    TrustedDocuments::load(path).context("gateway.persisted_queries.manifest")?,
                ),
            };
            let mode = match settings.mode.as_str() {
                "allow" => TrustedMode::Allow,
                "enforce" if trusted.is_some() => TrustedMode::Enforce,
                "enforce" => anyhow::bail!(
                    "gateway.persisted_queries.mode is `enforce` but no manifest is set"
                ),
                other => anyhow::bail!(
                    "gateway.persisted_queries.mode is `{other}`; use `allow` or `enforce`"
                ),
            };
            let store = if settings.apq
                && in_redis(config, "gateway.persisted_queries.store", &settings.store)?
            {
                let ttl = Duration::from_secs(settings.apq_ttl_secs.max(1));
                Some(Arc::new(RedisDocuments::new(shared()?, ttl))
                    as Arc<dyn flowfleet_gateway::persisted::DocumentStore>)
            } else {
                None
            };
            PersistedConfig {
                apq: settings.apq,
                apq_cache_size: settings.apq_cache_size,
                store,
                trusted,
                mode,
                ..PersistedConfig::default()
            }
        };
        let response_cache = {
            let settings = &config.gateway.response_cache;
            let mut policies = std::collections::HashMap::new();
            if settings.enabled {
                for (name, policy) in &settings.policies {
                    let scope = match policy.scope.as_str() {
                        "public" => Scope::Public,
                        "private" => Scope::Private,
                        other => anyhow::bail!(
                            "gateway.response_cache.policies.\"{name}\".scope is `{other}`; use `public` or `private`"
                        ),
                    };
                    if policy.max_age_secs > 0 {
                        let max_age = Duration::from_secs(policy.max_age_secs);
                        policies.insert(name.clone(), CachePolicy { max_age, scope });
                    }
                }
            }
            let store = if settings.enabled
                && in_redis(config, "gateway.response_cache.store", &settings.store)?
            {
                Some(Arc::new(RedisResponses::new(shared()?)) as Arc<dyn CacheStore>)
            } else {
                None
            };
            CacheConfig {
                policies,
                max_entries: settings.max_entries,
                store,
                store_timeout: Duration::from_millis(settings.store_timeout_ms.max(1)),
            }
        };
        Ok(Edge {
            response_cache,
            rate_limiter,
            cors: cors(&config.gateway.cors)?,
            demand: demand(&config.gateway.demand_control),
            persisted,
        })
    }
}

/// The rate limits `config` asks for, in its mode.
fn limiter_config(config: &Config) -> RateLimitConfig {
    use flowfleet_gateway::rate_limit::Rate;
    let settings = &config.gateway.rate_limits;
    let limits = settings.effective(config.mode);
    RateLimitConfig {
        global: limits.global_per_second.map(Rate::per_second),
        per_address: limits.per_address_per_second.map(Rate::per_second),
        per_user: limits.per_user_per_minute.map(Rate::per_minute),
        per_api_key: limits.per_api_key_per_minute.map(Rate::per_minute),
        burst: settings.burst.max(1.0),
        operation_weights: settings
            .operation_weights
            .iter()
            .map(|(name, weight)| (name.clone(), *weight))
            .collect(),
        store_timeout: Duration::from_millis(settings.store_timeout_ms.max(1)),
    }
}

/// The gateway's demand control; `0` switches a limit off.
fn demand(settings: &flowfleet_runtime::config::DemandControlConfig) -> DemandControl {
    let limit = |n: usize| (n > 0).then_some(n);
    DemandControl {
        max_tokens: limit(settings.max_tokens),
        max_depth: limit(settings.max_depth),
        max_aliases: limit(settings.max_aliases),
        max_root_fields: limit(settings.max_root_fields),
        max_directives: limit(settings.max_directives),
        max_cost: (settings.max_cost > 0).then_some(settings.max_cost as f64),
        default_list_size: settings.default_list_size.max(1) as f64,
    }
}

/// The gateway's CORS configuration, checked.
fn cors(settings: &flowfleet_runtime::config::CorsSettings) -> anyhow::Result<CorsConfig> {
    let mut cors = CorsConfig {
        allow_origins: settings.allow_origins.clone(),
        allow_credentials: settings.allow_credentials,
        ..CorsConfig::default()
    };
    cors.allow_headers
        .extend(settings.extra_allow_headers.iter().cloned());
    if settings.max_age_secs > 0 {
        cors.max_age = std::time::Duration::from_secs(settings.max_age_secs);
    }
    cors.validate().context("gateway.cors")?;
    Ok(cors)
}

/// Reloads the gateway's trusted documents when their file changes (every
/// `gateway.persisted_queries.manifest_reload_ms`), until `shutdown`.
pub fn watch_trusted_documents(
    gateway: &flowfleet_gateway::Gateway,
    config: &Config,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let every = config.gateway.persisted_queries.manifest_reload_ms;
    if let (Some(trusted), true) = (gateway.trusted_documents(), every > 0) {
        tokio::spawn(flowfleet_gateway::persisted::watch_manifest(
            trusted,
            Duration::from_millis(every),
            shutdown.cancelled_owned(),
        ));
    }
}
