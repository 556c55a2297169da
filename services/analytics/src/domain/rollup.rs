//! Rollups: what a bucket of facts adds up to, and how a batch of new facts becomes
//! additions to the rollups it touches.
//!
//! Every aggregate here is a commutative monoid (counts and sums add, sketches merge
//! exactly), so folding facts in any order, in any batches, gives the rollups that a
//! recomputation from all facts gives: that is what makes late and out-of-order
//! events land right.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::buckets::Grain;
use super::sketch::Sketch;
use super::{AttemptStatus, ExecutionOutcome, RunStatus, StepOutcome};

/// Finished executions of a bucket.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub timed_out: i64,
    pub total_duration_ms: i64,
    pub durations: Sketch,
}

impl Runs {
    pub fn add(&mut self, o: &ExecutionOutcome) {
        self.runs += 1;
        match o.status {
            RunStatus::Succeeded => self.succeeded += 1,
            RunStatus::Failed => self.failed += 1,
            RunStatus::Cancelled => self.cancelled += 1,
            RunStatus::TimedOut => self.timed_out += 1,
        }
        self.total_duration_ms += o.duration_ms;
        self.durations.add(o.duration_ms);
    }

    pub fn merge(&mut self, other: &Runs) {
        self.runs += other.runs;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.timed_out += other.timed_out;
        self.total_duration_ms += other.total_duration_ms;
        self.durations.merge(&other.durations);
    }

    /// Runs that did not succeed (failed or timed out; cancelled runs are nobody's
    /// failure).
    pub fn failures(&self) -> i64 {
        self.failed + self.timed_out
    }

    /// Succeeded runs over runs that ended on their own (all but cancelled), in
    /// `[0, 1]`; `None` without any.
    pub fn success_rate(&self) -> Option<f64> {
        let decided = self.succeeded + self.failures();
        (decided > 0).then(|| self.succeeded as f64 / decided as f64)
    }

    pub fn average_duration_ms(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.total_duration_ms as f64 / self.runs as f64)
    }
}

/// The quantile rankings of steps order by (slowest nodes and node types): p95 duration.
/// Rollups store a ceiling of it (see `Sketch::quantile_ceiling`).
pub const RANKED_QUANTILE: f64 = 0.95;

/// Ended attempts of steps in a bucket.
#[derive(Debug, Clone, Default)]
pub struct Attempts {
    pub attempts: i64,
    /// Failed or timed out.
    pub failed: i64,
    /// Attempts after a step's first.
    pub retries: i64,
    pub total_duration_ms: i64,
    pub total_queue_wait_ms: i64,
    pub durations: Sketch,
    pub queue_waits: Sketch,
}

impl Attempts {
    pub fn add(&mut self, s: &StepOutcome) {
        self.attempts += 1;
        if s.status != AttemptStatus::Succeeded {
            self.failed += 1;
        }
        if s.attempt > 1 {
            self.retries += 1;
        }
        self.total_duration_ms += s.duration_ms;
        self.total_queue_wait_ms += s.queue_wait_ms;
        self.durations.add(s.duration_ms);
        self.queue_waits.add(s.queue_wait_ms);
    }

    pub fn merge(&mut self, other: &Attempts) {
        self.attempts += other.attempts;
        self.failed += other.failed;
        self.retries += other.retries;
        self.total_duration_ms += other.total_duration_ms;
        self.total_queue_wait_ms += other.total_queue_wait_ms;
        self.durations.merge(&other.durations);
        self.queue_waits.merge(&other.queue_waits);
    }

    pub fn failure_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.failed as f64 / self.attempts as f64)
    }
}

/// The fleet's worker pools over a bucket, from their own reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pool {
    pub samples: i64,
    pub slot_ms: i64,
    pub busy_ms: i64,
    pub steps: i64,
    pub backlog_sum: i64,
    pub backlog_max: i64,
}

impl Pool {
    pub fn merge(&mut self, other: &Pool) {
        self.samples += other.samples;
        self.slot_ms += other.slot_ms;
        self.busy_ms += other.busy_ms;
        self.steps += other.steps;
        self.backlog_sum += other.backlog_sum;
        self.backlog_max = self.backlog_max.max(other.backlog_max);
    }

    /// Busy slot time over slot time, in `[0, 1]`; `None` without reports.
    pub fn utilisation(&self) -> Option<f64> {
        (self.slot_ms > 0).then(|| (self.busy_ms as f64 / self.slot_ms as f64).min(1.0))
    }

