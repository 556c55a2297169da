//! The execution subgraph: the `Execution` entity, `Workflow.executions` and
//! `Workflow.lastExecution`, starting an execution, and emitting a custom event
//! (which starts the workflows whose EVENT trigger names it).

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, InputObject, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::{to_datetime, Clock};
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;

use crate::domain::{CustomEventName, Execution, Start, Status, StepRun, StepStatus, TriggerKind};
use crate::effects::Effects;
use crate::launch::Launcher;
use crate::store::list::{Filter, Scope};
use crate::store::Store;
use crate::triggers::events::{custom_event, MAX_PAYLOAD_BYTES};

pub type ExecutionSchema = async_graphql::Schema<Query, Mutation, crate::updates::Subscription>;

pub struct Ctx {
    pub store: Store,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    /// What a cancellation sets off (dispatching admitted executions, the relay).
    pub effects: Effects,
    /// Fetches published versions and starts them.
    pub launcher: Launcher,
}

/// The schema; `live` feeds its subscriptions ([`crate::updates`]).
pub fn schema(ctx: Ctx, live: flowfleet_runtime::events::live::LiveEvents) -> ExecutionSchema {
    async_graphql::Schema::build(Query, Mutation, crate::updates::Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .data(ctx)
        .data(live)
        .finish()
}

/// What an execution that does not exist, or that the caller may not see, answers.
const NO_EXECUTION: &str = "no execution with this id";
/// What the workflow service answers for a workflow that does not exist.
const NO_WORKFLOW: &str = "no workflow with this id";
/// What the workflow service answers for a workflow that does not exist, has no published
/// version, or that the caller may not see.
const NO_PUBLISHED_VERSION: &str =
    "the workflow does not exist or has no such published version; publish it first";

impl Ctx {
    /// Authorizes the caller for `min` in an execution's workspace. A caller without
    /// access gets NOT_FOUND, the same as for an execution that does not exist.
    async fn check(&self, ctx: &Context<'_>, e: &Execution, min: Role) -> Result<(), ApiError> {
        let me = caller(ctx).require()?;
        self.access
            .authorize(me, e.workspace_id, min, Target::Resource(NO_EXECUTION))
            .await
    }

    /// Authorizes reading the runs of `e`'s workflow: an outsider gets the workflow
    /// service's answer for a workflow that does not exist.
    async fn check_workflow(&self, ctx: &Context<'_>, e: &Execution) -> Result<(), ApiError> {
        let me = caller(ctx).require()?;
        self.access
            .authorize(
                me,
                e.workspace_id,
                Role::Viewer,
                Target::Resource(NO_WORKFLOW),
            )
            .await
    }

    /// The execution, if the caller may read it.
    async fn load(&self, ctx: &Context<'_>, id: &ID) -> Result<Execution, ApiError> {
        self.load_for(ctx, id, Role::Viewer).await
    }

    /// The execution, if the caller has at least `min` in its workspace.
    pub(crate) async fn load_for(
        &self,
        ctx: &Context<'_>,
        id: &ID,
        min: Role,
    ) -> Result<Execution, ApiError> {
        let id = parse_id("id", id)?;
        let e = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found(NO_EXECUTION))?;
        self.check(ctx, &e, min).await?;
        Ok(e)
    }
}

/// A workflow (owned by the workflow subgraph); this subgraph adds its runs.
#[derive(SimpleObject)]
#[graphql(name = "Workflow", complex)]
pub struct WorkflowRef {
    pub id: ID,
}

/// A workspace (owned by the auth subgraph); this subgraph adds its executions.
#[derive(SimpleObject)]
#[graphql(name = "Workspace", complex)]
pub struct WorkspaceRef {
    pub id: ID,
}

#[ComplexObject]
impl WorkspaceRef {
    /// Every execution in the workspace, newest first (VIEWER or above).
    async fn executions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        filter: Option<ExecutionFilter>,
    ) -> Result<ExecutionConnection> {
        let me = caller(ctx).require()?.clone();
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("id", &self.id)?;
        c.access
            .authorize(&me, workspace, Role::Viewer, Target::Workspace)
            .await?;
        Ok(c.page(Scope::Workspace(workspace), filter, first, after)
            .await?)
    }
}

#[derive(SimpleObject)]
pub struct ExecutionPageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct ExecutionConnection {
    pub nodes: Vec<ExecutionNode>,
    pub page_info: ExecutionPageInfo,
    pub total_count: i64,
}

