//! The analytics domain: the facts kept from the fleet's events, the rollups they fold
//! into, and the arithmetic of dashboards (buckets, time zones, quantile sketches).
//! No I/O here.

pub mod buckets;
pub mod rollup;
pub mod sketch;

use serde::Deserialize;
use uuid::Uuid;

/// What a workflow that analytics has facts about answers a caller who may not see it:
/// what the workflow service answers for a missing workflow.
pub const NO_WORKFLOW: &str = "no workflow with this id";

/// How a finished execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "CANCELLED",
            RunStatus::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::TimedOut,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The payload of `execution.succeeded`, `execution.failed` (also for timed-out runs)
/// and `execution.cancelled`, as published by the execution service (camelCase JSON).
/// Fields analytics does not keep (`version`, `workflowName`, ...) are ignored.
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
    #[serde(default)]
    pub error: Option<String>,
}

/// How an attempt of a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptStatus {
    Succeeded,
    Failed,
    TimedOut,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Succeeded => "SUCCEEDED",
            AttemptStatus::Failed => "FAILED",
            AttemptStatus::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptStatus> {
        [
            AttemptStatus::Succeeded,
            AttemptStatus::Failed,
            AttemptStatus::TimedOut,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The payload of `step.finished`: an attempt of a step ended.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    pub step_id: Uuid,
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workspace_id: Uuid,
    pub node_id: String,
    pub node_type: String,
    pub status: AttemptStatus,
    pub attempt: i64,
    pub finished_at_ms: i64,
    pub duration_ms: i64,
    pub queue_wait_ms: i64,
}

/// What someone did in a workspace that makes them an active user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Started,
    Edited,
    Published,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Started => "STARTED",
            ActivityKind::Edited => "EDITED",
            ActivityKind::Published => "PUBLISHED",
        }
    }
}

/// One act of a user in a workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub workspace_id: Uuid,
    pub user_id: Uuid,
    pub kind: ActivityKind,
    pub at_ms: i64,
}

/// The payload of `worker.sampled`: what one worker pool did over its last interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSample {
    pub worker_id: String,
    pub at_ms: i64,
    /// Slots times milliseconds: the pool's capacity over the interval.
    pub slot_ms: i64,
    /// Busy slots times milliseconds.
    pub busy_ms: i64,
    pub steps_finished: i64,
    /// The step queue's backlog when reporting, and the largest seen in the interval.
    pub backlog: i64,
    pub backlog_max: i64,
}

/// A fact read from an event, ready to record.
#[derive(Debug, Clone)]
pub enum Fact {
    Execution(ExecutionOutcome),
    Step(StepOutcome),
    Activity(Activity),
    Worker(WorkerSample),
}

#[derive(Debug, thiserror::Error)]
#[error("the `{kind}` event's payload is unreadable: {reason}")]
pub struct UnreadableEvent {
    pub kind: String,
    pub reason: String,
}

/// The facts an event carries (none for kinds analytics does not keep). Negative
/// durations (clock skew between processes) are clamped to zero so that sums and
/// percentiles stay sane.
pub fn facts_of(
    kind: &str,
    occurred_at_ms: i64,
    payload: &serde_json::Value,
) -> Result<Vec<Fact>, UnreadableEvent> {
    let unreadable = |e: serde_json::Error| UnreadableEvent {
        kind: kind.to_string(),
        reason: e.to_string(),
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct WorkflowEdit {
        workspace_id: Uuid,
        #[serde(alias = "publishedBy")]
        updated_by: Uuid,
    }
    match kind {
        "execution.succeeded" | "execution.failed" | "execution.cancelled" => {
            let mut o: ExecutionOutcome =
                serde_json::from_value(payload.clone()).map_err(unreadable)?;
            o.duration_ms = o.duration_ms.max(0);
            let mut facts = Vec::with_capacity(2);
            if !o.triggered_by.is_nil() {
                facts.push(Fact::Activity(Activity {
                    workspace_id: o.workspace_id,
                    user_id: o.triggered_by,
                    kind: ActivityKind::Started,
                    at_ms: o.finished_at_ms - o.duration_ms,
                }));
            }
            facts.push(Fact::Execution(o));
            Ok(facts)
        }
        "step.finished" => {
            let mut s: StepOutcome = serde_json::from_value(payload.clone()).map_err(unreadable)?;
            s.duration_ms = s.duration_ms.max(0);
            s.queue_wait_ms = s.queue_wait_ms.max(0);
            Ok(vec![Fact::Step(s)])
        }
        "workflow.updated" | "workflow.published" => {
            let edit: WorkflowEdit = serde_json::from_value(payload.clone()).map_err(unreadable)?;
            Ok(vec![Fact::Activity(Activity {
                workspace_id: edit.workspace_id,
                user_id: edit.updated_by,
                kind: if kind == "workflow.updated" {
                    ActivityKind::Edited
                } else {
                    ActivityKind::Published
                },
                at_ms: occurred_at_ms,
            })])
        }
        "worker.sampled" => {
            let w: WorkerSample = serde_json::from_value(payload.clone()).map_err(unreadable)?;
            Ok(vec![Fact::Worker(w)])
        }
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_payloads_are_camel_case_and_clamped() {
        let id = Uuid::now_v7();
        let payload = serde_json::json!({
            "executionId": id, "workflowId": id, "workspaceId": id, "version": 3,
            "status": "TIMED_OUT", "triggeredBy": id, "workflowName": "w",
            "startedAtMs": 10, "finishedAtMs": 5, "durationMs": -5, "error": "boom"
        });
        let facts = facts_of("execution.failed", 0, &payload).unwrap();
        let Some(Fact::Execution(o)) = facts.last() else {
            panic!("{facts:?}")
        };
        assert_eq!(o.status, RunStatus::TimedOut);
        assert_eq!(o.duration_ms, 0, "negative durations are clamped");
        assert!(
            matches!(&facts[0], Fact::Activity(a) if a.kind == ActivityKind::Started && a.user_id == id)
        );
        assert!(facts_of(
            "execution.failed",
            0,
            &serde_json::json!({"status": "RUNNING"})
        )
        .is_err());
        assert!(facts_of("member.added", 0, &serde_json::json!({}))
            .unwrap()
            .is_empty());
    }
}
