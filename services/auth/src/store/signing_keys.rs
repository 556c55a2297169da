//! The signing keys' table: what the key ring ([`crate::keys`]) reads and writes.
//! Private halves are stored sealed (`v1.` prefix), or base64 in the clear from before
//! keys were sealed.

use flowfleet_runtime::error::ApiError;
use sqlx::Row;

use super::Store;

/// A stored signing key's private half, as stored.
pub struct StoredKey {
    pub kid: String,
    pub private: String,
    pub created_at: i64,
}

impl Store {
    /// The newest key not retired, if any.
    pub async fn newest_signing_key(&self) -> Result<Option<StoredKey>, ApiError> {
        let row = sqlx::query(
            "SELECT kid, private_pkcs8, created_at FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC, kid DESC LIMIT 1",
        )
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(StoredKey {
                kid: row.try_get("kid")?,
                private: row.try_get("private_pkcs8")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Replaces a key's stored private half (sealing one stored in the clear).
    pub async fn reseal_signing_key(&self, kid: &str, sealed: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE signing_keys SET private_pkcs8 = $1 WHERE kid = $2")
            .bind(sealed)
            .bind(kid)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Records a new signing key made at `now` and retires every other; deletes the keys
    /// retired at or before `forget_retired_before` (out of the JWKS, they verify nothing).
    pub async fn add_signing_key(
        &self,
        key: &StoredKey,
        public_x: &str,
        forget_retired_before: i64,
    ) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_pkcs8, public_x, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.kid)
        .bind(&key.private)
        .bind(public_x)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND kid <> $2",
        )
        .bind(key.created_at)
        .bind(&key.kid)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= $1")
            .bind(forget_retired_before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `(kid, public x)` of the keys current or retired after `retired_after`, oldest first.
    pub async fn published_signing_keys(
        &self,
        retired_after: i64,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let rows = sqlx::query(
            "SELECT kid, public_x FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 \
             ORDER BY created_at",
        )
        .bind(retired_after)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("kid")?, r.try_get("public_x")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}
