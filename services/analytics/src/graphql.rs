//! The analytics subgraph: contributes `Workflow.stats` to the workflow
//! service's `Workflow` entity.

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::parse_id;
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;

use crate::domain;
use crate::domain::NO_WORKFLOW;
use crate::store::Store;

pub type AnalyticsSchema =
    async_graphql::Schema<Query, async_graphql::EmptyMutation, async_graphql::EmptySubscription>;

/// What resolvers need, placed in the schema's data.
pub struct Ctx {
    pub store: Store,
    pub access: Access,
}

pub fn schema(ctx: Ctx) -> AnalyticsSchema {
    async_graphql::Schema::build(
        Query,
        async_graphql::EmptyMutation,
        async_graphql::EmptySubscription,
    )
    .enable_federation()
    .data(ctx)
    .finish()
}

/// The workflow service's entity, known here by its key only.
#[derive(SimpleObject)]
#[graphql(name = "Workflow", complex)]
pub struct WorkflowRef {
    pub id: ID,
}

#[ComplexObject]
impl WorkflowRef {
    /// Statistics over the workflow's finished executions. Readable by members
    /// (Viewer or above) of the workflow's workspace; a workflow that never
    /// finished a run has all-zero statistics.
    async fn stats(&self, ctx: &Context<'_>) -> Result<Option<WorkflowStats>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<WorkflowStats> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let id = parse_id("id", &self.id)?;
            for workspace in c.store.workspaces_of(id).await? {
                c.access
                    .authorize(me, workspace, Role::Viewer, Target::Resource(NO_WORKFLOW))
                    .await?;
            }
            Ok(c.store.stats(id).await?.into())
        }
        .await;
        result.map(Some)
    }
}

/// Statistics of a workflow's finished executions (succeeded or failed).
#[derive(SimpleObject)]
pub struct WorkflowStats {
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Succeeded runs over all runs, from 0 to 1; 0 when there are no runs.
    pub success_rate: f64,
    /// 0 when there are no runs.
    pub average_duration_ms: f64,
    /// Nearest-rank percentiles of run durations; null when there are no runs.
    pub p50_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<f64>,
    pub p99_duration_ms: Option<f64>,
    /// When the latest run finished; null if the workflow never ran.
    pub last_run_at: Option<DateTime<Utc>>,
}

impl From<domain::WorkflowStats> for WorkflowStats {
    fn from(s: domain::WorkflowStats) -> Self {
        WorkflowStats {
            runs: s.runs,
            succeeded: s.succeeded,
            failed: s.failed,
            success_rate: s.success_rate(),
            average_duration_ms: s.average_duration_ms(),
            p50_duration_ms: s.p50_duration_ms.map(|v| v as f64),
            p95_duration_ms: s.p95_duration_ms.map(|v| v as f64),
            p99_duration_ms: s.p99_duration_ms.map(|v| v as f64),
            last_run_at: s.last_run_at_ms.map(to_datetime),
        }
    }
}

pub struct Query;

#[Object]
impl Query {
    /// Resolves a `Workflow` reference without I/O: statistics are computed
    /// (and authorised) when `stats` is selected.
    #[graphql(entity)]
    async fn find_workflow_by_id(&self, id: ID) -> WorkflowRef {
        WorkflowRef { id }
    }
}