/// What to keep of an executions list; every set field must hold.
#[derive(InputObject, Default)]
pub struct ExecutionFilter {
    /// Any of these statuses.
    pub status: Option<Vec<Status>>,
    /// MANUAL, CRON, WEBHOOK, EVENT, SUB_WORKFLOW or RETRY.
    pub trigger: Option<String>,
    /// Within a workspace: one workflow's executions.
    pub workflow_id: Option<ID>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

impl ExecutionFilter {
    fn parse(self) -> Result<Filter, ApiError> {
        let trigger = self
            .trigger
            .map(|t| {
                TriggerKind::parse(&t).ok_or_else(|| {
                    let kinds: Vec<&str> = TriggerKind::ALL.iter().map(|k| k.as_str()).collect();
                    ApiError::bad_input(format!("`trigger` must be one of {}", kinds.join(", ")))
                })
            })
            .transpose()?;
        Ok(Filter {
            statuses: self.status.unwrap_or_default(),
            trigger,
            workflow: self
                .workflow_id
                .map(|w| parse_id("workflowId", &w))
                .transpose()?,
            created_from: self.created_after.map(|t| t.timestamp_millis()),
            created_before: self.created_before.map(|t| t.timestamp_millis()),
        })
    }
}

impl Ctx {
    /// One page of a list, after checking the request's shape.
    async fn page(
        &self,
        scope: Scope,
        filter: Option<ExecutionFilter>,
        first: i32,
        after: Option<String>,
    ) -> Result<ExecutionConnection, ApiError> {
        if !(1..=100).contains(&first) {
            return Err(ApiError::bad_input("`first` must be between 1 and 100"));
        }
        let filter = filter.unwrap_or_default().parse()?;
        let after = after.map(|a| parse_id("after", &a)).transpose()?;
        let page = self.store.list(scope, &filter, first as i64, after).await?;
        Ok(ExecutionConnection {
            page_info: ExecutionPageInfo {
                has_next_page: page.has_next,
                end_cursor: page.items.last().map(|e| e.id.to_string()),
            },
            total_count: page.total,
            nodes: page.items.into_iter().map(ExecutionNode).collect(),
        })
    }
}

#[ComplexObject]
impl WorkflowRef {
    /// The workflow's executions, newest first.
    async fn executions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        filter: Option<ExecutionFilter>,
    ) -> Result<Option<ExecutionConnection>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<ExecutionConnection> = async {
            caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let workflow = parse_id("id", &self.id)?;
            // All executions of a workflow share its workspace: one check covers the page.
            // A workflow that never ran has nothing to reveal (no page, no count).
            if let Some(latest) = c.store.latest_for_workflow(workflow).await? {
                c.check_workflow(ctx, &latest).await?;
            }
            Ok(c.page(Scope::Workflow(workflow), filter, first, after)
                .await?)
        }
        .await;
        result.map(Some)
    }

    /// The most recent execution, if the workflow ever ran.
    async fn last_execution(&self, ctx: &Context<'_>) -> Result<Option<ExecutionNode>> {
        caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workflow = parse_id("id", &self.id)?;
        match c.store.latest_for_workflow(workflow).await? {
            Some(e) => {
                c.check_workflow(ctx, &e).await?;
                Ok(Some(ExecutionNode(e)))
            }
            None => Ok(None),
        }
    }
}

#[derive(SimpleObject)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

/// One attempt of one node within an execution.
pub struct StepRunNode(pub StepRun);

#[Object(name = "StepRun")]
impl StepRunNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn node_id(&self) -> &str {
        &self.0.node_id
    }
    async fn node_type(&self) -> &str {
        &self.0.node_type
    }
    /// The item's index (from 0), for a step in the body of a `foreach`.
    async fn item(&self) -> Option<i32> {
        self.0.item.map(|i| i as i32)
    }
    async fn status(&self) -> StepStatus {
        self.0.status
    }
    /// 1 for the first try; retries count up.
    async fn attempt(&self) -> i64 {
        self.0.attempt
    }
    /// What the node was given (none for a skipped step).
    async fn input(&self) -> Option<Json<serde_json::Value>> {
        (self.0.status != StepStatus::Skipped).then(|| Json(self.0.input.clone()))
    }
    async fn output(&self) -> Option<Json<serde_json::Value>> {
        self.0.output.clone().map(Json)
    }
    /// The branch a branching node (condition, switch) took.
    async fn branch(&self) -> Option<&str> {
        self.0.branch.as_deref()
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// What the engine and the node logged during this attempt.
    async fn logs(&self) -> &[String] {
        &self.0.logs
    }
    /// The child execution a `sub_workflow` step started.
    async fn child_execution_id(&self) -> Option<ID> {
        self.0.child_execution_id.map(|c| ID(c.to_string()))
    }
    /// The worker that ran (or runs) it.
    async fn worker(&self) -> Option<&str> {
        self.0.worker.as_deref()
    }
    async fn queued_at(&self) -> DateTime<Utc> {
        to_datetime(self.0.queued_at)
    }
    /// Not started before this (a retry waits out its backoff).
    async fn due_at(&self) -> DateTime<Utc> {
        to_datetime(self.0.due_at)
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at.map(to_datetime)
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at.map(to_datetime)
    }
}

