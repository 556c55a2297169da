//! EVENT triggers: a workflow started by something that happened in its workspace.
//!
//! Cron and webhooks come from outside; events come from the fleet itself, so they are
//! consumed from the bus like any other fact, from the queue `execution.event-triggers`,
//! bound (in `build`, before anything can publish) to the five platform events a trigger
//! may name ([`PLATFORM_EVENTS`]) and to `custom.#`, the custom events `emitEvent`
//! records ([`custom_event`]). Both buses match `#` the AMQP way, so both carry the same.
//!
//! For each event, every live workflow whose EVENT trigger names it **and** whose
//! workspace is the event's `workspaceId` starts its live version, with the event as input
//! (`{event, id, occurredAt, payload}`), trigger EVENT and no user (its outcome reaches
//! the workflow's owner). Another workspace's events never start a workflow.
//!
//! Delivery is at-least-once; starts are idempotent per workflow (key `event:<id>`), so
//! a redelivered event starts nothing new. A payload that cannot be read never becomes
//! readable: it is logged and acknowledged. A failure to start (the store, the workflow
//! service) is returned, and the event comes back later.
//!
//! Loops end. Executions carry a `depth` ([`MAX_DEPTH`]): one started by another's
//! outcome (`execution.succeeded`, `execution.failed`, whose payload carries its depth)
//! or by its artifact (`file.created` of a file an execution stored) is one deeper than
//! that execution; a custom event says how deep it is (`depth`, 0 from `emitEvent`); the
//! other platform events start at 0. A start that would go deeper than [`MAX_DEPTH`] is
//! not made, with a warning: a workflow started by its own success runs `MAX_DEPTH + 1`
//! times from one manual start, then stops.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flowfleet_runtime::error::{ApiError, ErrorCode};
use flowfleet_runtime::events::consumer::{Consumer, EventHandler};
use flowfleet_runtime::events::{BusError, Event, EventBus};
use serde_json::{json, Value};
use uuid::Uuid;

use super::Live;
use crate::domain::{CustomEventName, Start, TriggerEvent, TriggerKind, MAX_DEPTH};
use crate::launch::Launcher;

pub use flowfleet_definitions::events::PLATFORM_EVENTS;

pub const QUEUE: &str = "execution.event-triggers";

/// What the queue is bound to: the platform events, and every custom event.
pub const BINDINGS: [&str; 6] = [
    PLATFORM_EVENTS[0],
    PLATFORM_EVENTS[1],
    PLATFORM_EVENTS[2],
    PLATFORM_EVENTS[3],
    PLATFORM_EVENTS[4],
    "custom.#",
];

/// The largest custom event payload, serialized.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// How long an event waits for the trigger list to load after a start.
const LOAD_WAIT: Duration = Duration::from_secs(10);

/// Declares and binds the queue (so events published from now on are kept).
pub async fn bind(bus: &Arc<dyn EventBus>) -> Result<Consumer, BusError> {
    Consumer::bind(bus, QUEUE, &BINDINGS).await
}

/// The event `emitEvent` records: kind `custom.<name>`, with the workspace, the name,
/// the payload, who emitted it and its depth (0: a person emitted it).
pub fn custom_event(
    workspace: Uuid,
    name: &CustomEventName,
    payload: Value,
    by: Uuid,
    now: i64,
) -> Event {
    Event::new(
        name.bus_kind(),
        now,
        json!({
            "workspaceId": workspace, "name": name.as_str(), "payload": payload,
            "emittedBy": by, "depth": 0,
        }),
    )
}

/// Why an event cannot start anything, whatever is retried.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("`{0}` is not an event a trigger can name")]
    Kind(String),
    #[error("the payload has no `workspaceId` UUID")]
    Workspace,
    #[error("`depth` is not a non-negative integer")]
    Depth,
    #[error("`executionId` is not a UUID")]
    Execution,
}

/// How deep the executions an event starts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    At(i64),
    /// One deeper than this execution (whose artifact the event announces).
    After(Uuid),
}

