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
    fn password_policy() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }
}