    /// The mean of the reported backlogs; `None` without reports.
    pub fn average_backlog(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.backlog_sum as f64 / self.samples as f64)
    }
}

/// Which execution rollup: a workflow's, or (`workflow` `None`) the whole workspace's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunsKey {
    pub workspace: Uuid,
    pub grain: Grain,
    pub workflow: Option<Uuid>,
    pub bucket_start: i64,
}

/// Which step rollup: a node of a workflow, a node type across the workspace
/// (`node` `None`), or every step of the workspace (`node` and `node_type` `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptsKey {
    pub workspace: Uuid,
    pub grain: Grain,
    pub node: Option<(Uuid, String)>,
    pub node_type: Option<String>,
    pub bucket_start: i64,
}

/// The additions a batch of facts makes to rollups, in key order (so concurrent
/// rollers lock rows in one order).
#[derive(Debug, Default)]
pub struct Deltas {
    pub runs: BTreeMap<RunsKey, Runs>,
    pub attempts: BTreeMap<AttemptsKey, Attempts>,
}

impl Deltas {
    /// Adds an execution to the rollups of every grain it is kept at (`grains`: minute
    /// rollups are only kept for recent facts) for its workflow and its workspace.
    pub fn add_run(&mut self, o: &ExecutionOutcome, grains: &[Grain]) {
        for &grain in grains {
            for workflow in [Some(o.workflow_id), None] {
                let key = RunsKey {
                    workspace: o.workspace_id,
                    grain,
                    workflow,
                    bucket_start: grain.start(o.finished_at_ms),
                };
                self.runs.entry(key).or_default().add(o);
            }
        }
    }

    /// Adds a step attempt to the rollups of its node, its node type and its workspace.
    ///
    /// Nodes and node types are rolled up per quarter-hour and day only: a minute of a
    /// busy workspace has about one attempt per node, so per-minute node rows would be as
    /// many as the facts, and no dashboard needs them (with minute buckets, node figures
    /// cover whole quarter-hours).
    pub fn add_attempt(&mut self, s: &StepOutcome, grains: &[Grain]) {
        for &grain in grains {
            let node_levels = [
                (
                    Some((s.workflow_id, s.node_id.clone())),
                    Some(s.node_type.clone()),
                ),
                (None, Some(s.node_type.clone())),
            ];
            let levels = node_levels
                .into_iter()
                .filter(|_| grain != Grain::Minute)
                .chain([(None, None)]);
            for (node, node_type) in levels {
                let key = AttemptsKey {
                    workspace: s.workspace_id,
                    grain,
                    node,
                    node_type,
                    bucket_start: grain.start(s.finished_at_ms),
                };
                self.attempts.entry(key).or_default().add(s);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.attempts.is_empty()
    }
}

/// The grains a fact that finished at `at` is rolled up at, given that minute rollups
/// are kept only since `minutes_since`.
pub fn grains_for(at: i64, minutes_since: i64) -> &'static [Grain] {
    if at >= minutes_since {
        &Grain::ALL
    } else {
        &[Grain::Quarter, Grain::Day]
    }
}

/// The recoveries among a workflow's runs, given in finish order and starting right after a
/// success (or at the start of its history): each failing stretch, from its first failed or
/// timed-out run to the succeeded run that ended it, as (failed at, recovered at).
/// Cancelled runs neither fail nor recover; a stretch still failing at the end has not
/// recovered and is left out.
pub fn recoveries(runs: &[(i64, RunStatus)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut failing_since = None;
    for &(at, status) in runs {
        match status {
            RunStatus::Failed | RunStatus::TimedOut => {
                failing_since.get_or_insert(at);
            }
            RunStatus::Succeeded => {
                if let Some(since) = failing_since.take() {
                    out.push((since, at));
                }
            }
            RunStatus::Cancelled => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus::*;

    #[test]
    fn a_recovery_runs_from_the_first_failure_to_the_next_success() {
        let runs = [
            (1, Failed),
            (2, TimedOut),
            (3, Cancelled),
            (4, Succeeded),
            (5, Succeeded),
            (6, Failed),
            (9, Succeeded),
            (10, Failed),
        ];
        assert_eq!(recoveries(&runs), vec![(1, 4), (6, 9)]);
        assert!(recoveries(&[(1, Succeeded), (2, Cancelled)]).is_empty());
    }
}
