//! Encryption of stored secrets (workspace credentials, second-factor seeds and the like)
//! with AES-256-GCM under a key ring.
//!
//! Why a ring: keys must rotate without downtime. Every sealed value names the key that
//! sealed it, so making a new key active changes what new secrets are sealed with while
//! everything sealed before still opens; [`SecretKeyRing::reseal`] moves an old value to the
//! active key, and once nothing names the old key it can be dropped from the configuration.
//!
//! A sealed value is text, safe in any column: `v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
//! The caller's *context* (say `credential:<workspace id>/<credential id>`) is authenticated
//! as associated data, so a sealed value copied into another row does not open there.
//!
//! Nonces are random 96-bit values. The bound for random nonces under one key is 2^32
//! messages, far above what a key seals between rotations here.
//!
//! Where keys come from: `security.secret_keys` (entries `kid:base64-of-32-bytes`, e.g. from a
//! Kubernetes secret through `FLOWFLEET_SECURITY__SECRET_KEYS`), never the database holding
//! the sealed values. In embedded mode with none configured, one key is generated into
//! `<data_dir>/secret-keys` (mode 0600) on first start, so `flowfleet dev` works out of the
//! box and its secrets survive restarts. Distributed processes must share their keys, so
//! there the keys have to be configured.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use flowfleet_runtime::config::{Config, Mode};

/// Version prefix of the sealed format; a future format gets a new one.
const FORMAT: &str = "v1";
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "entry {0} of security.secret_keys is not `kid:base64-of-32-bytes` (kid: letters, \
         digits, `-` or `_`); make one with `flowfleet secret-key`"
    )]
    BadKeyEntry(usize),
    #[error("key id `{0}` is not valid: use 1 to 64 letters, digits, `-` or `_`")]
    BadKeyId(String),
    #[error("key id `{0}` appears twice in security.secret_keys")]
    DuplicateKeyId(String),
    #[error(
        "security.active_secret_key is `{0}`, which is not in security.secret_keys; add that \
         key or name one of the listed ones"
    )]
    UnknownActiveKey(String),
    #[error(
        "no secret keys configured: set security.secret_keys (every distributed process needs \
         the same keys; make one with `flowfleet secret-key`)"
    )]
    NoKeys,
    #[error(
        "this secret was sealed with key `{0}`, which is not in the key ring; add that key back \
         to security.secret_keys"
    )]
    UnknownKey(String),
    #[error("this is not a sealed secret")]
    Malformed,
    #[error("the secret cannot be opened: it was altered, or it belongs to another record")]
    Forged,
    #[error("the secret key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the system random number generator failed")]
    Random,
}

/// The configured keys, one of them active (used to seal).
pub struct SecretKeyRing {
    active: String,
    keys: BTreeMap<String, LessSafeKey>,
    random: SystemRandom,
}

