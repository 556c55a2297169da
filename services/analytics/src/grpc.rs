//! The analytics service's gRPC server: workflow statistics for other services
//! (callers inside the fleet have already authorised their own callers).

use flowfleet_shared::error::parse_id;
use flowfleet_shared::proto::analytics::v1::analytics_service_server::AnalyticsService;
use flowfleet_shared::proto::analytics::v1::{GetWorkflowStatsRequest, WorkflowStats};
use tonic::{Request, Response, Status};

use crate::store::Store;

pub struct AnalyticsGrpc {
    pub store: Store,
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsGrpc {
    #[tracing::instrument(skip_all)]
    async fn get_workflow_stats(
        &self,
        request: Request<GetWorkflowStatsRequest>,
    ) -> Result<Response<WorkflowStats>, Status> {
        let id = parse_id("workflow_id", &request.get_ref().workflow_id)?;
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
