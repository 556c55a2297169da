//! The analytics service's gRPC server: workflow statistics for other services
//! and for users whose requests they serve (who need VIEWER in the workflow's workspace).

use flowfleet_runtime::error::parse_id;
use flowfleet_runtime::proto::analytics::v1::analytics_service_server::AnalyticsService;
use flowfleet_runtime::proto::analytics::v1::{GetWorkflowStatsRequest, WorkflowStats};
use tonic::{Request, Response, Status};

use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;
use flowfleet_security::service_auth::GrpcGuard;

use crate::domain::NO_WORKFLOW;
use crate::store::Store;

pub struct AnalyticsGrpc {
    pub store: Store,
    pub guard: GrpcGuard,
    pub access: Access,
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsGrpc {
    #[tracing::instrument(skip_all)]
    async fn get_workflow_stats(
        &self,
        request: Request<GetWorkflowStatsRequest>,
    ) -> Result<Response<WorkflowStats>, Status> {
        let caller = self.guard.caller(&request).await?;
        let id = parse_id("workflow_id", &request.get_ref().workflow_id)?;
        // A workflow that never ran has no facts, and so no workspace to check: its
        // statistics are zeros, which reveal nothing.
        for workspace in self.store.workspaces_of(id).await? {
            self.access
                .authorize(
                    &caller,
                    workspace,
                    Role::Viewer,
                    Target::Resource(NO_WORKFLOW),
                )
                .await?;
        }
        let s = self.store.stats(id).await?;
        Ok(Response::new(WorkflowStats {
            workflow_id: id.to_string(),
            runs: s.runs,
            succeeded: s.succeeded,
            failed: s.failed,
            average_duration_ms: s.average_duration_ms(),
            last_run_at_ms: s.last_run_at_ms.unwrap_or(0),
        }))
    }
}
