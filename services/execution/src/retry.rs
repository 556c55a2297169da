//! Retrying an execution: the rules (no I/O). Only an execution that failed, was
//! cancelled or timed out may be retried. A retry is a new execution of the same
//! version with the same input and priority; from the failed step, it reuses the
//! latest attempt of every step where it succeeded or was skipped ([`reusable`]), and
//! counts, besides the steps known before any loop
//! starts, the loop-body steps those reused loops announced.

use flowfleet_runtime::error::ApiError;
use uuid::Uuid;

use crate::domain::{Execution, Start, Status, StepRun, StepStatus, TriggerKind};
use crate::plan::{latest_attempts, Place};

/// What a retry from the failed step keeps of an earlier execution: the latest
/// attempt of every step, where it succeeded or was skipped; by node and item.
pub fn reusable(steps: &[StepRun]) -> Vec<StepRun> {
    let mut kept: Vec<StepRun> =
        latest_attempts(steps.iter().map(|s| (Place::of(s), s.attempt, s)))
            .into_values()
            .filter(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped))
            .cloned()
            .collect();
    kept.sort_by(|a, b| (&a.node_id, a.item).cmp(&(&b.node_id, b.item)));
    kept
}

/// A retry, ready to record: the new execution and the steps it reuses.
#[derive(Debug)]
pub struct Retry {
    pub execution: Execution,
    pub reused: Vec<StepRun>,
}

/// The retry of `e` for `by`, at `now`. `steps` holds `e`'s steps when the retry starts
/// from the failed step, and is `None` when it runs from the start.
pub fn retry(
    e: &Execution,
    steps: Option<&[StepRun]>,
    by: Uuid,
    now: i64,
) -> Result<Retry, ApiError> {
    if !matches!(
        e.status,
        Status::Failed | Status::Cancelled | Status::TimedOut
    ) {
        return Err(ApiError::bad_input(format!(
            "execution {} is {}; only failed, cancelled or timed-out executions can be retried",
            e.id,
            e.status.as_str()
        )));
    }
    let reused = steps.map(reusable).unwrap_or_default();
    if steps.is_some()
        && crate::plan::completion(&e.definition, &crate::plan::states_of(&reused)).is_some()
    {
        return Err(ApiError::bad_input(
            "every step of this execution succeeded; retry it from the start instead",
        ));
    }
    let mut execution = Execution::new_run(
        e.workspace_id,
        e.workflow_id,
        e.workflow_name.clone(),
        e.version,
        e.definition.clone(),
        Start {
            input: e.input.clone(),
            priority: Some(e.priority),
            idempotency_key: None,
            trigger: TriggerKind::Retry,
            triggered_by: by,
            parent: None,
            depth: 0,
            retry_of: Some(e.id),
        },
        now,
    );
    execution.workflow_owner = e.workflow_owner;
    execution.steps_total += reused
        .iter()
        .filter(|s| s.item.is_none())
        .filter_map(|s| {
            let output = s.output.as_ref()?;
            Some(crate::plan::announced_steps(
                &e.definition,
                &s.node_id,
                output,
            ))
        })
        .sum::<i64>();
    Ok(Retry { execution, reused })
}
