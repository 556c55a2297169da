//! API keys for integrations: created by a workspace's admins (never above their own
//! role), shown once, listed with when they were last used, revocable at once.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::api_keys::api_key_cache_key;
use flowfleet_security::identity::Role;

use super::Ctx;
use crate::domain::{self, ApiKeySecret, Name};
use crate::store::NewApiKey;

/// An API key (never its secret).
#[derive(SimpleObject)]
#[graphql(name = "ApiKey")]
pub struct ApiKeyNode {
    pub id: ID,
    pub workspace_id: ID,
    pub name: String,
    /// The most the key may do; its creator's current role caps it further.
    pub role: Role,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_by: ID,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// To the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<domain::ApiKey> for ApiKeyNode {
    fn from(k: domain::ApiKey) -> Self {
        ApiKeyNode {
            id: ID(k.id.to_string()),
            workspace_id: ID(k.workspace.to_string()),
            name: k.name,
            role: k.role,
            prefix: k.prefix,
            created_by: ID(k.created_by.to_string()),
            created_at: to_datetime(k.created_at),
            expires_at: k.expires_at.map(to_datetime),
            last_used_at: k.last_used_at.map(to_datetime),
            revoked_at: k.revoked_at.map(to_datetime),
        }
    }
}

#[derive(SimpleObject)]
pub struct ApiKeyPayload {
    pub api_key: ApiKeyNode,
    /// Shown once: send it as `Authorization: Bearer <key>`. Only its hash is stored.
    pub key: String,
}

#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    /// Creates an API key for a workspace (ADMIN or above, with a role up to your own). It
    /// acts as you, within its role, in that workspace only. `expiresInDays` (1 to 3650)
    /// is optional; without it the key lasts until revoked.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        name: String,
        role: Role,
        expires_in_days: Option<i32>,
    ) -> Result<ApiKeyPayload> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let name = Name::parse("name", &name)?;
        let days = match expires_in_days {
            None => None,
            Some(d @ 1..=3650) => Some(i64::from(d)),
            Some(_) => {
                return Err(
                    ApiError::bad_input("`expiresInDays` must be between 1 and 3650").into(),
                )
            }
        };
        let secret = ApiKeySecret::from_random(super::random_bytes()?);
        let now = c.clock.now_ms();
        let key = c
            .store
            .create_api_key(
                me.user_id,
                NewApiKey {
                    workspace,
                    name: name.as_str(),
                    role,
                    secret_hash: &secret.hash(),
                    prefix: &secret.prefix(),
                    expires_at: days.map(|d| now + d * 24 * 3600 * 1000),
                },
                now,
            )
            .await?;
        Ok(ApiKeyPayload {
            api_key: key.into(),
            key: secret.expose().to_string(),
        })
    }

    /// Revokes an API key; it stops working at once, everywhere.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<ApiKeyNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        let (key, hash) = c
            .store
            .revoke_api_key(id, me.user_id, c.clock.now_ms())
            .await?;
        if let Err(e) = c.cache.delete(&api_key_cache_key(&hash)).await {
            tracing::warn!(error = %e, "could not drop a cached API key; it expires in seconds");
        }
        Ok(key.into())
    }
}
