//! The workflow service's tables: workflows and their tags here; versions
//! ([`versions`]), the trigger feed ([`triggers`]) and credentials
//! ([`credentials`]) beside.
//!
//! Every change to a workflow bumps its `revision` and is conditional on the
//! revision the caller read, so of two writers racing from one revision exactly
//! one wins and the other gets `CONFLICT` (PostgreSQL re-checks the `WHERE` on
//! the locked row after the first commits; SQLite has one writer at a time).

// What the service holds about a user, for export and erasure (see
// `flowfleet_host::privacy`).
mod privacy;

mod credentials;
mod triggers;
mod versions;

use std::sync::Arc;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::db::{like_pattern, uuid_column, Db, Page};
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::domain::{ListFilter, Status, Workflow};

pub use triggers::{TriggerFeed, TriggerRow};

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Wakes this process's trigger watchers after a change commits.
    feed: TriggerFeed,
    /// For changes that are not a user's request (erasing a workspace).
    clock: Arc<dyn Clock>,
}

const COLUMNS: &str = "id, workspace_id, owner_id, name, description, tags, status, definition, \
                       revision, published_version, created_at, updated_at";

fn workflow_from(row: &AnyRow) -> Result<Workflow, ApiError> {
    let status: String = row.try_get("status")?;
    let definition: String = row.try_get("definition")?;
    let tags: String = row.try_get("tags")?;
    Ok(Workflow {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        owner_id: uuid_column(row, "owner_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        tags: serde_json::from_str(&tags).map_err(ApiError::internal)?,
        status: Status::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("stored status `{status}`")))?,
        definition: serde_json::from_str(&definition).map_err(ApiError::internal)?,
        revision: row.try_get("revision")?,
        published_version: row.try_get::<Option<i64>, _>("published_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn json(value: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(ApiError::internal)
}

impl Store {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Store {
            db,
            feed: TriggerFeed::default(),
            clock,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn feed(&self) -> &TriggerFeed {
        &self.feed
    }

    pub async fn insert(&self, w: &Workflow) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO workflows ({COLUMNS}, search_text) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(w.id.to_string())
        .bind(w.workspace_id.to_string())
        .bind(w.owner_id.to_string())
        .bind(&w.name)
        .bind(&w.description)
        .bind(json(&w.tags)?)
        .bind(w.status.as_str())
        .bind(json(&w.definition)?)
        .bind(w.revision)
        .bind(w.published_version)
        .bind(w.created_at)
        .bind(w.updated_at)
        .bind(w.search_text())
        .execute(&mut *tx)
        .await?;
        write_tags(&mut tx, w).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Workflow>, ApiError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM workflows WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(workflow_from).transpose()
    }

    /// Saves `w`'s name, description, tags and draft as revision
    /// `expected + 1`, if the stored revision is still `expected`, and records
    /// `workflow.updated` (who edited what, for analytics' active users) in the same
    /// transaction.
    pub async fn update(
        &self,
        w: &Workflow,
        expected: i64,
        by: Uuid,
    ) -> Result<Workflow, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE workflows SET name = $1, description = $2, tags = $3, definition = $4, \
             search_text = $5, revision = revision + 1, updated_at = $6 \
             WHERE id = $7 AND revision = $8",
        )
        .bind(&w.name)
        .bind(&w.description)
        .bind(json(&w.tags)?)
        .bind(json(&w.definition)?)
        .bind(w.search_text())
        .bind(w.updated_at)
        .bind(w.id.to_string())
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            drop(tx);
            return Err(self.why_not_updated(w.id).await);
        }
        write_tags(&mut tx, w).await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "workflow.updated",
                w.updated_at,
                serde_json::json!({
                    "workflowId": w.id, "workspaceId": w.workspace_id,
                    "revision": expected + 1, "updatedBy": by, "updatedAtMs": w.updated_at,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        let mut saved = w.clone();
        saved.revision = expected + 1;
        Ok(saved)
    }

    /// After a conditional update changed nothing: gone, or stale.
    async fn why_not_updated(&self, id: Uuid) -> ApiError {
        match self.get(id).await {
            Ok(Some(current)) => crate::domain::stale(current.revision),
            Ok(None) => ApiError::not_found(crate::domain::NO_WORKFLOW),
            Err(e) => e,
        }
    }

    /// Archives or restores: sets `status` (from the workflow as read at
    /// `w.revision`) and the live triggers that go with it.
    pub async fn set_status(
        &self,
        w: &Workflow,
        status: Status,
        now: i64,
    ) -> Result<Workflow, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE workflows SET status = $1, revision = revision + 1, updated_at = $2 \
             WHERE id = $3 AND revision = $4",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(w.id.to_string())
        .bind(w.revision)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            drop(tx);
            return Err(self.why_not_updated(w.id).await);
        }
        let live = match (status, w.published_version) {
            (Status::Active, Some(n)) => Some((n, versions::definition(&mut tx, w.id, n).await?)),
            _ => None,
        };
        triggers::set(
            &mut tx,
            w,
            live.as_ref().map(|(n, d)| (*n, d.triggers.as_slice())),
            now,
        )
        .await?;
        tx.commit().await?;
        self.feed.wake();
        let mut saved = w.clone();
        saved.status = status;
        saved.revision += 1;
        saved.updated_at = now;
        Ok(saved)
    }

    /// Deletes a DRAFT or ARCHIVED workflow with its versions and tags, at the
    /// revision read. Executions keep their own frozen copies of versions.
    pub async fn delete(&self, w: &Workflow, now: i64) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "DELETE FROM workflows WHERE id = $1 AND revision = $2 \
             AND status IN ('DRAFT', 'ARCHIVED')",
        )
        .bind(w.id.to_string())
        .bind(w.revision)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            drop(tx);
            return Err(self.why_not_updated(w.id).await);
        }
        // Versions and tags go by cascade; watchers learn the triggers are gone.
        triggers::set(&mut tx, w, None, now).await?;
        tx.commit().await?;
        self.feed.wake();
        Ok(())
    }

    /// A page of a workspace's workflows matching `filter`, newest first, and
    /// how many match in all.
    pub async fn list(
        &self,
        workspace: Uuid,
        filter: &ListFilter,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<Page<Workflow>, ApiError> {
        // Conditions are static SQL; every value is a bound parameter.
        let mut conditions = vec!["workspace_id = $1".to_string()];
        let mut binds = vec![workspace.to_string()];
        for word in &filter.words {
            binds.push(like_pattern(word));
            conditions.push(format!("search_text LIKE ${} ESCAPE '\\'", binds.len()));
        }
        if let Some(status) = filter.status {
            binds.push(status.as_str().into());
            conditions.push(format!("status = ${}", binds.len()));
        }
        if let Some(tag) = &filter.tag {
            binds.push(tag.clone());
            conditions.push(format!(
                "id IN (SELECT workflow_id FROM workflow_tags WHERE workspace_id = $1 AND tag = ${})",
                binds.len()
            ));
        }
        let matching = conditions.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) AS n FROM workflows WHERE {matching}");
        let mut count = sqlx::query(&count_sql);
        for b in &binds {
            count = count.bind(b.clone());
        }
        let total: i64 = count.fetch_one(self.db.pool()).await?.try_get("n")?;
        let mut page_sql = format!("SELECT {COLUMNS} FROM workflows WHERE {matching}");
        let mut page_binds = binds;
        if let Some(after) = after {
            page_binds.push(after.to_string());
            page_sql.push_str(&format!(" AND id < ${}", page_binds.len()));
        }
        page_sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", first + 1));
        let mut page = sqlx::query(&page_sql);
        for b in page_binds {
            page = page.bind(b);
        }
        let rows = page.fetch_all(self.db.pool()).await?;
        let items = rows
            .iter()
            .map(workflow_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::cut(items, first, total))
    }
}

/// Replaces a workflow's rows in `workflow_tags` with its tags.
async fn write_tags(conn: &mut AnyConnection, w: &Workflow) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM workflow_tags WHERE workflow_id = $1")
        .bind(w.id.to_string())
        .execute(&mut *conn)
        .await?;
    for tag in &w.tags {
        sqlx::query(
            "INSERT INTO workflow_tags (workflow_id, workspace_id, tag) VALUES ($1, $2, $3)",
        )
        .bind(w.id.to_string())
        .bind(w.workspace_id.to_string())
        .bind(tag)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
