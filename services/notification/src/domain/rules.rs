//! Who hears what: the platform events notifications are about, a workspace's rules
//! (which events, on which workflows, reach which members and channels, at once or in a
//! digest), and each person's preferences (muted kinds and channels, quiet hours in
//! their own time zone). Pure decisions; the fan-out use case applies them.

use std::collections::BTreeSet;

use chrono::{NaiveTime, TimeZone, Timelike};
use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::channels::bad;
use super::Channel;

/// The platform events a rule may name.
pub const EVENT_KINDS: [&str; 5] = [
    "execution.succeeded",
    "execution.failed",
    "workflow.published",
    "file.created",
    "member.joined",
];

/// An event kind a rule or template may name; `path` locates a refusal.
pub fn parse_event_kind(path: &str, kind: &str) -> Result<&'static str, ApiError> {
    EVENT_KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .ok_or_else(|| {
            bad(
                path,
                format!(
                    "unknown event `{}`; use one of {}",
                    kind.chars().take(60).collect::<String>(),
                    EVENT_KINDS.join(", ")
                ),
            )
        })
}

/// A platform fact as the notification service reads it.
#[derive(Debug, Clone)]
pub struct PlatformEvent {
    pub id: Uuid,
    pub kind: &'static str,
    pub workspace_id: Uuid,
    /// The workflow it concerns, when it concerns one.
    pub workflow_id: Option<Uuid>,
    pub occurred_at: i64,
    pub payload: Value,
}

impl PlatformEvent {
    /// `None` for a kind notifications are not about, or a payload without a workspace.
    pub fn read(id: Uuid, kind: &str, occurred_at: i64, payload: &Value) -> Option<Self> {
        let kind = EVENT_KINDS.iter().find(|k| **k == kind).copied()?;
        let uuid = |field: &str| payload.get(field)?.as_str()?.parse::<Uuid>().ok();
        Some(PlatformEvent {
            id,
            kind,
            workspace_id: uuid("workspaceId")?,
            workflow_id: uuid("workflowId"),
            occurred_at,
            payload: payload.clone(),
        })
    }

    pub fn is_failure(&self) -> bool {
        self.kind == "execution.failed"
    }
}

/// A workspace's rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// Event kinds it reacts to (at least one).
    pub events: Vec<String>,
    /// Only events about these workflows; empty means every workflow (and events about
    /// none, such as `member.joined`).
    pub workflow_ids: Vec<Uuid>,
    /// Members told in their inbox and through the rule's e-mail channels.
    pub member_ids: Vec<Uuid>,
    /// Every member with one of these roles, too.
    pub roles: Vec<Role>,
    /// Channels used: e-mail channels reach the members above (and the channel's own
    /// list); webhook and SMS channels reach their receivers.
    pub channel_ids: Vec<Uuid>,
    /// Whether members also get an in-app notification.
    pub in_app: bool,
    /// When set, events are batched per recipient over this many seconds into one
    /// message (a digest) instead of one message each.
    pub digest_window_secs: Option<i64>,
    pub created_at: i64,
}

/// The most a digest window may span: a day.
pub const MAX_DIGEST_WINDOW_SECS: i64 = 86_400;

impl Rule {
    /// Whether `event` sets this rule off.
    pub fn matches(&self, event: &PlatformEvent) -> bool {
        self.enabled
            && event.workspace_id == self.workspace_id
            && self.events.iter().any(|k| k == event.kind)
            && (self.workflow_ids.is_empty()
                || event
                    .workflow_id
                    .is_some_and(|w| self.workflow_ids.contains(&w)))
    }

