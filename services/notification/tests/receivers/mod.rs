//! Real servers the notification tests deliver to, on loopback: an SMTP server that
//! records each message it accepts, an HTTP receiver that verifies Flowfleet's webhook
//! signature (and refuses unsigned, forged or stale requests), and a Twilio-compatible
//! SMS API that checks its basic auth. Each can be told to fail, to exercise retries.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A message the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA section as sent (headers and MIME parts).
    pub data: String,
    /// When it was accepted, in wall-clock milliseconds.
    pub at_ms: i64,
}

impl Mail {
    /// The message as people read it: folded headers unfolded, quoted-printable decoded.
    pub fn text(&self) -> String {
        let unfolded = self.data.replace("\n ", " ");
        let soft = unfolded.replace("=\n", "");
        let bytes = soft.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'=', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[derive(Clone, Default)]
pub struct Smtp {
    pub addr: Option<SocketAddr>,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    /// While set, DATA is answered `451` (try again later).
    pub failing: Arc<AtomicBool>,
}

impl Smtp {
    pub async fn start() -> Smtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smtp = Smtp {
            addr: Some(listener.local_addr().unwrap()),
            ..Smtp::default()
        };
        let server = smtp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move { server.session(socket).await });
            }
        });
        smtp
    }

    pub fn port(&self) -> u16 {
        self.addr.unwrap().port()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// One SMTP session (RFC 5321's happy path, enough for a real client).
    async fn session(&self, socket: tokio::net::TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 test.local ESMTP ready\r\n").await;
        let mut from = String::new();
        let mut to = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                b"250-test.local\r\n250 8BITMIME\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                from = line[10..].trim().trim_matches(['<', '>']).to_string();
                to.clear();
                b"250 OK\r\n"
            } else if upper.starts_with("RCPT TO:") {
                to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
                b"250 OK\r\n"
            } else if upper == "DATA" {
                let _ = write.write_all(b"354 go ahead\r\n").await;
                let mut data = String::new();
                while let Ok(Some(l)) = lines.next_line().await {
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push('\n');
                }
                if self.failing.load(Ordering::SeqCst) {
                    b"451 4.3.0 mailbox busy, try later\r\n"
                } else {
                    self.mails.lock().unwrap().push(Mail {
                        from: from.clone(),
                        to: to.clone(),
                        data,
                        at_ms: chrono::Utc::now().timestamp_millis(),
                    });
                    b"250 2.0.0 queued as TEST1\r\n"
                }
            } else if upper == "QUIT" {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            } else if upper == "RSET" || upper == "NOOP" {
                b"250 OK\r\n"
            } else {
                b"502 not implemented\r\n"
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}

/// A request a receiver accepted (or refused), with when it came.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// Wall-clock milliseconds since the epoch, to compare with times other processes
    /// recorded.
    pub at_ms: i64,
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

#[derive(Clone)]
pub struct Http {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Per path, answer 503 to this many requests first (then accept).
    pub fail_next: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    /// The webhook signing secret it verifies with.
    pub secret: String,
    /// The SMS API's account and token it expects.
    pub sms_account: String,
    pub sms_token: String,
}

/// Verifies `v1=HMAC(secret, "<ts>.<body>")` and a timestamp within five minutes.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let ts = headers
        .get("x-flowfleet-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or("no timestamp")?;
    let now = chrono::Utc::now().timestamp();
    if (now - ts).abs() > 300 {
        return Err("stale timestamp: a replay");
    }
    let sig = headers
        .get("x-flowfleet-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("v1="))
        .and_then(|v| hex::decode(v).ok())
        .ok_or("no signature")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| "bad signature")
}

async fn hook(
    State(http): State<Http>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = if verify(&http.secret, &headers, &body).is_err() {
        StatusCode::UNAUTHORIZED
    } else if http
        .fail_next
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(|n| {
            *n = n.checked_sub(1)?;
            Some(())
        })
        .is_some()
    {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    http.received.lock().unwrap().push(Received {
        path,
        headers,
        body,
        at: Instant::now(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        status: status.as_u16(),
    });
    status
}

async fn sms(
    State(http): State<Http>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", http.sms_account, http.sms_token))
    );
    let authorized = account == http.sms_account
        && headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    let status = if authorized {
        StatusCode::CREATED
    } else {
        StatusCode::UNAUTHORIZED
    };
    http.received.lock().unwrap().push(Received {
        path: format!("sms/{account}"),
        headers,
        body,
        at: Instant::now(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        status: status.as_u16(),
    });
    (
        status,
        r#"{"sid": "SM123", "status": "queued"}"#.to_string(),
    )
}

impl Http {
    pub async fn start(secret: &str) -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = Http {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            fail_next: Arc::default(),
            secret: secret.into(),
            sms_account: "AC123".into(),
            sms_token: "sms-token-secret".into(),
        };
        let app = axum::Router::new()
            .route("/hooks/{path}", post(hook))
            .route("/2010-04-01/Accounts/{account}/Messages.json", post(sms))
            .with_state(http.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        http
    }

    /// Answers `times` requests to `path` with 503 before accepting.
    pub fn fail(&self, path: &str, times: usize) {
        self.fail_next.lock().unwrap().insert(path.into(), times);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/hooks/{path}", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}
