//! The workflow service's gRPC server, for the execution engine.

use flowfleet_shared::error::{parse_id, ApiError};
use flowfleet_shared::proto::workflow::v1::workflow_service_server::WorkflowService;
use flowfleet_shared::proto::workflow::v1::{GetPublishedVersionRequest, WorkflowVersion};
use tonic::{Request, Response, Status};

use flowfleet_shared::access::Access;
use flowfleet_shared::auth::Role;
use flowfleet_shared::service_auth::GrpcGuard;

use crate::store::Store;

pub struct WorkflowGrpc {
    pub store: Store,
    pub guard: GrpcGuard,
    pub access: Access,
}

#[tonic::async_trait]
impl WorkflowService for WorkflowGrpc {
    #[tracing::instrument(skip_all, fields(workflow_id = %request.get_ref().workflow_id))]
    async fn get_published_version(
        &self,
        request: Request<GetPublishedVersionRequest>,
    ) -> Result<Response<WorkflowVersion>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.get_ref();
        let id = parse_id("workflow_id", &r.workflow_id)?;
        if r.version < 0 {
            return Err(
                ApiError::bad_input("`version` must be 0 (newest) or a version number").into(),
            );
        }
        let number = (r.version > 0).then_some(r.version as i64);
        let (w, v) = self.store.version(id, number).await?.ok_or_else(|| {
            ApiError::not_found(
                "the workflow does not exist or has no such published version; publish it first",
            )
        })?;
        // Services (the engine) read any workflow; a user only their workspaces'.
        caller
            .require(&self.access, w.workspace_id, Role::Viewer)
            .await?;
        Ok(Response::new(WorkflowVersion {
            workflow_id: w.id.to_string(),
            workspace_id: w.workspace_id.to_string(),
            version: v.version as i32,
            name: w.name,
            definition_json: serde_json::to_string(&v.definition).map_err(ApiError::internal)?,
            content_hash: v.content_hash,
        }))
    }
}
