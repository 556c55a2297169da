//! The auth service's tables (its own schema): users, workspaces and memberships here;
//! member management and invitations in [`members`], the audit log in [`audit`], the
//! signing keys in [`signing_keys`].

mod account;
mod api_keys;
mod audit;
mod members;
mod mfa;
mod signing_keys;

pub use account::DeletedAccount;
pub use api_keys::NewApiKey;
pub use audit::SecurityEventPage;
pub use mfa::MfaState;
pub use signing_keys::StoredKey;

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::db::{is_unique_violation, Db};
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use flowfleet_security::identity::Role;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{
    Email, Membership, Name, SecurityEvent, SecurityEventKind, TimeZone, User, Workspace,
};
use audit::insert_security_event;

#[derive(Clone)]
pub struct Store {
    db: Db,
}

pub(crate) fn user_from(row: &AnyRow) -> Result<User, ApiError> {
    Ok(User {
        id: uuid_column(row, "id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        time_zone: TimeZone::stored(row.try_get("time_zone")?),
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn workspace_from(row: &AnyRow) -> Result<Workspace, ApiError> {
    Ok(Workspace {
        id: uuid_column(row, "id")?,
        name: row.try_get("name")?,
        time_zone: TimeZone::stored(row.try_get("time_zone")?),
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

    /// Creates a user with a personal workspace they own, and records
    /// `user.created`, all in one transaction.
    pub async fn create_user(
        &self,
        email: &Email,
        name: &Name,
        password_hash: &str,
        now: i64,
    ) -> Result<(User, Workspace), ApiError> {
        let user = User {
            id: Uuid::now_v7(),
            email: email.as_str().to_string(),
            name: name.as_str().to_string(),
            time_zone: TimeZone::utc(),
            created_at: now,
        };
        let workspace = Workspace {
            id: Uuid::now_v7(),
            name: format!("{}'s workspace", name.as_str()),
            time_zone: TimeZone::utc(),
            created_at: now,
        };
        let mut tx = self.db.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.name)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e) {
                ApiError::conflict("an account with this e-mail already exists; log in instead")
            } else {
                e.into()
            });
        }
        insert_workspace(&mut tx, &workspace, user.id, now).await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::account(SecurityEventKind::SignedUp, user.id),
            now,
        )
        .await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "user.created",
                now,
                serde_json::json!({"userId": user.id, "workspaceId": workspace.id}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((user, workspace))
    }

    /// The user and password hash of an account, by e-mail.
    pub async fn credentials(&self, email: &Email) -> Result<Option<(User, String)>, ApiError> {
        self.credentials_where("email", email.as_str().to_string())
            .await
    }

    /// The user and password hash of an account, by id.
    pub async fn credentials_of(&self, id: Uuid) -> Result<Option<(User, String)>, ApiError> {
        self.credentials_where("id", id.to_string()).await
    }

    /// The account whose `column` (a unique column of `users`) is `value`, with its hash.
    async fn credentials_where(
        &self,
        column: &'static str,
        value: String,
    ) -> Result<Option<(User, String)>, ApiError> {
        let sql = format!(
            "SELECT id, email, name, time_zone, created_at, password_hash FROM users WHERE {column} = $1"
        );
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| Ok((user_from(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    /// Replaces an account's password hash; `false` when the account does not exist.
    pub async fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, ApiError> {
        let row =
            sqlx::query("SELECT id, email, name, time_zone, created_at FROM users WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn workspace(&self, id: Uuid) -> Result<Option<Workspace>, ApiError> {
        let row =
            sqlx::query("SELECT id, name, time_zone, created_at FROM workspaces WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        row.as_ref().map(workspace_from).transpose()
    }

    /// Creates a workspace owned by `owner`.
    pub async fn create_workspace(
        &self,
        owner: Uuid,
        name: &Name,
        now: i64,
    ) -> Result<Workspace, ApiError> {
        let workspace = Workspace {
            id: Uuid::now_v7(),
            name: name.as_str().to_string(),
            time_zone: TimeZone::utc(),
            created_at: now,
        };
        let mut tx = self.db.pool().begin().await?;
        insert_workspace(&mut tx, &workspace, owner, now).await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(
                SecurityEventKind::WorkspaceCreated,
                workspace.id,
                owner,
                Some(owner),
            ),
            now,
        )
        .await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "workspace.created",
                now,
                serde_json::json!({"workspaceId": workspace.id, "ownerId": owner}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(workspace)
    }

    /// `user`'s membership role in `workspace`. Authorization asks it through
    /// [`flowfleet_security::access::Access`] (this service's own, and everyone else's through
    /// `CheckMembership`), which applies an API key's scope.
    pub async fn role(&self, user: Uuid, workspace: Uuid) -> Result<Option<Role>, ApiError> {
        let row =
            sqlx::query("SELECT role FROM memberships WHERE user_id = $1 AND workspace_id = $2")
                .bind(user.to_string())
                .bind(workspace.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row
            .map(|r| r.try_get::<String, _>("role"))
            .transpose()?
            .and_then(|r| Role::parse(&r)))
    }

    /// Changes a user's name and time zone (each if given); the user as it is now, or
    /// `None` if there is no such user.
    pub async fn update_user(
        &self,
        id: Uuid,
        name: Option<&Name>,
        time_zone: Option<&TimeZone>,
    ) -> Result<Option<User>, ApiError> {
        self.set_name_and_time_zone("users", id, name, time_zone)
            .await?;
        self.user(id).await
    }

    /// Changes a workspace's name and time zone (each if given); the workspace as it is
    /// now, or `None` if there is no such workspace.
    pub async fn update_workspace(
        &self,
        id: Uuid,
        name: Option<&Name>,
        time_zone: Option<&TimeZone>,
    ) -> Result<Option<Workspace>, ApiError> {
        self.set_name_and_time_zone("workspaces", id, name, time_zone)
            .await?;
        self.workspace(id).await
    }

    /// Sets `name` and `time_zone`, each if given, on row `id` of `table` (`users` or
    /// `workspaces`, which both have the two columns).
    async fn set_name_and_time_zone(
        &self,
        table: &'static str,
        id: Uuid,
        name: Option<&Name>,
        time_zone: Option<&TimeZone>,
    ) -> Result<(), ApiError> {
        sqlx::query(&format!(
            "UPDATE {table} SET name = COALESCE($1, name), time_zone = COALESCE($2, time_zone) \
             WHERE id = $3"
        ))
        .bind(name.map(|n| n.as_str().to_string()))
        .bind(time_zone.map(|t| t.as_str().to_string()))
        .bind(id.to_string())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The user's memberships, oldest workspace first.
    pub async fn memberships(&self, user: Uuid) -> Result<Vec<Membership>, ApiError> {
        let rows = sqlx::query(
            "SELECT w.id, w.name, w.time_zone, w.created_at, m.role FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 ORDER BY w.id",
        )
        .bind(user.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    workspace: workspace_from(r)?,
                    role: members::role_column(r, "role")?,
                })
            })
            .collect()
    }
}

async fn insert_workspace(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    w: &Workspace,
    owner: Uuid,
    now: i64,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(w.id.to_string())
        .bind(&w.name)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, 'OWNER', $3)",
    )
    .bind(w.id.to_string())
    .bind(owner.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl flowfleet_security::access::Memberships for Store {
    async fn role(&self, user: Uuid, workspace: Uuid) -> Result<Option<Role>, ApiError> {
        Store::role(self, user, workspace).await
    }
}