/// Lists key ids only: the keys themselves must never reach a log.
impl fmt::Debug for SecretKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyRing")
            .field("active", &self.active)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SecretKeyRing {
    /// A ring from `kid:base64-of-32-bytes` entries; `active` names the sealing key (the last
    /// entry when `None` or empty, so appending a key to the list rotates to it).
    pub fn new(entries: &[String], active: Option<&str>) -> Result<Self, SecretError> {
        let mut keys = BTreeMap::new();
        let mut last = None;
        for (i, entry) in entries.iter().enumerate() {
            let (kid, material) = entry
                .trim()
                .split_once(':')
                .ok_or(SecretError::BadKeyEntry(i + 1))?;
            let bytes = STANDARD
                .decode(material.trim())
                .map_err(|_| SecretError::BadKeyEntry(i + 1))?;
            if !valid_kid(kid) || bytes.len() != KEY_LEN {
                return Err(SecretError::BadKeyEntry(i + 1));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| SecretError::BadKeyEntry(i + 1))?;
            if keys
                .insert(kid.to_string(), LessSafeKey::new(key))
                .is_some()
            {
                return Err(SecretError::DuplicateKeyId(kid.to_string()));
            }
            last = Some(kid.to_string());
        }
        let active = match active.filter(|a| !a.is_empty()) {
            Some(active) if keys.contains_key(active) => active.to_string(),
            Some(active) => return Err(SecretError::UnknownActiveKey(active.to_string())),
            None => last.ok_or(SecretError::NoKeys)?,
        };
        Ok(Self {
            active,
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The ring the configuration describes. In embedded mode without configured keys, the
    /// ring of `<data_dir>/secret-keys`, created with one new key the first time.
    pub fn from_config(config: &Config) -> Result<Self, SecretError> {
        let security = &config.security;
        let active = Some(security.active_secret_key.as_str());
        if !security.secret_keys.is_empty() || config.mode != Mode::Embedded {
            return Self::new(&security.secret_keys, active);
        }
        let entries = embedded_keys(&config.data_dir.join("secret-keys"))?;
        Self::new(&entries, active)
    }

    /// A new key entry (`kid:base64`), for `security.secret_keys`.
    pub fn generate_entry(kid: &str) -> Result<String, SecretError> {
        if !valid_kid(kid) {
            return Err(SecretError::BadKeyId(kid.to_string()));
        }
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SecretError::Random)?;
        Ok(format!("{kid}:{}", STANDARD.encode(key)))
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Seals `plaintext` with the active key, bound to `context`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, SecretError> {
        let key = &self.keys[&self.active];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random)?;
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| SecretError::Random)?;
        let mut payload = Vec::with_capacity(NONCE_LEN + sealed.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&sealed);
        Ok(format!(
            "{FORMAT}.{}.{}",
            self.active,
            URL_SAFE_NO_PAD.encode(payload)
        ))
    }

    /// Opens a value sealed (with any key of the ring) for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretError> {
        let (kid, payload) = parse(sealed)?;
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| SecretError::UnknownKey(kid.to_string()))?;
        let mut payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SecretError::Malformed)?;
        if payload.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SecretError::Malformed);
        }
        let mut ciphertext = payload.split_off(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&payload).map_err(|_| SecretError::Malformed)?;
        let plaintext = key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .map_err(|_| SecretError::Forged)?;
        Ok(plaintext.to_vec())
    }

    /// Whether `sealed` was sealed with another key than the active one.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        parse(sealed).is_ok_and(|(kid, _)| kid != self.active)
    }

    /// `sealed`, sealed again with the active key (unchanged when it already is).
    pub fn reseal(&self, sealed: &str, context: &str) -> Result<String, SecretError> {
        if !self.needs_reseal(sealed) {
            self.open(sealed, context)?;
            return Ok(sealed.to_string());
        }
        self.seal(&self.open(sealed, context)?, context)
    }
}

/// The key id and encoded payload of a sealed value.
fn parse(sealed: &str) -> Result<(&str, &str), SecretError> {
    let mut parts = sealed.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(FORMAT), Some(kid), Some(payload)) if valid_kid(kid) => Ok((kid, payload)),
        _ => Err(SecretError::Malformed),
    }
}

