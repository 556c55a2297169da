//! The auth service's domain: users, workspaces and memberships, and the rules
//! their inputs obey. No I/O here; inputs are parsed into types that can only
//! hold valid values, so the store and the API never re-check them.

use flowfleet_shared::auth::Role;
use flowfleet_shared::error::ApiError;
use uuid::Uuid;

/// A normalised (trimmed, lower-case) e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, ApiError> {
        let s = raw.trim().to_lowercase();
        let valid = s.len() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(char::is_whitespace)
                    && s.matches('@').count() == 1
            });
        if valid {
            Ok(Email(s))
        } else {
            Err(ApiError::bad_input(format!(
                "`{}` is not an e-mail address",
                raw.chars().take(100).collect::<String>()
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy: 8 to 128 characters.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Password, ApiError> {
        let n = raw.chars().count();
        if n < 8 {
            return Err(ApiError::bad_input(
                "the password is too short: use at least 8 characters",
            ));
        }
        if n > 128 {
            return Err(ApiError::bad_input(
                "the password is too long: use at most 128 characters",
            ));
        }
        Ok(Password(raw.to_string()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name (of a user or a workspace): 1 to 100 characters, trimmed.
#[derive(Debug, Clone)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, raw: &str) -> Result<Name, ApiError> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > 100 {
            return Err(ApiError::bad_input(format!(
                "`{field}` must be 1 to 100 characters"
            )));
        }
        Ok(Name(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A refresh token as the client holds it: `rt_` and 256 random bits (base64url). Only its
/// SHA-256 is stored, so the session store never holds a usable token.
pub struct RefreshToken(String);

impl RefreshToken {
    /// A new token from `random` (32 bytes from a CSPRNG).
    pub fn from_random(random: [u8; 32]) -> RefreshToken {
        use base64::Engine;
        RefreshToken(format!(
            "rt_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        ))
    }

    /// A token presented by a client; anything not shaped like one is refused as an
    /// invalid session without touching the store.
    pub fn parse(raw: &str) -> Result<RefreshToken, ApiError> {
        let valid = raw.strip_prefix("rt_").is_some_and(|rest| {
            rest.len() == 43
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if valid {
            Ok(RefreshToken(raw.to_string()))
        } else {
            Err(ApiError::unauthenticated(
                "this refresh token is not valid; sign in again",
            ))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The form the session store keeps.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.0.as_bytes()))
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub workspace: Workspace,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn refresh_tokens_round_trip_and_only_their_hash_is_kept() {
        let token = RefreshToken::from_random([7; 32]);
        let parsed = RefreshToken::parse(token.expose()).expect("a valid token");
        assert_eq!(parsed.hash(), token.hash());
        assert_eq!(token.hash().len(), 64);
        assert!(!token.hash().contains(&token.expose()[3..]));
        assert_ne!(RefreshToken::from_random([8; 32]).hash(), token.hash());
        for bad in [
            "",
            "rt_",
            "rt_short",
            "xx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(RefreshToken::parse(bad).is_err(), "{bad} accepted");
        }
        let spaced = format!("{} ", token.expose());
        assert!(RefreshToken::parse(&spaced).is_err());
    }

    #[test]
    fn password_policy() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }
}
