//! Deliveries: one message to one destination through one channel, sent by a task on
//! the queue, attempt after attempt, until it is sent or gives up.
//!
//! Invariants:
//! - a delivery's `key` is unique: `(event, recipient, channel)` (for a channel's own
//!   receivers, the recipient is the channel), so an event consumed twice makes no
//!   second delivery;
//! - `attempts` only grows, by one per claimed attempt: a task claims attempt `n` only
//!   while `attempts = n - 1` and the delivery is `PENDING`, so a task delivered twice
//!   sends once;
//! - the log holds one row per attempt, with what the provider answered, never a secret.

use std::time::Duration;

use uuid::Uuid;

use super::Channel;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "DeliveryStatus")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Sent,
    /// Gave up: the last error says why.
    Failed,
    /// Not sent, on purpose: the recipient's preferences or quiet hours.
    Suppressed,
    /// Held for a digest, which is its own delivery.
    Batched,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Sent => "SENT",
            DeliveryStatus::Failed => "FAILED",
            DeliveryStatus::Suppressed => "SUPPRESSED",
            DeliveryStatus::Batched => "BATCHED",
        }
    }
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "PENDING" => DeliveryStatus::Pending,
            "SENT" => DeliveryStatus::Sent,
            "FAILED" => DeliveryStatus::Failed,
            "SUPPRESSED" => DeliveryStatus::Suppressed,
            "BATCHED" => DeliveryStatus::Batched,
            _ => return None,
        })
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// The inbox notification it belongs to (a member's e-mail), if any.
    pub notification_id: Option<Uuid>,
    pub channel: Channel,
    pub channel_id: Uuid,
    /// The member it is for; `None` for a channel's own receivers.
    pub recipient_id: Option<Uuid>,
    /// Addresses, a phone number, or the receiver's host: what the log shows.
    pub destination: String,
    pub event_kind: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    /// The event's data, for webhook payloads.
    pub data: serde_json::Value,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub key: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// One attempt, as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: i64,
    pub at: i64,
    pub ok: bool,
    /// The provider's answer: `HTTP 200`, the SMTP reply, or why it failed.
    pub detail: String,
}

/// What a sender reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Sent {
        detail: String,
    },
    /// Another attempt may succeed (a timeout, a 5xx, a 4xx SMTP reply).
    Transient {
        detail: String,
    },
    /// No attempt will (a 4xx from the receiver, a refused address, a channel
    /// deleted or refused by the egress guard).
    Permanent {
        detail: String,
    },
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Done,
    RetryAfter(Duration),
    GiveUp,
}

/// Retry policy: at most `max_attempts`, waiting `backoff(attempt)` between them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    pub fn next(&self, attempt: u32, outcome: &SendOutcome) -> Next {
        match outcome {
            SendOutcome::Sent { .. } => Next::Done,
            SendOutcome::Permanent { .. } => Next::GiveUp,
            SendOutcome::Transient { .. } if attempt >= self.max_attempts => Next::GiveUp,
            SendOutcome::Transient { .. } => Next::RetryAfter(flowfleet_runtime::queue::backoff(
                attempt, self.base, self.cap,
            )),
        }
    }
}

/// The idempotency key of a delivery.
pub fn delivery_key(source: &str, recipient: Option<Uuid>, channel: Uuid) -> String {
    match recipient {
        Some(user) => format!("{source}:{user}:{channel}"),
        None => format!("{source}:-:{channel}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_the_maximum_or_at_a_permanent_failure() {
        let p = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let transient = SendOutcome::Transient {
            detail: "HTTP 503".into(),
        };
        match p.next(1, &transient) {
            Next::RetryAfter(d) => {
                assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100))
            }
            other => panic!("{other:?}"),
        }
        match p.next(2, &transient) {
            Next::RetryAfter(d) => {
                assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.next(3, &transient), Next::GiveUp);
        assert_eq!(
            p.next(
                1,
                &SendOutcome::Permanent {
                    detail: "HTTP 404".into()
                }
            ),
            Next::GiveUp
        );
        assert_eq!(
            p.next(
                1,
                &SendOutcome::Sent {
                    detail: "HTTP 200".into()
                }
            ),
            Next::Done
        );
    }
}
