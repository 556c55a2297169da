//! The execution service's gRPC server.

use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::proto::execution::v1::execution_service_server::ExecutionService;
use flowfleet_runtime::proto::execution::v1::{ExecutionSummary, GetExecutionRequest};
use tonic::{Request, Response, Status};

use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;
use flowfleet_security::service_auth::GrpcGuard;

use crate::store::Store;

const NO_EXECUTION: &str = "no such execution";

pub struct ExecutionGrpc {
    pub store: Store,
    pub guard: GrpcGuard,
    pub access: Access,
}

#[tonic::async_trait]
impl ExecutionService for ExecutionGrpc {
    #[tracing::instrument(skip_all)]
    async fn get_execution(
        &self,
        request: Request<GetExecutionRequest>,
    ) -> Result<Response<ExecutionSummary>, Status> {
        let caller = self.guard.caller(&request).await?;
        let id = parse_id("execution_id", &request.get_ref().execution_id)?;
        let e = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found(NO_EXECUTION))?;
        // Another workspace's execution is indistinguishable from a missing one.
        self.access
            .authorize(
                &caller,
                e.workspace_id,
                Role::Viewer,
                Target::Resource(NO_EXECUTION),
            )
            .await?;
        Ok(Response::new(ExecutionSummary {
            execution_id: e.id.to_string(),
            workflow_id: e.workflow_id.to_string(),
            workspace_id: e.workspace_id.to_string(),
            status: e.status.as_str().into(),
            version: e.version as i32,
        }))
    }
}
