//! Workspace credentials: what each kind holds, and the rules a value obeys. No I/O: the
//! store keeps the value sealed, and the API never returns it.

use async_graphql::Enum;
use flowfleet_runtime::error::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[graphql(name = "CredentialKind")]
pub enum CredentialKind {
    /// `{"username", "password"}`, sent as HTTP basic auth.
    HttpBasic,
    /// `{"token"}`, sent as `Authorization: Bearer`.
    HttpBearer,
    /// `{"name", "value"}`, sent as one HTTP header.
    HttpHeader,
    /// `{"host", "port", "username", "password"}`, for sending mail.
    Smtp,
    /// `{"value"}`, for anything else.
    Secret,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::HttpBasic => "HTTP_BASIC",
            CredentialKind::HttpBearer => "HTTP_BEARER",
            CredentialKind::HttpHeader => "HTTP_HEADER",
            CredentialKind::Smtp => "SMTP",
            CredentialKind::Secret => "SECRET",
        }
    }

    pub fn parse(s: &str) -> Option<CredentialKind> {
        [
            CredentialKind::HttpBasic,
            CredentialKind::HttpBearer,
            CredentialKind::HttpHeader,
            CredentialKind::Smtp,
            CredentialKind::Secret,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// The fields a value of this kind must have (`port` is a number, the rest strings).
    fn fields(self) -> &'static [&'static str] {
        match self {
            CredentialKind::HttpBasic => &["username", "password"],
            CredentialKind::HttpBearer => &["token"],
            CredentialKind::HttpHeader => &["name", "value"],
            CredentialKind::Smtp => &["host", "port", "username", "password"],
            CredentialKind::Secret => &["value"],
        }
    }
}

/// A checked credential value: exactly the kind's fields, each non-empty.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialValue(serde_json::Map<String, serde_json::Value>);

impl CredentialValue {
    pub fn parse(kind: CredentialKind, raw: &serde_json::Value) -> Result<Self, ApiError> {
        let object = raw.as_object().ok_or_else(|| {
            ApiError::bad_input(format!(
                "`value` must be an object with {}",
                kind.fields().join(", ")
            ))
        })?;
        if let Some(extra) = object.keys().find(|k| !kind.fields().contains(&k.as_str())) {
            return Err(ApiError::bad_input(format!(
                "`value.{extra}` is not a field of a {} credential (it has {})",
                kind.as_str(),
                kind.fields().join(", ")
            )));
        }
        for field in kind.fields() {
            let value = object.get(*field);
            let ok = match (*field, value) {
                ("port", Some(v)) => v.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
                (_, Some(serde_json::Value::String(s))) => !s.trim().is_empty() && s.len() <= 8192,
                _ => false,
            };
            if !ok {
                return Err(ApiError::bad_input(if *field == "port" {
                    "`value.port` must be a number from 1 to 65535".to_string()
                } else {
                    format!("`value.{field}` must be a non-empty string (at most 8 KiB)")
                }));
            }
        }
        Ok(CredentialValue(object.clone()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::Value::Object(self.0.clone())
            .to_string()
            .into_bytes()
    }
}

/// A stored credential, without its value.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub kind: CredentialKind,
    pub created_by: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a sealed value is bound to, so it cannot be moved to another credential.
pub fn seal_context(id: Uuid) -> String {
    format!("credential:{id}")
}

/// A credential's name: 1 to 100 characters, trimmed.
pub fn parse_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_input("`name` must be 1 to 100 characters"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_have_exactly_their_kinds_fields() {
        assert!(CredentialValue::parse(
            CredentialKind::HttpBasic,
            &json!({"username": "u", "password": "p"})
        )
        .is_ok());
        let missing = CredentialValue::parse(CredentialKind::HttpBasic, &json!({"username": "u"}))
            .unwrap_err();
        assert!(
            missing.message.contains("value.password"),
            "{}",
            missing.message
        );
        let extra = CredentialValue::parse(CredentialKind::Secret, &json!({"value": "v", "x": 1}))
            .unwrap_err();
        assert!(extra.message.contains("value.x"), "{}", extra.message);
        let port = CredentialValue::parse(
            CredentialKind::Smtp,
            &json!({"host": "h", "port": 70000, "username": "u", "password": "p"}),
        )
        .unwrap_err();
        assert!(port.message.contains("value.port"), "{}", port.message);
        assert!(CredentialValue::parse(CredentialKind::Secret, &json!("v")).is_err());
        assert!(
            CredentialValue::parse(CredentialKind::HttpBearer, &json!({"token": "  "})).is_err()
        );
        for kind in ["HTTP_BASIC", "HTTP_BEARER", "HTTP_HEADER", "SMTP", "SECRET"] {
            assert_eq!(CredentialKind::parse(kind).unwrap().as_str(), kind);
        }
        assert!(parse_name(" ").is_err());
    }
}
