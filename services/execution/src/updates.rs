//! Live execution updates: the `executionUpdated` and `workspaceExecutions` subscriptions.
//!
//! They are fed by this service's own outbox events (`step.finished` for every attempt of a
//! step that ends, and the outcome events `execution.succeeded|failed|cancelled`) as this
//! process's live listener receives them from the bus ([`LiveEvents`]): every replica
//! hears every event, so a client on any replica follows executions run by any worker, in
//! both runtimes. An event says what changed; the execution and the step are read when
//! (and only if) the client selects them, so the client sees their state as committed.
//!
//! Rules: a subscriber is authorized once, when it subscribes, exactly as the matching
//! query (VIEWER; API keys within their workspace; outsiders get the same `NOT_FOUND` or
//! `FORBIDDEN` as the query). `executionUpdated` ends after the execution's outcome, and
//! for an execution that already ended gives that outcome at once and ends. A subscriber
//! that reads too slowly gets an error item saying how many updates it missed.

use async_graphql::{Context, Enum, InputObject, Object, Result, Subscription, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::{parse_id, ApiError, ErrorCode};
use flowfleet_runtime::events::live::{LiveEvent, LiveEvents};
use flowfleet_runtime::events::Event;
use flowfleet_security::access::Target;
use flowfleet_security::identity::Role;
use futures::stream::{self, BoxStream, StreamExt as _};
use uuid::Uuid;

use crate::domain::{Status, STEP_FINISHED};
use crate::graphql::{Ctx, ExecutionNode, StepRunNode};

/// The events this service's live listener binds.
pub const BINDINGS: &[&str] = &[
    STEP_FINISHED,
    "execution.succeeded",
    "execution.failed",
    "execution.cancelled",
];

/// Updates buffered in a process before the slowest subscriber counts as behind.
pub const CAPACITY: usize = 4096;

/// What an update is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ExecutionUpdateKind {
    /// An attempt of a step ended (succeeded, failed, or will be retried).
    StepFinished,
    /// The execution ended: its status is final.
    Finished,
}

/// One change of one execution.
#[derive(Debug, Clone)]
pub struct ExecutionUpdate {
    kind: ExecutionUpdateKind,
    execution: Uuid,
    workflow: Option<Uuid>,
    step: Option<Uuid>,
    /// For `Finished`: the final status the event carried.
    status: Option<Status>,
    at_ms: i64,
}

impl ExecutionUpdate {
    /// The update an event describes, if it describes one.
    fn of(event: &Event) -> Option<Self> {
        let payload = &event.payload;
        let id = |key: &str| payload.get(key)?.as_str()?.parse::<Uuid>().ok();
        let kind = if event.kind == STEP_FINISHED {
            ExecutionUpdateKind::StepFinished
        } else {
            ExecutionUpdateKind::Finished
        };
        Some(Self {
            kind,
            execution: id("executionId")?,
            workflow: id("workflowId"),
            step: id("stepId").filter(|_| kind == ExecutionUpdateKind::StepFinished),
            status: payload
                .get("status")
                .and_then(|s| s.as_str())
                .and_then(Status::parse)
                .filter(|_| kind == ExecutionUpdateKind::Finished),
            at_ms: event.occurred_at_ms,
        })
    }

    fn workspace(event: &Event) -> Option<Uuid> {
        event.payload.get("workspaceId")?.as_str()?.parse().ok()
    }
}

#[Object]
impl ExecutionUpdate {
    async fn kind(&self) -> ExecutionUpdateKind {
        self.kind
    }
    async fn execution_id(&self) -> ID {
        ID(self.execution.to_string())
    }
    /// When the change happened.
    async fn at(&self) -> DateTime<Utc> {
        to_datetime(self.at_ms)
    }
    /// The execution as it is now (status, progress, output, ...).
    async fn execution(&self, ctx: &Context<'_>) -> Result<ExecutionNode> {
        let c = ctx.data::<Ctx>()?;
        let e = c
            .store
            .get(self.execution)
            .await?
            .ok_or_else(|| ApiError::not_found("no execution with this id"))?;
        Ok(ExecutionNode(e))
    }
    /// For `STEP_FINISHED`: the attempt that ended, as recorded.
    async fn step(&self, ctx: &Context<'_>) -> Result<Option<StepRunNode>> {
        let Some(step) = self.step else {
            return Ok(None);
        };
        let c = ctx.data::<Ctx>()?;
        Ok(c.store.step(step).await?.map(StepRunNode))
    }
}

/// Which of a workspace's updates a subscriber wants; every field narrows.
#[derive(Debug, Default, InputObject)]
pub struct ExecutionUpdateFilter {
    /// Only this workflow's executions.
    pub workflow_id: Option<ID>,
    /// Only these kinds of update.
    pub kinds: Option<Vec<ExecutionUpdateKind>>,
    /// Only executions that finished with one of these statuses (implies `FINISHED`).
    pub statuses: Option<Vec<Status>>,
}

struct Narrowing {
    workflow: Option<Uuid>,
    kinds: Option<Vec<ExecutionUpdateKind>>,
    statuses: Option<Vec<Status>>,
}

impl Narrowing {
    fn parse(filter: ExecutionUpdateFilter) -> Result<Self, ApiError> {
        Ok(Self {
            workflow: filter
                .workflow_id
                .map(|id| parse_id("filter.workflowId", &id))
                .transpose()?,
            kinds: filter.kinds,
            statuses: filter.statuses,
        })
    }

