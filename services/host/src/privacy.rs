//! Each service's part in a user's privacy: exporting what it holds about a user, and
//! erasing or anonymising it when the user deletes their account.
//!
//! A service implements [`UserDataHolder`] on its store (plain SQL, no other wiring), then
//! [`routes`] serves the `flowfleet.privacy.v1.UserData` gRPC service for it (the auth
//! service gathers every service's export for `exportMyData`), and [`bind`] plus
//! [`PrivacyEvents`] consume `user.deleted` and `workspace.deleted` from the bus.
//!
//! What erasing means, per service: rows that exist only for the user (their
//! notifications) are deleted; rows that belong to a workspace and merely name the user
//! (who owns a workflow, who started an execution, who uploaded a file) keep existing for
//! the workspace's other members with the user replaced by [`DELETED_USER`]. A deleted
//! workspace (one the user was the only member of) takes all its rows with it.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use uuid::Uuid;

use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::events::consumer::{Consumer, EventHandler};
use flowfleet_runtime::events::{BusError, Event, EventBus};
use flowfleet_runtime::proto::privacy::v1::user_data_server::{UserData, UserDataServer};
use flowfleet_runtime::proto::privacy::v1::{ExportUserDataRequest, UserDataExport};
use flowfleet_security::service_auth::{GrpcCaller, GrpcGuard};

/// Who rows of a deleted user name instead of them.
pub const DELETED_USER: Uuid = Uuid::nil();

/// What a service holds about users.
#[async_trait]
pub trait UserDataHolder: Send + Sync + 'static {
    /// Everything held about `user`, as a JSON object.
    async fn export_user(&self, user: Uuid) -> Result<serde_json::Value, ApiError>;
    /// Deletes or anonymises what names `user`. Idempotent.
    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError>;
    /// Deletes everything of `workspace`. Idempotent.
    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError>;
}

struct Server {
    service: &'static str,
    holder: Arc<dyn UserDataHolder>,
    guard: GrpcGuard,
}

#[tonic::async_trait]
impl UserData for Server {
    #[tracing::instrument(skip_all, fields(service = self.service))]
    async fn export_user_data(
        &self,
        request: tonic::Request<ExportUserDataRequest>,
    ) -> Result<tonic::Response<UserDataExport>, tonic::Status> {
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        let caller = self.guard.caller(&request).await?;
        // Their own data, with their own session: not through an API key.
        if let GrpcCaller::User(me) = caller.require_self(user)? {
            if me.api_key.is_some() {
                return Err(ApiError::forbidden(
                    "a user may export their own data only, with their own session",
                )
                .into());
            }
        }
        let data = self.holder.export_user(user).await?;
        Ok(tonic::Response::new(UserDataExport {
            service: self.service.to_string(),
            json: data.to_string(),
        }))
    }
}

/// The gRPC service exporting `holder`'s data, to add to the service's routes.
pub fn routes(
    service: &'static str,
    holder: Arc<dyn UserDataHolder>,
    guard: GrpcGuard,
) -> UserDataServer<impl UserData> {
    UserDataServer::new(Server {
        service,
        holder,
        guard,
    })
}

/// The events that erase data.
pub const BINDINGS: &[&str] = &["user.deleted", "workspace.deleted"];

/// Declares and binds `<service>.privacy` (so deletions published from now on are kept).
pub async fn bind(bus: &Arc<dyn EventBus>, service: &str) -> Result<Consumer, BusError> {
    Consumer::bind(bus, &format!("{service}.privacy"), BINDINGS).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Deleted {
    user_id: Option<Uuid>,
    workspace_id: Option<Uuid>,
}

/// Erases what the deletion events name.
pub struct PrivacyEvents(pub Arc<dyn UserDataHolder>);

#[async_trait]
impl EventHandler for PrivacyEvents {
    #[tracing::instrument(skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let Ok(deleted) = serde_json::from_value::<Deleted>(event.payload.clone()) else {
            tracing::error!("dropping a deletion event with an unreadable payload");
            return Ok(());
        };
        let failed = |e: ApiError| anyhow::anyhow!("erasing failed: {}", e.message);
        match (event.kind.as_str(), deleted.user_id, deleted.workspace_id) {
            ("user.deleted", Some(user), _) => self.0.erase_user(user).await.map_err(failed),
            ("workspace.deleted", _, Some(workspace)) => {
                self.0.erase_workspace(workspace).await.map_err(failed)
            }
            _ => {
                tracing::error!("dropping a deletion event without the id it needs");
                Ok(())
            }
        }
    }
}

/// How to read one exported column.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    Text(&'static str),
    Int(&'static str),
    /// A text column holding a JSON document.
    Json(&'static str),
}

/// The rows `sql` selects with `$1` bound to `id`, as JSON objects of `columns`.
pub async fn export_rows(
    db: &flowfleet_runtime::db::Db,
    sql: &str,
    id: Uuid,
    columns: &[Column],
) -> Result<Vec<serde_json::Value>, ApiError> {
    use sqlx::Row;
    let rows = sqlx::query(sql)
        .bind(id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| {
            let mut object = serde_json::Map::new();
            for column in columns {
                let (name, value) = match *column {
                    Column::Text(name) => (
                        name,
                        serde_json::json!(row.try_get::<Option<String>, _>(name)?),
                    ),
                    Column::Int(name) => (
                        name,
                        serde_json::json!(row.try_get::<Option<i64>, _>(name)?),
                    ),
                    Column::Json(name) => {
                        let text: Option<String> = row.try_get(name)?;
                        let value = match text {
                            Some(t) => serde_json::from_str(&t).map_err(ApiError::internal)?,
                            None => serde_json::Value::Null,
                        };
                        (name, value)
                    }
                };
                object.insert(name.to_string(), value);
            }
            Ok(serde_json::Value::Object(object))
        })
        .collect()
}

/// Runs `statements` in one transaction, each with `$1` bound to `id` and, where used,
/// `$2` to [`DELETED_USER`].
pub async fn erase(
    db: &flowfleet_runtime::db::Db,
    statements: &[&str],
    id: Uuid,
) -> Result<(), ApiError> {
    let mut tx = db.pool().begin().await?;
    erase_in(&mut tx, statements, id).await?;
    tx.commit().await?;
    Ok(())
}

/// [`erase`] inside the caller's transaction.
pub async fn erase_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    statements: &[&str],
    id: Uuid,
) -> Result<(), ApiError> {
    for sql in statements {
        let query = sqlx::query(sql).bind(id.to_string());
        let query = if sql.contains("$2") {
            query.bind(DELETED_USER.to_string())
        } else {
            query
        };
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// What a service adds to its parts to take part: the export gRPC service and the
/// consumer of deletion events (bound now, so no deletion is missed).
pub async fn wire(
    infra: &crate::Infra,
    service: flowfleet_runtime::config::ServiceName,
    holder: Arc<dyn UserDataHolder>,
) -> anyhow::Result<(
    UserDataServer<impl UserData>,
    futures::future::BoxFuture<'static, ()>,
)> {
    let consumer = bind(&infra.bus, service.as_str()).await?;
    let shutdown = infra.shutdown.clone();
    let events = Arc::new(PrivacyEvents(holder.clone()));
    Ok((
        routes(service.as_str(), holder, infra.grpc_guard()),
        Box::pin(consumer.run(events, shutdown)),
    ))
}
