//! `Workspace.analytics`: the workspace's dashboards over a range.

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::parse_id;
use uuid::Uuid;

use super::types::*;
use super::{now, Ctx};
use crate::dashboards::{Dashboards, Window};
use crate::domain::buckets::{BucketSize, DAY_MS};
use crate::store::queries::StepLevel;

/// A workspace of the auth service.
#[derive(SimpleObject)]
#[graphql(name = "Workspace", complex)]
pub struct WorkspaceRef {
    pub id: ID,
    /// The workspace's IANA time zone (the auth service's field).
    #[graphql(external)]
    pub time_zone: String,
}

/// The most entries a ranking returns.
const MAX_LIMIT: i32 = 100;

fn limit(n: i32) -> Result<usize> {
    if !(1..=MAX_LIMIT).contains(&n) {
        return Err(flowfleet_runtime::error::ApiError::bad_input(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        ))
        .into());
    }
    Ok(n as usize)
}

#[ComplexObject]
impl WorkspaceRef {
    /// The workspace's executions, steps and people over `range` (VIEWER or above; API
    /// keys of the workspace). Buckets follow `range.timeZone`, else the workspace's.
    #[graphql(requires = "timeZone")]
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        range: AnalyticsRange,
    ) -> Result<WorkspaceAnalytics> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("id", &self.id)?;
        c.dashboards.authorize(me, workspace).await?;
        let zone = match (&range.time_zone, self.time_zone.as_str()) {
            (Some(tz), _) => tz.as_str(),
            (None, "") => "UTC",
            (None, tz) => tz,
        };
        let window = c.dashboards.window(
            range.from.timestamp_millis(),
            range.to.timestamp_millis(),
            range.bucket,
            zone,
            now(ctx)?,
        )?;
        Ok(WorkspaceAnalytics {
            dashboards: c.dashboards.clone(),
            workspace,
            window,
            zone: zone.to_string(),
        })
    }
}

/// A workspace's dashboards over one window; each field reads what it shows.
pub struct WorkspaceAnalytics {
    dashboards: Dashboards,
    workspace: Uuid,
    window: Window,
    zone: String,
}

#[Object]
impl WorkspaceAnalytics {
    /// The range as used (rounded).
    async fn from(&self) -> DateTime<Utc> {
        to_datetime(self.window.from)
    }

    async fn to(&self) -> DateTime<Utc> {
        to_datetime(self.window.to)
    }

    async fn bucket(&self) -> BucketSize {
        self.window.size
    }

    async fn time_zone(&self) -> &str {
        &self.zone
    }

    /// Executions over time, by status, with success rate and duration percentiles.
    async fn executions(&self) -> Result<Vec<ExecutionBucket>> {
        let series = self
            .dashboards
            .executions(self.workspace, None, &self.window)
            .await?;
        Ok(series.into_iter().map(Into::into).collect())
    }

    /// All executions of the range.
    async fn totals(&self) -> Result<ExecutionCounts> {
        let total = self
            .dashboards
            .runs_total(self.workspace, None, self.window.from, self.window.to)
            .await?;
        Ok((&total).into())
    }

    /// Workflows with the most failed or timed-out runs, with their latest error.
    async fn top_failing_workflows(
        &self,
        #[graphql(default = 10)] limit: i32,
    ) -> Result<Vec<WorkflowRanking>> {
        let limit = self::limit(limit)?;
        let all = self
            .dashboards
            .workflows(self.workspace, self.window.from, self.window.to)
            .await?;
        let mut failing: Vec<_> = all.into_iter().filter(|(_, r)| r.failures() > 0).collect();
        failing.sort_by(|a, b| b.1.failures().cmp(&a.1.failures()).then(a.0.cmp(&b.0)));
        failing.truncate(limit);
        let ids: Vec<Uuid> = failing.iter().map(|(id, _)| *id).collect();
        let errors = self.dashboards.last_errors(&ids).await?;
        Ok(failing
            .iter()
            .map(|(id, r)| WorkflowRanking::new(*id, r, errors.get(id)))
            .collect())
    }

