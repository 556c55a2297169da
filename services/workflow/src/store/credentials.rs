//! Credentials: stored sealed, listed without their values.

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::Store;

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
            Err(e) if flowfleet_runtime::db::is_unique_violation(&e) => Err(ApiError::conflict(
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
            Err(e) if flowfleet_runtime::db::is_unique_violation(&e) => Err(ApiError::conflict(
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

    /// Validates a definition against the catalog and the workspace's
    /// credentials (ids and kinds): what saving reports, and what publishing,
    /// rollback and the engine's `ValidateDefinition` check.
    pub async fn validate(
        &self,
        workspace: Uuid,
        definition: &flowfleet_definitions::definition::Definition,
    ) -> Result<Vec<flowfleet_definitions::validation::Problem>, ApiError> {
        let credentials: flowfleet_definitions::validation::CredentialKinds = self
            .credentials(workspace)
            .await?
            .into_iter()
            .map(|c| (c.id.to_string(), c.kind.as_str().to_string()))
            .collect();
        Ok(flowfleet_definitions::validation::validate(
            definition,
            &credentials,
        ))
    }

    /// A credential with its sealed value, for the engine (never for the API).
    pub async fn sealed_credential(
        &self,
        id: Uuid,
    ) -> Result<Option<(crate::credentials::Credential, String)>, ApiError> {
        let sql =
            format!("SELECT {CREDENTIAL_COLUMNS}, sealed_value FROM credentials WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((credential_from(&row)?, row.try_get("sealed_value")?))),
        }
    }
}
