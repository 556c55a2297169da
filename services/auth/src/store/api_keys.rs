//! API keys: created and revoked by a workspace's admins, looked up by hash when a key is
//! presented. Each change goes to the audit log in the same transaction.

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::Role;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::audit::insert_security_event;
use super::members::{actor_role, role_column};
use super::Store;
use crate::domain::{self, ApiKey, SecurityEvent, SecurityEventKind};

const COLUMNS: &str = "id, workspace_id, name, role, prefix, created_by, created_at, \
     expires_at, last_used_at, revoked_at";

/// Recorded uses closer together than this are not written again: `lastUsedAt` is for
/// spotting unused keys, not an access log, and a busy key must not cost a write per call.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

fn api_key_from(row: &AnyRow) -> Result<ApiKey, ApiError> {
    Ok(ApiKey {
        id: uuid_column(row, "id")?,
        workspace: uuid_column(row, "workspace_id")?,
        name: row.try_get("name")?,
        role: role_column(row, "role")?,
        prefix: row.try_get("prefix")?,
        created_by: uuid_column(row, "created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// What [`Store::create_api_key`] records.
pub struct NewApiKey<'a> {
    pub workspace: Uuid,
    pub name: &'a str,
    pub role: Role,
    pub secret_hash: &'a str,
    pub prefix: &'a str,
    pub expires_at: Option<i64>,
}

impl Store {
    /// Creates a key, if the actor may grant its role in the workspace.
    pub async fn create_api_key(
        &self,
        actor: Uuid,
        key: NewApiKey<'_>,
        now: i64,
    ) -> Result<ApiKey, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        domain::may_grant(actor_role(&mut tx, actor, key.workspace).await?, key.role)?;
        let created = ApiKey {
            id: Uuid::now_v7(),
            workspace: key.workspace,
            name: key.name.to_string(),
            role: key.role,
            prefix: key.prefix.to_string(),
            created_by: actor,
            created_at: now,
            expires_at: key.expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, workspace_id, name, role, secret_hash, prefix, \
             created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(created.id.to_string())
        .bind(created.workspace.to_string())
        .bind(&created.name)
        .bind(created.role.as_str())
        .bind(key.secret_hash)
        .bind(&created.prefix)
        .bind(actor.to_string())
        .bind(now)
        .bind(created.expires_at)
        .execute(&mut *tx)
        .await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(SecurityEventKind::ApiKeyCreated, key.workspace, actor, None)
                .with_detail(serde_json::json!({
                    "keyId": created.id,
                    "name": created.name,
                    "role": created.role.as_str(),
                })),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// The workspace's keys, newest first, revoked ones included.
    pub async fn api_keys(&self, workspace: Uuid) -> Result<Vec<ApiKey>, ApiError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(workspace.to_string())
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(api_key_from).collect()
    }

    /// Revokes a key of a workspace the actor manages. Returns the key and its hash (for
    /// dropping cached verifications).
    pub async fn revoke_api_key(
        &self,
        id: Uuid,
        actor: Uuid,
        now: i64,
    ) -> Result<(ApiKey, String), ApiError> {
        let missing = || ApiError::not_found("no such API key");
        let sql = format!("SELECT {COLUMNS}, secret_hash FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(missing)?;
        let key = api_key_from(&row)?;
        let hash: String = row.try_get("secret_hash")?;
        let mut tx = self.db.pool().begin().await?;
        // Whoever cannot manage the workspace learns nothing about its keys.
        let role = actor_role(&mut tx, actor, key.workspace)
            .await
            .map_err(|_| missing())?;
        domain::may_grant(role, key.role)?;
        if key.revoked_at.is_some() {
            return Ok((key, hash));
        }
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(SecurityEventKind::ApiKeyRevoked, key.workspace, actor, None)
                .with_detail(serde_json::json!({"keyId": key.id, "name": key.name})),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((
            ApiKey {
                revoked_at: Some(now),
                ..key
            },
            hash,
        ))
    }

    /// The key with this hash and its creator's e-mail, recording the use.
    pub async fn use_api_key(
        &self,
        secret_hash: &str,
        now: i64,
    ) -> Result<Option<(ApiKey, String)>, ApiError> {
        let sql = format!(
            "SELECT k.{}, u.email FROM api_keys k JOIN users u ON u.id = k.created_by \
             WHERE k.secret_hash = $1",
            COLUMNS.replace(", ", ", k.")
        );
        let Some(row) = sqlx::query(&sql)
            .bind(secret_hash)
            .fetch_optional(self.db.pool())
            .await?
        else {
            return Ok(None);
        };
        let key = api_key_from(&row)?;
        if key.usable(now) {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now)
            .bind(key.id.to_string())
            .bind(now - LAST_USED_GRANULARITY_MS)
            .execute(self.db.pool())
            .await?;
        }
        Ok(Some((key, row.try_get("email")?)))
    }
}
