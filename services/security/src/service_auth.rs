//! Who is calling a gRPC method, and how services vouch for themselves.
//!
//! Every gRPC call carries a credential in its `authorization` metadata, and every method
//! verifies it through [`GrpcGuard`] before it reads or changes anything:
//!
//! - A call made while serving a user's request carries that user's own credential (their
//!   access token or API key), taken from the request being served
//!   ([`flowfleet_runtime::grpc::acting_for`]). The receiving service verifies it exactly as its
//!   subgraph would and authorizes them ([`crate::access::Access::authorize`], which a
//!   [`GrpcCaller`] converts into), so a service cannot be used to reach what the user could
//!   not reach directly.
//! - Work that no user is waiting on (a worker running a step, an event handler) carries a
//!   *service credential*: the service's name and an expiry, sealed with the fleet's secret
//!   key ring ([`crate::secrets`]). Only holders of the ring can make one, and it expires
//!   within minutes, so a leaked one is short-lived. Methods decide which of their callers
//!   may be services.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::Principal;
use crate::identity::{Identity, TokenVerifier};
use crate::secrets::SecretKeyRing;
use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::ApiError;

/// Service credentials start with this.
pub const SERVICE_CREDENTIAL_PREFIX: &str = "ffs_";
/// Bound into every sealed credential, so no other sealed value can pass for one.
const CONTEXT: &str = "flowfleet service credential v1";
const LIFETIME_MS: i64 = 5 * 60 * 1000;
/// A cached credential is replaced this long before it expires.
const RENEW_BEFORE_MS: i64 = 60 * 1000;

/// Credentials and addresses expire by wall-clock time, whatever clock the services use.
fn now_ms() -> i64 {
    flowfleet_runtime::clock::SystemClock.now_ms()
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    service: String,
    expires_at_ms: i64,
}

/// Makes this process's service credential (cached until shortly before it expires).
#[derive(Clone)]
pub struct ServiceCredentials {
    ring: Arc<SecretKeyRing>,
    service: String,
    cached: Arc<Mutex<Option<(String, i64)>>>,
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCredentials")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl flowfleet_runtime::grpc::CallCredentials for ServiceCredentials {
    fn credential(&self) -> Option<String> {
        ServiceCredentials::credential(self)
    }
}

impl ServiceCredentials {
    pub fn new(ring: Arc<SecretKeyRing>, service: &str) -> Self {
        ServiceCredentials {
            ring,
            service: service.to_string(),
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// The current credential, or `None` if sealing failed (logged; the call then goes
    /// out without one and is refused by the receiver).
    pub fn credential(&self) -> Option<String> {
        let now = now_ms();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((credential, expires)) = &*cached {
            if *expires - RENEW_BEFORE_MS > now {
                return Some(credential.clone());
            }
        }
        let expires_at_ms = now + LIFETIME_MS;
        let body = serde_json::to_vec(&Sealed {
            service: self.service.clone(),
            expires_at_ms,
        })
        .ok()?;
        match self.ring.seal(&body, CONTEXT) {
            Ok(sealed) => {
                let credential = format!("{SERVICE_CREDENTIAL_PREFIX}{sealed}");
                *cached = Some((credential.clone(), expires_at_ms));
                Some(credential)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot seal a service credential");
                None
            }
        }
    }
}

/// The service a credential names, if it was sealed by this fleet and has not expired.
pub fn verify_service_credential(
    ring: &SecretKeyRing,
    credential: &str,
) -> Result<String, ApiError> {
    let invalid = || ApiError::unauthenticated("the service credential is not valid");
    let sealed = credential
        .strip_prefix(SERVICE_CREDENTIAL_PREFIX)
        .ok_or_else(invalid)?;
    let body = ring.open(sealed, CONTEXT).map_err(|_| invalid())?;
    let body: Sealed = serde_json::from_slice(&body).map_err(|_| invalid())?;
    if body.expires_at_ms <= now_ms() {
        return Err(ApiError::unauthenticated(
            "the service credential has expired",
        ));
    }
    Ok(body.service)
}

/// Bound into sealed client addresses.
const CLIENT_CONTEXT: &str = "flowfleet client address v1";
/// How long a sealed client address is accepted.
const CLIENT_ADDRESS_LIFETIME_MS: i64 = 60_000;

/// The header the gateway puts the client's address in, sealed, so that services behind it
/// can throttle and audit by address without trusting anything a client could write.
pub const CLIENT_ADDRESS_HEADER: &str = "x-flowfleet-client";

/// The client's network address, as the gateway determined it and vouched for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

#[derive(Serialize, Deserialize)]
struct SealedAddress {
    ip: std::net::IpAddr,
    expires_at_ms: i64,
}

/// Seals `ip` for [`CLIENT_ADDRESS_HEADER`]; valid for a minute.
pub fn seal_client_address(ring: &SecretKeyRing, ip: std::net::IpAddr) -> Option<String> {
    let body = serde_json::to_vec(&SealedAddress {
        ip,
        expires_at_ms: now_ms() + CLIENT_ADDRESS_LIFETIME_MS,
    })
    .ok()?;
    ring.seal(&body, CLIENT_CONTEXT).ok()
}

/// The address in a sealed header value, if this fleet sealed it and it has not expired.
pub fn open_client_address(ring: &SecretKeyRing, value: &str) -> Option<ClientAddress> {
    let body = ring.open(value, CLIENT_CONTEXT).ok()?;
    let sealed: SealedAddress = serde_json::from_slice(&body).ok()?;
    (sealed.expires_at_ms > now_ms()).then_some(ClientAddress(sealed.ip))
}

/// A verified gRPC caller.
#[derive(Debug, Clone)]
pub enum GrpcCaller {
    /// A fleet service acting on its own behalf.
    Service(String),
    /// A user (or an API key) whose request a service is serving.
    User(Identity),
}

impl<'a> From<&'a GrpcCaller> for Principal<'a> {
    fn from(caller: &'a GrpcCaller) -> Self {
        match caller {
            GrpcCaller::Service(name) => Principal::Service(name),
            GrpcCaller::User(identity) => Principal::User(identity),
        }
    }
}

impl GrpcCaller {
    /// Services pass; a person only when asking about themself, in a session (an API key
    /// reaches one workspace, not its creator's account).
    pub fn require_self(&self, user: Uuid) -> Result<&GrpcCaller, ApiError> {
        match self {
            GrpcCaller::User(me) if me.api_key.is_some() => Err(ApiError::forbidden(
                "API keys cannot ask about accounts; use a user's access token",
            )),
            GrpcCaller::User(me) if me.user_id != user => {
                Err(ApiError::forbidden("a user may only ask about themself"))
            }
            _ => Ok(self),
        }
    }

