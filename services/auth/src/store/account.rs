//! Deleting an account, and what the auth service holds about a user.
//!
//! Deletion runs in one transaction: workspaces the user is the only member of are deleted
//! with everything in them; a workspace where the user is the only owner but not the only
//! member refuses (someone must own it); the user's memberships, second factor, API keys and
//! pending invitations go; the audit log keeps its entries with the user replaced by
//! [`DELETED_USER`] and their addresses and details cleared; and `user.deleted` (plus one
//! `workspace.deleted` per deleted workspace) goes to the outbox, on which every other
//! service erases or anonymises what it holds.

use async_trait::async_trait;
use flowfleet_host::privacy::{erase, erase_in, export_rows, Column, UserDataHolder, DELETED_USER};
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use flowfleet_security::identity::Role;
use sqlx::Row;
use uuid::Uuid;

use super::audit::insert_security_event;
use super::members::role_column;
use super::Store;
use crate::domain::{SecurityEvent, SecurityEventKind};

/// What deleting an account removed, for the caller to clean caches.
pub struct DeletedAccount {
    /// Workspaces deleted because the user was their only member.
    pub workspaces: Vec<Uuid>,
    /// Every workspace the user was a member of.
    pub memberships: Vec<Uuid>,
    /// Hashes of the user's API keys (deleted).
    pub api_key_hashes: Vec<String>,
}

/// Anonymises the audit log and removes what exists only for the user. Idempotent.
const ERASE_USER: &[&str] = &[
    "UPDATE security_events SET ip = NULL, detail = '{}' WHERE user_id = $1",
    "UPDATE security_events SET user_id = $2 WHERE user_id = $1",
    "UPDATE security_events SET actor_id = $2 WHERE actor_id = $1",
    "UPDATE invitations SET invited_by = $2 WHERE invited_by = $1",
    "UPDATE invitations SET accepted_by = $2 WHERE accepted_by = $1",
    "DELETE FROM api_keys WHERE created_by = $1",
];

const ERASE_WORKSPACE: &[&str] = &[
    "DELETE FROM invitations WHERE workspace_id = $1",
    "DELETE FROM api_keys WHERE workspace_id = $1",
    "DELETE FROM memberships WHERE workspace_id = $1",
    "UPDATE security_events SET workspace_id = $2 WHERE workspace_id = $1",
    "DELETE FROM workspaces WHERE id = $1",
];