/// One run of a published workflow version.
pub struct ExecutionNode(pub Execution);

#[Object(name = "Execution")]
impl ExecutionNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn workflow(&self) -> WorkflowRef {
        WorkflowRef {
            id: ID(self.0.workflow_id.to_string()),
        }
    }
    async fn workspace_id(&self) -> ID {
        ID(self.0.workspace_id.to_string())
    }
    /// The published version this execution runs.
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn status(&self) -> Status {
        self.0.status
    }
    /// For a child execution: the execution whose `sub_workflow` step started it.
    async fn parent_execution_id(&self) -> Option<ID> {
        self.0.parent.map(|p| ID(p.execution.to_string()))
    }
    /// For a retry: the execution it retries.
    async fn retry_of(&self) -> Option<ID> {
        self.0.retry_of.map(|r| ID(r.to_string()))
    }
    /// How it was started: MANUAL (API), CRON, WEBHOOK, EVENT, SUB_WORKFLOW or RETRY.
    async fn trigger(&self) -> &str {
        self.0.trigger.as_str()
    }
    async fn input(&self) -> Json<serde_json::Value> {
        Json(self.0.input.clone())
    }
    async fn output(&self) -> Option<Json<serde_json::Value>> {
        self.0.output.clone().map(Json)
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn priority(&self) -> i64 {
        self.0.priority
    }
    async fn created_at(&self) -> DateTime<Utc> {
        to_datetime(self.0.created_at)
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at.map(to_datetime)
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at.map(to_datetime)
    }
    /// Milliseconds from start to finish, once finished.
    async fn duration_ms(&self) -> Option<i64> {
        Some(self.0.finished_at? - self.0.started_at?)
    }
    async fn progress(&self) -> Progress {
        Progress {
            done: self.0.steps_done,
            total: self.0.steps_total,
        }
    }
    async fn steps(&self, ctx: &Context<'_>) -> Result<Vec<StepRunNode>> {
        let c = ctx.data::<Ctx>()?;
        Ok(c.store
            .steps(self.0.id)
            .await?
            .into_iter()
            .map(StepRunNode)
            .collect())
    }
}

#[derive(InputObject)]
pub struct StartExecutionInput {
    pub workflow_id: ID,
    pub input: Option<Json<serde_json::Value>>,
    /// 0 (lowest) to 9 (highest); defaults to the workflow's setting.
    pub priority: Option<i32>,
    /// Starting twice with the same key returns the first execution.
    pub idempotency_key: Option<String>,
}

/// A custom event, as `emitEvent` recorded it.
#[derive(SimpleObject)]
pub struct EmittedEvent {
    /// The EVENT-triggered executions it starts carry it as `input.id`.
    pub id: ID,
    pub name: String,
    pub occurred_at: DateTime<Utc>,
}

pub struct Query;

#[Object]
impl Query {
    async fn execution(&self, ctx: &Context<'_>, id: ID) -> Result<ExecutionNode> {
        let c = ctx.data::<Ctx>()?;
        Ok(ExecutionNode(c.load(ctx, &id).await?))
    }

    #[graphql(entity)]
    async fn find_execution_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<ExecutionNode> {
        let c = ctx.data::<Ctx>()?;
        Ok(ExecutionNode(c.load(ctx, &id).await?))
    }

    /// Resolving a workflow reference does no I/O: its fields check access.
    #[graphql(entity)]
    async fn find_workflow_by_id(&self, id: ID) -> WorkflowRef {
        WorkflowRef { id }
    }