    /// Only fleet services.
    pub fn require_service(&self) -> Result<&str, ApiError> {
        match self {
            GrpcCaller::Service(name) => Ok(name),
            GrpcCaller::User(_) => Err(ApiError::forbidden(
                "this method is for the fleet's services only",
            )),
        }
    }
}

/// Verifies the credential of each gRPC call; every server holds one.
#[derive(Clone)]
pub struct GrpcGuard {
    verifier: Arc<TokenVerifier>,
    ring: Arc<SecretKeyRing>,
}

impl GrpcGuard {
    pub fn new(verifier: Arc<TokenVerifier>, ring: Arc<SecretKeyRing>) -> Self {
        GrpcGuard { verifier, ring }
    }

    /// The caller of `request`, or `UNAUTHENTICATED` when it carries no credential or one
    /// that does not verify.
    pub async fn caller<T>(&self, request: &tonic::Request<T>) -> Result<GrpcCaller, ApiError> {
        let credential = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "gRPC calls must carry `authorization: Bearer <credential>`",
                )
            })?;
        if credential.starts_with(SERVICE_CREDENTIAL_PREFIX) {
            return verify_service_credential(&self.ring, credential).map(GrpcCaller::Service);
        }
        self.verifier
            .verify_bearer(credential)
            .await
            .map(GrpcCaller::User)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(kid: &str) -> Arc<SecretKeyRing> {
        Arc::new(SecretKeyRing::new(&[SecretKeyRing::generate_entry(kid).unwrap()], None).unwrap())
    }

    #[test]
    fn client_addresses_open_only_when_sealed_by_the_fleet() {
        let fleet = ring("k1");
        let ip: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        let sealed = seal_client_address(&fleet, ip).unwrap();
        assert_eq!(
            open_client_address(&fleet, &sealed),
            Some(ClientAddress(ip))
        );
        assert_eq!(open_client_address(&ring("k1"), &sealed), None);
        assert_eq!(open_client_address(&fleet, "203.0.113.9"), None);
        // A service credential is not an address, nor the reverse.
        let credential = ServiceCredentials::new(fleet.clone(), "auth")
            .credential()
            .unwrap();
        assert_eq!(
            open_client_address(&fleet, &credential["ffs_".len()..]),
            None
        );
        assert!(verify_service_credential(&fleet, &format!("ffs_{sealed}")).is_err());
    }

    #[test]
    fn service_credentials_verify_only_with_the_fleets_ring() {
        let fleet = ring("k1");
        let credentials = ServiceCredentials::new(fleet.clone(), "execution");
        let credential = credentials.credential().expect("a credential");
        assert_eq!(
            credentials.credential().as_deref(),
            Some(credential.as_str()),
            "cached"
        );
        assert_eq!(
            verify_service_credential(&fleet, &credential).unwrap(),
            "execution"
        );
        // Another fleet's ring, a tampered credential, or another sealed value: refused.
        assert!(verify_service_credential(&ring("k1"), &credential).is_err());
        let mut tampered = credential.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(verify_service_credential(&fleet, &String::from_utf8(tampered).unwrap()).is_err());
        let other = fleet
            .seal(
                b"{\"service\":\"x\",\"expires_at_ms\":99999999999999}",
                "other",
            )
            .unwrap();
        assert!(verify_service_credential(&fleet, &format!("ffs_{other}")).is_err());
        assert!(verify_service_credential(&fleet, "ffs_").is_err());
        // An expired one.
        let expired = fleet
            .seal(b"{\"service\":\"execution\",\"expires_at_ms\":1}", CONTEXT)
            .unwrap();
        assert!(verify_service_credential(&fleet, &format!("ffs_{expired}")).is_err());
    }
}
