//! The execution service's domain: executions, step runs, and how a node turns
//! its input into its output. No I/O here.

use flowfleet_definitions::definition::{Definition, Node};
pub use flowfleet_definitions::events::{CustomEventName, EventNameError, TriggerEvent};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "ExecutionStatus")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl Status {
    /// The kind of the event announcing that an execution ended with this status.
    pub fn outcome_event(self) -> &'static str {
        match self {
            Status::Succeeded => "execution.succeeded",
            Status::Cancelled => "execution.cancelled",
            _ => "execution.failed",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
            Status::TimedOut => "TIMED_OUT",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::Cancelled,
            Status::TimedOut,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// What started an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Manual,
    Cron,
    Webhook,
    /// A platform or custom event an EVENT trigger names ([`crate::triggers::events`]).
    Event,
    SubWorkflow,
    Retry,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 6] = [
        TriggerKind::Manual,
        TriggerKind::Cron,
        TriggerKind::Webhook,
        TriggerKind::Event,
        TriggerKind::SubWorkflow,
        TriggerKind::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Manual => "MANUAL",
            TriggerKind::Cron => "CRON",
            TriggerKind::Webhook => "WEBHOOK",
            TriggerKind::Event => "EVENT",
            TriggerKind::SubWorkflow => "SUB_WORKFLOW",
            TriggerKind::Retry => "RETRY",
        }
    }

    pub fn parse(s: &str) -> Option<TriggerKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Execution {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_name: String,
    pub version: i64,
    pub definition: Definition,
    pub status: Status,
    pub trigger: TriggerKind,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub priority: i64,
    pub idempotency_key: Option<String>,
    pub triggered_by: Uuid,
    pub steps_total: i64,
    pub steps_done: i64,
    pub artifact_file_id: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// For a child execution: the parent's step waiting for it.
    pub parent: Option<ParentStep>,
    /// How deep in a chain of starts: sub_workflow calls, and executions started by the
    /// outcome (or artifact) of another through an EVENT trigger; 0 for one a user, a
    /// schedule, a webhook or another event started. At most [`MAX_DEPTH`].
    pub depth: i64,
    /// The execution this one retries.
    pub retry_of: Option<Uuid>,
    /// Who owns the workflow (when known): told of the outcome when no user started it.
    pub workflow_owner: Option<Uuid>,
}

/// What starting an execution needs to know besides the version it runs.
#[derive(Debug, Clone)]
pub struct Start {
    pub input: Value,
    /// Defaults to the workflow's setting.
    pub priority: Option<i64>,
    pub idempotency_key: Option<String>,
    pub trigger: TriggerKind,
    /// The user it runs for (nil for schedules and webhooks).
    pub triggered_by: Uuid,
    pub parent: Option<ParentStep>,
    pub depth: i64,
    pub retry_of: Option<Uuid>,
}

impl Execution {
    /// A new QUEUED execution of a published version.
    #[allow(clippy::too_many_arguments)]
    pub fn new_run(
        workspace_id: Uuid,
        workflow_id: Uuid,
        workflow_name: String,
        version: i64,
        definition: Definition,
        start: Start,
        now: i64,
    ) -> Execution {
        Execution {
            id: Uuid::now_v7(),
            workspace_id,
            workflow_id,
            workflow_name,
            version,
            steps_total: initial_steps(&definition),
            priority: start
                .priority
                .unwrap_or(definition.settings.priority as i64),
            definition,
            status: Status::Queued,
            trigger: start.trigger,
            input: start.input,
            output: None,
            error: None,
            idempotency_key: start.idempotency_key,
            triggered_by: start.triggered_by,
            steps_done: 0,
            artifact_file_id: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            parent: start.parent,
            depth: start.depth,
            retry_of: start.retry_of,
            workflow_owner: None,
        }
    }
}

impl Execution {
    /// The facts an execution's outcome event carries (consumed by analytics and
    /// notification).
    pub fn outcome_payload(&self) -> Value {
        let started = self.started_at.unwrap_or(self.created_at);
        let finished = self.finished_at.unwrap_or(started);
        serde_json::json!({
            "executionId": self.id, "workflowId": self.workflow_id, "workspaceId": self.workspace_id,
            "version": self.version, "status": self.status.as_str(), "triggeredBy": self.triggered_by,
            "workflowName": self.workflow_name, "startedAtMs": started, "finishedAtMs": finished,
            "durationMs": finished - started, "error": self.error,
            "workflowOwnerId": self.workflow_owner, "depth": self.depth,
        })
    }
}

/// The event kind announcing that an attempt of a step ended.
pub const STEP_FINISHED: &str = "step.finished";

impl StepRun {
    /// The `step.finished` event: an attempt of this step (as claimed) of `e` ended
    /// with `status` at `finished_at`. `queueWaitMs` is how long it waited for a worker
    /// once due; `durationMs` how long it ran (for a sub_workflow step, until its
    /// child ended).
    pub fn finished_event(
        &self,
        e: &Execution,
        status: StepStatus,
        error: Option<&str>,
        finished_at: i64,
    ) -> flowfleet_runtime::events::Event {
        let started = self.started_at.unwrap_or(finished_at);
        let payload = serde_json::json!({
            "stepId": self.id, "executionId": e.id, "workflowId": e.workflow_id,
            "workspaceId": e.workspace_id, "nodeId": self.node_id, "nodeType": self.node_type,
            "item": self.item, "attempt": self.attempt, "status": status.as_str(),
            "error": error, "queuedAtMs": self.queued_at, "startedAtMs": started,
            "finishedAtMs": finished_at, "durationMs": (finished_at - started).max(0),
            "queueWaitMs": (started - self.due_at.max(self.queued_at)).max(0),
        });
        flowfleet_runtime::events::Event::new(STEP_FINISHED, finished_at, payload)
    }