    /// The checks a rule passes before it is stored; `path` is the input's.
    pub fn check(&self, path: &str) -> Result<(), ApiError> {
        if self.name.trim().is_empty() || self.name.chars().count() > 80 {
            return Err(bad(&format!("{path}.name"), "a name is 1 to 80 characters"));
        }
        if self.events.is_empty() {
            return Err(bad(
                &format!("{path}.events"),
                "a rule names at least one event",
            ));
        }
        for (n, kind) in self.events.iter().enumerate() {
            parse_event_kind(&format!("{path}.events.{n}"), kind)?;
        }
        if self.member_ids.is_empty() && self.roles.is_empty() && self.channel_ids.is_empty() {
            return Err(bad(
                path,
                "a rule reaches someone: name members, roles or channels",
            ));
        }
        if let Some(w) = self.digest_window_secs {
            if !(1..=MAX_DIGEST_WINDOW_SECS).contains(&w) {
                return Err(bad(
                    &format!("{path}.digestWindowSeconds"),
                    format!("a digest window is 1 to {MAX_DIGEST_WINDOW_SECS} seconds"),
                ));
            }
        }
        Ok(())
    }
}

/// Hours during which a person gets no e-mail or SMS (their inbox still fills), in
/// their time zone. `start > end` spans midnight (22:00–07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// From `HH:MM` strings; `path` locates a refusal.
    pub fn parse(path: &str, start: &str, end: &str) -> Result<QuietHours, ApiError> {
        let time = |field: &str, v: &str| {
            NaiveTime::parse_from_str(v.trim(), "%H:%M")
                .map_err(|_| bad(&format!("{path}.{field}"), "a time is HH:MM (22:00)"))
        };
        let q = QuietHours {
            start: time("start", start)?,
            end: time("end", end)?,
        };
        if q.start == q.end {
            return Err(bad(path, "quiet hours need a start and an end that differ"));
        }
        Ok(q)
    }

    /// Whether the instant `at_ms` falls inside, read on the clock of `tz`.
    pub fn contains(&self, at_ms: i64, tz: chrono_tz::Tz) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_millis(at_ms) else {
            return false;
        };
        let local = tz.from_utc_datetime(&utc.naive_utc()).time();
        let local = NaiveTime::from_hms_opt(local.hour(), local.minute(), 0).unwrap_or(local);
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }
}

/// A person's preferences, the same in every workspace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    pub muted_events: BTreeSet<String>,
    pub muted_channels: BTreeSet<String>,
    pub quiet_hours: Option<QuietHours>,
}

/// Why a delivery to a person was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    MutedEvent,
    MutedChannel,
    QuietHours,
}

impl Suppression {
    pub fn reason(self) -> &'static str {
        match self {
            Suppression::MutedEvent => "the recipient muted this event",
            Suppression::MutedChannel => "the recipient muted this channel",
            Suppression::QuietHours => "within the recipient's quiet hours",
        }
    }
}

impl Preferences {
    /// Whether a message about `kind` through `channel` at `now_ms` is kept from the
    /// person whose clock is `tz`. Quiet hours hold back what would interrupt them (e-mail,
    /// SMS), not the inbox they read when they choose.
    pub fn suppresses(
        &self,
        kind: &str,
        channel: Channel,
        now_ms: i64,
        tz: chrono_tz::Tz,
    ) -> Option<Suppression> {
        if self.muted_events.contains(kind) {
            return Some(Suppression::MutedEvent);
        }
        if self.muted_channels.contains(channel.as_str()) {
            return Some(Suppression::MutedChannel);
        }
        let interrupts = matches!(channel, Channel::Email | Channel::Sms);
        if interrupts && self.quiet_hours.is_some_and(|q| q.contains(now_ms, tz)) {
            return Some(Suppression::QuietHours);
        }
        None
    }
}

/// A member as the auth service describes them.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub time_zone: chrono_tz::Tz,
}

