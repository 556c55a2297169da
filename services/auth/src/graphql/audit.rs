//! Reading the security audit log: a workspace's (for its admins) or one's own.

use async_graphql::{Json, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::{parse_id, ApiError};
use uuid::Uuid;

use super::Ctx;
use crate::domain::{SecurityEventKind, StoredSecurityEvent};

/// One entry of the security audit log.
#[derive(SimpleObject)]
#[graphql(name = "SecurityEvent")]
pub struct SecurityEventNode {
    pub id: ID,
    pub kind: SecurityEventKind,
    pub occurred_at: DateTime<Utc>,
    /// Whom it is about (absent for a failed sign-in with an unknown e-mail).
    pub user_id: Option<ID>,
    /// Who caused it.
    pub actor_id: Option<ID>,
    /// The workspace it changed (absent for account events such as sign-ins).
    pub workspace_id: Option<ID>,
    /// The client's address, when known.
    pub ip: Option<String>,
    /// Kind-specific facts: roles before and after, the invited address, a key's name.
    pub detail: Json<serde_json::Value>,
}

impl From<StoredSecurityEvent> for SecurityEventNode {
    fn from(stored: StoredSecurityEvent) -> Self {
        let id = |u: Uuid| ID(u.to_string());
        let e = stored.event;
        SecurityEventNode {
            id: id(stored.id),
            kind: e.kind,
            occurred_at: to_datetime(stored.occurred_at),
            user_id: e.user.map(id),
            actor_id: e.actor.map(id),
            workspace_id: e.workspace.map(id),
            ip: e.ip,
            detail: Json(e.detail),
        }
    }
}

#[derive(SimpleObject)]
pub struct SecurityEventConnection {
    pub nodes: Vec<SecurityEventNode>,
    pub page_info: SecurityEventPageInfo,
}

#[derive(SimpleObject)]
pub struct SecurityEventPageInfo {
    pub has_next_page: bool,
    /// Pass as `after` for the next (older) page.
    pub end_cursor: Option<String>,
}

/// A page of a workspace's log (`workspace`), or of one user's own entries.
pub(super) async fn security_events(
    c: &Ctx,
    subject: Uuid,
    workspace: bool,
    first: i32,
    after: Option<String>,
) -> Result<SecurityEventConnection, ApiError> {
    let after = after.map(|a| parse_id("after", &a)).transpose()?;
    let first = i64::from(first);
    let page = if workspace {
        c.store
            .workspace_security_events(subject, first, after)
            .await?
    } else {
        c.store.user_security_events(subject, first, after).await?
    };
    let end_cursor = page.events.last().map(|e| e.id.to_string());
    Ok(SecurityEventConnection {
        nodes: page.events.into_iter().map(Into::into).collect(),
        page_info: SecurityEventPageInfo {
            has_next_page: page.has_next,
            end_cursor,
        },
    })
}
