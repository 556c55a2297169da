//! The workflow service's tables: workflows and their immutable versions.

use flowfleet_shared::db::uuid_column;
use flowfleet_shared::db::{Db, Page};
use flowfleet_shared::error::ApiError;
use flowfleet_shared::events::{outbox, Event};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{self, Status, Version, Workflow};

#[derive(Clone)]
pub struct Store {
    db: Db,
}

const COLUMNS: &str = "id, workspace_id, owner_id, name, description, status, definition, \
                       revision, published_version, created_at, updated_at";

fn workflow_from(row: &AnyRow) -> Result<Workflow, ApiError> {
    let status: String = row.try_get("status")?;
    let definition: String = row.try_get("definition")?;
    Ok(Workflow {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        owner_id: uuid_column(row, "owner_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        status: Status::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("stored status `{status}`")))?,
        definition: serde_json::from_str(&definition).map_err(ApiError::internal)?,
        revision: row.try_get("revision")?,
        published_version: row.try_get::<Option<i64>, _>("published_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn new(db: Db) -> Self {
        Store { db }
    }

    pub async fn insert(&self, w: &Workflow) -> Result<(), ApiError> {
        sqlx::query(&format!(
            "INSERT INTO workflows ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(w.id.to_string())
        .bind(w.workspace_id.to_string())
        .bind(w.owner_id.to_string())
        .bind(&w.name)
        .bind(&w.description)
        .bind(w.status.as_str())
        .bind(serde_json::to_string(&w.definition).map_err(ApiError::internal)?)
        .bind(w.revision)
        .bind(w.published_version)
        .bind(w.created_at)
        .bind(w.updated_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Workflow>, ApiError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM workflows WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(workflow_from).transpose()
    }

    pub async fn list(
        &self,
        workspace: Uuid,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<Page<Workflow>, ApiError> {
        self.db
            .page_newest_first(
                "workflows",
                COLUMNS,
                "workspace_id",
                workspace,
                first,
                after,
                workflow_from,
            )
            .await
    }

    /// Freezes the current draft as the next version, marks the workflow
    /// ACTIVE and records `workflow.published`, in one transaction. The draft's
    /// revision must still be `expected_revision` (else `CONFLICT`).
    pub async fn publish(&self, w: &Workflow, by: Uuid, now: i64) -> Result<Version, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 AS v FROM workflow_versions WHERE workflow_id = $1",
        )
        .bind(w.id.to_string())
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>("v")?;
        let version = Version {
            workflow_id: w.id,
            version: next,
            definition: w.definition.clone(),
            content_hash: domain::content_hash(&w.definition),
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO workflow_versions (workflow_id, version, definition, content_hash, published_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(w.id.to_string())
        .bind(next)
        .bind(serde_json::to_string(&version.definition).map_err(ApiError::internal)?)
        .bind(&version.content_hash)
        .bind(by.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query(
            "UPDATE workflows SET status = 'ACTIVE', published_version = $1, updated_at = $2 \
             WHERE id = $3 AND revision = $4",
        )
        .bind(next)
        .bind(now)
        .bind(w.id.to_string())
        .bind(w.revision)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(ApiError::conflict(
                "the workflow changed while publishing; reload it and publish again",
            ));
        }
        outbox::record(
            &mut tx,
            &Event::new(
                "workflow.published",
                now,
                serde_json::json!({
                    "workflowId": w.id, "workspaceId": w.workspace_id,
                    "version": next, "contentHash": version.content_hash, "publishedBy": by,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(version)
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
        let row = sqlx::query(
            "SELECT definition, content_hash, created_at FROM workflow_versions \
             WHERE workflow_id = $1 AND version = $2",
        )
        .bind(workflow.to_string())
        .bind(n)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let definition: String = row.try_get("definition")?;
        let version = Version {
            workflow_id: workflow,
            version: n,
            definition: serde_json::from_str(&definition).map_err(ApiError::internal)?,
            content_hash: row.try_get("content_hash")?,
            created_at: row.try_get("created_at")?,
        };
        Ok(Some((w, version)))
    }
}

fn credential_from(row: &AnyRow) -> Result<crate::credentials::Credential, ApiError> {
    let kind: String = row.try_get("kind")?;
    Ok(crate::credentials::Credential {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        name: row.try_get("name")?,
        kind: crate::credentials::CredentialKind::parse(&kind)
            .ok_or_else(|| ApiError::internal(format!("stored credential kind `{kind}`")))?,
        created_by: uuid_column(row, "created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const CREDENTIAL_COLUMNS: &str = "id, workspace_id, name, kind, created_by, created_at, updated_at";

/// Credentials: stored sealed, listed without their values.
impl Store {
    pub async fn create_credential(
        &self,
        credential: &crate::credentials::Credential,
        sealed: &str,
    ) -> Result<(), ApiError> {
        let inserted = sqlx::query(
            "INSERT INTO credentials (id, workspace_id, name, kind, sealed_value, created_by, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(credential.id.to_string())
        .bind(credential.workspace_id.to_string())
        .bind(&credential.name)
        .bind(credential.kind.as_str())
        .bind(sealed)
        .bind(credential.created_by.to_string())
        .bind(credential.created_at)
        .bind(credential.updated_at)
        .execute(self.db.pool())
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if flowfleet_shared::db::is_unique_violation(&e) => Err(ApiError::conflict(
                "this workspace already has a credential with that name",
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn credential(
        &self,
        id: Uuid,
    ) -> Result<Option<crate::credentials::Credential>, ApiError> {
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(credential_from).transpose()
    }

    pub async fn credentials(
        &self,
        workspace: Uuid,
    ) -> Result<Vec<crate::credentials::Credential>, ApiError> {
        let sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE workspace_id = $1 ORDER BY name, id"
        );
        let rows = sqlx::query(&sql)
            .bind(workspace.to_string())
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(credential_from).collect()
    }

    /// Renames and/or replaces the sealed value; `false` if the credential is gone.
    pub async fn update_credential(
        &self,
        id: Uuid,
        name: Option<&str>,
        sealed: Option<&str>,
        now: i64,
    ) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "UPDATE credentials SET name = COALESCE($1, name), \
             sealed_value = COALESCE($2, sealed_value), updated_at = $3 WHERE id = $4",
        )
        .bind(name)
        .bind(sealed)
        .bind(now)
        .bind(id.to_string())
        .execute(self.db.pool())
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if flowfleet_shared::db::is_unique_violation(&e) => Err(ApiError::conflict(
                "this workspace already has a credential with that name",
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_credential(&self, id: Uuid) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM credentials WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
