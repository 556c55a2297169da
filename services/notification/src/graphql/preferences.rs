//! A person's notification preferences: `User.notificationPreferences` and
//! `updateNotificationPreferences`, in a session of their own only (preferences span
//! every workspace, which an API key, held to one, may not reach).

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use flowfleet_host::subgraph::caller;

use super::Ctx;
use crate::domain::rules::{Preferences, QuietHours};
use crate::domain::Channel;

/// Hours without e-mail or SMS, on the person's own clock (`User.timeZone`).
#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "QuietHoursInput")]
pub struct QuietHoursNode {
    /// `HH:MM`, 24-hour; a start after the end spans midnight (`22:00`–`07:00`).
    pub start: String,
    pub end: String,
}

#[derive(SimpleObject)]
#[graphql(name = "NotificationPreferences")]
pub struct PreferencesNode {
    /// Event kinds the person hears nothing about.
    pub muted_events: Vec<String>,
    /// Channels that never reach them (`IN_APP` empties their inbox of new notices).
    pub muted_channels: Vec<Channel>,
    pub quiet_hours: Option<QuietHoursNode>,
}

impl From<Preferences> for PreferencesNode {
    fn from(p: Preferences) -> Self {
        PreferencesNode {
            muted_events: p.muted_events.into_iter().collect(),
            muted_channels: p
                .muted_channels
                .iter()
                .filter_map(|c| Channel::parse(c))
                .collect(),
            quiet_hours: p.quiet_hours.map(|q| QuietHoursNode {
                start: q.start.format("%H:%M").to_string(),
                end: q.end.format("%H:%M").to_string(),
            }),
        }
    }
}

#[derive(InputObject)]
pub struct NotificationPreferencesInput {
    #[graphql(default)]
    pub muted_events: Vec<String>,
    #[graphql(default)]
    pub muted_channels: Vec<Channel>,
    /// Null: no quiet hours.
    pub quiet_hours: Option<QuietHoursNode>,
}

#[derive(Default)]
pub struct PreferencesMutation;

#[Object]
impl PreferencesMutation {
    /// Replaces the caller's preferences (a signed-in user, not an API key).
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn update_notification_preferences(
        &self,
        ctx: &Context<'_>,
        input: NotificationPreferencesInput,
    ) -> Result<PreferencesNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let quiet_hours = input
            .quiet_hours
            .map(|q| QuietHours::parse("input.quietHours", &q.start, &q.end))
            .transpose()?;
        let prefs = Preferences {
            muted_events: input.muted_events.into_iter().collect(),
            muted_channels: input
                .muted_channels
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            quiet_hours,
        };
        Ok(c.manage.set_preferences(me.user_id, prefs).await?.into())
    }
}
