//! `Workflow.stats`: a workflow's runs, over all time or a range, and its nodes.

use async_graphql::{ComplexObject, Context, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::parse_id;

use super::types::*;
use super::workspace::sort_slowest;
use super::{now, Ctx};
use crate::dashboards::ranking_span;
use crate::domain::rollup::Runs;
use crate::store::queries::StepLevel;

/// The workflow service's entity, known here by its key only.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Workflow", complex)]
pub struct WorkflowRef {
    pub id: ID,
}

/// A workflow's finished executions (over all time, or a range) and its nodes' steps.
#[derive(SimpleObject)]
pub struct WorkflowStats {
    #[graphql(flatten)]
    pub counts: ExecutionCounts,
    /// When the latest run finished (of all time); null if the workflow never ran.
    pub last_run_at: Option<DateTime<Utc>>,
    /// With a range: its executions per bucket; null over all time.
    pub over_time: Option<Vec<ExecutionBucket>>,
    /// With a range: its nodes by p95 duration, slowest first (over a range of a week
    /// or more, counted over the whole UTC days it meets); empty over all time.
    pub nodes: Vec<NodeStats>,
}

#[ComplexObject]
impl WorkflowRef {
    /// Statistics of the workflow's finished executions, over all time or over `range`
    /// (buckets in `range.timeZone`, default UTC). Readable by members (VIEWER or
    /// above) of the workflow's workspace; a workflow that never finished a run has
    /// all-zero statistics.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        range: Option<AnalyticsRange>,
    ) -> Result<Option<WorkflowStats>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &self.id)?;
        let d = &c.dashboards;
        let window = range
            .map(|r| {
                d.window(
                    r.from.timestamp_millis(),
                    r.to.timestamp_millis(),
                    r.bucket,
                    r.time_zone.as_deref().unwrap_or("UTC"),
                    now(ctx)?,
                )
                .map_err(async_graphql::Error::from)
            })
            .transpose()?;
        let Some(workspace) = d.authorize_workflow(me, id).await? else {
            return Ok(Some(WorkflowStats {
                counts: (&Runs::default()).into(),
                last_run_at: None,
                over_time: window.map(|_| Vec::new()),
                nodes: Vec::new(),
            }));
        };
        let Some(w) = window else {
            let (runs, last) = d.workflow_all_time(workspace, id).await?;
            return Ok(Some(WorkflowStats {
                counts: (&runs).into(),
                last_run_at: last.map(to_datetime),
                over_time: None,
                nodes: Vec::new(),
            }));
        };
        let total = d.runs_total(workspace, Some(id), w.from, w.to).await?;
        let series = d.executions(workspace, Some(id), &w).await?;
        // Nodes by p95 are a ranking: read over the span rankings read.
        let (from, to) = ranking_span(w.from, w.to);
        let by_node = d
            .steps(workspace, StepLevel::Node(Some(id)), from, to)
            .await?;
        let mut nodes: Vec<NodeStats> = by_node
            .iter()
            .map(|(subject, a)| NodeStats::new(subject, a))
            .collect();
        sort_slowest(&mut nodes);
        Ok(Some(WorkflowStats {
            counts: (&total).into(),
            last_run_at: c.dashboards.store.last_run_at(id).await?.map(to_datetime),
            over_time: Some(series.into_iter().map(Into::into).collect()),
            nodes,
        }))
    }
}
