//! The TOTP second factor's rules (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, one step
//! of clock skew either way) and recovery codes. No I/O: the store keeps the sealed seed,
//! the last accepted step (so a code cannot be replayed) and the hashes of recovery codes.

use flowfleet_runtime::error::ApiError;
use totp_rs::{Algorithm, TOTP};

const DIGITS: usize = 6;
const STEP_SECS: u64 = 30;
/// 160-bit seeds, as RFC 4226 recommends.
pub const SEED_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "Flowfleet";

/// A TOTP seed for one account.
pub struct TotpSeed {
    totp: TOTP,
}

impl TotpSeed {
    pub fn new(seed: Vec<u8>, account: &str) -> Result<TotpSeed, ApiError> {
        let totp = TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            // Skew is applied here, step by step, to learn which step a code matched.
            0,
            STEP_SECS,
            seed,
            Some(ISSUER.to_string()),
            account.to_string(),
        )
        .map_err(ApiError::internal)?;
        Ok(TotpSeed { totp })
    }

    /// The seed in base32, for typing into an authenticator app.
    pub fn base32(&self) -> String {
        self.totp.get_secret_base32()
    }

    /// The `otpauth://totp/...` URI authenticator apps read (usually as a QR code).
    pub fn otpauth_uri(&self) -> String {
        self.totp.get_url()
    }

    /// The step `code` is valid for at `now_secs` (the current step or one either side),
    /// or `None`. Only steps after `last_step` count, so each code works once.
    pub fn accepts(&self, code: &str, now_secs: u64, last_step: i64) -> Option<i64> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = now_secs / STEP_SECS;
        [current.saturating_sub(1), current, current + 1]
            .into_iter()
            .filter(|step| *step as i64 > last_step)
            // `check` compares in constant time.
            .find(|step| self.totp.check(code, step * STEP_SECS))
            .map(|step| step as i64)
    }
}

/// A recovery code as shown to the user: ten characters from an unambiguous alphabet, in
/// two groups (`k7qm2-x9drf`). Normalised (case, dashes, spaces) before hashing.
pub struct RecoveryCode(String);

const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

impl RecoveryCode {
    pub fn from_random(random: &[u8; 10]) -> RecoveryCode {
        let chars: String = random
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        RecoveryCode(format!("{}-{}", &chars[..5], &chars[5..]))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form of a code as typed: lower-case, without separators, hashed.
    pub fn hash_of(typed: &str) -> String {
        use sha2::Digest;
        let normal: String = typed
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        hex::encode(sha2::Sha256::digest(normal.as_bytes()))
    }

    pub fn hash(&self) -> String {
        Self::hash_of(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_work_in_their_window_and_once() {
        let seed = TotpSeed::new(vec![7; SEED_BYTES], "ada@example.com").unwrap();
        let now = 1_800_000_000;
        let code = seed.totp.generate(now);
        let step = (now / 30) as i64;
        assert_eq!(seed.accepts(&code, now, 0), Some(step));
        // One step of skew either way, not two.
        assert_eq!(seed.accepts(&code, now + 30, 0), Some(step));
        assert_eq!(seed.accepts(&code, now - 30, 0), Some(step));
        assert_eq!(seed.accepts(&code, now + 90, 0), None);
        // Once accepted, the same step is refused.
        assert_eq!(seed.accepts(&code, now, step), None);
        assert_eq!(seed.accepts("12345", now, 0), None);
        assert_eq!(seed.accepts("abcdef", now, 0), None);
        assert!(seed
            .otpauth_uri()
            .starts_with("otpauth://totp/Flowfleet:ada%40example.com?"));
        assert!(seed
            .otpauth_uri()
            .contains(&format!("secret={}", seed.base32())));
    }

    #[test]
    fn recovery_codes_normalise_before_hashing() {
        let code = RecoveryCode::from_random(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(code.expose(), "23456-789ab");
        assert_eq!(RecoveryCode::hash_of("23456789AB"), code.hash());
        assert_eq!(RecoveryCode::hash_of(" 23456 789ab "), code.hash());
        assert_ne!(RecoveryCode::hash_of("23456-789ac"), code.hash());
    }
}
