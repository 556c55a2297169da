//! Which network address a request comes from, decided once at the edge.
//!
//! The gateway takes the TCP peer's address. When that peer is a configured trusted proxy
//! (`gateway.trusted_proxies`: the Ingress controller, a load balancer), it takes instead
//! the nearest address in `X-Forwarded-For` that is not itself a trusted proxy, reading
//! from the right: entries further left were written by whoever sent the request and
//! prove nothing. From any other peer `X-Forwarded-For` is ignored.
//!
//! The address travels to the subgraphs in [`CLIENT_ADDRESS_HEADER`], sealed with the
//! fleet's secret key ring for a minute, and whatever a client put in that header is
//! removed first: a service acts on an address only if the gateway vouched for it (per-IP
//! sign-in throttling, the audit log). Without a key ring (a gateway configured without
//! `security.secret_keys`) no address is passed on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use flowfleet_security::secrets::SecretKeyRing;
use flowfleet_security::service_auth::{seal_client_address, CLIENT_ADDRESS_HEADER};
use ipnet::IpNet;

/// How the edge attributes requests.
#[derive(Clone)]
pub struct ClientAddresses {
    trusted: Arc<Vec<IpNet>>,
    ring: Option<Arc<SecretKeyRing>>,
    /// Sealed values per address, reused for half their lifetime so that requests from one
    /// address carry identical headers (and can share deduplicated subgraph fetches).
    sealed: moka::sync::Cache<IpAddr, String>,
}

impl ClientAddresses {
    /// `trusted` entries are IP addresses or CIDR ranges.
    pub fn new(trusted: &[String], ring: Option<Arc<SecretKeyRing>>) -> anyhow::Result<Self> {
        let trusted = trusted
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "gateway.trusted_proxies: `{entry}` is not an IP address or CIDR range"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ClientAddresses {
            trusted: Arc::new(trusted),
            ring,
            sealed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        })
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` carrying `forwarded_for`.
    pub fn resolve(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for value in forwarded_for.iter().rev() {
            for entry in value.rsplit(',') {
                let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                    // Garbage from here on was written by someone we do not trust.
                    return client;
                };
                client = canonical(ip);
                if !self.trusted(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client has one address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl ClientAddresses {
    /// Decides `request`'s client address, passes it on sealed after removing whatever the
    /// client put in its place, and returns it (for rate limits).
    pub fn attribute(&self, request: &mut Request) -> Option<IpAddr> {
        let headers = request.headers_mut();
        headers.remove(CLIENT_ADDRESS_HEADER);
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())?;
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = self.resolve(peer, &forwarded);
        let Some(ring) = &self.ring else {
            return Some(client);
        };
        let sealed = self.sealed.get(&client).or_else(|| {
            let sealed = seal_client_address(ring, client)?;
            self.sealed.insert(client, sealed.clone());
            Some(sealed)
        });
        if let Some(value) = sealed.and_then(|s| http::HeaderValue::from_str(&s).ok()) {
            request.headers_mut().insert(CLIENT_ADDRESS_HEADER, value);
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let edge = ClientAddresses::new(&["10.0.0.0/8".into(), "192.0.2.1".into()], None).unwrap();
        // A client talking to us directly cannot choose its address.
        assert_eq!(
            edge.resolve(ip("198.51.100.7"), &["1.2.3.4"]),
            ip("198.51.100.7")
        );
        // Through the trusted proxy: the address it appended.
        assert_eq!(
            edge.resolve(ip("10.1.2.3"), &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        // A client that forges entries before the proxy appends its own: the nearest
        // untrusted entry wins, the forged ones are ignored.
        assert_eq!(
            edge.resolve(ip("10.1.2.3"), &["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        // Chains of trusted proxies are walked through, across header lines.
        assert_eq!(
            edge.resolve(ip("10.1.2.3"), &["198.51.100.7", "192.0.2.1, 10.9.9.9"]),
            ip("198.51.100.7")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            edge.resolve(ip("10.1.2.3"), &["nonsense, 10.4.4.4"]),
            ip("10.4.4.4")
        );
        // Mapped IPv6 is the IPv4 address.
        assert_eq!(
            edge.resolve(ip("::ffff:198.51.100.7"), &[]),
            ip("198.51.100.7")
        );
        assert_eq!(
            edge.resolve(ip("::ffff:10.0.0.1"), &["198.51.100.8"]),
            ip("198.51.100.8")
        );
        assert!(ClientAddresses::new(&["not an address".into()], None).is_err());
    }
}
