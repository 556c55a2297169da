//! The adapters that talk to the outside world: an SMTP client (`lettre`), a webhook
//! poster that signs what it sends, and a Twilio-compatible SMS client. Each turns what
//! happened into a [`SendOutcome`] for the log: the provider's answer on success, and on
//! failure whether another attempt could help. No secret is ever part of an outcome.
//!
//! Webhook signatures: every request carries `X-Flowfleet-Timestamp` (Unix seconds) and
//! `X-Flowfleet-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` under the
//! channel's signing secret, and `X-Flowfleet-Delivery` (the delivery id, the same on
//! every attempt). A receiver recomputes the HMAC over the raw body, compares in constant
//! time, and refuses a timestamp more than five minutes from its clock (a replay).

use std::sync::Arc;
use std::time::Duration;

use flowfleet_egress::Guard;
use hmac::{Hmac, Mac};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::domain::channels::{
    EmailSettings, Secrets, SmsSettings, SmtpSecurity, WebhookFormat, WebhookSettings,
};
use crate::domain::delivery::{Delivery, SendOutcome};

/// The header names of a signed webhook request.
pub const TIMESTAMP_HEADER: &str = "x-flowfleet-timestamp";
pub const SIGNATURE_HEADER: &str = "x-flowfleet-signature";
pub const DELIVERY_HEADER: &str = "x-flowfleet-delivery";

/// `v1=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Senders {
    http: reqwest::Client,
    guard: Arc<Guard>,
    timeout: Duration,
}

fn transient(detail: impl Into<String>) -> SendOutcome {
    SendOutcome::Transient {
        detail: detail.into(),
    }
}

fn permanent(detail: impl Into<String>) -> SendOutcome {
    SendOutcome::Permanent {
        detail: detail.into(),
    }
}

/// An HTTP answer as an outcome: 2xx sent; 408, 429 and 5xx worth another attempt;
/// any other 4xx not (the receiver refuses what we send).
fn http_outcome(status: reqwest::StatusCode, body: &str) -> SendOutcome {
    let snippet: String = body.chars().take(200).collect();
    let detail = if snippet.trim().is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {}", status.as_u16(), snippet.trim())
    };
    if status.is_success() {
        SendOutcome::Sent { detail }
    } else if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        transient(detail)
    } else {
        permanent(detail)
    }
}

/// A request error for the log: what went wrong without the URL's query (which may
/// carry a token, as Slack's hook URLs do in their path: the path is left out too).
fn request_error(e: reqwest::Error) -> SendOutcome {
    let e = e.without_url();
    let mut why = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    if why.contains("refused to reach") {
        permanent(why)
    } else {
        transient(why)
    }
}

impl Senders {
    pub fn new(guard: Arc<Guard>, timeout: Duration) -> anyhow::Result<Senders> {
        // No redirects: a signed request is for the address the admin configured.
        let http = flowfleet_egress::client(guard.clone(), 0)?;
        Ok(Senders {
            http,
            guard,
            timeout,
        })
    }

