//! A workspace's delivery channels: where its notifications leave the platform (an SMTP
//! relay, a webhook receiver such as Slack or PagerDuty, a Twilio-compatible SMS API).
//!
//! A channel is two parts kept apart on purpose: its *settings* (addresses, formats:
//! stored as JSON, shown to the workspace's admins) and its *secrets* (SMTP password,
//! signing secret, routing key, API token: sealed with the key ring, used only by the
//! sender, never returned by any API). Settings are parsed here, once, into types that
//! cannot hold a bad address, URL or phone number; the error names the input's path.

use flowfleet_runtime::error::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Channel;

/// A channel's name: 1 to 80 characters, trimmed, unique in its workspace.
pub fn parse_name(path: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(bad(path, "a channel name must be 1 to 80 characters"));
    }
    Ok(name.to_string())
}

/// `BAD_USER_INPUT` naming the input at `path` (dotted, as the client wrote it).
pub fn bad(path: &str, message: impl Into<String>) -> ApiError {
    let segments: Vec<serde_json::Value> = path
        .split('.')
        .map(|s| match s.parse::<u64>() {
            Ok(i) => serde_json::json!(i),
            Err(_) => serde_json::json!(s),
        })
        .collect();
    ApiError::bad_input(message).with_detail("path", serde_json::Value::Array(segments))
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(name = "SmtpSecurity")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the local network.
    None,
}

/// The body a webhook channel posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(name = "WebhookFormat")]
pub enum WebhookFormat {
    /// Flowfleet's JSON: `{id, event, workspaceId, subject, body, data}`.
    Generic,
    /// A Slack incoming webhook: `{text, blocks}`.
    Slack,
    /// PagerDuty Events API v2: `{routing_key, event_action, dedup_key, payload}`.
    Pagerduty,
}

/// An e-mail address, checked by `lettre`'s parser (RFC 5321 addr-spec).
pub fn parse_email(path: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    value
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|_| {
            bad(
                path,
                format!(
                    "`{}` is not an e-mail address (name@example.com)",
                    value.chars().take(80).collect::<String>()
                ),
            )
        })
}

/// A phone number in E.164: `+`, a country code, at most 15 digits in all.
pub fn parse_e164(path: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let digits = value.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(value.to_string())
    } else {
        Err(bad(
            path,
            format!(
                "`{}` is not an E.164 phone number (+14155550100)",
                value.chars().take(40).collect::<String>()
            ),
        ))
    }
}

/// An `http` or `https` URL with a host. Whether its address may be reached is the
/// egress guard's question, asked when sending (names can resolve differently later).
pub fn parse_url(path: &str, value: &str) -> Result<String, ApiError> {
    let refuse = |why: &str| bad(path, format!("not a usable URL: {why}"));
    let url = url::Url::parse(value.trim()).map_err(|e| refuse(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("only http and https URLs are accepted"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "credentials in the URL would be shown to every admin; use the channel's secret",
        ));
    }
    Ok(url.to_string())
}

/// A host name or address for SMTP.
fn parse_host(path: &str, value: &str) -> Result<String, ApiError> {
    let host = value.trim();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(host.to_string())
    } else {
        Err(bad(path, "not a host name or address"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// SMTP user; the password is the channel's secret.
    pub username: Option<String>,
    pub from: String,
    pub reply_to: Option<String>,
    /// Addresses that receive every message of this channel besides the members a rule
    /// or a `notify` step names (a team list, say).
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSettings {
    pub url: String,
    pub format: WebhookFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsSettings {
    /// Where the Twilio-compatible API lives (`https://api.twilio.com`).
    pub base_url: String,
    pub account_sid: String,
    pub from: String,
    /// Numbers that receive this channel's messages (an on-call rota, say).
    pub to: Vec<String>,
}

/// What a channel sends through, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Settings {
    Email(EmailSettings),
    Webhook(WebhookSettings),
    Sms(SmsSettings),
}

impl Settings {
    pub fn channel(&self) -> Channel {
        match self {
            Settings::Email(_) => Channel::Email,
            Settings::Webhook(_) => Channel::Webhook,
            Settings::Sms(_) => Channel::Sms,
        }
    }
}

/// A channel's secrets, sealed as one JSON document under the context
/// [`ChannelConfig::secret_context`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secrets {
    /// SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The key webhook requests are signed with (HMAC-SHA256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// PagerDuty's integration (routing) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// The SMS API's auth token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

/// A stored channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub settings: Settings,
    /// Which secrets are set (the values stay sealed).
    pub secrets_set: Vec<&'static str>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ChannelConfig {
    /// The associated data a channel's secrets are sealed under: a sealed value copied
    /// to another channel does not open there.
    pub fn secret_context(workspace: Uuid, channel: Uuid) -> String {
        format!("notification-channel:{workspace}/{channel}")
    }
}

impl Secrets {
    /// The names of the secrets that are set (what the API may say about them).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.password.is_some() {
            names.push("password");
        }
        if self.signing_secret.is_some() {
            names.push("signingSecret");
        }
        if self.routing_key.is_some() {
            names.push("routingKey");
        }
        if self.auth_token.is_some() {
            names.push("authToken");
        }
        names
    }

    /// Secrets a channel of these settings cannot work without, checked on save.
    pub fn check_complete(&self, settings: &Settings, path: &str) -> Result<(), ApiError> {
        let missing = |name: &str, why: &str| bad(&format!("{path}.{name}"), why.to_string());
        match settings {
            Settings::Email(e) => {
                if e.username.is_some() && self.password.is_none() {
                    return Err(missing("password", "an SMTP user needs a password"));
                }
            }
            Settings::Webhook(w) => {
                match &self.signing_secret {
                    Some(s) if s.len() >= 16 => {}
                    _ => {
                        return Err(missing(
                            "signingSecret",
                            "a webhook channel needs a signing secret of at least 16 characters, which its receiver verifies",
                        ))
                    }
                }
                if w.format == WebhookFormat::Pagerduty && self.routing_key.is_none() {
                    return Err(missing(
                        "routingKey",
                        "a PagerDuty channel needs the integration's routing key",
                    ));
                }
            }
            Settings::Sms(_) => {
                if self.auth_token.is_none() {
                    return Err(missing(
                        "authToken",
                        "an SMS channel needs the API's auth token",
                    ));
                }
            }
        }
        Ok(())
    }

    /// `self` with every secret `update` sets replacing the old one (an update that
    /// leaves a secret out keeps it).
    pub fn merged(mut self, update: Secrets) -> Secrets {
        if update.password.is_some() {
            self.password = update.password;
        }
        if update.signing_secret.is_some() {
            self.signing_secret = update.signing_secret;
        }
        if update.routing_key.is_some() {
            self.routing_key = update.routing_key;
        }
        if update.auth_token.is_some() {
            self.auth_token = update.auth_token;
        }
        self
    }
}

