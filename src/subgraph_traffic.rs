//! `[gateway.traffic]` from configuration into the gateway's [`TrafficConfig`]: replicas of
//! each subgraph and how the gateway treats them (balancing, health checks, ejection,
//! retries, breakers, bulkheads).

use std::time::Duration;

use anyhow::Context as _;
use flowfleet_gateway::traffic::{
    Balance, BreakerConfig, BulkheadConfig, HealthChecks, OutlierConfig, ReplicaConfig,
    RetryPolicy, SubgraphTraffic, TrafficConfig,
};
use flowfleet_runtime::config::{Config, ServiceName};

pub fn traffic_config(config: &Config) -> anyhow::Result<TrafficConfig> {
    let settings = &config.gateway.traffic;
    let balance = |text: &str, key: &str| {
        Balance::parse(text).map_err(|reason| anyhow::anyhow!("{key}: {reason}"))
    };
    let mut subgraphs = std::collections::HashMap::new();
    for (name, own) in &settings.subgraphs {
        let key = format!("gateway.traffic.subgraphs.{name}");
        name.parse::<ServiceName>().map_err(|_| {
            anyhow::anyhow!(
                "{key}: there is no subgraph `{name}`; the fleet's are {}",
                ServiceName::ALL.map(|s| s.as_str()).join(", ")
            )
        })?;
        if !own.weights.is_empty() && own.weights.len() != own.urls.len() {
            anyhow::bail!(
                "{key}: {} weights for {} urls; give one weight per URL, or none",
                own.weights.len(),
                own.urls.len()
            );
        }
        let mut replicas = Vec::new();
        for (i, url) in own.urls.iter().enumerate() {
            reqwest::Url::parse(url).with_context(|| format!("{key}.urls: `{url}`"))?;
            replicas.push(ReplicaConfig {
                url: url.clone(),
                weight: own.weights.get(i).copied().unwrap_or(1).max(1),
            });
        }
        subgraphs.insert(
            name.clone(),
            SubgraphTraffic {
                replicas,
                balance: match own.balance.as_str() {
                    "" => None,
                    text => Some(balance(text, &format!("{key}.balance"))?),
                },
                timeout: (own.timeout_ms > 0).then(|| Duration::from_millis(own.timeout_ms)),
                bulkhead: (own.max_concurrent > 0 || own.max_queued > 0).then(|| BulkheadConfig {
                    max_concurrent: own.max_concurrent.max(1),
                    max_queued: own.max_queued,
                }),
            },
        );
    }
    Ok(TrafficConfig {
        balance: balance(&settings.balance, "gateway.traffic.balance")?,
        retries: RetryPolicy {
            attempts: settings.retry_attempts.max(1),
            budget_ratio: settings.retry_budget_ratio,
            budget_min_per_second: settings.retry_min_per_second,
        },
        breaker: BreakerConfig {
            failures: settings.breaker_failures,
            open_for: Duration::from_millis(settings.breaker_open_ms),
            probes: settings.breaker_probes.max(1),
        },
        bulkhead: BulkheadConfig {
            max_concurrent: settings.max_concurrent,
            max_queued: settings.max_queued,
        },
        health_checks: HealthChecks {
            interval: Duration::from_millis(settings.health_check_interval_ms),
            timeout: Duration::from_millis(settings.health_check_timeout_ms.max(1)),
            unhealthy_after: settings.unhealthy_after.max(1),
            healthy_after: settings.healthy_after.max(1),
        },
        outliers: OutlierConfig {
            consecutive_failures: settings.eject_after_failures,
            base_ejection: Duration::from_millis(settings.ejection_ms),
            max_ejection: Duration::from_millis(settings.max_ejection_ms.max(settings.ejection_ms)),
        },
        subgraphs,
    })
}

/// The URL the gateway reads `service`'s SDL from when it composes the supergraph, if the
/// configuration names one: its first replica, or its `gateway.subgraph_urls` entry.
/// A service with one is reached over HTTP even by `flowfleet dev`.
pub fn configured_url(config: &Config, service: ServiceName) -> Option<String> {
    let name = service.as_str();
    config
        .gateway
        .traffic
        .subgraphs
        .get(name)
        .and_then(|own| own.urls.first().cloned())
        .or_else(|| config.gateway.subgraph_urls.get(name).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowfleet_runtime::config::SubgraphTrafficSettings;

    /// The configuration examples of docs/gateway.md load and mean what they say.
    #[test]
    fn the_documented_examples_load() {
        let docs = include_str!("../docs/gateway.md");
        let examples: Vec<&str> = docs
            .split("```toml")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .collect();
        assert!(examples.len() >= 2, "the traffic and cache examples");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowfleet.toml");
        let dedented: Vec<String> = examples
            .iter()
            .flat_map(|example| example.lines().map(str::trim))
            .map(String::from)
            .collect();
        std::fs::write(&file, dedented.join("\n")).unwrap();
        let config = Config::load(Some(&file)).expect("the examples load");
        let traffic = traffic_config(&config).expect("a valid traffic section");
        let workflow = &traffic.subgraphs["workflow"];
        assert_eq!(workflow.replicas.len(), 2);
        assert_eq!(workflow.replicas[0].weight, 3);
        assert_eq!(workflow.balance, Some(Balance::Weighted));
        assert_eq!(workflow.timeout, Some(Duration::from_millis(5000)));
        let policy = &config.gateway.response_cache.policies["Query.nodeTypes"];
        assert_eq!(
            (policy.max_age_secs, policy.scope.as_str()),
            (300, "public")
        );
    }

    #[test]
    fn defaults_are_the_seeds_and_mistakes_are_named() {
        let mut config = Config::default();
        let traffic = traffic_config(&config).expect("defaults");
        assert_eq!(traffic.breaker.failures, 5);
        assert_eq!(traffic.breaker.open_for, Duration::from_secs(60));
        assert_eq!(traffic.breaker.probes, 3);
        assert_eq!(traffic.balance, Balance::RoundRobin);

        config.gateway.traffic.subgraphs.insert(
            "workflow".into(),
            SubgraphTrafficSettings {
                urls: vec!["http://a:1/graphql".into(), "http://b:1/graphql".into()],
                weights: vec![3, 1],
                balance: "consistent_hash:x-tenant".into(),
                ..Default::default()
            },
        );
        let traffic = traffic_config(&config).expect("replicas");
        let workflow = &traffic.subgraphs["workflow"];
        assert_eq!(workflow.replicas[0].weight, 3);
        assert_eq!(
            configured_url(&config, ServiceName::Workflow).as_deref(),
            Some("http://a:1/graphql")
        );

        config
            .gateway
            .traffic
            .subgraphs
            .get_mut("workflow")
            .unwrap()
            .weights = vec![1];
        let error = traffic_config(&config).unwrap_err().to_string();
        assert!(error.contains("1 weights for 2 urls"), "{error}");

        config.gateway.traffic.subgraphs.clear();
        config
            .gateway
            .traffic
            .subgraphs
            .insert("workflows".into(), Default::default());
        let error = traffic_config(&config).unwrap_err().to_string();
        assert!(error.contains("no subgraph `workflows`"), "{error}");

        config.gateway.traffic.subgraphs.clear();
        config.gateway.traffic.balance = "random".into();
        let error = traffic_config(&config).unwrap_err().to_string();
        assert!(error.contains("gateway.traffic.balance"), "{error}");
    }
}
