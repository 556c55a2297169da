//! The analytics service's gRPC server: workflow statistics, with percentiles, for
//! other services and for users whose requests they serve (who need VIEWER in the
//! workflow's workspace).

use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::proto::analytics::v1::analytics_service_server::AnalyticsService;
use flowfleet_runtime::proto::analytics::v1::{GetWorkflowStatsRequest, WorkflowStats};
use tonic::{Request, Response, Status};

use flowfleet_security::service_auth::GrpcGuard;

use crate::dashboards::Dashboards;
use crate::domain::buckets::{Grain, QUARTER_MS};
use crate::domain::rollup::Runs;

pub struct AnalyticsGrpc {
    pub dashboards: Dashboards,
    pub guard: GrpcGuard,
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsGrpc {
    #[tracing::instrument(skip_all)]
    async fn get_workflow_stats(
        &self,
        request: Request<GetWorkflowStatsRequest>,
    ) -> Result<Response<WorkflowStats>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.get_ref();
        let id = parse_id("workflow_id", &r.workflow_id)?;
        let range = match (r.from_ms, r.to_ms) {
            (0, 0) => None,
            (from, to) if to > from => Some((
                Grain::Quarter.start(from),
                Grain::Quarter.start(to + QUARTER_MS - 1),
            )),
            _ => {
                return Err(ApiError::bad_input("`to_ms` must be after `from_ms`").into());
            }
        };
        let d = &self.dashboards;
        let (runs, last) = match d.authorize_workflow(&caller, id).await? {
            None => (Runs::default(), None),
            Some(workspace) => match range {
                None => d.workflow_all_time(workspace, id).await?,
                Some((from, to)) => (
                    d.runs_total(workspace, Some(id), from, to).await?,
                    d.store.last_run_at(id).await?,
                ),
            },
        };
        Ok(Response::new(WorkflowStats {
            workflow_id: id.to_string(),
            runs: runs.runs,
            succeeded: runs.succeeded,
            failed: runs.failed,
            cancelled: runs.cancelled,
            timed_out: runs.timed_out,
            average_duration_ms: runs.average_duration_ms().unwrap_or(0.0),
            last_run_at_ms: last.unwrap_or(0),
            p50_duration_ms: runs.durations.quantile(0.5),
            p95_duration_ms: runs.durations.quantile(0.95),
            p99_duration_ms: runs.durations.quantile(0.99),
            success_rate: runs.success_rate(),
        }))
    }
}
