//! The storage domain: files, the rules their names and content types obey,
//! content addressing, and signed download URLs. No I/O here.

use flowfleet_runtime::error::ApiError;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A stored file's metadata; its content is the blob at `blob_key`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub owner_id: Uuid,
    pub execution_id: Option<Uuid>,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub blob_key: String,
    pub created_at: i64,
}

/// A file name: 1 to 255 characters, trimmed, without control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct FileName(String);

impl FileName {
    pub fn parse(raw: &str) -> Result<FileName, ApiError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ApiError::bad_input("`name` must not be empty"));
        }
        if s.chars().count() > 255 {
            return Err(ApiError::bad_input("`name` must be at most 255 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(ApiError::bad_input(
                "`name` must not contain control characters",
            ));
        }
        Ok(FileName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A media type such as `text/csv; charset=utf-8`; empty means
/// `application/octet-stream`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentType(String);

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl ContentType {
    pub fn parse(raw: &str) -> Result<ContentType, ApiError> {
        let s = raw.trim();
        if s.is_empty() {
            return Ok(ContentType(DEFAULT_CONTENT_TYPE.into()));
        }
        let is_token = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        };
        let essence = s.split(';').next().unwrap_or_default().trim();
        let valid = s.len() <= 255
            && s.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
            && essence
                .split_once('/')
                .is_some_and(|(t, sub)| is_token(t) && is_token(sub));
        if valid {
            Ok(ContentType(s.to_ascii_lowercase()))
        } else {
            Err(ApiError::bad_input(format!(
                "`{}` is not a media type such as `text/plain`",
                s.chars().take(100).collect::<String>()
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The SHA-256 of `content` in lower-case hex, and the content-addressed blob
/// key derived from it. Equal contents always map to the same key.
pub fn content_address(content: &[u8]) -> (String, String) {
    let digest = hex::encode(Sha256::digest(content));
    let key = format!("sha256/{digest}");
    (digest, key)
}

/// Why a download link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Missing, malformed or not signed by this service.
    Invalid,
    /// Correctly signed, but past its expiry.
    Expired,
}

/// The key download links are signed with (HMAC-SHA256, 32 random bytes).
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

type HmacSha256 = Hmac<Sha256>;

impl SigningKey {
    pub fn generate() -> SigningKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        SigningKey(key)
    }

    pub fn from_hex(s: &str) -> Option<SigningKey> {
        hex::decode(s).ok()?.try_into().ok().map(SigningKey)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn mac(&self, file_id: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(format!("{file_id}:{expires}").as_bytes());
        mac
    }

    /// The hex signature of a link to `file_id` valid until `expires` (Unix
    /// seconds).
    pub fn sign(&self, file_id: Uuid, expires: i64) -> String {
        hex::encode(
            self.mac(&file_id.to_string(), expires)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a link's parameters as received (untrusted strings): the
    /// signature first, in constant time, then the expiry against `now_secs`.
    pub fn verify(
        &self,
        file_id: &str,
        expires: Option<&str>,
        signature: Option<&str>,
        now_secs: i64,
    ) -> Result<(), LinkError> {
        let expires: i64 = expires
            .and_then(|e| e.parse().ok())
            .ok_or(LinkError::Invalid)?;
        let signature = signature
            .and_then(|s| hex::decode(s).ok())
            .ok_or(LinkError::Invalid)?;
        self.mac(file_id, expires)
            .verify_slice(&signature)
            .map_err(|_| LinkError::Invalid)?;
        if now_secs > expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

/// `{base}/files/{id}/content?expires={expires}&signature={signature}`.
pub fn download_url(base: &str, file_id: Uuid, expires: i64, signature: &str) -> String {
    format!(
        "{}/files/{file_id}/content?expires={expires}&signature={signature}",
        base.trim_end_matches('/')
    )
}

/// A `Content-Disposition` value that downloads the file under its name: an
/// ASCII fallback plus the exact UTF-8 name (RFC 6266 / RFC 8187).
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_content_types() {
        assert_eq!(
            FileName::parse(" report.csv ").unwrap().as_str(),
            "report.csv"
        );
        assert!(FileName::parse("  ").is_err());
        assert!(FileName::parse("a\nb").is_err());
        assert!(FileName::parse(&"x".repeat(256)).is_err());
        assert_eq!(
            ContentType::parse("").unwrap().as_str(),
            DEFAULT_CONTENT_TYPE
        );
        assert_eq!(
            ContentType::parse("Text/CSV; charset=utf-8")
                .unwrap()
                .as_str(),
            "text/csv; charset=utf-8"
        );
        for bad in [
            "text",
            "/plain",
            "text/",
            "text/plain\r\nX-Evil: 1",
            "tëxt/plain",
        ] {
            assert!(ContentType::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn content_addresses_are_stable() {
        let (digest, key) = content_address(b"hello");
        assert_eq!(
            digest,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(key, format!("sha256/{digest}"));
    }

    #[test]
    fn signed_links() {
        let key = SigningKey::generate();
        let id = Uuid::now_v7();
        let sig = key.sign(id, 1_000);
        let ids = id.to_string();
        assert_eq!(key.verify(&ids, Some("1000"), Some(&sig), 999), Ok(()));
        assert_eq!(key.verify(&ids, Some("1000"), Some(&sig), 1_000), Ok(()));
        assert_eq!(
            key.verify(&ids, Some("1000"), Some(&sig), 1_001),
            Err(LinkError::Expired)
        );
        assert_eq!(
            key.verify(&ids, Some("2000"), Some(&sig), 999),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            key.verify(&Uuid::now_v7().to_string(), Some("1000"), Some(&sig), 999),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            key.verify(&ids, None, Some(&sig), 999),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            key.verify(&ids, Some("1000"), Some("zz"), 999),
            Err(LinkError::Invalid)
        );
        let other = SigningKey::generate();
        assert_eq!(
            other.verify(&ids, Some("1000"), Some(&sig), 999),
            Err(LinkError::Invalid)
        );
        let restored = SigningKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(restored.verify(&ids, Some("1000"), Some(&sig), 999), Ok(()));
        assert!(SigningKey::from_hex("abcd").is_none());
    }

    #[test]
    fn dispositions_are_safe_header_values() {
        let d = content_disposition("résumé \"final\".pdf");
        assert!(http::HeaderValue::from_str(&d).is_ok());
        assert!(
            d.starts_with("attachment; filename=\"r_sum_ _final_.pdf\""),
            "{d}"
        );
        assert!(
            d.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"),
            "{d}"
        );
    }
}