/// The members a rule (or a `notify` step) reaches: those named, and those holding one
/// of the roles, each once, in the order the workspace lists them. Named ids that are not
/// members are left out: a removed member hears nothing more.
pub fn audience(members: &[Member], ids: &[Uuid], roles: &[Role]) -> Vec<Member> {
    members
        .iter()
        .filter(|m| ids.contains(&m.user_id) || roles.contains(&m.role))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hh: u32, mm: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(2026, 7, 1)
            .unwrap()
            .and_hms_opt(hh, mm, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    #[test]
    fn quiet_hours_read_the_recipients_clock_and_may_span_midnight() {
        let night = QuietHours::parse("q", "22:00", "07:00").unwrap();
        // 21:30 UTC is 23:30 in Paris (summer time) and 14:30 in Los Angeles.
        assert!(night.contains(at(21, 30), chrono_tz::Europe::Paris));
        assert!(!night.contains(at(21, 30), chrono_tz::America::Los_Angeles));
        assert!(night.contains(at(6, 59), chrono_tz::UTC));
        assert!(!night.contains(at(7, 0), chrono_tz::UTC));
        let lunch = QuietHours::parse("q", "12:00", "13:00").unwrap();
        assert!(lunch.contains(at(12, 30), chrono_tz::UTC));
        assert!(!lunch.contains(at(13, 30), chrono_tz::UTC));
        assert!(QuietHours::parse("q", "25:00", "07:00").is_err());
        assert!(QuietHours::parse("q", "07:00", "07:00").is_err());
    }

    #[test]
    fn preferences_mute_kinds_and_channels_and_quiet_hours_spare_the_inbox() {
        let p = Preferences {
            muted_events: ["execution.succeeded".to_string()].into(),
            muted_channels: ["SMS".to_string()].into(),
            quiet_hours: Some(QuietHours::parse("q", "00:00", "23:59").unwrap()),
        };
        let now = at(12, 0);
        let utc = chrono_tz::UTC;
        assert_eq!(
            p.suppresses("execution.succeeded", Channel::InApp, now, utc),
            Some(Suppression::MutedEvent)
        );
        assert_eq!(
            p.suppresses("execution.failed", Channel::Sms, now, utc),
            Some(Suppression::MutedChannel)
        );
        assert_eq!(
            p.suppresses("execution.failed", Channel::Email, now, utc),
            Some(Suppression::QuietHours)
        );
        assert_eq!(
            p.suppresses("execution.failed", Channel::InApp, now, utc),
            None
        );
    }

    #[test]
    fn rules_match_kind_workspace_and_workflow() {
        let ws = Uuid::now_v7();
        let wf = Uuid::now_v7();
        let rule = Rule {
            id: Uuid::now_v7(),
            workspace_id: ws,
            name: "failures".into(),
            enabled: true,
            events: vec!["execution.failed".into()],
            workflow_ids: vec![wf],
            member_ids: vec![Uuid::now_v7()],
            roles: vec![],
            channel_ids: vec![],
            in_app: true,
            digest_window_secs: None,
            created_at: 0,
        };
        let event = |kind: &str, ws: Uuid, wf: Uuid| {
            PlatformEvent::read(
                Uuid::now_v7(),
                kind,
                0,
                &serde_json::json!({"workspaceId": ws, "workflowId": wf}),
            )
            .unwrap()
        };
        assert!(rule.matches(&event("execution.failed", ws, wf)));
        assert!(!rule.matches(&event("execution.succeeded", ws, wf)));
        assert!(!rule.matches(&event("execution.failed", Uuid::now_v7(), wf)));
        assert!(!rule.matches(&event("execution.failed", ws, Uuid::now_v7())));
        let off = Rule {
            enabled: false,
            ..rule.clone()
        };
        assert!(!off.matches(&event("execution.failed", ws, wf)));
        assert!(rule.check("input").is_ok());
        let e = Rule {
            events: vec!["execution.exploded".into()],
            ..rule.clone()
        }
        .check("input")
        .unwrap_err();
        assert_eq!(
            e.detail("path").cloned().unwrap_or_default(),
            serde_json::json!(["input", "events", 0])
        );
        assert!(Rule {
            digest_window_secs: Some(0),
            ..rule
        }
        .check("input")
        .is_err());
    }
}
