//! Members and invitations. Every change that could take a workspace's last owner away
//! runs under a lock on the workspace's row, so two owners demoting each other at once
//! cannot both succeed: the second sees the first's change and is refused.

use flowfleet_runtime::db::{is_unique_violation, uuid_column};
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use flowfleet_security::identity::Role;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::audit::insert_security_event;
use super::{user_from, workspace_from, Store};
use crate::domain::{
    self, Email, Invitation, Member, SecurityEvent, SecurityEventKind, User, Workspace,
};

type Tx<'a> = Transaction<'a, Any>;

pub(crate) fn role_column(row: &AnyRow, column: &str) -> Result<Role, ApiError> {
    let role: String = row.try_get(column)?;
    Role::parse(&role).ok_or_else(|| ApiError::internal(format!("stored role `{role}`")))
}

fn invitation_from(row: &AnyRow) -> Result<Invitation, ApiError> {
    Ok(Invitation {
        id: uuid_column(row, "id")?,
        workspace: uuid_column(row, "workspace_id")?,
        email: row.try_get("email")?,
        role: role_column(row, "role")?,
        invited_by: uuid_column(row, "invited_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        accepted_at: row.try_get("accepted_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const INVITATION_COLUMNS: &str = "id, workspace_id, email, role, invited_by, created_at, \
     expires_at, accepted_at, revoked_at";

/// Takes the workspace's row lock for the rest of `tx` (a no-op write: portable, and on
/// SQLite it takes the database's write lock). `false` when there is no such workspace.
async fn lock_workspace(tx: &mut Tx<'_>, workspace: Uuid) -> Result<bool, ApiError> {
    let done = sqlx::query("UPDATE workspaces SET name = name WHERE id = $1")
        .bind(workspace.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

async fn role_in(tx: &mut Tx<'_>, user: Uuid, workspace: Uuid) -> Result<Option<Role>, ApiError> {
    let row = sqlx::query("SELECT role FROM memberships WHERE user_id = $1 AND workspace_id = $2")
        .bind(user.to_string())
        .bind(workspace.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| role_column(&r, "role")).transpose()
}

async fn owner_count(tx: &mut Tx<'_>, workspace: Uuid) -> Result<i64, ApiError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM memberships WHERE workspace_id = $1 AND role = 'OWNER'",
    )
    .bind(workspace.to_string())
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("n")?)
}

/// The actor's role, under the lock; a non-member gets the same answer as for a workspace
/// that does not exist.
pub(super) async fn actor_role(
    tx: &mut Tx<'_>,
    actor: Uuid,
    workspace: Uuid,
) -> Result<Role, ApiError> {
    let not_member = || ApiError::forbidden("you are not a member of this workspace");
    if !lock_workspace(tx, workspace).await? {
        return Err(not_member());
    }
    role_in(tx, actor, workspace).await?.ok_or_else(not_member)
}

/// Under the workspace's lock: the actor's role and the target member's.
async fn roles_of(
    tx: &mut Tx<'_>,
    workspace: Uuid,
    actor: Uuid,
    target: Uuid,
) -> Result<(Role, Role), ApiError> {
    let actor_role = actor_role(tx, actor, workspace).await?;
    let current = role_in(tx, target, workspace)
        .await?
        .ok_or_else(|| ApiError::not_found("this user is not a member of the workspace"))?;
    Ok((actor_role, current))
}

impl Store {
    /// The workspace's members, in the order they joined.
    pub async fn members(&self, workspace: Uuid) -> Result<Vec<Member>, ApiError> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, u.time_zone, u.created_at, m.role, m.created_at AS joined_at \
             FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 ORDER BY m.created_at, u.id",
        )
        .bind(workspace.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    user: user_from(r)?,
                    role: role_column(r, "role")?,
                    joined_at: r.try_get("joined_at")?,
                })
            })
            .collect()
    }

    /// Changes `target`'s role, if the actor may and the workspace keeps an owner.
    /// Returns the member's previous role.
    pub async fn change_role(
        &self,
        workspace: Uuid,
        actor: Uuid,
        target: Uuid,
        new: Role,
        now: i64,
    ) -> Result<Role, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let (actor_role, current) = roles_of(&mut tx, workspace, actor, target).await?;
        domain::may_change_role(actor_role, current, new)?;
        domain::keeps_an_owner(owner_count(&mut tx, workspace).await?, current, Some(new))?;
        sqlx::query("UPDATE memberships SET role = $1 WHERE workspace_id = $2 AND user_id = $3")
            .bind(new.as_str())
            .bind(workspace.to_string())
            .bind(target.to_string())
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({"from": current.as_str(), "to": new.as_str()});
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(
                SecurityEventKind::MemberRoleChanged,
                workspace,
                actor,
                Some(target),
            )
            .with_detail(detail.clone()),
            now,
        )
        .await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "member.role_changed",
                now,
                serde_json::json!({"workspaceId": workspace, "userId": target, "from": current.as_str(), "to": new.as_str()}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(current)
    }

    /// Removes `target` from the workspace (the actor themself: leaving). Returns the role
    /// they had.
    pub async fn remove_member(
        &self,
        workspace: Uuid,
        actor: Uuid,
        target: Uuid,
        now: i64,
    ) -> Result<Role, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let (actor_role, current) = roles_of(&mut tx, workspace, actor, target).await?;
        domain::may_remove(actor_role, current, actor == target)?;
        domain::keeps_an_owner(owner_count(&mut tx, workspace).await?, current, None)?;
        sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace.to_string())
            .bind(target.to_string())
            .execute(&mut *tx)
            .await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(
                SecurityEventKind::MemberRemoved,
                workspace,
                actor,
                Some(target),
            )
            .with_detail(serde_json::json!({"role": current.as_str(), "left": actor == target})),
            now,
        )
        .await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "member.removed",
                now,
                serde_json::json!({"workspaceId": workspace, "userId": target}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(current)
    }

    /// Records an invitation (the caller made the token and keeps only its hash).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_invitation(
        &self,
        workspace: Uuid,
        actor: Uuid,
        email: &Email,
        role: Role,
        token_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Invitation, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let actor_role = actor_role(&mut tx, actor, workspace).await?;
        domain::may_grant(actor_role, role)?;
        let already = sqlx::query(
            "SELECT 1 AS one FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 AND u.email = $2",
        )
        .bind(workspace.to_string())
        .bind(email.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if already.is_some() {
            return Err(ApiError::conflict(
                "this person is already a member; change their role instead",
            ));
        }
        let invitation = Invitation {
            id: Uuid::now_v7(),
            workspace,
            email: email.as_str().to_string(),
            role,
            invited_by: actor,
            created_at: now,
            expires_at,
            accepted_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO invitations (id, workspace_id, email, role, token_hash, invited_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(invitation.id.to_string())
        .bind(workspace.to_string())
        .bind(&invitation.email)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(actor.to_string())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(SecurityEventKind::MemberInvited, workspace, actor, None)
                .with_detail(serde_json::json!({
                    "invitationId": invitation.id,
                    "email": invitation.email,
                    "role": role.as_str(),
                })),
            now,
        )
        .await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "member.invited",
                now,
                serde_json::json!({
                    "workspaceId": workspace,
                    "invitationId": invitation.id,
                    "email": invitation.email,
                    "role": role.as_str(),
                    "invitedBy": actor,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(invitation)
    }

    /// The workspace's invitations that can still be accepted, newest first.
    pub async fn pending_invitations(
        &self,
        workspace: Uuid,
        now: i64,
    ) -> Result<Vec<Invitation>, ApiError> {
        let sql = format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations WHERE workspace_id = $1 \
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(workspace.to_string())
            .bind(now)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(invitation_from).collect()
    }

    /// Revokes a pending invitation of a workspace the actor manages.
    pub async fn revoke_invitation(
        &self,
        id: Uuid,
        actor: Uuid,
        now: i64,
    ) -> Result<Invitation, ApiError> {
        let missing = || ApiError::not_found("no such pending invitation");
        let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(missing)?;
        let invitation = invitation_from(&row)?;
        let mut tx = self.db.pool().begin().await?;
        // Whoever cannot manage the workspace learns nothing about its invitations.
        let actor_role = actor_role(&mut tx, actor, invitation.workspace)
            .await
            .map_err(|_| missing())?;
        domain::may_grant(actor_role, invitation.role)?;
        let done = sqlx::query(
            "UPDATE invitations SET revoked_at = $1 WHERE id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(missing());
        }
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(
                SecurityEventKind::InvitationRevoked,
                invitation.workspace,
                actor,
                None,
            )
            .with_detail(serde_json::json!({"invitationId": id, "email": invitation.email})),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Invitation {
            revoked_at: Some(now),
            ..invitation
        })
    }

    /// Accepts an invitation for `user`: once, before it expires, and only by the invited
    /// e-mail address. Returns the workspace joined and the role.
    pub async fn accept_invitation(
        &self,
        token_hash: &str,
        user: &User,
        now: i64,
    ) -> Result<(Workspace, Role), ApiError> {
        let missing = || ApiError::not_found("this invitation does not exist; ask for a new one");
        let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(missing)?;
        let invitation = invitation_from(&row)?;
        if invitation.email != user.email {
            return Err(ApiError::forbidden(
                "this invitation is for another e-mail address; sign in with the invited address",
            ));
        }
        if invitation.revoked_at.is_some() {
            return Err(ApiError::conflict(
                "this invitation was revoked; ask for a new one",
            ));
        }
        if invitation.accepted_at.is_some() {
            return Err(ApiError::conflict("this invitation was already accepted"));
        }
        if invitation.expires_at <= now {
            return Err(ApiError::conflict(
                "this invitation has expired; ask for a new one",
            ));
        }
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE invitations SET accepted_at = $1, accepted_by = $2 WHERE id = $3 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user.id.to_string())
        .bind(invitation.id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(ApiError::conflict(
                "this invitation was accepted or revoked meanwhile",
            ));
        }
        let inserted = sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(invitation.workspace.to_string())
        .bind(user.id.to_string())
        .bind(invitation.role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e) {
                ApiError::conflict("you are already a member of this workspace")
            } else {
                e.into()
            });
        }
        insert_security_event(
            &mut *tx,
            &SecurityEvent::workspace(
                SecurityEventKind::MemberJoined,
                invitation.workspace,
                user.id,
                Some(user.id),
            )
            .with_detail(serde_json::json!({
                "invitationId": invitation.id,
                "role": invitation.role.as_str(),
                "invitedBy": invitation.invited_by,
            })),
            now,
        )
        .await?;
        outbox::record(
            &mut tx,
            &Event::new(
                "member.joined",
                now,
                serde_json::json!({
                    "workspaceId": invitation.workspace,
                    "userId": user.id,
                    "role": invitation.role.as_str(),
                }),
            ),
        )
        .await?;
        let workspace =
            sqlx::query("SELECT id, name, time_zone, created_at FROM workspaces WHERE id = $1")
                .bind(invitation.workspace.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let workspace = workspace_from(&workspace)?;
        tx.commit().await?;
        Ok((workspace, invitation.role))
    }
}
