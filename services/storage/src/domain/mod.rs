//! The storage domain: files, the rules their names and content types obey,
//! content addressing and sniffing, quotas, listing filters, and signed download
//! URLs; [`ranges`] reads `Range` headers. No I/O here.

pub mod ranges;

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
    /// The workflow whose run produced it (artifacts only; retention keeps the newest
    /// per workflow).
    pub workflow_id: Option<Uuid>,
    pub name: String,
    /// What the file is taken to be: the sniffed type when the bytes were recognised,
    /// else the declared one.
    pub content_type: String,
    /// What the uploader said it is.
    pub declared_content_type: String,
    /// What its first bytes show it is, when they match a known signature.
    pub sniffed_content_type: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub blob_key: String,
    pub created_at: i64,
}

/// How many leading bytes content sniffing looks at.
pub const SNIFF_BYTES: usize = 8192;

/// The media type the leading bytes of a content show, if they match a known file
/// signature (images, archives, documents, audio, video, executables...). Text has no
/// signature: a CSV or JSON file is not recognised, and keeps its declared type.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    infer::get(head).map(|kind| kind.mime_type())
}

/// The type a file is served as: what its bytes show, else what it was declared as.
pub fn effective_content_type(declared: &ContentType, sniffed: Option<&str>) -> String {
    sniffed.map_or_else(|| declared.as_str().to_string(), str::to_string)
}

/// A workspace's allowance: stored bytes and files (counted per file, so identical
/// uploads each count even though they share one blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub bytes: i64,
    pub files: i64,
}

/// What a workspace stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub bytes: i64,
    pub files: i64,
}

impl Quota {
    /// Bytes a new file may still have, or why none fits.
    pub fn room(&self, usage: Usage) -> Result<i64, ApiError> {
        if usage.files >= self.files {
            return Err(quota_error(format!(
                "the workspace has {} files, its limit; delete some before storing more",
                usage.files
            )));
        }
        Ok((self.bytes - usage.bytes).max(0))
    }
}

/// The error for an upload that does not fit the workspace's quota.
pub fn quota_error(message: String) -> ApiError {
    ApiError::new(flowfleet_runtime::error::ErrorCode::QuotaExceeded, message)
}

/// The error for content over the per-file limit.
pub fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        flowfleet_runtime::error::ErrorCode::PayloadTooLarge,
        format!("the file is larger than the limit of {limit} bytes"),
    )
    .with_detail("limit", serde_json::json!(limit))
}

/// Which of a workspace's files a listing shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileFilter {
    /// Lower-case words the name must all contain.
    pub words: Vec<String>,
    /// `image/png`, or a whole type as `image/*`.
    pub content_type: Option<String>,
    /// Unix milliseconds, inclusive.
    pub created_after: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub created_before: Option<i64>,
    /// Only one execution's artifacts.
    pub execution_id: Option<Uuid>,
}

impl FileFilter {
    pub fn parse(
        search: Option<&str>,
        content_type: Option<&str>,
        created_after: Option<i64>,
        created_before: Option<i64>,
    ) -> Result<FileFilter, ApiError> {
        let words = search
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>();
        if words.len() > 10 {
            return Err(ApiError::bad_input("`search` may have at most 10 words")
                .with_detail("path", serde_json::json!(["search"])));
        }
        let content_type = match content_type.map(str::trim) {
            None | Some("") => None,
            Some(t) => {
                let (kind, sub) = t.split_once('/').unwrap_or((t, ""));
                if sub == "*" {
                    ContentType::parse(&format!("{kind}/x"))?;
                    Some(format!("{}/*", kind.to_ascii_lowercase()))
                } else {
                    Some(ContentType::parse(t)?.as_str().to_string())
                }
            }
        };
        if let (Some(a), Some(b)) = (created_after, created_before) {
            if a >= b {
                return Err(ApiError::bad_input(
                    "`createdAfter` must be earlier than `createdBefore`",
                ));
            }
        }
        Ok(FileFilter {
            words,
            content_type,
            created_after,
            created_before,
            execution_id: None,
        })
    }
}

