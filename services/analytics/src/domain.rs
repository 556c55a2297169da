//! The analytics domain: the execution outcome events carry, the facts kept
//! from them, and the arithmetic of statistics (rollup hours, percentiles).
//! No I/O here.

use serde::Deserialize;
use uuid::Uuid;

/// What a workflow that analytics has facts about answers a caller who may not see it:
/// what the workflow service answers for a missing workflow.
pub const NO_WORKFLOW: &str = "no workflow with this id";

/// How a finished execution ended. Only final outcomes become facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
        }
    }
}

/// The payload of `execution.succeeded` / `execution.failed`, as published by
/// the execution service (camelCase JSON). Fields analytics does not keep
/// (`version`, `workflowName`, `error`, ...) are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionOutcome {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workspace_id: Uuid,
    pub status: RunStatus,
    pub triggered_by: Uuid,
    pub finished_at_ms: i64,
    pub duration_ms: i64,
}

impl ExecutionOutcome {
    /// Parses an event payload. Negative durations (clock skew between
    /// processes) are clamped to zero so that sums and percentiles stay sane.
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut outcome: ExecutionOutcome = serde_json::from_value(payload.clone())?;
        outcome.duration_ms = outcome.duration_ms.max(0);
        Ok(outcome)
    }
}

const HOUR_MS: i64 = 3_600_000;

/// The start of the UTC hour containing `at_ms` (also for times before 1970).
pub fn hour_start(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(HOUR_MS)
}

/// The 1-based nearest-rank position of the `p`-th percentile (0 < p <= 100)
/// among `n` sorted values: the smallest rank whose value has at least `p`% of
/// the values at or below it. `None` when there are no values.
pub fn nearest_rank(p: f64, n: i64) -> Option<i64> {
    if n <= 0 {
        return None;
    }
    let rank = (p / 100.0 * n as f64).ceil() as i64;
    Some(rank.clamp(1, n))
}

/// Statistics of one workflow's finished executions.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowStats {
    pub workflow_id: Uuid,
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub total_duration_ms: i64,
    /// `None` when there are no runs.
    pub p50_duration_ms: Option<i64>,
    pub p95_duration_ms: Option<i64>,
    pub p99_duration_ms: Option<i64>,
    /// Finish time of the latest run; `None` when it never ran.
    pub last_run_at_ms: Option<i64>,
}

impl WorkflowStats {
    /// Share of runs that succeeded, in `[0, 1]`; 0 when there are no runs.
    pub fn success_rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.succeeded as f64 / self.runs as f64
        }
    }

    /// Mean duration in milliseconds; 0 when there are no runs.
    pub fn average_duration_ms(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.total_duration_ms as f64 / self.runs as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(hour_start(0), 0);
        assert_eq!(hour_start(HOUR_MS - 1), 0);
        assert_eq!(hour_start(HOUR_MS), HOUR_MS);
        assert_eq!(hour_start(5 * HOUR_MS + 17), 5 * HOUR_MS);
        assert_eq!(hour_start(-1), -HOUR_MS);
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(50.0, 0), None);
        assert_eq!(nearest_rank(50.0, 1), Some(1));
        assert_eq!(nearest_rank(99.0, 1), Some(1));
        assert_eq!(nearest_rank(50.0, 10), Some(5));
        assert_eq!(nearest_rank(95.0, 10), Some(10));
        assert_eq!(nearest_rank(95.0, 100), Some(95));
        assert_eq!(nearest_rank(99.0, 100), Some(99));
        assert_eq!(nearest_rank(50.0, 5), Some(3));
    }

    #[test]
    fn outcome_payload_is_camel_case() {
        let id = Uuid::now_v7();
        let payload = serde_json::json!({
            "executionId": id, "workflowId": id, "workspaceId": id, "version": 3,
            "status": "FAILED", "triggeredBy": id, "workflowName": "w",
            "startedAtMs": 10, "finishedAtMs": 5, "durationMs": -5, "error": "boom"
        });
        let o = ExecutionOutcome::from_payload(&payload).unwrap();
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(o.duration_ms, 0, "negative durations are clamped");
        assert!(ExecutionOutcome::from_payload(&serde_json::json!({"status": "RUNNING"})).is_err());
    }
}
