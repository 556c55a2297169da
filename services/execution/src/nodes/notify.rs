//! The `notify` node: asks the notification service to send a message (its `Notify`
//! method), and records what was queued. The step's identity (execution, node, item) is
//! the request's `source`, so a retried step queues nothing twice: the service answers a
//! repeat with what the first attempt queued.

use flowfleet_definitions::definition::Node;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::notification::v1::notification_service_client::NotificationServiceClient;
use flowfleet_runtime::proto::notification::v1::NotifyRequest;
use serde_json::{json, Value};

use super::NodeError;
use crate::domain::{Execution, StepRun};

#[derive(Clone)]
pub struct NotifyNode {
    pub notifications: NotificationServiceClient<GrpcChannel>,
}

fn strings(config: &Value, field: &str) -> Vec<String> {
    config
        .get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl NotifyNode {
    pub async fn run(
        &self,
        e: &Execution,
        step: &StepRun,
        node: &Node,
        input: Value,
        logs: &mut Vec<String>,
    ) -> Result<Value, NodeError> {
        let config = &node.config;
        let text = |field: &str| {
            config
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let data = json!({
            "input": input,
            "execution": {"id": e.id, "workflowId": e.workflow_id},
            "workflow": {"name": e.workflow_name},
        });
        let request = NotifyRequest {
            workspace_id: e.workspace_id.to_string(),
            source: format!(
                "step:{}:{}:{}",
                e.id,
                step.node_id,
                step.item.map(|i| i.to_string()).unwrap_or_default()
            ),
            member_ids: strings(config, "members"),
            roles: strings(config, "roles"),
            channel_ids: strings(config, "channels"),
            subject: text("subject"),
            body: text("body"),
            html: text("html"),
            data_json: data.to_string(),
            in_app: config.get("inApp").and_then(Value::as_bool).unwrap_or(true),
        };
        let queued = self
            .notifications
            .clone()
            .notify(request)
            .await
            .map_err(|s| NodeError::from_status(&s, "the notification service", "notify refused"))?
            .into_inner()
            .queued;
        let notified: Vec<Value> = queued
            .into_iter()
            .map(|q| {
                json!({
                    "channel": q.channel,
                    "destination": q.destination,
                    "status": q.status,
                    "notificationId": Some(q.notification_id).filter(|s| !s.is_empty()),
                    "deliveryId": Some(q.delivery_id).filter(|s| !s.is_empty()),
                })
            })
            .collect();
        logs.push(format!("queued {} notification(s)", notified.len()));
        let mut output = match data["input"].clone() {
            Value::Object(map) => map,
            other => {
                let mut map = serde_json::Map::new();
                map.insert("input".into(), other);
                map
            }
        };
        output.insert("notified".into(), Value::Array(notified));
        Ok(Value::Object(output))
    }
}
