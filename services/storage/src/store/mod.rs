//! The storage service's tables (its own schema): file metadata, blob reference
//! counts, workspace usage and retention policies, settings and the outbox.
//! [`changes`] holds the transactions that add and remove files.

pub mod changes;
mod privacy;
mod retention;

use flowfleet_runtime::db::{like_pattern, uuid_column, Db, Page};
use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{FileFilter, SigningKey, StoredFile, Usage};

#[derive(Clone)]
pub struct Store {
    db: Db,
}

const COLUMNS: &str = "id, workspace_id, owner_id, execution_id, workflow_id, name, \
    content_type, declared_content_type, sniffed_content_type, size, sha256, blob_key, created_at";

fn optional_uuid(row: &AnyRow, column: &str) -> Result<Option<Uuid>, ApiError> {
    let value: Option<String> = row.try_get(column)?;
    value
        .map(|e| e.parse().map_err(ApiError::internal))
        .transpose()
}

const SIGNING_KEY: &str = "url_signing_key";

fn file_from(row: &AnyRow) -> Result<StoredFile, ApiError> {
    Ok(StoredFile {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        owner_id: uuid_column(row, "owner_id")?,
        execution_id: optional_uuid(row, "execution_id")?,
        workflow_id: optional_uuid(row, "workflow_id")?,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        declared_content_type: row.try_get("declared_content_type")?,
        sniffed_content_type: row.try_get("sniffed_content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        blob_key: row.try_get("blob_key")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The URL-signing key, generated and stored on first use. Concurrent first
    /// starts (several replicas) race on the insert; all read back the winner.
    pub async fn signing_key(&self) -> Result<SigningKey, ApiError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(SIGNING_KEY)
        .bind(SigningKey::generate().to_hex())
        .execute(self.db.pool())
        .await?;
        let stored: String = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(SIGNING_KEY)
            .fetch_one(self.db.pool())
            .await?
            .try_get("value")?;
        SigningKey::from_hex(&stored)
            .ok_or_else(|| ApiError::internal("the stored URL-signing key is not 32 hex bytes"))
    }

    pub async fn file(&self, id: Uuid) -> Result<Option<StoredFile>, ApiError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM files WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    /// The files an execution produced, oldest first.
    pub async fn by_execution(
        &self,
        workspace: Uuid,
        execution: Uuid,
    ) -> Result<Vec<StoredFile>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM files WHERE execution_id = $1 AND workspace_id = $2 ORDER BY id"
        ))
        .bind(execution.to_string())
        .bind(workspace.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    /// A page of a workspace's files matching `filter`, newest first.
    pub async fn list(
        &self,
        workspace: Uuid,
        filter: &FileFilter,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<Page<StoredFile>, ApiError> {
        // Conditions are static SQL; every value is a bound parameter.
        let mut conditions = vec!["workspace_id = $1".to_string()];
        let mut texts = vec![workspace.to_string()];
        for word in &filter.words {
            texts.push(like_pattern(word));
            conditions.push(format!("search_name LIKE ${} ESCAPE '\\'", texts.len()));
        }
        match filter.content_type.as_deref() {
            Some(t) if t.ends_with("/*") => {
                texts.push(format!(
                    "{}%",
                    like_pattern(&t[..t.len() - 1]).trim_matches('%')
                ));
                conditions.push(format!("content_type LIKE ${} ESCAPE '\\'", texts.len()));
            }
            Some(t) => {
                texts.push(t.to_string());
                conditions.push(format!("content_type = ${}", texts.len()));
            }
            None => {}
        }
        if let Some(execution) = filter.execution_id {
            texts.push(execution.to_string());
            conditions.push(format!("execution_id = ${}", texts.len()));
        }
        // Times are bound after every text value, so their positions are known.
        let mut times = Vec::new();
        for (bound, op) in [(filter.created_after, ">="), (filter.created_before, "<")] {
            if let Some(t) = bound {
                times.push(t);
                conditions.push(format!("created_at {op} ${}", texts.len() + times.len()));
            }
        }
        let matching = conditions.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) AS n FROM files WHERE {matching}");
        let mut count = sqlx::query(&count_sql);
        for t in &texts {
            count = count.bind(t.clone());
        }
        for t in &times {
            count = count.bind(*t);
        }
        let total: i64 = count.fetch_one(self.db.pool()).await?.try_get("n")?;
        let mut sql = format!("SELECT {COLUMNS} FROM files WHERE {matching}");
        if after.is_some() {
            sql.push_str(&format!(" AND id < ${}", texts.len() + times.len() + 1));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", first + 1));
        let mut page = sqlx::query(&sql);
        for t in texts {
            page = page.bind(t);
        }
        for t in times {
            page = page.bind(t);
        }
        if let Some(after) = after {
            page = page.bind(after.to_string());
        }
        let rows = page.fetch_all(self.db.pool()).await?;
        let items = rows.iter().map(file_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::cut(items, first, total))
    }

    /// What the workspace stores.
    pub async fn usage(&self, workspace: Uuid) -> Result<Usage, ApiError> {
        let row = sqlx::query("SELECT bytes, files FROM workspace_usage WHERE workspace_id = $1")
            .bind(workspace.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(r) => Usage {
                bytes: r.try_get("bytes")?,
                files: r.try_get("files")?,
            },
            None => Usage::default(),
        })
    }

    /// Renames a file of `workspace`; `None` if there is no such file there.
    pub async fn rename(
        &self,
        workspace: Uuid,
        id: Uuid,
        name: &str,
    ) -> Result<Option<StoredFile>, ApiError> {
        let done = sqlx::query(
            "UPDATE files SET name = $1, search_name = $2 WHERE id = $3 AND workspace_id = $4",
        )
        .bind(name)
        .bind(name.to_lowercase())
        .bind(id.to_string())
        .bind(workspace.to_string())
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.file(id).await
    }
}