/// The entries of the embedded key file, which is created with one new key when missing.
fn embedded_keys(path: &Path) -> Result<Vec<String>, SecretError> {
    let error = |source| SecretError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entry = SecretKeyRing::generate_entry("embedded-1")?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(error)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            use std::io::Write;
            let mut file = options.open(path).map_err(error)?;
            writeln!(
                file,
                "# Flowfleet's secret keys for embedded mode (kid:base64). Keep this file; \
                 secrets sealed with a lost key cannot be opened."
            )
            .and_then(|()| writeln!(file, "{entry}"))
            .map_err(error)?;
            Ok(vec![entry])
        }
        Err(e) => Err(error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(entries: &[&str], active: Option<&str>) -> SecretKeyRing {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        SecretKeyRing::new(&entries, active).expect("ring")
    }

    fn entry(kid: &str) -> String {
        SecretKeyRing::generate_entry(kid).expect("entry")
    }

    #[test]
    fn seals_and_opens_bound_to_the_context() {
        let k1 = entry("k1");
        let ring = ring(&[&k1], None);
        let sealed = ring.seal(b"hunter2", "credential:w1/c1").expect("seal");
        assert!(sealed.starts_with("v1.k1."), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            ring.open(&sealed, "credential:w1/c1").expect("open"),
            b"hunter2"
        );
        // Another record's context: refused, not decrypted into something else.
        assert!(matches!(
            ring.open(&sealed, "credential:w1/c2"),
            Err(SecretError::Forged)
        ));
        // Two seals of the same value differ (fresh nonces).
        assert_ne!(
            sealed,
            ring.seal(b"hunter2", "credential:w1/c1").expect("seal")
        );
    }

    #[test]
    fn altered_or_malformed_values_are_refused() {
        let k1 = entry("k1");
        let ring = ring(&[&k1], None);
        let sealed = ring.seal(b"secret", "ctx").expect("seal");
        let (head, payload) = sealed.rsplit_once('.').expect("payload");
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64");
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert!(
                matches!(ring.open(&tampered, "ctx"), Err(SecretError::Forged)),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        for bad in [
            "",
            "v1.k1",
            "v2.k1.AAAA",
            "v1.k1.not base64!",
            "v1.k1.AAAA",
            "plain",
        ] {
            assert!(
                matches!(ring.open(bad, "ctx"), Err(SecretError::Malformed)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_reseals_them() {
        let (k1, k2) = (entry("k1"), entry("k2"));
        let before = ring(&[&k1], None);
        let old = before.seal(b"token", "ctx").expect("seal");
        // Appending a key makes it active; the old key still opens what it sealed.
        let after = ring(&[&k1, &k2], None);
        assert_eq!(after.active_key_id(), "k2");
        assert_eq!(after.open(&old, "ctx").expect("open"), b"token");
        assert!(after.needs_reseal(&old));
        let moved = after.reseal(&old, "ctx").expect("reseal");
        assert!(moved.starts_with("v1.k2."));
        assert!(!after.needs_reseal(&moved));
        assert_eq!(after.reseal(&moved, "ctx").expect("unchanged"), moved);
        // Once k1 is dropped, only what was resealed opens.
        let last = ring(&[&k2], None);
        assert_eq!(last.open(&moved, "ctx").expect("open"), b"token");
        assert!(matches!(
            last.open(&old, "ctx"),
            Err(SecretError::UnknownKey(kid)) if kid == "k1"
        ));
        // An explicitly named active key wins over the list order.
        assert_eq!(ring(&[&k1, &k2], Some("k1")).active_key_id(), "k1");
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let k1 = entry("k1");
        let new = |entries: &[&str], active: Option<&str>| {
            let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
            SecretKeyRing::new(&entries, active)
        };
        assert!(matches!(new(&[], None), Err(SecretError::NoKeys)));
        assert!(matches!(
            new(&["k1:c2hvcnQ="], None),
            Err(SecretError::BadKeyEntry(1))
        ));
        assert!(matches!(
            new(&[&k1, "no-colon"], None),
            Err(SecretError::BadKeyEntry(2))
        ));
        let bad_kid = k1.replacen("k1", "k.1", 1);
        assert!(matches!(
            new(&[&bad_kid], None),
            Err(SecretError::BadKeyEntry(1))
        ));
        assert!(matches!(
            new(&[&k1, &k1], None),
            Err(SecretError::DuplicateKeyId(kid)) if kid == "k1"
        ));
        assert!(matches!(
            new(&[&k1], Some("k9")),
            Err(SecretError::UnknownActiveKey(kid)) if kid == "k9"
        ));
        assert!(matches!(
            SecretKeyRing::generate_entry("a.b"),
            Err(SecretError::BadKeyId(kid)) if kid == "a.b"
        ));
        let ring = new(&[&k1], None).expect("ring");
        let shown = format!("{ring:?}");
        let material = k1.split_once(':').expect("entry").1;
        assert!(!shown.contains(material), "{shown}");
    }

    #[test]
    fn embedded_mode_creates_a_private_key_file_once_and_reuses_it() {
        let dir = tempfile::tempdir().expect("dir");
        let config = Config {
            mode: Mode::Embedded,
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let first = SecretKeyRing::from_config(&config).expect("ring");
        let sealed = first.seal(b"kept", "ctx").expect("seal");
        let path = dir.path().join("secret-keys");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A restart reads the same key.
        let second = SecretKeyRing::from_config(&config).expect("ring");
        assert_eq!(second.open(&sealed, "ctx").expect("open"), b"kept");

        // Distributed mode never invents keys: they must be shared by every process.
        let distributed = Config {
            mode: Mode::Distributed,
            ..config
        };
        assert!(matches!(
            SecretKeyRing::from_config(&distributed),
            Err(SecretError::NoKeys)
        ));
    }
}
