//! The guard against server-side request forgery: a workflow author (through the
//! `http_request` node) or a workspace admin (through a webhook channel's URL) must not
//! be able to make the fleet call its own internals (databases, brokers, the cloud's
//! metadata service) on their behalf.
//!
//! Every address a request would connect to is checked *after* DNS resolution (the
//! client connects only to the addresses checked, so a name that resolves to a
//! public address for the check and a private one for the connection cannot slip
//! through), and again for every redirect. Refused: loopback, unspecified, private
//! (RFC 1918, IPv6 unique-local), link-local (which holds the metadata service),
//! carrier-grade NAT, multicast and broadcast, reserved and documentation ranges,
//! and IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64), which
//! would otherwise smuggle any of the above. A configured allow-list (such as
//! `http_request.allow`) exempts networks or host names on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an address is refused, in words for the step's error.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let ranges: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "an unspecified address"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([100, 64, 0, 0], 10, "a carrier-grade NAT address"),
        ([169, 254, 169, 254], 32, "the cloud metadata address"),
        ([169, 254, 0, 0], 16, "a link-local address"),
        ([192, 0, 0, 0], 24, "a reserved address"),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([255, 255, 255, 255], 32, "the broadcast address"),
        ([240, 0, 0, 0], 4, "a reserved address"),
    ];
    ranges
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.to_ipv4_mapped().is_some() {
        return Some("an IPv4-mapped IPv6 address");
    }
    if s[..6] == [0; 6] {
        return Some("an IPv4-compatible IPv6 address");
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        return Some("a NAT64 address (it embeds an IPv4 address)");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("a private (unique-local) address");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("a link-local address");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("a multicast address");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("a documentation address");
    }
    None
}

/// The allow-list and the check.
#[derive(Debug)]
pub struct Guard {
    networks: Vec<IpNet>,
    hosts: Vec<String>,
    /// The configuration key of the allow-list, named in refusals so operators know
    /// where to exempt an address.
    setting: &'static str,
}

impl Guard {
    /// From `http_request.allow`: CIDR networks or host names.
    pub fn new(allow: &[String], setting: &'static str) -> Result<Guard, String> {
        let mut guard = Guard {
            networks: Vec::new(),
            hosts: Vec::new(),
            setting,
        };
        for entry in allow {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                guard.networks.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                guard.networks.push(IpNet::from(ip));
            } else if !entry.is_empty() && !entry.contains('/') {
                guard
                    .hosts
                    .push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "{setting}: `{entry}` is neither a network (10.0.0.0/8) nor a host name"
                ));
            }
        }
        Ok(guard)
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// `Ok` when `ip` may be reached for `host`, else the reason.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if self.host_allowed(host) || self.networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match forbidden(ip) {
            None => Ok(()),
            Some(why) => Err(format!(
                "refused to reach `{host}`: {ip} is {why}; internal addresses are blocked unless \
                 listed in {}",
                self.setting
            )),
        }
    }
}

/// The client's resolver: resolves, then refuses the whole name if any address it
/// resolves to is forbidden.
pub struct GuardedResolver(pub Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?
                .collect();
            for a in &addrs {
                guard
                    .check(&host, a.ip())
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_of_internal_addresses_is_refused() {
        let guard = Guard::new(&[], "http_request.allow").unwrap();
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "169.254.10.10",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.2.5",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            let err = guard.check("h", addr).expect_err(ip);
            assert!(err.contains(ip) || err.contains(&addr.to_string()), "{err}");
            assert!(err.contains("http_request.allow"), "{err}");
        }
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert_eq!(guard.check("h", ip.parse().unwrap()), Ok(()), "{ip}");
        }
    }

    #[test]
    fn the_allow_list_exempts_networks_and_names() {
        let guard = Guard::new(
            &[
                "127.0.0.1/32".into(),
                "10.0.0.0/8".into(),
                "Billing.Internal.".into(),
            ],
            "http_request.allow",
        )
        .unwrap();
        assert_eq!(guard.check("x", "127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(guard.check("x", "10.9.9.9".parse().unwrap()), Ok(()));
        assert!(guard.check("x", "127.0.0.2".parse().unwrap()).is_err());
        assert_eq!(
            guard.check("billing.internal", "192.168.0.1".parse().unwrap()),
            Ok(())
        );
        assert!(Guard::new(&["10.0.0.0/99".into()], "http_request.allow").is_err());
    }
}
