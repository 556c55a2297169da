//! The gateway's protections at the edge, configured under `[gateway.rate_limits]`.
//!
//! Limits left unset take their mode's default: a distributed gateway is the public edge
//! of a fleet (the seed's figures: 10 000 requests/s overall, 100/s per client address,
//! 1 000/min per user and per API key, each with a burst of twice that), while
//! `flowfleet dev` serves one person with many tabs behind one address, so its address
//! and user limits are ten times higher. `0` switches a limit off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Mode;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RateLimitsConfig {
    /// `false` switches every rate limit off.
    pub enabled: bool,
    /// Requests per second through all of the gateway's replicas together.
    pub global_per_second: Option<u64>,
    /// Requests per second from one client address.
    pub per_address_per_second: Option<u64>,
    /// Requests per minute from one signed-in person, whatever their address.
    pub per_user_per_minute: Option<u64>,
    /// Requests per minute made with one API key.
    pub per_api_key_per_minute: Option<u64>,
    /// Each bucket holds this many periods' worth of requests.
    pub burst: f64,
    /// Where the buckets live: `auto` (Redis when the gateway runs distributed with
    /// `redis.url` set, this process otherwise), `local` or `redis`.
    pub store: String,
    /// How long Redis may take to answer before a request is checked against this
    /// process's buckets instead (also the fallback when Redis is unreachable).
    pub store_timeout_ms: u64,
    /// Operation name -> how many requests one such operation counts as (default 1).
    pub operation_weights: BTreeMap<String, u32>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            enabled: true,
            global_per_second: None,
            per_address_per_second: None,
            per_user_per_minute: None,
            per_api_key_per_minute: None,
            burst: 2.0,
            store: "auto".into(),
            store_timeout_ms: 50,
            operation_weights: BTreeMap::new(),
        }
    }
}

/// The limits in force: requests per second, per second, per minute, per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveRateLimits {
    pub global_per_second: Option<u64>,
    pub per_address_per_second: Option<u64>,
    pub per_user_per_minute: Option<u64>,
    pub per_api_key_per_minute: Option<u64>,
}

impl RateLimitsConfig {
    /// The limits in force in `mode`: what is set, the mode's default for what is not,
    /// and nothing for what is `0` (or everything when `enabled` is false).
    pub fn effective(&self, mode: Mode) -> EffectiveRateLimits {
        let scale = match mode {
            Mode::Embedded => 10,
            Mode::Distributed => 1,
        };
        let pick = |set: Option<u64>, default: u64| {
            if !self.enabled {
                return None;
            }
            Some(set.unwrap_or(default)).filter(|n| *n > 0)
        };
        EffectiveRateLimits {
            global_per_second: pick(self.global_per_second, 10_000),
            per_address_per_second: pick(self.per_address_per_second, 100 * scale),
            per_user_per_minute: pick(self.per_user_per_minute, 1_000 * scale),
            per_api_key_per_minute: pick(self.per_api_key_per_minute, 1_000 * scale),
        }
    }
}

/// Which other origins' pages may call the gateway (`[gateway.cors]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct CorsSettings {
    /// Origins such as `https://studio.example.com`; `*` for any (not with credentials).
    /// Empty (the default): only pages served by the gateway itself.
    pub allow_origins: Vec<String>,
    /// Whether those pages may send credentials (cookies, `Authorization`).
    pub allow_credentials: bool,
    /// Request headers allowed besides the defaults (`content-type`, `authorization`,
    /// the trace and preflight headers).
    pub extra_allow_headers: Vec<String>,
    /// How long browsers keep a preflight answer, in seconds (0: the default, 600).
    pub max_age_secs: u64,
}

/// Limits on an operation's shape and cost, checked before planning
/// (`[gateway.demand_control]`). `0` switches one limit off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DemandControlConfig {
    /// Lexical tokens in the operation's text (counted before it is parsed).
    pub max_tokens: usize,
    /// Levels of nested fields (a root field is level 1).
    pub max_depth: usize,
    /// Fields selected under another name.
    pub max_aliases: usize,
    /// Fields selected on the root type.
    pub max_root_fields: usize,
    /// Directives used in the operation.
    pub max_directives: usize,
    /// The most estimated cost (`@cost`, `@listSize`) an operation may have; 0 (the
    /// default) only reports costs to clients that ask.
    pub max_cost: u64,
    /// The size assumed for a list field without `@listSize`.
    pub default_list_size: u64,
}

impl Default for DemandControlConfig {
    fn default() -> Self {
        // Above what the fleet's clients send (graphql-js's introspection query, which
        // GraphiQL sends, is 15 levels deep); an operation past them is refused before it
        // is validated or planned.
        DemandControlConfig {
            max_tokens: 15_000,
            max_depth: 24,
            max_aliases: 100,
            max_root_fields: 50,
            max_directives: 50,
            max_cost: 0,
            default_list_size: 10,
        }
    }
}

/// Automatic persisted queries and trusted documents (`[gateway.persisted_queries]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PersistedQueriesConfig {
    /// Accept automatic persisted queries (Apollo's `persistedQuery` extension).
    pub apq: bool,
    /// APQ texts kept in each gateway process.
    pub apq_cache_size: u64,
    /// How long a registered APQ text stays in Redis after it was last registered.
    pub apq_ttl_secs: u64,
    /// Where APQ texts are shared: `auto` (Redis when distributed with `redis.url`),
    /// `local` or `redis`.
    pub store: String,
    /// A trusted documents manifest (Apollo's persisted query manifest, or a JSON map of
    /// SHA-256 to text); empty: none.
    pub manifest: String,
    /// `allow`: listed operations may be sent by hash, others run too; `enforce`: only
    /// listed operations run (needs `manifest`).
    pub mode: String,
    /// How often the manifest file is checked for changes; 0 disables reloading.
    pub manifest_reload_ms: u64,
}

impl Default for PersistedQueriesConfig {
    fn default() -> Self {
        PersistedQueriesConfig {
            apq: true,
            apq_cache_size: 10_000,
            apq_ttl_secs: 86_400,
            store: "auto".into(),
            manifest: String::new(),
            mode: "allow".into(),
            manifest_reload_ms: 5_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_are_ten_times_the_distributed_ones_per_address_and_user() {
        let config = RateLimitsConfig::default();
        let distributed = config.effective(Mode::Distributed);
        assert_eq!(distributed.global_per_second, Some(10_000));
        assert_eq!(distributed.per_address_per_second, Some(100));
        assert_eq!(distributed.per_user_per_minute, Some(1_000));
        let dev = config.effective(Mode::Embedded);
        assert_eq!(dev.global_per_second, Some(10_000));
        assert_eq!(dev.per_address_per_second, Some(1_000));
        assert_eq!(dev.per_user_per_minute, Some(10_000));
    }

    #[test]
    fn zero_switches_one_limit_off_and_enabled_false_all() {
        let config = RateLimitsConfig {
            per_address_per_second: Some(0),
            per_user_per_minute: Some(5),
            ..RateLimitsConfig::default()
        };
        let limits = config.effective(Mode::Distributed);
        assert_eq!(limits.per_address_per_second, None);
        assert_eq!(limits.per_user_per_minute, Some(5));
        let off = RateLimitsConfig {
            enabled: false,
            ..config
        };
        assert_eq!(off.effective(Mode::Embedded).global_per_second, None);
    }
}