    /// Whether this step's output answers the webhook call that started its execution
    /// (the first such output does).
    pub fn replies_to_webhook(&self) -> bool {
        self.node_type == "webhook_response"
    }

    /// Why the execution fails when this step failed with `error` and has no attempt left.
    pub fn exhausted(&self, error: &str) -> String {
        format!(
            "node `{}`{} failed after {} attempt{}: {error}",
            self.node_id,
            self.item
                .map(|i| format!(" (item {i})"))
                .unwrap_or_default(),
            self.attempt,
            if self.attempt == 1 { "" } else { "s" }
        )
    }
}

/// When a step of `node` queued at `now` with `input` is due: a `delay` when its wait
/// ends (a wait that cannot be worked out is due now, and its step fails with the
/// reason), any other at once.
pub fn due_at(node: &Node, input: &Value, now: i64) -> i64 {
    match node.node_type.as_str() {
        "delay" => delay_due(node, input, now).unwrap_or(now),
        _ => now,
    }
}

/// Steps an execution is known to have before any loop starts: the nodes
/// outside loop bodies (a loop announces its body's steps per item).
pub fn initial_steps(def: &Definition) -> i64 {
    let inside: usize = def.loop_bodies().values().map(Vec::len).sum();
    (def.nodes.len() - inside) as i64
}

/// The step of a parent execution that waits for a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentStep {
    pub execution: Uuid,
    pub step: Uuid,
}

/// How deep sub_workflow calls may nest, and how long a chain of executions started by
/// each other's events may grow (a workflow started by its own success stops there).
pub const MAX_DEPTH: i64 = 8;

/// Where one attempt of a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum StepStatus {
    /// Waiting for a worker (or for its retry to come due).
    Queued,
    Running,
    /// A sub_workflow step whose child execution runs; no worker holds it.
    Waiting,
    Succeeded,
    /// Failed; a later attempt may follow.
    Failed,
    /// Reached only through untaken branches.
    Skipped,
    /// Its execution was cancelled or failed elsewhere before it ran.
    Cancelled,
    /// Ran past its timeout; a later attempt may follow.
    TimedOut,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Queued => "QUEUED",
            StepStatus::Running => "RUNNING",
            StepStatus::Waiting => "WAITING",
            StepStatus::Succeeded => "SUCCEEDED",
            StepStatus::Failed => "FAILED",
            StepStatus::Skipped => "SKIPPED",
            StepStatus::Cancelled => "CANCELLED",
            StepStatus::TimedOut => "TIMED_OUT",
        }
    }
    pub fn parse(s: &str) -> Option<StepStatus> {
        [
            StepStatus::Queued,
            StepStatus::Running,
            StepStatus::Waiting,
            StepStatus::Succeeded,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Cancelled,
            StepStatus::TimedOut,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One attempt of one node in one execution.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub id: Uuid,
    pub execution_id: Uuid,
    pub node_id: String,
    /// The item's index for a step in a `foreach` body.
    pub item: Option<u32>,
    pub node_type: String,
    pub status: StepStatus,
    /// 1 for the first try.
    pub attempt: i64,
    pub priority: i64,
    pub input: Value,
    pub output: Option<Value>,
    /// The branch a branching node took.
    pub branch: Option<String>,
    pub error: Option<String>,
    pub logs: Vec<String>,
    /// Who holds or held it.
    pub worker: Option<String>,
    pub queued_at: i64,
    /// Not to start before this (a retry's backoff).
    pub due_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The child execution a sub_workflow step started.
    pub child_execution_id: Option<Uuid>,
}

/// Where a node stands once its predecessors are settled.
pub enum Readiness {
    /// Run with this input.
    Run(Value),
    /// Every edge into it comes from a skipped node or an untaken branch.
    Skip,
}

/// A node's input, from the edges into it that carry data: those whose source
/// ran (it is in `outputs`) and, for a branching source, took the edge's branch
/// (recorded in `branches`). No edge in: the execution input. One live edge:
/// its source's output. Several (or any number into a `merge`): an object keyed
/// by source node id (a join). Edges in but none live: the node is skipped, and
/// so, in turn, are the nodes only it leads to.
pub fn readiness(
    def: &Definition,
    node: &str,
    execution_input: &Value,
    outputs: &Map<String, Value>,
    branches: &Map<String, Value>,
) -> Readiness {
    let incoming: Vec<_> = def.edges.iter().filter(|e| e.target == node).collect();
    if incoming.is_empty() {
        return Readiness::Run(execution_input.clone());
    }
    let mut live: Vec<&str> = incoming
        .iter()
        .filter(|e| outputs.contains_key(&e.source))
        .filter(|e| match &e.source_handle {
            None => true,
            Some(h) => branches.get(&e.source).and_then(Value::as_str) == Some(h.as_str()),
        })
        .map(|e| e.source.as_str())
        .collect();
    live.dedup();
    let keyed = def.node(node).is_some_and(|n| n.node_type == "merge");
    match live.as_slice() {
        [] => Readiness::Skip,
        [one] if !keyed => Readiness::Run(outputs[*one].clone()),
        many => Readiness::Run(Value::Object(
            many.iter()
                .map(|p| (p.to_string(), outputs[*p].clone()))
                .collect(),
        )),
    }
}

mod node_types;

pub use node_types::{
    condition, delay_due, foreach, foreach_concurrency, merge, set, single, sinks_output, switch,
    webhook_response, Outcome, MAX_DELAY_MS, MAX_ITEMS,
};
