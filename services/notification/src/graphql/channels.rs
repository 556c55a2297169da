//! A channel as the API takes it (`NotificationChannelInput`: exactly one of e-mail,
//! webhook and SMS, secrets included) and shows it (`NotificationChannelConfig`: settings,
//! and only the names of the secrets that are set).

use async_graphql::{InputObject, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::ApiError;

use crate::domain::channels::{
    bad, parse_url, ChannelConfig, EmailInput, EmailSettings, Secrets, Settings, SmsSettings,
    SmtpSecurity, WebhookFormat, WebhookSettings,
};
use crate::domain::Channel;

#[derive(InputObject)]
pub struct EmailChannelInput {
    pub host: String,
    #[graphql(default = 587)]
    pub port: i32,
    #[graphql(default_with = "SmtpSecurity::Starttls")]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Sealed; never returned.
    pub password: Option<String>,
    pub from: String,
    pub reply_to: Option<String>,
    /// Addresses that get every message of the channel, besides the members named.
    #[graphql(default)]
    pub to: Vec<String>,
}

#[derive(InputObject)]
pub struct WebhookChannelInput {
    pub url: String,
    #[graphql(default_with = "WebhookFormat::Generic")]
    pub format: WebhookFormat,
    /// The HMAC-SHA256 key requests are signed with (at least 16 characters); sealed,
    /// never returned. Required when creating.
    pub signing_secret: Option<String>,
    /// PagerDuty's routing key (PAGERDUTY format); sealed, never returned.
    pub routing_key: Option<String>,
}

#[derive(InputObject)]
pub struct SmsChannelInput {
    #[graphql(default = "https://api.twilio.com")]
    pub base_url: String,
    pub account_sid: String,
    /// Sealed; never returned. Required when creating.
    pub auth_token: Option<String>,
    /// E.164 (`+14155550100`).
    pub from: String,
    /// E.164 numbers that receive the channel's messages.
    pub to: Vec<String>,
}

/// Exactly one of `email`, `webhook` and `sms`.
#[derive(InputObject)]
pub struct NotificationChannelInput {
    pub name: String,
    pub email: Option<EmailChannelInput>,
    pub webhook: Option<WebhookChannelInput>,
    pub sms: Option<SmsChannelInput>,
}

impl NotificationChannelInput {
    pub fn parse(self) -> Result<(String, Settings, Secrets), ApiError> {
        const PATH: &str = "input";
        match (self.email, self.webhook, self.sms) {
            (Some(e), None, None) => Ok((
                self.name,
                Settings::Email(EmailSettings::parse(
                    "input.email",
                    EmailInput {
                        host: &e.host,
                        port: e.port,
                        security: e.security,
                        username: e.username.as_deref(),
                        from: &e.from,
                        reply_to: e.reply_to.as_deref(),
                        to: &e.to,
                    },
                )?),
                Secrets {
                    password: e.password,
                    ..Secrets::default()
                },
            )),
            (None, Some(w), None) => Ok((
                self.name,
                Settings::Webhook(WebhookSettings {
                    url: parse_url("input.webhook.url", &w.url)?,
                    format: w.format,
                }),
                Secrets {
                    signing_secret: w.signing_secret,
                    routing_key: w.routing_key,
                    ..Secrets::default()
                },
            )),
            (None, None, Some(s)) => Ok((
                self.name,
                Settings::Sms(SmsSettings::parse(
                    "input.sms",
                    &s.base_url,
                    &s.account_sid,
                    &s.from,
                    &s.to,
                )?),
                Secrets {
                    auth_token: s.auth_token,
                    ..Secrets::default()
                },
            )),
            _ => Err(bad(
                PATH,
                "give exactly one of `email`, `webhook` and `sms`",
            )),
        }
    }
}

#[derive(SimpleObject)]
pub struct EmailChannel {
    pub host: String,
    pub port: i32,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub from: String,
    pub reply_to: Option<String>,
    pub to: Vec<String>,
}

#[derive(SimpleObject)]
pub struct WebhookChannel {
    pub url: String,
    pub format: WebhookFormat,
}

#[derive(SimpleObject)]
pub struct SmsChannel {
    pub base_url: String,
    pub account_sid: String,
    pub from: String,
    pub to: Vec<String>,
}

/// A workspace's channel. Its secrets are never returned: `secretsSet` names those set.
#[derive(SimpleObject)]
#[graphql(name = "NotificationChannelConfig")]
pub struct ChannelNode {
    pub id: ID,
    pub name: String,
    pub kind: Channel,
    pub email: Option<EmailChannel>,
    pub webhook: Option<WebhookChannel>,
    pub sms: Option<SmsChannel>,
    pub secrets_set: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ChannelConfig> for ChannelNode {
    fn from(c: ChannelConfig) -> Self {
        let kind = c.settings.channel();
        let (mut email, mut webhook, mut sms) = (None, None, None);
        match c.settings {
            Settings::Email(e) => {
                email = Some(EmailChannel {
                    host: e.host,
                    port: e.port.into(),
                    security: e.security,
                    username: e.username,
                    from: e.from,
                    reply_to: e.reply_to,
                    to: e.to,
                })
            }
            Settings::Webhook(w) => {
                webhook = Some(WebhookChannel {
                    url: w.url,
                    format: w.format,
                })
            }
            Settings::Sms(s) => {
                sms = Some(SmsChannel {
                    base_url: s.base_url,
                    account_sid: s.account_sid,
                    from: s.from,
                    to: s.to,
                })
            }
        }
        ChannelNode {
            id: ID(c.id.to_string()),
            name: c.name,
            kind,
            email,
            webhook,
            sms,
            secrets_set: c.secrets_set.iter().map(|s| s.to_string()).collect(),
            created_at: to_datetime(c.created_at),
            updated_at: to_datetime(c.updated_at),
        }
    }
}
