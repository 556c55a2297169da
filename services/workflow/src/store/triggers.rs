//! The trigger feed: which triggers are live, for the execution engine's cron
//! scheduler and webhook router.
//!
//! `workflow_triggers` holds one row per workflow that ever had live triggers:
//! the triggers live now (none for a draft, an archived or a deleted workflow)
//! and the feed position (`seq`) of the change that set them. A follower lists
//! the live rows with the current position, then asks for rows after that
//! position; a row it receives replaces what it knew about that workflow. The
//! position comes from one counter row updated inside the change's
//! transaction, which serialises writers, so positions commit in order and a
//! cursor never skips a change.

use std::sync::Arc;

use flowfleet_definitions::definition::Trigger;
use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{json, Store};
use crate::domain::Workflow;

/// Wakes this process's watchers when a change commits. Watchers also poll, so
/// changes made by other replicas reach them within the poll interval.
#[derive(Clone, Default)]
pub struct TriggerFeed {
    notify: Arc<Notify>,
}

impl TriggerFeed {
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Resolves at the next [`TriggerFeed::wake`] (register before querying,
    /// so a change between the query and the wait is not missed).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// One workflow's live triggers at feed position `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRow {
    pub workflow_id: Uuid,
    pub workspace_id: Uuid,
    /// The published version whose triggers these are; `None` when none live.
    pub version: Option<i64>,
    pub triggers: Vec<Trigger>,
    pub seq: i64,
}

fn row_from(row: &AnyRow) -> Result<TriggerRow, ApiError> {
    let triggers: String = row.try_get("triggers")?;
    Ok(TriggerRow {
        workflow_id: uuid_column(row, "workflow_id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        version: row.try_get::<Option<i64>, _>("version")?,
        triggers: serde_json::from_str(&triggers).map_err(ApiError::internal)?,
        seq: row.try_get("seq")?,
    })
}

/// Records, inside the caller's transaction, that `w`'s live triggers are now
/// those of `live` (a version and its triggers), or none. A workflow that never
/// had live triggers and still has none gets no row.
pub(super) async fn set(
    conn: &mut AnyConnection,
    w: &Workflow,
    live: Option<(i64, &[Trigger])>,
    now: i64,
) -> Result<(), ApiError> {
    set_for(conn, w.id, w.workspace_id, live, now).await
}

async fn set_for(
    conn: &mut AnyConnection,
    workflow: Uuid,
    workspace: Uuid,
    live: Option<(i64, &[Trigger])>,
    now: i64,
) -> Result<(), ApiError> {
    let (version, triggers) = match live {
        Some((n, t)) => (Some(n), t),
        None => (None, &[][..]),
    };
    if triggers.is_empty() {
        let known = sqlx::query("SELECT 1 AS one FROM workflow_triggers WHERE workflow_id = $1")
            .bind(workflow.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if known.is_none() {
            return Ok(());
        }
    }
    let seq: i64 =
        sqlx::query("UPDATE trigger_feed_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *conn)
            .await?
            .try_get("seq")?;
    sqlx::query(
        "INSERT INTO workflow_triggers (workflow_id, workspace_id, version, triggers, seq, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (workflow_id) DO UPDATE SET version = excluded.version, \
         triggers = excluded.triggers, seq = excluded.seq, changed_at = excluded.changed_at",
    )
    .bind(workflow.to_string())
    .bind(workspace.to_string())
    .bind(version)
    .bind(json(&triggers)?)
    .bind(seq)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const COLUMNS: &str = "workflow_id, workspace_id, version, triggers, seq";

impl Store {
    /// Marks every live trigger of a workspace as gone, one feed change per
    /// workflow (for an erased workspace, before its rows are deleted).
    pub async fn retire_triggers(&self, workspace: Uuid, now: i64) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let rows = sqlx::query(
            "SELECT workflow_id FROM workflow_triggers WHERE workspace_id = $1 AND triggers <> '[]'",
        )
        .bind(workspace.to_string())
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let workflow = uuid_column(row, "workflow_id")?;
            set_for(&mut tx, workflow, workspace, None, now).await?;
        }
        tx.commit().await?;
        self.feed.wake();
        Ok(())
    }

    /// Every workflow with live triggers, and the feed position they reflect.
    pub async fn live_triggers(&self) -> Result<(Vec<TriggerRow>, i64), ApiError> {
        // One transaction, so the rows and the position agree.
        let mut tx = self.db.pool().begin().await?;
        let head: i64 = sqlx::query("SELECT seq FROM trigger_feed_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("seq")?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workflow_triggers WHERE triggers <> '[]' AND seq <= $1 ORDER BY seq"
        ))
        .bind(head)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let rows = rows.iter().map(row_from).collect::<Result<Vec<_>, _>>()?;
        Ok((rows, head))
    }

    /// Up to `limit` changes after feed position `after`, in order.
    pub async fn trigger_changes(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TriggerRow>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workflow_triggers WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(row_from).collect()
    }
}