/// Raw e-mail settings as a client sends them.
pub struct EmailInput<'a> {
    pub host: &'a str,
    pub port: i32,
    pub security: SmtpSecurity,
    pub username: Option<&'a str>,
    pub from: &'a str,
    pub reply_to: Option<&'a str>,
    pub to: &'a [String],
}

impl EmailSettings {
    pub fn parse(path: &str, i: EmailInput<'_>) -> Result<EmailSettings, ApiError> {
        let port = u16::try_from(i.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(&format!("{path}.port"), "a port is 1 to 65535"))?;
        Ok(EmailSettings {
            host: parse_host(&format!("{path}.host"), i.host)?,
            port,
            security: i.security,
            username: i
                .username
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            from: parse_email(&format!("{path}.from"), i.from)?,
            reply_to: i
                .reply_to
                .map(|r| parse_email(&format!("{path}.replyTo"), r))
                .transpose()?,
            to: i
                .to
                .iter()
                .enumerate()
                .map(|(n, a)| parse_email(&format!("{path}.to.{n}"), a))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl SmsSettings {
    pub fn parse(
        path: &str,
        base_url: &str,
        account_sid: &str,
        from: &str,
        to: &[String],
    ) -> Result<SmsSettings, ApiError> {
        let sid = account_sid.trim();
        if sid.is_empty() || sid.len() > 64 || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(
                &format!("{path}.accountSid"),
                "an account id is 1 to 64 letters and digits",
            ));
        }
        if to.is_empty() {
            return Err(bad(
                &format!("{path}.to"),
                "an SMS channel needs at least one number to send to",
            ));
        }
        Ok(SmsSettings {
            base_url: parse_url(&format!("{path}.baseUrl"), base_url)?,
            account_sid: sid.to_string(),
            from: parse_e164(&format!("{path}.from"), from)?,
            to: to
                .iter()
                .enumerate()
                .map(|(n, v)| parse_e164(&format!("{path}.to.{n}"), v))
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(e: &ApiError) -> serde_json::Value {
        e.detail("path").cloned().unwrap_or_default()
    }

    #[test]
    fn addresses_numbers_and_urls_are_checked_with_their_path() {
        assert_eq!(
            parse_email("a", " ops@example.com ").unwrap(),
            "ops@example.com"
        );
        let e = parse_email("input.email.to.1", "not-an-address").unwrap_err();
        assert_eq!(path_of(&e), serde_json::json!(["input", "email", "to", 1]));
        assert_eq!(parse_e164("p", "+14155550100").unwrap(), "+14155550100");
        for bad in ["14155550100", "+0123", "+1", "+1415555010012345", "+1 415"] {
            assert!(parse_e164("p", bad).is_err(), "{bad}");
        }
        assert!(parse_url("u", "https://hooks.slack.com/services/x").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "not a url",
            "https://user:pw@example.com/",
        ] {
            assert!(parse_url("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_a_channel_needs() {
        let hook = Settings::Webhook(WebhookSettings {
            url: "https://example.com/".into(),
            format: WebhookFormat::Pagerduty,
        });
        let short = Secrets {
            signing_secret: Some("short".into()),
            ..Secrets::default()
        };
        assert!(short.check_complete(&hook, "input.webhook").is_err());
        let signed = Secrets {
            signing_secret: Some("0123456789abcdef".into()),
            ..Secrets::default()
        };
        let e = signed.check_complete(&hook, "input.webhook").unwrap_err();
        assert_eq!(
            path_of(&e),
            serde_json::json!(["input", "webhook", "routingKey"])
        );
        let kept = signed.clone().merged(Secrets {
            routing_key: Some("R".into()),
            ..Secrets::default()
        });
        assert_eq!(kept.signing_secret, signed.signing_secret);
        assert!(kept.check_complete(&hook, "x").is_ok());
        assert_eq!(kept.names(), vec!["signingSecret", "routingKey"]);
    }
}
