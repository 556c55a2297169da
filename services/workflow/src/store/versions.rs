//! Published versions: immutable snapshots of a definition, numbered from 1.

use flowfleet_definitions::definition::Definition;
use flowfleet_runtime::db::{uuid_column, Page};
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{json, triggers, Store};
use crate::domain::{Status, Version, Workflow};

const COLUMNS: &str =
    "workflow_id, version, definition, content_hash, published_by, rolled_back_from, created_at";

fn version_from(row: &AnyRow) -> Result<Version, ApiError> {
    let definition: String = row.try_get("definition")?;
    Ok(Version {
        workflow_id: uuid_column(row, "workflow_id")?,
        version: row.try_get("version")?,
        definition: serde_json::from_str(&definition).map_err(ApiError::internal)?,
        content_hash: row.try_get("content_hash")?,
        published_by: uuid_column(row, "published_by")?,
        rolled_back_from: row.try_get::<Option<i64>, _>("rolled_back_from")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The definition of version `n` of a workflow, inside a transaction.
pub(super) async fn definition(
    conn: &mut AnyConnection,
    workflow: Uuid,
    n: i64,
) -> Result<Definition, ApiError> {
    let row = sqlx::query(
        "SELECT definition FROM workflow_versions WHERE workflow_id = $1 AND version = $2",
    )
    .bind(workflow.to_string())
    .bind(n)
    .fetch_one(conn)
    .await?;
    let text: String = row.try_get("definition")?;
    serde_json::from_str(&text).map_err(ApiError::internal)
}

impl Store {
    /// Freezes `definition` as the workflow's next version, makes the workflow
    /// ACTIVE with that version's triggers live, and records
    /// `workflow.published`, in one transaction; only if the workflow is still
    /// at the revision `w` was read at (else `CONFLICT`). `rolled_back_from`
    /// names the older version a rollback re-publishes.
    pub async fn publish(
        &self,
        w: &Workflow,
        definition: &Definition,
        rolled_back_from: Option<i64>,
        by: Uuid,
        now: i64,
    ) -> Result<(Workflow, Version), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        // The conditional update comes first: it locks the workflow's row, so
        // concurrent publishes of one workflow take version numbers in turn.
        let updated = sqlx::query(
            "UPDATE workflows SET status = 'ACTIVE', revision = revision + 1, updated_at = $1, \
             published_version = (SELECT COALESCE(MAX(version), 0) + 1 FROM workflow_versions WHERE workflow_id = $2) \
             WHERE id = $2 AND revision = $3 RETURNING published_version",
        )
        .bind(now)
        .bind(w.id.to_string())
        .bind(w.revision)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(updated) = updated else {
            drop(tx);
            return Err(self.why_not_updated(w.id).await);
        };
        let next: i64 = updated.try_get("published_version")?;
        let version = Version {
            workflow_id: w.id,
            version: next,
            definition: definition.clone(),
            content_hash: definition.content_hash(),
            published_by: by,
            rolled_back_from,
            created_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO workflow_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(w.id.to_string())
        .bind(next)
        .bind(json(&version.definition)?)
        .bind(&version.content_hash)
        .bind(by.to_string())
        .bind(rolled_back_from)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        triggers::set(&mut tx, w, Some((next, &definition.triggers)), now).await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "workflow.published",
                now,
                serde_json::json!({
                    "workflowId": w.id, "workspaceId": w.workspace_id,
                    "version": next, "contentHash": version.content_hash, "publishedBy": by,
                    "rolledBackFrom": rolled_back_from,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.feed.wake();
        let mut published = w.clone();
        published.status = Status::Active;
        published.published_version = Some(next);
        published.revision += 1;
        published.updated_at = now;
        Ok((published, version))
    }

    /// A published version: the given number, or the newest when `None`.
    pub async fn version(
        &self,
        workflow: Uuid,
        number: Option<i64>,
    ) -> Result<Option<(Workflow, Version)>, ApiError> {
        let Some(w) = self.get(workflow).await? else {
            return Ok(None);
        };
        let Some(n) = number.or(w.published_version) else {
            return Ok(None);
        };
        Ok(self.version_of(workflow, n).await?.map(|v| (w, v)))
    }

    /// Version `n` of a workflow, if published.
    pub async fn version_of(&self, workflow: Uuid, n: i64) -> Result<Option<Version>, ApiError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workflow_versions WHERE workflow_id = $1 AND version = $2"
        ))
        .bind(workflow.to_string())
        .bind(n)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(version_from).transpose()
    }

    /// A page of a workflow's versions, newest first, after version `after`.
    pub async fn versions(
        &self,
        workflow: Uuid,
        first: i64,
        after: Option<i64>,
    ) -> Result<Page<Version>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workflow_versions WHERE workflow_id = $1 AND version < $2 \
             ORDER BY version DESC LIMIT $3"
        ))
        .bind(workflow.to_string())
        .bind(after.unwrap_or(i64::MAX))
        .bind(first + 1)
        .fetch_all(self.db.pool())
        .await?;
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM workflow_versions WHERE workflow_id = $1")
                .bind(workflow.to_string())
                .fetch_one(self.db.pool())
                .await?
                .try_get("n")?;
        let items = rows
            .iter()
            .map(version_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::cut(items, first, total))
    }
}