    fn admits(&self, update: &ExecutionUpdate) -> bool {
        self.workflow.is_none_or(|w| update.workflow == Some(w))
            && self.kinds.as_ref().is_none_or(|k| k.contains(&update.kind))
            && self
                .statuses
                .as_ref()
                .is_none_or(|s| update.status.is_some_and(|status| s.contains(&status)))
    }
}

fn missed(count: u64) -> async_graphql::Error {
    ApiError::new(
        ErrorCode::SubscriptionLagged,
        format!(
            "this subscription fell behind and missed {count} updates; query the executions to \
         catch up"
        ),
    )
    .into()
}

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Changes of one execution as they happen: each attempt of a step that ends, then its
    /// outcome, after which the stream ends. For an execution that already ended, its
    /// outcome at once. VIEWER of its workspace (API keys within theirs); anyone else
    /// gets NOT_FOUND, as for `execution`.
    async fn execution_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<BoxStream<'static, Result<ExecutionUpdate>>> {
        let c = ctx.data::<Ctx>()?;
        let e = c.load_for(ctx, &id, Role::Viewer).await?;
        // Listening before the state is read again below: nothing in between is missed.
        let live = ctx
            .data::<LiveEvents>()?
            .subscribe()
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        let e = c
            .store
            .get(e.id)
            .await?
            .ok_or_else(|| ApiError::not_found("no execution with this id"))?;
        if e.status.is_terminal() {
            let done = ExecutionUpdate {
                kind: ExecutionUpdateKind::Finished,
                execution: e.id,
                workflow: Some(e.workflow_id),
                step: None,
                status: Some(e.status),
                at_ms: e.finished_at.unwrap_or(e.created_at),
            };
            return Ok(stream::once(async move { Ok(done) }).boxed());
        }
        let execution = e.id;
        // Up to and including the outcome, then the end (without waiting for another event).
        let updates = stream::unfold(Some(live), move |live| async move {
            let mut live = live?;
            loop {
                let update = match live.next().await? {
                    LiveEvent::Missed(count) => return Some((Err(missed(count)), Some(live))),
                    LiveEvent::Event(event) => ExecutionUpdate::of(&event),
                };
                let Some(update) = update.filter(|u| u.execution == execution) else {
                    continue;
                };
                let ended = update.kind == ExecutionUpdateKind::Finished;
                return Some((Ok(update), (!ended).then_some(live)));
            }
        });
        Ok(updates.boxed())
    }

    /// Changes of every execution of a workspace (narrowed by `filter`) as they happen.
    /// VIEWER of the workspace (API keys within theirs); others get FORBIDDEN, as for
    /// `Workspace.executions`.
    async fn workspace_executions(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        filter: Option<ExecutionUpdateFilter>,
    ) -> Result<BoxStream<'static, Result<ExecutionUpdate>>> {
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let narrowing = Narrowing::parse(filter.unwrap_or_default())?;
        let me = caller(ctx).require()?;
        c.access
            .authorize(me, workspace, Role::Viewer, Target::Workspace)
            .await?;
        let live = ctx
            .data::<LiveEvents>()?
            .subscribe()
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        let updates = live.filter_map(move |item| {
            let admitted = match item {
                LiveEvent::Missed(count) => Some(Err(missed(count))),
                LiveEvent::Event(event) => (ExecutionUpdate::workspace(&event) == Some(workspace))
                    .then(|| ExecutionUpdate::of(&event))
                    .flatten()
                    .filter(|u| narrowing.admits(u))
                    .map(Ok),
            };
            async move { admitted }
        });
        Ok(updates.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: serde_json::Value) -> Event {
        Event::new(kind, 1_700_000_000_000, payload)
    }

    #[test]
    fn events_become_updates_and_filters_narrow_them() {
        let (e, w, s) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let step = ExecutionUpdate::of(&event(
            STEP_FINISHED,
            serde_json::json!({"executionId": e, "workflowId": w, "stepId": s, "status": "SUCCEEDED"}),
        ))
        .expect("update");
        assert_eq!(step.kind, ExecutionUpdateKind::StepFinished);
        assert_eq!(
            (step.step, step.status),
            (Some(s), None),
            "a step's status is not the run's"
        );
        let done = ExecutionUpdate::of(&event(
            "execution.failed",
            serde_json::json!({"executionId": e, "workflowId": w, "status": "TIMED_OUT"}),
        ))
        .expect("update");
        assert_eq!(
            (done.kind, done.status),
            (ExecutionUpdateKind::Finished, Some(Status::TimedOut))
        );
        assert!(ExecutionUpdate::of(&event(STEP_FINISHED, serde_json::json!({}))).is_none());

        let failures = Narrowing {
            workflow: None,
            kinds: None,
            statuses: Some(vec![Status::Failed, Status::TimedOut]),
        };
        assert!(failures.admits(&done) && !failures.admits(&step));
        let other_workflow = Narrowing {
            workflow: Some(Uuid::now_v7()),
            kinds: None,
            statuses: None,
        };
        assert!(!other_workflow.admits(&done));
        let steps_only = Narrowing {
            workflow: Some(w),
            kinds: Some(vec![ExecutionUpdateKind::StepFinished]),
            statuses: None,
        };
        assert!(steps_only.admits(&step) && !steps_only.admits(&done));
    }
}
