//! The notification domain: channels, delivery states, what an execution
//! outcome says to the user who triggered it, and the rules inputs obey.
//! No I/O here.

pub mod channels;
pub mod delivery;
pub mod rules;
pub mod templates;

use flowfleet_runtime::error::ApiError;
use serde::Deserialize;
use uuid::Uuid;

/// Where a notification is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
#[graphql(name = "NotificationChannel")]
pub enum Channel {
    InApp,
    Email,
    Webhook,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::InApp,
        Channel::Email,
        Channel::Webhook,
        Channel::Sms,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "IN_APP",
            Channel::Email => "EMAIL",
            Channel::Webhook => "WEBHOOK",
            Channel::Sms => "SMS",
        }
    }
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "IN_APP" => Some(Channel::InApp),
            "EMAIL" => Some(Channel::Email),
            "WEBHOOK" => Some(Channel::Webhook),
            "SMS" => Some(Channel::Sms),
            _ => None,
        }
    }
}

/// Delivery state. An in-app notification is `SENT` once stored in the inbox
/// and `READ` once its recipient marked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "NotificationStatus")]
pub enum Status {
    Pending,
    Sent,
    Failed,
    Read,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Sent => "SENT",
            Status::Failed => "FAILED",
            Status::Read => "READ",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "PENDING" => Some(Status::Pending),
            "SENT" => Some(Status::Sent),
            "FAILED" => Some(Status::Failed),
            "READ" => Some(Status::Read),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub recipient_id: Uuid,
    pub channel: Channel,
    pub subject: String,
    pub body: String,
    pub status: Status,
    pub attempts: i64,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

impl Notification {
    /// A notification delivered to the recipient's in-app inbox.
    pub fn in_app(workspace_id: Uuid, recipient_id: Uuid, message: Message, now: i64) -> Self {
        Notification {
            id: Uuid::now_v7(),
            workspace_id,
            recipient_id,
            channel: Channel::InApp,
            subject: message.subject,
            body: message.body,
            status: Status::Sent,
            attempts: 1,
            created_at: now,
            read_at: None,
        }
    }
}

/// A subject (1 to 200 characters, trimmed) and a body (up to 10,000).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

impl Message {
    pub fn parse(subject: &str, body: &str) -> Result<Message, ApiError> {
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().count() > 200 {
            return Err(ApiError::bad_input("`subject` must be 1 to 200 characters"));
        }
        if body.chars().count() > 10_000 {
            return Err(ApiError::bad_input(
                "`body` must be at most 10000 characters",
            ));
        }
        Ok(Message {
            subject: subject.to_string(),
            body: body.to_string(),
        })
    }
}

/// How a finished execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// The payload of `execution.succeeded` / `execution.failed` (camelCase JSON),
/// with the fields a notification needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionOutcome {
    pub execution_id: Uuid,
    pub workspace_id: Uuid,
    pub status: Outcome,
    pub triggered_by: Uuid,
    /// The workflow's owner, when the execution service knew it.
    #[serde(default)]
    pub workflow_owner_id: Option<Uuid>,
    pub workflow_name: String,
    pub duration_ms: i64,
    #[serde(default)]
    pub error: Option<String>,
}

impl ExecutionOutcome {
    /// The idempotency key of the notification about this execution: one
    /// outcome notification per execution, however often the event arrives.
    pub fn source_key(&self) -> String {
        format!("execution:{}", self.execution_id)
    }

    /// Who hears of it: the user who started it, or, for a run no user started (a
    /// schedule, a webhook), the workflow's owner; `None` when neither is known.
    pub fn recipient(&self) -> Option<Uuid> {
        Some(self.triggered_by)
            .filter(|u| !u.is_nil())
            .or(self.workflow_owner_id.filter(|u| !u.is_nil()))
    }

    /// What the user who triggered the execution is told.
    pub fn message(&self) -> Message {
        let name: String = self.workflow_name.chars().take(120).collect();
        let took = format_duration(self.duration_ms);
        match self.status {
            Outcome::Succeeded => Message {
                subject: format!("Workflow \"{name}\" succeeded"),
                body: format!("Execution {} succeeded in {took}.", self.execution_id),
            },
            Outcome::Failed => {
                let error = self
                    .error
                    .as_deref()
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .unwrap_or("no error message was recorded");
                let error: String = error.chars().take(2_000).collect();
                Message {
                    subject: format!("Workflow \"{name}\" failed"),
                    body: format!(
                        "Execution {} failed after {took}.\nError: {error}",
                        self.execution_id
                    ),
                }
            }
        }
    }
}

/// A duration for people: `350 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`.
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1_000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_reach_who_started_the_run_or_else_the_workflow_owner() {
        let starter = Uuid::now_v7();
        let owner = Uuid::now_v7();
        let outcome = |triggered_by: Uuid, owner: Option<Uuid>| ExecutionOutcome {
            execution_id: Uuid::now_v7(),
            workspace_id: Uuid::now_v7(),
            status: Outcome::Succeeded,
            triggered_by,
            workflow_owner_id: owner,
            workflow_name: "w".into(),
            duration_ms: 1,
            error: None,
        };
        assert_eq!(outcome(starter, Some(owner)).recipient(), Some(starter));
        assert_eq!(outcome(Uuid::nil(), Some(owner)).recipient(), Some(owner));
        assert_eq!(outcome(Uuid::nil(), None).recipient(), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(350), "350 ms");
        assert_eq!(format_duration(4_200), "4.2 s");
        assert_eq!(format_duration(185_000), "3 min 5 s");
        assert_eq!(format_duration(7_800_000), "2 h 10 min");
        assert_eq!(format_duration(-3), "0 ms");
    }

    #[test]
    fn outcome_messages() {
        let id = Uuid::now_v7();
        let payload = serde_json::json!({
            "executionId": id, "workflowId": id, "workspaceId": id, "version": 1,
            "status": "FAILED", "triggeredBy": id, "workflowName": "Nightly sync",
            "startedAtMs": 0, "finishedAtMs": 1500, "durationMs": 1500, "error": "HTTP 502"
        });
        let o: ExecutionOutcome = serde_json::from_value(payload).unwrap();
        let m = o.message();
        assert_eq!(m.subject, "Workflow \"Nightly sync\" failed");
        assert!(
            m.body.contains("1.5 s") && m.body.contains("HTTP 502"),
            "{}",
            m.body
        );
        assert_eq!(o.source_key(), format!("execution:{id}"));
    }

    #[test]
    fn message_rules() {
        assert!(Message::parse("  ", "b").is_err());
        assert!(Message::parse(&"s".repeat(201), "b").is_err());
        assert!(Message::parse("s", &"b".repeat(10_001)).is_err());
        assert_eq!(Message::parse(" Hi ", "").unwrap().subject, "Hi");
        assert_eq!(Channel::parse("SMS"), Some(Channel::Sms));
        assert_eq!(Channel::parse("PIGEON"), None);
    }
}
