//! The second factor's state: the sealed TOTP seed (and a pending one during enrolment), the
//! last accepted step, and recovery code hashes.

use flowfleet_runtime::error::ApiError;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::audit::insert_security_event;
use super::Store;
use crate::domain::{SecurityEvent, SecurityEventKind};

/// A user's second-factor row.
#[derive(Debug, Clone, Default)]
pub struct MfaState {
    /// The sealed seed, once enrolment was confirmed.
    pub seed: Option<String>,
    /// A sealed seed waiting for its first code.
    pub pending_seed: Option<String>,
    pub last_step: i64,
}

impl MfaState {
    pub fn enabled(&self) -> bool {
        self.seed.is_some()
    }
}

async fn replace_codes(
    tx: &mut Transaction<'_, Any>,
    user: Uuid,
    hashes: &[String],
    now: i64,
) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    for hash in hashes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user.to_string())
        .bind(hash)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    pub async fn mfa(&self, user: Uuid) -> Result<MfaState, ApiError> {
        let row = sqlx::query("SELECT seed, pending_seed, last_step FROM mfa WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(r) => MfaState {
                seed: r.try_get("seed")?,
                pending_seed: r.try_get("pending_seed")?,
                last_step: r.try_get("last_step")?,
            },
            None => MfaState::default(),
        })
    }

    /// Starts (or restarts) enrolment with a new sealed seed.
    pub async fn set_pending_seed(&self, user: Uuid, sealed: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO mfa (user_id, pending_seed) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET pending_seed = excluded.pending_seed",
        )
        .bind(user.to_string())
        .bind(sealed)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Confirms enrolment of `pending` (the seed the code was checked against), with the
    /// step that code used and new recovery codes. `false` if the pending seed changed
    /// meanwhile (another enrolment started).
    pub async fn enable_mfa(
        &self,
        user: Uuid,
        pending: &str,
        step: i64,
        recovery_hashes: &[String],
        now: i64,
    ) -> Result<bool, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE mfa SET seed = pending_seed, pending_seed = NULL, enabled_at = $1, \
             last_step = $2 WHERE user_id = $3 AND pending_seed = $4",
        )
        .bind(now)
        .bind(step)
        .bind(user.to_string())
        .bind(pending)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        replace_codes(&mut tx, user, recovery_hashes, now).await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::account(SecurityEventKind::MfaEnabled, user),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records that a code for `step` was used; `false` if that step (or a later one) was
    /// already used: a replay.
    pub async fn accept_step(&self, user: Uuid, step: i64) -> Result<bool, ApiError> {
        let done =
            sqlx::query("UPDATE mfa SET last_step = $1 WHERE user_id = $2 AND last_step < $1")
                .bind(step)
                .bind(user.to_string())
                .execute(self.db.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses up a recovery code; `false` if it is not one of the user's unused codes.
    pub async fn use_recovery_code(
        &self,
        user: Uuid,
        hash: &str,
        now: i64,
    ) -> Result<bool, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 \
             AND used_at IS NULL",
        )
        .bind(now)
        .bind(user.to_string())
        .bind(hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let left: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::account(SecurityEventKind::RecoveryCodeUsed, user)
                .with_detail(serde_json::json!({"codesLeft": left})),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the user's recovery codes.
    pub async fn replace_recovery_codes(
        &self,
        user: Uuid,
        hashes: &[String],
        now: i64,
    ) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        replace_codes(&mut tx, user, hashes, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns the second factor off and drops the recovery codes.
    pub async fn disable_mfa(&self, user: Uuid, now: i64) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("DELETE FROM mfa WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        replace_codes(&mut tx, user, &[], now).await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::account(SecurityEventKind::MfaDisabled, user),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
