//! Calls the fleet makes to addresses users give it (the `http_request` node; webhook
//! notification channels): an HTTP client that connects only to addresses the SSRF
//! [`Guard`] accepts, checked after DNS resolution and again on every redirect, with no
//! proxy (a proxy would connect for us, past the guard).

mod guard;

use std::sync::Arc;
use std::time::Duration;

pub use guard::{forbidden, Guard, GuardedResolver};
use reqwest::redirect::Policy;

/// A client behind `guard`: names are checked by its resolver when it connects, literal
/// addresses by the redirect policy (and by [`check_url`] before the first request),
/// and at most `max_redirects` redirects are followed.
pub fn client(guard: Arc<Guard>, max_redirects: usize) -> reqwest::Result<reqwest::Client> {
    let redirect_guard = guard.clone();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver(guard)))
        .no_proxy()
        .user_agent(concat!("flowfleet/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .redirect(Policy::custom(move |attempt| {
            if attempt.previous().len() >= max_redirects {
                return attempt.error(format!("more than {max_redirects} redirects"));
            }
            // Names are checked by the resolver when connecting; literal addresses
            // never reach it, so they are checked here.
            match check_url(&redirect_guard, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        }))
        .build()
}

/// Refuses a URL whose host is a literal forbidden address (names are left to the
/// resolver), or that has no host.
pub fn check_url(guard: &Guard, url: &reqwest::Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err("the URL has no host".into()),
    };
    guard.check(url.host_str().unwrap_or_default(), ip)
}
