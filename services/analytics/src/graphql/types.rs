//! The subgraph's output types, built from the domain's aggregates.

use async_graphql::{InputObject, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_runtime::clock::to_datetime;

use crate::dashboards::Bucketed;
use crate::domain::buckets::BucketSize;
use crate::domain::rollup::{Attempts, Pool, Runs, RANKED_QUANTILE};
use crate::store::queries::StepSubject;

/// A dashboard's time range. Ends are rounded to the quarter-hour (to the minute with
/// `MINUTE` buckets, which reach back `analytics.minute_rollup_days` days).
#[derive(InputObject, Clone)]
pub struct AnalyticsRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[graphql(default_with = "BucketSize::Hour")]
    pub bucket: BucketSize,
    /// An IANA time zone for the buckets' boundaries (days start at local midnight,
    /// weeks on Monday); defaults to the workspace's (for `Workspace.analytics`) or UTC.
    pub time_zone: Option<String>,
}

/// Percentiles are DDSketch estimates: within 1% of the duration at rank ⌊q·(n−1)⌋ of
/// the n sorted durations.
#[derive(SimpleObject, Default)]
pub struct ExecutionCounts {
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub timed_out: i64,
    /// Succeeded runs over runs that ended on their own (cancelled ones left out), from
    /// 0 to 1; null without any.
    pub success_rate: Option<f64>,
    pub average_duration_ms: Option<f64>,
    pub p50_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<f64>,
    pub p99_duration_ms: Option<f64>,
}

impl From<&Runs> for ExecutionCounts {
    fn from(r: &Runs) -> Self {
        ExecutionCounts {
            runs: r.runs,
            succeeded: r.succeeded,
            failed: r.failed,
            cancelled: r.cancelled,
            timed_out: r.timed_out,
            success_rate: r.success_rate(),
            average_duration_ms: r.average_duration_ms(),
            p50_duration_ms: r.durations.quantile(0.5),
            p95_duration_ms: r.durations.quantile(0.95),
            p99_duration_ms: r.durations.quantile(0.99),
        }
    }
}

/// Executions that finished in one bucket.
#[derive(SimpleObject)]
pub struct ExecutionBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[graphql(flatten)]
    pub counts: ExecutionCounts,
}

impl From<Bucketed<Runs>> for ExecutionBucket {
    fn from(b: Bucketed<Runs>) -> Self {
        ExecutionBucket {
            start: to_datetime(b.start),
            end: to_datetime(b.end),
            counts: (&b.value).into(),
        }
    }
}

/// A workflow's runs over the range, in a ranking.
#[derive(SimpleObject)]
pub struct WorkflowRanking {
    pub workflow: super::WorkflowRef,
    pub runs: i64,
    /// Failed and timed-out runs.
    pub failures: i64,
    /// Failures over runs that ended on their own; null without any.
    pub failure_rate: Option<f64>,
    pub average_duration_ms: Option<f64>,
    /// The error of its latest failed run (of any time), and when that was.
    pub last_error: Option<String>,
    pub last_failed_at: Option<DateTime<Utc>>,
}

impl WorkflowRanking {
    pub fn new(id: uuid::Uuid, r: &Runs, last: Option<&(Option<String>, i64)>) -> Self {
        WorkflowRanking {
            workflow: super::WorkflowRef {
                id: ID(id.to_string()),
            },
            runs: r.runs,
            failures: r.failures(),
            failure_rate: r.success_rate().map(|s| 1.0 - s),
            average_duration_ms: r.average_duration_ms(),
            last_error: last.and_then(|(e, _)| e.clone()),
            last_failed_at: last.map(|(_, at)| to_datetime(*at)),
        }
    }
}

/// Ended attempts of steps: of a node, a node type, or every step.
#[derive(SimpleObject, Default)]
pub struct StepCounts {
    pub attempts: i64,
    /// Failed or timed-out attempts.
    pub failed: i64,
    pub failure_rate: Option<f64>,
    /// Attempts after a step's first.
    pub retries: i64,
    pub average_duration_ms: Option<f64>,
    pub p50_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<f64>,
    pub p99_duration_ms: Option<f64>,
    /// How long attempts waited for a worker once due.
    pub average_queue_wait_ms: Option<f64>,
    pub p95_queue_wait_ms: Option<f64>,
}