/// A workspace's retention of workflow artifacts (uploads are kept until deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Artifacts older than this many days are deleted.
    pub keep_days: Option<i64>,
    /// Only the artifacts of the newest this many executions of each workflow are kept.
    pub keep_last: Option<i64>,
}

impl RetentionPolicy {
    pub fn parse(keep_days: Option<i32>, keep_last: Option<i32>) -> Result<Self, ApiError> {
        if keep_days.is_some_and(|d| !(1..=3650).contains(&d)) {
            return Err(ApiError::bad_input("`keepDays` must be between 1 and 3650")
                .with_detail("path", serde_json::json!(["keepDays"])));
        }
        if keep_last.is_some_and(|n| !(1..=100_000).contains(&n)) {
            return Err(
                ApiError::bad_input("`keepLast` must be between 1 and 100000")
                    .with_detail("path", serde_json::json!(["keepLast"])),
            );
        }
        Ok(RetentionPolicy {
            keep_days: keep_days.map(i64::from),
            keep_last: keep_last.map(i64::from),
        })
    }

    /// The creation time (Unix ms) before which artifacts go, at `now_ms`.
    pub fn cutoff_ms(&self, now_ms: i64) -> Option<i64> {
        self.keep_days
            .map(|d| now_ms.saturating_sub(d.saturating_mul(86_400_000)))
    }
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
    let mut hasher = Sha256::new();
    hasher.update(content);
    address_of(hasher)
}

/// [`content_address`] of what `hasher` was fed (for content hashed as it streams).
pub fn address_of(hasher: Sha256) -> (String, String) {
    let digest = hex::encode(hasher.finalize());
    let key = blob_key(&digest);
    (digest, key)
}

/// Where the blob of the content with this SHA-256 lives.
pub fn blob_key(sha256: &str) -> String {
    format!("sha256/{sha256}")
}

/// Where an upload's bytes are written until they are complete and their hash is
/// known; leftovers (an upload whose process died) are swept by the cleanup job.
pub const STAGING_PREFIX: &str = "staging";

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
    fn sniffing_recognises_signatures_not_text() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"a,b\n1,2\n"), None);
        let declared = ContentType::parse("text/csv").unwrap();
        assert_eq!(effective_content_type(&declared, None), "text/csv");
        assert_eq!(
            effective_content_type(&declared, Some("image/png")),
            "image/png"
        );
    }

    #[test]
    fn quotas_leave_room_or_say_why_not() {
        let quota = Quota {
            bytes: 100,
            files: 2,
        };
        assert_eq!(
            quota
                .room(Usage {
                    bytes: 30,
                    files: 1
                })
                .unwrap(),
            70
        );
        assert_eq!(
            quota
                .room(Usage {
                    bytes: 130,
                    files: 1
                })
                .unwrap(),
            0
        );
        let full = quota.room(Usage { bytes: 0, files: 2 }).unwrap_err();
        assert_eq!(full.code.as_str(), "QUOTA_EXCEEDED");
    }

    #[test]
    fn filters_and_policies_refuse_nonsense() {
        let f = FileFilter::parse(Some(" Q3  Report "), Some("IMAGE/*"), None, None).unwrap();
        assert_eq!(f.words, vec!["q3", "report"]);
        assert_eq!(f.content_type.as_deref(), Some("image/*"));
        assert!(FileFilter::parse(None, Some("image"), None, None).is_err());
        assert!(FileFilter::parse(None, None, Some(5), Some(5)).is_err());
        assert!(RetentionPolicy::parse(Some(0), None).is_err());
        assert!(RetentionPolicy::parse(None, Some(0)).is_err());
        let p = RetentionPolicy::parse(Some(2), Some(3)).unwrap();
        assert_eq!(p.cutoff_ms(3 * 86_400_000), Some(86_400_000));
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