    /// Resolving a workspace reference does no I/O: its fields check access.
    #[graphql(entity)]
    async fn find_workspace_by_id(&self, id: ID) -> WorkspaceRef {
        WorkspaceRef { id }
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Starts the newest published version of a workflow (EDITOR or above).
    #[tracing::instrument(skip_all)]
    async fn start_execution(
        &self,
        ctx: &Context<'_>,
        input: StartExecutionInput,
    ) -> Result<ExecutionNode> {
        let me = caller(ctx).require()?.clone();
        let c = ctx.data::<Ctx>()?;
        let workflow_id = parse_id("workflowId", &input.workflow_id)?;
        if let Some(p) = input.priority {
            if !(0..=9).contains(&p) {
                return Err(ApiError::bad_input("`priority` must be between 0 and 9").into());
            }
        }
        if let Some(k) = &input.idempotency_key {
            if k.is_empty() || k.len() > 200 {
                return Err(
                    ApiError::bad_input("`idempotencyKey` must be 1 to 200 characters").into(),
                );
            }
        }
        let published = c.launcher.version(workflow_id, 0).await?;
        // Non-members learn nothing about the workflow's existence (the workflow service
        // answered NOT_FOUND already unless the caller is a member).
        c.access
            .authorize(
                &me,
                published.workspace_id,
                Role::Editor,
                Target::Resource(NO_PUBLISHED_VERSION),
            )
            .await?;
        let e = c
            .launcher
            .launch(
                &published,
                Start {
                    input: input.input.map(|j| j.0).unwrap_or(serde_json::json!({})),
                    priority: input.priority.map(i64::from),
                    idempotency_key: input.idempotency_key,
                    trigger: TriggerKind::Manual,
                    triggered_by: me.user_id,
                    parent: None,
                    depth: 0,
                    retry_of: None,
                },
            )
            .await?;
        Ok(ExecutionNode(e))
    }

    /// Emits a custom event in a workspace (EDITOR or above): every live workflow of the
    /// workspace whose EVENT trigger names it starts once, with `{event, id, occurredAt,
    /// payload}` as input. `name`: 1 to 100 characters, lowercase `[a-z0-9_]` segments
    /// separated by dots, not starting with a platform prefix (`execution.`, `custom.`,
    /// ...). `payload` (default `{}`): at most 64 KiB of JSON.
    #[tracing::instrument(skip_all)]
    async fn emit_event(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        name: String,
        payload: Option<Json<serde_json::Value>>,
    ) -> Result<EmittedEvent> {
        let me = caller(ctx).require()?.clone();
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        c.access
            .authorize(&me, workspace, Role::Editor, Target::Workspace)
            .await?;
        let name = CustomEventName::parse(&name).map_err(|e| {
            ApiError::bad_input(format!("`name`: {e}"))
                .with_detail("path", serde_json::json!(["name"]))
        })?;
        let payload = payload.map(|p| p.0).unwrap_or(serde_json::json!({}));
        let size = serde_json::to_vec(&payload)
            .map_err(ApiError::internal)?
            .len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(ApiError::bad_input(format!(
                "`payload` is {size} bytes of JSON; an event carries at most {MAX_PAYLOAD_BYTES}"
            ))
            .with_detail("path", serde_json::json!(["payload"]))
            .into());
        }
        let event = custom_event(workspace, &name, payload, me.user_id, c.clock.now_ms());
        c.store.record_event(&event).await?;
        c.effects.relay.wake();
        Ok(EmittedEvent {
            id: ID(event.id.to_string()),
            name: name.as_str().to_string(),
            occurred_at: to_datetime(event.occurred_at_ms),
        })
    }

    /// Runs a failed, cancelled or timed-out execution again (EDITOR or above),
    /// as a new execution of the same version with the same input. From the
    /// start; or with `fromFailedStep`, reusing the result of every step that
    /// succeeded (or was skipped), so only the failed step and what follows it
    /// run.
    #[tracing::instrument(skip_all)]
    async fn retry_execution(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(desc = "Reuse the steps that succeeded (default false: run from the start).")]
        from_failed_step: Option<bool>,
    ) -> Result<ExecutionNode> {
        let me = caller(ctx).require()?.clone();
        let c = ctx.data::<Ctx>()?;
        let e = c.load_for(ctx, &id, Role::Editor).await?;
        let retry = c
            .launcher
            .retry(&e, me.user_id, from_failed_step.unwrap_or(false))
            .await?;
        Ok(ExecutionNode(retry))
    }

    /// Cancels an execution (EDITOR or above): no further step starts, and steps
    /// running now are stopped within a third of the worker lease. Idempotent: an
    /// execution that has finished is returned as it is.
    #[tracing::instrument(skip_all)]
    async fn cancel_execution(&self, ctx: &Context<'_>, id: ID) -> Result<ExecutionNode> {
        let me = caller(ctx).require()?.clone();
        let c = ctx.data::<Ctx>()?;
        let e = c.load_for(ctx, &id, Role::Editor).await?;
        let reason = format!("cancelled by user {}", me.user_id);
        if let Some(t) = c.store.cancel(&e, &reason, c.clock.now_ms()).await? {
            // The freed concurrency slot may have admitted a waiting execution.
            c.effects.apply(&e, t).await?;
        }
        let e = c
            .store
            .get(e.id)
            .await?
            .ok_or_else(|| ApiError::not_found(NO_EXECUTION))?;
        Ok(ExecutionNode(e))
    }
}