/// An event, as triggers see it.
#[derive(Debug)]
pub struct Occurrence {
    pub event: TriggerEvent,
    pub workspace: Uuid,
    pub depth: Depth,
    /// What the executions it starts get as input.
    pub input: Value,
}

impl Occurrence {
    pub fn read(e: &Event) -> Result<Occurrence, Malformed> {
        let event =
            TriggerEvent::from_bus_kind(&e.kind).ok_or_else(|| Malformed::Kind(e.kind.clone()))?;
        let workspace = e
            .payload
            .get("workspaceId")
            .and_then(Value::as_str)
            .and_then(|w| w.parse().ok())
            .ok_or(Malformed::Workspace)?;
        // Outcome events recorded before they carried a depth were at depth 0.
        let carried = match e.payload.get("depth") {
            None | Some(Value::Null) => 0,
            Some(d) => d.as_i64().filter(|d| *d >= 0).ok_or(Malformed::Depth)?,
        };
        let depth = match &event {
            TriggerEvent::Platform("execution.succeeded" | "execution.failed") => {
                Depth::At(carried.saturating_add(1))
            }
            TriggerEvent::Platform("file.created") => match e.payload.get("executionId") {
                None | Some(Value::Null) => Depth::At(0),
                Some(id) => Depth::After(
                    id.as_str()
                        .and_then(|id| id.parse().ok())
                        .ok_or(Malformed::Execution)?,
                ),
            },
            TriggerEvent::Platform(_) => Depth::At(0),
            TriggerEvent::Custom(_) => Depth::At(carried),
        };
        let input = json!({
            "event": event.name(), "id": e.id, "occurredAt": e.occurred_at_ms,
            // A custom event's input is what was emitted; a platform event's, its facts.
            "payload": match &event {
                TriggerEvent::Custom(_) => e.payload.get("payload").cloned().unwrap_or(Value::Null),
                TriggerEvent::Platform(_) => e.payload.clone(),
            },
        });
        Ok(Occurrence {
            event,
            workspace,
            depth,
            input,
        })
    }
}

/// The live workflows of `workspace` with an EVENT trigger naming `event`: (id, version).
pub fn following(live: &Live, workspace: Uuid, event: &str) -> Vec<(Uuid, i64)> {
    let mut found: Vec<(Uuid, i64)> = live
        .all()
        .into_iter()
        .filter(|w| w.workspace_id.parse::<Uuid>().ok() == Some(workspace))
        .filter(|w| {
            w.triggers
                .iter()
                .any(|t| t.kind == TriggerKind::Event.as_str() && t.event == event)
        })
        .filter_map(|w| Some((w.workflow_id.parse().ok()?, w.version as i64)))
        .collect();
    found.sort();
    found
}

pub struct EventTriggers {
    pub launcher: Launcher,
    pub live: Live,
}

#[async_trait]
impl EventHandler for EventTriggers {
    #[tracing::instrument(name = "event triggers", skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let occurrence = match Occurrence::read(event) {
            Ok(o) => o,
            Err(e) => {
                // It never becomes readable: requeueing it would loop forever.
                tracing::error!(error = %e, "dropping an event triggers cannot read");
                return Ok(());
            }
        };
        if !self.live.loaded(LOAD_WAIT).await {
            anyhow::bail!("the list of live triggers has not loaded yet");
        }
        let workflows = following(&self.live, occurrence.workspace, occurrence.event.name());
        if workflows.is_empty() {
            return Ok(());
        }
        let depth = match occurrence.depth {
            Depth::At(d) => d,
            Depth::After(execution) => match self.launcher.store.get(execution).await? {
                Some(e) => e.depth.saturating_add(1),
                None => 0,
            },
        };
        if depth > MAX_DEPTH {
            tracing::warn!(
                depth,
                workflows = workflows.len(),
                "not starting EVENT-triggered workflows: the chain of executions starting each other would be deeper than {MAX_DEPTH}"
            );
            return Ok(());
        }
        for (workflow, version) in workflows {
            self.start(event, &occurrence, workflow, version, depth)
                .await?;
        }
        Ok(())
    }
}