impl From<&Attempts> for StepCounts {
    fn from(a: &Attempts) -> Self {
        let mean = |total: i64| (a.attempts > 0).then(|| total as f64 / a.attempts as f64);
        StepCounts {
            attempts: a.attempts,
            failed: a.failed,
            failure_rate: a.failure_rate(),
            retries: a.retries,
            average_duration_ms: mean(a.total_duration_ms),
            p50_duration_ms: a.durations.quantile(0.5),
            p95_duration_ms: a.durations.quantile(RANKED_QUANTILE),
            p99_duration_ms: a.durations.quantile(0.99),
            average_queue_wait_ms: mean(a.total_queue_wait_ms),
            p95_queue_wait_ms: a.queue_waits.quantile(0.95),
        }
    }
}

/// A node type's attempts over the range.
#[derive(SimpleObject)]
pub struct NodeTypeStats {
    pub node_type: String,
    #[graphql(flatten)]
    pub counts: StepCounts,
}

/// A node's attempts over the range.
#[derive(SimpleObject)]
pub struct NodeStats {
    pub workflow: super::WorkflowRef,
    pub node_id: String,
    pub node_type: String,
    #[graphql(flatten)]
    pub counts: StepCounts,
}

impl NodeStats {
    pub fn new(subject: &StepSubject, a: &Attempts) -> Self {
        NodeStats {
            workflow: super::WorkflowRef {
                id: ID(subject.workflow.map(|w| w.to_string()).unwrap_or_default()),
            },
            node_id: subject.node.clone(),
            node_type: subject.node_type.clone(),
            counts: a.into(),
        }
    }
}

/// Every step of the workspace in one bucket: throughput and queue waits.
#[derive(SimpleObject)]
pub struct StepBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[graphql(flatten)]
    pub counts: StepCounts,
}

impl From<Bucketed<Attempts>> for StepBucket {
    fn from(b: Bucketed<Attempts>) -> Self {
        StepBucket {
            start: to_datetime(b.start),
            end: to_datetime(b.end),
            counts: (&b.value).into(),
        }
    }
}

/// The workspace's key figures over the range.
#[derive(SimpleObject)]
pub struct AnalyticsKpis {
    /// Workflows with at least one finished run.
    pub active_workflows: i64,
    pub runs: i64,
    /// Runs per day of the range.
    pub runs_per_day: f64,
    /// People who started a run, edited or published a workflow.
    pub active_users: i64,
    /// The mean time from a workflow's first failed (or timed-out) run to its next
    /// succeeded run, over the recoveries that ended in the range; null without any.
    pub mean_time_to_recovery_ms: Option<f64>,
    /// How many recoveries ended in the range.
    pub recoveries: i64,
}

/// The fleet's worker pools over one bucket, from their own periodic reports
/// (`worker.sampled`). The pools are shared by every workspace: these are the fleet's
/// figures, not the workspace's share (its own steps are in `steps`).
#[derive(SimpleObject)]
pub struct WorkerBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Reports received (one per pool per `worker.sample_interval_ms`).
    pub samples: i64,
    /// Steps the pools finished, per minute of the bucket.
    pub steps_per_minute: f64,
    /// Busy slot time over slot time, from 0 to 1; null without reports.
    pub utilisation: Option<f64>,
    /// The pools' slots on average over the bucket.
    pub average_slots: f64,
    /// The step queue's backlog: the mean and the largest reported; null without reports.
    pub average_backlog: Option<f64>,
    pub max_backlog: Option<i64>,
}

impl From<Bucketed<Pool>> for WorkerBucket {
    fn from(b: Bucketed<Pool>) -> Self {
        let minutes = ((b.end - b.start) as f64 / 60_000.0).max(1.0 / 60.0);
        let p = &b.value;
        WorkerBucket {
            start: to_datetime(b.start),
            end: to_datetime(b.end),
            samples: p.samples,
            steps_per_minute: p.steps as f64 / minutes,
            utilisation: p.utilisation(),
            average_slots: p.slot_ms as f64 / (b.end - b.start).max(1) as f64,
            average_backlog: p.average_backlog(),
            max_backlog: (p.samples > 0).then_some(p.backlog_max),
        }
    }
}
