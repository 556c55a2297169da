//! Limits on open subscriptions and streaming connections.
//!
//! Why counters with guards: every way a subscription or connection ends (the client
//! leaves, the upstream ends, the credential expires, the gateway shuts down, the task
//! panics) drops its guard, so a count can never leak upward and lock people out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{GraphQLError, RequestError};

/// How many subscriptions and streaming connections the gateway accepts.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionLimits {
    /// Open streaming connections (WebSocket, SSE, multipart) in this gateway.
    pub max_connections: usize,
    /// Subscriptions running at once on one WebSocket.
    pub max_per_connection: usize,
    /// Subscriptions one credential (one `Authorization` value) holds open across all its
    /// connections to this gateway. Anonymous subscriptions count only toward the total.
    pub max_per_credential: usize,
}

impl Default for SubscriptionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_per_connection: 100,
            max_per_credential: 500,
        }
    }
}

/// Code of every refusal by a limit.
pub const LIMIT_REACHED: &str = "SUBSCRIPTION_LIMIT_REACHED";

#[derive(Default)]
struct Counts {
    connections: usize,
    per_credential: HashMap<String, usize>,
}

#[derive(Clone)]
pub(crate) struct Limiter {
    limits: SubscriptionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// Held while a streaming connection is open.
pub(crate) struct ConnectionPermit {
    counts: Arc<Mutex<Counts>>,
    _measured: crate::measure::InFlight,
}

/// Held while a subscription of a credential is open.
pub(crate) struct CredentialPermit {
    counts: Arc<Mutex<Counts>>,
    credential: Option<String>,
}

impl Limiter {
    pub fn new(limits: SubscriptionLimits) -> Self {
        Self {
            limits,
            counts: Arc::default(),
        }
    }

    pub fn limits(&self) -> SubscriptionLimits {
        self.limits
    }

    pub fn connect(&self) -> Result<ConnectionPermit, RequestError> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.connections >= self.limits.max_connections {
            return Err(RequestError::Refused(
                http::StatusCode::SERVICE_UNAVAILABLE,
                limit_error(format!(
                    "This gateway already has {} streaming connections open, its limit; \
                     try again later.",
                    counts.connections
                )),
            ));
        }
        counts.connections += 1;
        Ok(ConnectionPermit {
            counts: self.counts.clone(),
            _measured: crate::measure::InFlight::streaming_connections(),
        })
    }

    /// Admits one more subscription of `credential` (the `Authorization` value).
    pub fn subscribe(&self, credential: Option<&str>) -> Result<CredentialPermit, GraphQLError> {
        let Some(credential) = credential else {
            return Ok(CredentialPermit {
                counts: self.counts.clone(),
                credential: None,
            });
        };
        let key = credential_key(credential);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = counts.per_credential.entry(key.clone()).or_default();
        if *held >= self.limits.max_per_credential {
            return Err(limit_error(format!(
                "This credential already holds {held} open subscriptions, the limit is {}; \
                 complete some before starting more.",
                self.limits.max_per_credential
            )));
        }
        *held += 1;
        Ok(CredentialPermit {
            counts: self.counts.clone(),
            credential: Some(key),
        })
    }

    #[cfg(test)]
    pub fn open_connections(&self) -> usize {
        self.counts.lock().map(|c| c.connections).unwrap_or(0)
    }
}

/// Credentials are counted by hash: the table never holds a usable token.
fn credential_key(credential: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    credential.hash(&mut hasher);
    format!("{:016x}{}", hasher.finish(), credential.len())
}

pub(crate) fn limit_error(message: String) -> GraphQLError {
    GraphQLError::new(message).with_code(LIMIT_REACHED)
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.connections = counts.connections.saturating_sub(1);
    }
}

impl Drop for CredentialPermit {
    fn drop(&mut self) {
        let Some(key) = &self.credential else {
            return;
        };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = counts.per_credential.get_mut(key) {
            *held -= 1;
            if *held == 0 {
                counts.per_credential.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_while_held_and_free_on_drop() {
        let limiter = Limiter::new(SubscriptionLimits {
            max_connections: 1,
            max_per_connection: 1,
            max_per_credential: 2,
        });
        let connection = limiter.connect().expect("first connection");
        assert!(limiter.connect().is_err(), "one connection at most");
        drop(connection);
        assert_eq!(limiter.open_connections(), 0);
        let _again = limiter.connect().expect("room after the first closed");

        let a = limiter.subscribe(Some("Bearer a")).expect("1st");
        let _b = limiter.subscribe(Some("Bearer a")).expect("2nd");
        let refused = limiter
            .subscribe(Some("Bearer a"))
            .err()
            .expect("3rd refused");
        assert_eq!(refused.code(), Some(LIMIT_REACHED));
        assert!(
            refused.message.contains("already holds 2"),
            "{}",
            refused.message
        );
        let _other = limiter
            .subscribe(Some("Bearer b"))
            .expect("another credential has its own count");
        let _anonymous = limiter.subscribe(None).expect("anonymous: total only");
        drop(a);
        limiter
            .subscribe(Some("Bearer a"))
            .expect("room after one ended");
    }
}
