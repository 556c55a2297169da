//! Who is calling and what they may do.
//!
//! [`identity`] verifies bearer tokens (user access tokens, API keys) into a
//! [`identity::Caller`]; [`access::Access::authorize`] is the one place that
//! decides whether a caller (session, API key with its workspace and role cap,
//! service credential) may act in a workspace; [`service_auth`] signs and checks
//! the credentials services call each other with; [`secrets`] seals what is
//! stored encrypted (credential values, channel secrets) with the fleet's key ring.

pub mod access;
pub mod api_keys;
pub mod identity;
pub mod secrets;
pub mod service_auth;