    /// The message of `d` as e-mail to `to`.
    pub async fn email(
        &self,
        settings: &EmailSettings,
        secrets: &Secrets,
        to: &[String],
        d: &Delivery,
    ) -> SendOutcome {
        let mut builder = Message::builder().subject(d.subject.clone());
        match settings.from.parse::<Mailbox>() {
            Ok(from) => builder = builder.from(from),
            Err(e) => return permanent(format!("the from address is refused: {e}")),
        }
        if let Some(reply_to) = &settings.reply_to {
            if let Ok(r) = reply_to.parse::<Mailbox>() {
                builder = builder.reply_to(r);
            }
        }
        for address in to {
            match address.parse::<Mailbox>() {
                Ok(m) => builder = builder.to(m),
                Err(e) => return permanent(format!("`{address}` is refused: {e}")),
            }
        }
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(d.body.clone());
        let message = match &d.html {
            Some(html) => builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.clone()),
                ),
            ),
            None => builder.singlepart(text),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => return permanent(format!("the message could not be built: {e}")),
        };
        let transport = match self.smtp(settings, secrets) {
            Ok(t) => t,
            Err(e) => return permanent(e),
        };
        match transport.send(message).await {
            Ok(reply) => SendOutcome::Sent {
                detail: format!(
                    "SMTP {}: {}",
                    reply.code(),
                    reply.message().collect::<Vec<_>>().join(" ")
                ),
            },
            Err(e) if e.is_permanent() => permanent(format!("SMTP: {e}")),
            Err(e) => transient(format!("SMTP: {e}")),
        }
    }

    fn smtp(
        &self,
        s: &EmailSettings,
        secrets: &Secrets,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let tls = || {
            TlsParameters::new(s.host.clone())
                .map_err(|e| format!("TLS for `{}` could not be set up: {e}", s.host))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .timeout(Some(self.timeout));
        builder = match s.security {
            SmtpSecurity::Starttls => builder.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => builder.tls(Tls::None),
        };
        if let Some(user) = &s.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                secrets.password.clone().unwrap_or_default(),
            ));
        }
        Ok(builder.build())
    }

    /// Posts `d` to a webhook channel, signed.
    pub async fn webhook(
        &self,
        settings: &WebhookSettings,
        secrets: &Secrets,
        d: &Delivery,
        now_ms: i64,
    ) -> SendOutcome {
        let body = webhook_body(settings.format, secrets, d);
        let body = serde_json::to_vec(&body).expect("JSON values serialize");
        let Some(secret) = &secrets.signing_secret else {
            return permanent("the channel has no signing secret");
        };
        let timestamp = now_ms / 1_000;
        self.post(
            &settings.url,
            self.http
                .post(&settings.url)
                .header("content-type", "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature(secret, timestamp, &body))
                .header(DELIVERY_HEADER, d.id.to_string())
                .body(body),
        )
        .await
    }

    /// Sends `d` as a text message to `to` through a Twilio-compatible API.
    pub async fn sms(
        &self,
        settings: &SmsSettings,
        secrets: &Secrets,
        to: &str,
        d: &Delivery,
    ) -> SendOutcome {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            settings.base_url.trim_end_matches('/'),
            settings.account_sid
        );
        let body: String = d.body.chars().take(1_600).collect();
        self.post(
            &url,
            self.http
                .post(&url)
                .basic_auth(&settings.account_sid, secrets.auth_token.as_deref())
                .form(&[
                    ("To", to),
                    ("From", settings.from.as_str()),
                    ("Body", &body),
                ]),
        )
        .await
    }

    async fn post(&self, url: &str, request: reqwest::RequestBuilder) -> SendOutcome {
        match reqwest::Url::parse(url) {
            Ok(u) => {
                if let Err(why) = flowfleet_egress::check_url(&self.guard, &u) {
                    return permanent(why);
                }
            }
            Err(e) => return permanent(format!("not a URL: {e}")),
        }
        match request.timeout(self.timeout).send().await {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                http_outcome(status, &text)
            }
            Err(e) => request_error(e),
        }
    }
}

/// The JSON a webhook channel posts, in its format.
pub fn webhook_body(format: WebhookFormat, secrets: &Secrets, d: &Delivery) -> Value {
    match format {
        WebhookFormat::Generic => json!({
            "id": d.id,
            "event": d.event_kind,
            "workspaceId": d.workspace_id,
            "subject": d.subject,
            "body": d.body,
            "data": d.data,
        }),
        WebhookFormat::Slack => json!({
            "text": d.subject,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": d.subject.chars().take(150).collect::<String>()}},
                {"type": "section", "text": {"type": "mrkdwn", "text": d.body.chars().take(3_000).collect::<String>()}},
            ],
        }),
        WebhookFormat::Pagerduty => json!({
            "routing_key": secrets.routing_key,
            "event_action": "trigger",
            // PagerDuty folds repeats of one key into one incident.
            "dedup_key": d.key,
            "payload": {
                "summary": d.subject.chars().take(1_024).collect::<String>(),
                "source": "flowfleet",
                "severity": if d.event_kind == "execution.failed" { "error" } else { "info" },
                "custom_details": {"body": d.body, "data": d.data},
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = signature("0123456789abcdef", 1_700_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature("0123456789abcdef", 1_700_000_001, b"{}"));
        assert_ne!(a, signature("0123456789abcdef", 1_700_000_000, b"{ }"));
        assert_ne!(a, signature("0123456789abcdeF", 1_700_000_000, b"{}"));
    }

    #[test]
    fn http_answers_decide_retries() {
        use reqwest::StatusCode as S;
        assert!(matches!(http_outcome(S::OK, ""), SendOutcome::Sent { .. }));
        assert!(matches!(
            http_outcome(S::SERVICE_UNAVAILABLE, "busy"),
            SendOutcome::Transient { detail } if detail == "HTTP 503: busy"
        ));
        assert!(matches!(
            http_outcome(S::TOO_MANY_REQUESTS, ""),
            SendOutcome::Transient { .. }
        ));
        assert!(matches!(
            http_outcome(S::NOT_FOUND, ""),
            SendOutcome::Permanent { .. }
        ));
    }
}