impl Store {
    /// Deletes `user`'s account (see the module docs).
    pub async fn delete_account(&self, user: Uuid, now: i64) -> Result<DeletedAccount, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let email: String = sqlx::query("SELECT email FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))?
            .try_get("email")?;
        let rows = sqlx::query(
            "SELECT m.workspace_id, m.role, w.name, \
             (SELECT COUNT(*) FROM memberships o WHERE o.workspace_id = m.workspace_id) AS members, \
             (SELECT COUNT(*) FROM memberships o WHERE o.workspace_id = m.workspace_id \
                AND o.role = 'OWNER') AS owners \
             FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1",
        )
        .bind(user.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut deleted = DeletedAccount {
            workspaces: Vec::new(),
            memberships: Vec::new(),
            api_key_hashes: Vec::new(),
        };
        let mut shared = Vec::new();
        for row in &rows {
            let workspace: Uuid = row
                .try_get::<String, _>("workspace_id")?
                .parse()
                .map_err(ApiError::internal)?;
            let role = role_column(row, "role")?;
            let (members, owners): (i64, i64) = (row.try_get("members")?, row.try_get("owners")?);
            deleted.memberships.push(workspace);
            if members == 1 {
                deleted.workspaces.push(workspace);
            } else if role == Role::Owner && owners == 1 {
                let name: String = row.try_get("name")?;
                return Err(ApiError::conflict(format!(
                    "you are the only owner of the workspace `{name}`, which has other members: \
                     make one of them OWNER first"
                )));
            } else {
                shared.push((workspace, role));
            }
        }
        deleted.api_key_hashes =
            sqlx::query("SELECT secret_hash FROM api_keys WHERE created_by = $1")
                .bind(user.to_string())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("secret_hash"))
                .collect::<Result<_, _>>()?;
        for workspace in &deleted.workspaces {
            erase_in(&mut tx, ERASE_WORKSPACE, *workspace).await?;
        }
        sqlx::query("DELETE FROM invitations WHERE email = $1 AND accepted_at IS NULL")
            .bind(&email)
            .execute(&mut *tx)
            .await?;
        erase_in(&mut tx, ERASE_USER, user).await?;
        // Memberships, the second factor and recovery codes go with the user (cascade).
        sqlx::query("DELETE FROM memberships WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        // The workspaces that keep existing learn that a member left.
        for (workspace, role) in shared {
            insert_security_event(
                &mut *tx,
                &SecurityEvent {
                    kind: SecurityEventKind::MemberRemoved,
                    user: Some(DELETED_USER),
                    actor: Some(DELETED_USER),
                    workspace: Some(workspace),
                    ip: None,
                    detail: serde_json::json!({"role": role.as_str(), "accountDeleted": true}),
                },
                now,
            )
            .await?;
        }
        outbox::record(
            &mut tx,
            &Event::new("user.deleted", now, serde_json::json!({"userId": user})),
        )
        .await?;
        for workspace in &deleted.workspaces {
            outbox::record(
                &mut tx,
                &Event::new(
                    "workspace.deleted",
                    now,
                    serde_json::json!({"workspaceId": workspace}),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

#[async_trait]
impl UserDataHolder for Store {
    async fn export_user(&self, user: Uuid) -> Result<serde_json::Value, ApiError> {
        use Column::*;
        let account = export_rows(
            &self.db,
            "SELECT id, email, name, time_zone, created_at FROM users WHERE id = $1",
            user,
            &[
                Text("id"),
                Text("email"),
                Text("name"),
                Text("time_zone"),
                Int("created_at"),
            ],
        )
        .await?;
        Ok(serde_json::json!({
            "account": account.into_iter().next(),
            "memberships": export_rows(
                &self.db,
                "SELECT m.workspace_id, w.name AS workspace_name, m.role, m.created_at AS joined_at \
                 FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 \
                 ORDER BY m.workspace_id",
                user,
                &[Text("workspace_id"), Text("workspace_name"), Text("role"), Int("joined_at")],
            ).await?,
            "secondFactor": export_rows(
                &self.db,
                "SELECT enabled_at FROM mfa WHERE user_id = $1 AND seed IS NOT NULL",
                user,
                &[Int("enabled_at")],
            ).await?,
            "apiKeysCreated": export_rows(
                &self.db,
                "SELECT id, workspace_id, name, role, prefix, created_at, expires_at, last_used_at, \
                 revoked_at FROM api_keys WHERE created_by = $1 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("name"), Text("role"), Text("prefix"), Int("created_at"), Int("expires_at"), Int("last_used_at"), Int("revoked_at")],
            ).await?,
            "invitationsSent": export_rows(
                &self.db,
                "SELECT id, workspace_id, email, role, created_at, accepted_at, revoked_at \
                 FROM invitations WHERE invited_by = $1 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("email"), Text("role"), Int("created_at"), Int("accepted_at"), Int("revoked_at")],
            ).await?,
            "securityEvents": export_rows(
                &self.db,
                "SELECT id, kind, occurred_at, actor_id, workspace_id, ip, detail \
                 FROM security_events WHERE user_id = $1 ORDER BY id",
                user,
                &[Text("id"), Text("kind"), Int("occurred_at"), Text("actor_id"), Text("workspace_id"), Text("ip"), Json("detail")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(&self.db, ERASE_USER, user).await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        erase(&self.db, ERASE_WORKSPACE, workspace).await
    }
}