    /// Workflows with the most runs.
    async fn busiest_workflows(
        &self,
        #[graphql(default = 10)] limit: i32,
    ) -> Result<Vec<WorkflowRanking>> {
        let limit = self::limit(limit)?;
        let all = self
            .dashboards
            .workflows(self.workspace, self.window.from, self.window.to)
            .await?;
        let mut busiest: Vec<_> = all.into_iter().collect();
        busiest.sort_by(|a, b| b.1.runs.cmp(&a.1.runs).then(a.0.cmp(&b.0)));
        busiest.truncate(limit);
        Ok(busiest
            .iter()
            .map(|(id, r)| WorkflowRanking::new(*id, r, None))
            .collect())
    }

    /// Node types by p95 duration, slowest first, with failure rates and retries. Over a
    /// range of a week or more, counted over the whole UTC days it meets; otherwise over
    /// the whole quarter-hours.
    async fn slowest_node_types(
        &self,
        #[graphql(default = 10)] limit: i32,
    ) -> Result<Vec<NodeTypeStats>> {
        let limit = self::limit(limit)?;
        let types = self
            .dashboards
            .slowest(
                self.workspace,
                StepLevel::NodeType,
                self.window.from,
                self.window.to,
                limit,
            )
            .await?;
        Ok(types
            .iter()
            .map(|(subject, a)| NodeTypeStats {
                node_type: subject.node_type.clone(),
                counts: a.into(),
            })
            .collect())
    }

    /// Nodes of the workspace's workflows by p95 duration, slowest first. Over a range of
    /// a week or more, counted over the whole UTC days it meets; otherwise over the whole
    /// quarter-hours.
    async fn slowest_nodes(&self, #[graphql(default = 10)] limit: i32) -> Result<Vec<NodeStats>> {
        let limit = self::limit(limit)?;
        let nodes = self
            .dashboards
            .slowest(
                self.workspace,
                StepLevel::Node(None),
                self.window.from,
                self.window.to,
                limit,
            )
            .await?;
        Ok(nodes
            .iter()
            .map(|(subject, a)| NodeStats::new(subject, a))
            .collect())
    }

    /// Every step of the workspace over time: attempts, failures and how long they
    /// waited for a worker.
    async fn steps(&self) -> Result<Vec<StepBucket>> {
        let series = self
            .dashboards
            .steps_over_time(self.workspace, &self.window)
            .await?;
        Ok(series.into_iter().map(Into::into).collect())
    }

    /// The fleet's worker pools over time: throughput, utilisation and the step queue's
    /// backlog, as the pools reported them (fleet-wide: the pools serve every workspace).
    async fn workers(&self) -> Result<Vec<WorkerBucket>> {
        let series = self.dashboards.workers_over_time(&self.window).await?;
        Ok(series.into_iter().map(Into::into).collect())
    }

    async fn kpis(&self) -> Result<AnalyticsKpis> {
        let (from, to) = (self.window.from, self.window.to);
        let workflows = self.dashboards.workflows(self.workspace, from, to).await?;
        let runs: i64 = workflows.values().map(|r| r.runs).sum();
        let (mttr, recoveries) = self
            .dashboards
            .mean_time_to_recovery(self.workspace, from, to)
            .await?;
        Ok(AnalyticsKpis {
            mean_time_to_recovery_ms: mttr,
            recoveries,
            active_workflows: workflows.values().filter(|r| r.runs > 0).count() as i64,
            runs,
            runs_per_day: runs as f64 / ((to - from) as f64 / DAY_MS as f64),
            active_users: self
                .dashboards
                .active_users(self.workspace, from, to)
                .await?,
        })
    }
}

/// Slowest (highest p95) first; ties by workflow and node, so pages are stable.
pub(super) fn sort_slowest(nodes: &mut [NodeStats]) {
    nodes.sort_by(|a, b| {
        b.counts
            .p95_duration_ms
            .partial_cmp(&a.counts.p95_duration_ms)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.workflow.id.cmp(&b.workflow.id))
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
}