impl EventTriggers {
    async fn start(
        &self,
        event: &Event,
        occurrence: &Occurrence,
        workflow: Uuid,
        version: i64,
        depth: i64,
    ) -> Result<(), ApiError> {
        let published = match self.launcher.version(workflow, version).await {
            Ok(p) => p,
            // Gone since the feed said otherwise (deleted): nothing to start, ever.
            Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::BadUserInput) => {
                tracing::warn!(%workflow, version, error = %e.message, "an EVENT-triggered workflow has no such version any more");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if published.workspace_id != occurrence.workspace {
            return Ok(());
        }
        let e = self
            .launcher
            .launch(
                &published,
                Start {
                    input: occurrence.input.clone(),
                    priority: None,
                    idempotency_key: Some(format!("event:{}", event.id)),
                    trigger: TriggerKind::Event,
                    triggered_by: Uuid::nil(),
                    parent: None,
                    depth,
                    retry_of: None,
                },
            )
            .await?;
        tracing::info!(%workflow, execution = %e.id, depth, "an event started a workflow");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: Value) -> Event {
        Event::new(kind, 1_700_000_000_000, payload)
    }

    #[test]
    fn outcomes_start_one_deeper_than_their_execution() {
        let ws = Uuid::now_v7();
        let o = Occurrence::read(&event(
            "execution.succeeded",
            json!({"workspaceId": ws, "executionId": Uuid::now_v7(), "depth": 3}),
        ))
        .unwrap();
        assert_eq!((o.workspace, o.depth), (ws, Depth::At(4)));
        assert_eq!(o.input["event"], "execution.succeeded");
        assert_eq!(o.input["payload"]["depth"], 3);
        assert_eq!(o.input["occurredAt"], 1_700_000_000_000_i64);
        // Recorded before outcomes carried a depth: that execution was at 0.
        let o = Occurrence::read(&event("execution.failed", json!({"workspaceId": ws}))).unwrap();
        assert_eq!(o.depth, Depth::At(1));
    }

    #[test]
    fn artifacts_count_as_their_execution_and_other_events_start_at_zero() {
        let ws = Uuid::now_v7();
        let run = Uuid::now_v7();
        let o = Occurrence::read(&event(
            "file.created",
            json!({"workspaceId": ws, "executionId": run}),
        ))
        .unwrap();
        assert_eq!(o.depth, Depth::After(run));
        let o = Occurrence::read(&event(
            "file.created",
            json!({"workspaceId": ws, "executionId": null}),
        ))
        .unwrap();
        assert_eq!(o.depth, Depth::At(0));
        for kind in ["workflow.published", "member.joined"] {
            let o = Occurrence::read(&event(kind, json!({"workspaceId": ws, "depth": 5}))).unwrap();
            assert_eq!(o.depth, Depth::At(0), "{kind}");
        }
    }

    #[test]
    fn custom_events_carry_their_name_payload_and_depth() {
        let ws = Uuid::now_v7();
        let name = CustomEventName::parse("order.created").unwrap();
        let e = custom_event(ws, &name, json!({"n": 1}), Uuid::nil(), 5);
        assert_eq!(e.kind, "custom.order.created");
        let o = Occurrence::read(&e).unwrap();
        assert_eq!(o.event.name(), "order.created");
        assert_eq!(o.depth, Depth::At(0));
        assert_eq!(
            o.input,
            json!({"event": "order.created", "id": e.id, "occurredAt": 5, "payload": {"n": 1}})
        );
    }

    #[test]
    fn malformed_events() {
        let ws = Uuid::now_v7();
        for (kind, payload) in [
            ("custom.Order", json!({"workspaceId": ws})),
            ("custom", json!({"workspaceId": ws})),
            ("execution.cancelled", json!({"workspaceId": ws})),
            ("custom.order", json!({})),
            ("custom.order", json!({"workspaceId": "nope"})),
            ("custom.order", json!({"workspaceId": ws, "depth": -1})),
            ("custom.order", json!({"workspaceId": ws, "depth": "2"})),
            ("file.created", json!({"workspaceId": ws, "executionId": 7})),
        ] {
            assert!(
                Occurrence::read(&event(kind, payload.clone())).is_err(),
                "{kind} {payload}"
            );
        }
    }
}
