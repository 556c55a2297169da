//! The security audit log: appended in the same transaction as the change it records
//! (so a role change is never without its entry), read newest first by cursor.

use flowfleet_runtime::db::{optional_uuid_column, uuid_column};
use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::Store;
use crate::domain::{SecurityEvent, SecurityEventKind, StoredSecurityEvent};

/// A page of audit entries, newest first.
pub struct SecurityEventPage {
    pub events: Vec<StoredSecurityEvent>,
    pub has_next: bool,
}

fn event_from(row: &AnyRow) -> Result<StoredSecurityEvent, ApiError> {
    let kind: String = row.try_get("kind")?;
    let detail: String = row.try_get("detail")?;
    Ok(StoredSecurityEvent {
        id: uuid_column(row, "id")?,
        occurred_at: row.try_get("occurred_at")?,
        event: SecurityEvent {
            kind: SecurityEventKind::parse(&kind)
                .ok_or_else(|| ApiError::internal(format!("stored event kind `{kind}`")))?,
            user: optional_uuid_column(row, "user_id")?,
            actor: optional_uuid_column(row, "actor_id")?,
            workspace: optional_uuid_column(row, "workspace_id")?,
            ip: row.try_get("ip")?,
            detail: serde_json::from_str(&detail).map_err(ApiError::internal)?,
        },
    })
}

/// Appends an entry, inside the caller's transaction or on the pool.
pub(crate) async fn insert_security_event<'e, E>(
    executor: E,
    event: &SecurityEvent,
    now: i64,
) -> Result<(), ApiError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO security_events (id, occurred_at, kind, user_id, actor_id, workspace_id, \
         ip, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(now)
    .bind(event.kind.as_str())
    .bind(event.user.map(|u| u.to_string()))
    .bind(event.actor.map(|u| u.to_string()))
    .bind(event.workspace.map(|w| w.to_string()))
    .bind(event.ip.clone())
    .bind(event.detail.to_string())
    .execute(executor)
    .await?;
    Ok(())
}

const COLUMNS: &str = "id, occurred_at, kind, user_id, actor_id, workspace_id, ip, detail";

impl Store {
    pub async fn record_security_event(
        &self,
        event: &SecurityEvent,
        now: i64,
    ) -> Result<(), ApiError> {
        insert_security_event(self.db.pool(), event, now).await
    }

    /// What a workspace's admins see: the workspace's own entries, and the account
    /// entries (sign-ins, failures, lockouts, password changes) of its current members.
    pub async fn workspace_security_events(
        &self,
        workspace: Uuid,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<SecurityEventPage, ApiError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM security_events WHERE id < $2 AND (workspace_id = $1 \
             OR (workspace_id IS NULL AND user_id IN \
                 (SELECT user_id FROM memberships WHERE workspace_id = $1))) \
             ORDER BY id DESC LIMIT $3"
        );
        self.page(&sql, workspace, first, after).await
    }

    /// One account's own entries, wherever they happened.
    pub async fn user_security_events(
        &self,
        user: Uuid,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<SecurityEventPage, ApiError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM security_events WHERE id < $2 AND user_id = $1 \
             ORDER BY id DESC LIMIT $3"
        );
        self.page(&sql, user, first, after).await
    }

    async fn page(
        &self,
        sql: &str,
        subject: Uuid,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<SecurityEventPage, ApiError> {
        // UUIDv7 text sorts by time; "after" the newest possible id means from the top.
        let after = after.map_or_else(|| "~".to_string(), |a| a.to_string());
        let rows = sqlx::query(sql)
            .bind(subject.to_string())
            .bind(after)
            .bind(first + 1)
            .fetch_all(self.db.pool())
            .await?;
        let mut events = rows.iter().map(event_from).collect::<Result<Vec<_>, _>>()?;
        let has_next = events.len() as i64 > first;
        events.truncate(first as usize);
        Ok(SecurityEventPage { events, has_next })
    }
}
