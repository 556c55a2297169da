//! A user's privacy: exporting everything the fleet holds about them (gathered from every
//! service over gRPC, with their own credential), and deleting their account.

use std::sync::{Arc, OnceLock};

use async_graphql::{Context, Json, Object, Result};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::privacy::v1::user_data_client::UserDataClient;
use flowfleet_runtime::proto::privacy::v1::ExportUserDataRequest;
use flowfleet_security::access::membership_cache_key;
use flowfleet_security::api_keys::api_key_cache_key;

use super::Ctx;
use crate::password;

/// Channels to every service's `UserData` export, this one's included. Set once the
/// services exist (in one process they are built after this one).
pub type ExportPeers = Arc<OnceLock<Vec<(ServiceName, GrpcChannel)>>>;

/// Everything every service holds about the signed-in user.
pub(super) async fn export(ctx: &Context<'_>) -> Result<Json<serde_json::Value>, ApiError> {
    let me = caller(ctx).require_session()?;
    let c = ctx
        .data::<Ctx>()
        .map_err(|e| ApiError::internal(e.message))?;
    let peers = c
        .export_peers
        .get()
        .ok_or_else(|| ApiError::internal("the export peers are not wired"))?;
    // Each call carries the user's own credential (the request is served on their behalf),
    // and each service checks it is their data.
    let answers = futures::future::join_all(peers.iter().map(|(name, channel)| {
        let request = ExportUserDataRequest {
            user_id: me.user_id.to_string(),
        };
        let mut client = UserDataClient::new(channel.clone());
        async move { (*name, client.export_user_data(request).await) }
    }))
    .await;
    let mut services = serde_json::Map::new();
    for (name, answer) in answers {
        let export = answer.map_err(|status| {
            tracing::error!(service = %name, %status, "export failed");
            ApiError::new(
                flowfleet_runtime::error::ErrorCode::Internal,
                format!("the {name} service could not export your data right now; try again"),
            )
        })?;
        let data: serde_json::Value =
            serde_json::from_str(&export.into_inner().json).map_err(ApiError::internal)?;
        services.insert(name.as_str().to_string(), data);
    }
    Ok(Json(serde_json::json!({
        "userId": me.user_id,
        "exportedAt": flowfleet_runtime::clock::to_datetime(c.clock.now_ms()),
        "services": services,
    })))
}

#[derive(Default)]
pub struct PrivacyMutation;

#[Object]
impl PrivacyMutation {
    /// Deletes the caller's account, after checking the password (and the second factor,
    /// if enrolled). Workspaces where the caller is the only member are deleted with all
    /// their data; a workspace where the caller is the only owner among other members must
    /// get another owner first (`CONFLICT`). Every service then erases or anonymises what it
    /// holds about the caller. Sessions end at once.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn delete_my_account(
        &self,
        ctx: &Context<'_>,
        password: String,
        totp_code: Option<String>,
    ) -> Result<bool> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let Some((user, hash)) = c.store.credentials_of(me.user_id).await? else {
            return Err(ApiError::unauthenticated("this account no longer exists").into());
        };
        if !password::verify(password, hash).await? {
            return Err(ApiError::unauthenticated("the password is wrong").into());
        }
        c.second_factor(&user, totp_code, None).await?;
        let deleted = c.store.delete_account(user.id, c.clock.now_ms()).await?;
        c.sessions
            .end_all(&user.id.to_string(), None)
            .await
            .map_err(ApiError::internal)?;
        for workspace in &deleted.memberships {
            let _ = c
                .cache
                .delete(&membership_cache_key(user.id, *workspace))
                .await;
        }
        for hash in &deleted.api_key_hashes {
            let _ = c.cache.delete(&api_key_cache_key(hash)).await;
        }
        tracing::info!(
            workspaces_deleted = deleted.workspaces.len(),
            "account deleted"
        );
        Ok(true)
    }
}
