//! The storage service's tables (its own schema): file metadata, settings and
//! the outbox.

mod privacy;

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::db::Db;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{SigningKey, StoredFile};

#[derive(Clone)]
pub struct Store {
    db: Db,
}

const COLUMNS: &str =
    "id, workspace_id, owner_id, execution_id, name, content_type, size, sha256, blob_key, created_at";

const SIGNING_KEY: &str = "url_signing_key";

fn file_from(row: &AnyRow) -> Result<StoredFile, ApiError> {
    let execution_id: Option<String> = row.try_get("execution_id")?;
    Ok(StoredFile {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        owner_id: uuid_column(row, "owner_id")?,
        execution_id: execution_id
            .map(|e| e.parse().map_err(ApiError::internal))
            .transpose()?,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
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

    /// Stores the file's metadata and records `file.created`, in one transaction.
    pub async fn insert(&self, f: &StoredFile) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(f.id.to_string())
        .bind(f.workspace_id.to_string())
        .bind(f.owner_id.to_string())
        .bind(f.execution_id.map(|e| e.to_string()))
        .bind(&f.name)
        .bind(&f.content_type)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.blob_key)
        .bind(f.created_at)
        .execute(&mut *tx)
        .await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "file.created",
                f.created_at,
                serde_json::json!({
                    "fileId": f.id,
                    "workspaceId": f.workspace_id,
                    "ownerId": f.owner_id,
                    "executionId": f.execution_id,
                    "size": f.size,
                    "sha256": f.sha256,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
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
}
