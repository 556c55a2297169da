//! Messages from templates: a default per event kind and channel, which a workspace may
//! override, rendered with `minijinja` from the event's data.
//!
//! A template has a subject, a text body and, for e-mail, an HTML body. Rendering is
//! strict about syntax (a template that does not parse is refused on save, with the line
//! and column) and lenient about data (a variable an event lacks renders empty), because
//! the same template serves events whose payloads differ in what they carry. HTML bodies
//! are auto-escaped; text, subjects, webhooks and SMS are not.

use flowfleet_runtime::error::ApiError;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{json, Value};

use super::channels::bad;
use super::rules::PlatformEvent;
use super::{format_duration, Channel};

/// A template's parts, as stored or as defaulted.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub subject: String,
    pub body: String,
    /// E-mail only; `None` sends text alone.
    pub html: Option<String>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

const SUBJECT_MAX: usize = 1_000;
const PART_MAX: usize = 50_000;

/// The built-in template of `kind` on `channel`.
pub fn default_template(kind: &str, channel: Channel) -> Template {
    let (subject, body) = match kind {
        "execution.failed" => (
            "Workflow \"{{ workflow.name }}\" failed",
            "Execution {{ execution.id }} failed after {{ execution.duration }}.\nError: {{ execution.error or \"no error message was recorded\" }}\n{{ execution.url }}",
        ),
        "execution.succeeded" => (
            "Workflow \"{{ workflow.name }}\" succeeded",
            "Execution {{ execution.id }} succeeded in {{ execution.duration }}.\n{{ execution.url }}",
        ),
        "workflow.published" => (
            "Workflow \"{{ workflow.name }}\" was published",
            "Version {{ payload.version }} of \"{{ workflow.name }}\" is live.",
        ),
        "file.created" => (
            "New file {{ payload.name }}",
            "{{ payload.name }} ({{ payload.size }} bytes) was stored.",
        ),
        "member.joined" => (
            "{{ payload.email or \"A new member\" }} joined the workspace",
            "{{ payload.email or \"A new member\" }} joined as {{ payload.role }}.",
        ),
        "digest" => (
            "{{ count }} notification{% if count != 1 %}s{% endif %}: {{ items[0].subject }}{% if count > 1 %} and more{% endif %}",
            "{% for item in items %}- {{ item.subject }}\n{% endfor %}",
        ),
        // A `notify` step's message is its own: subject and body come in the data.
        _ => ("{{ subject }}", "{{ body }}"),
    };
    let html = (channel == Channel::Email).then(|| {
        if kind == "digest" {
            "<ul>{% for item in items %}<li>{{ item.subject }}</li>{% endfor %}</ul>".to_string()
        } else {
            format!("<p>{}</p>", body.replace('\n', "<br>\n"))
        }
    });
    // A text message is short: the subject alone says enough.
    let body = if channel == Channel::Sms {
        subject.to_string()
    } else {
        body.to_string()
    };
    Template {
        subject: subject.to_string(),
        body,
        html,
    }
}

/// How much work one rendering may do (minijinja's fuel: roughly one unit per
/// instruction): plenty for a message, and a bound on a template that loops without end.
const FUEL: u64 = 200_000;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

impl Template {
    /// Checks the template parses and is of a sane size; `path` locates a refusal.
    pub fn check(&self, path: &str) -> Result<(), ApiError> {
        let parts = [
            ("subject", Some(&self.subject), SUBJECT_MAX),
            ("body", Some(&self.body), PART_MAX),
            ("html", self.html.as_ref(), PART_MAX),
        ];
        for (part, source, max) in parts {
            let Some(source) = source else { continue };
            if source.len() > max {
                return Err(bad(
                    &format!("{path}.{part}"),
                    format!("the {part} template is longer than {max} bytes"),
                ));
            }
            let mut env = environment();
            if let Err(e) = env.add_template_owned(format!("{part}.txt"), source.clone()) {
                return Err(located(path, part, source, &e));
            }
        }
        if self.subject.trim().is_empty() {
            return Err(bad(&format!("{path}.subject"), "a subject is required"));
        }
        Ok(())
    }

    /// Renders every part with `data`. A runtime error (a filter given the wrong type)
    /// is reported with where it happened.
    pub fn render(&self, data: &Value, path: &str) -> Result<Rendered, ApiError> {
        let one = |part: &str, source: &str, html: bool| -> Result<String, ApiError> {
            let mut env = environment();
            let name = format!("{part}.{}", if html { "html" } else { "txt" });
            env.add_template_owned(name.clone(), source.to_string())
                .map_err(|e| located(path, part, source, &e))?;
            env.get_template(&name)
                .and_then(|t| t.render(data))
                .map_err(|e| located(path, part, source, &e))
        };
        let subject = one("subject", &self.subject, false)?;
        // A subject is one line.
        let subject: String = subject
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect();
        Ok(Rendered {
            subject,
            body: one("body", &self.body, false)?,
            html: self
                .html
                .as_deref()
                .map(|h| one("html", h, true))
                .transpose()?,
        })
    }
}

/// An error located in `source` by line and column.
fn located(path: &str, part: &str, source: &str, e: &minijinja::Error) -> ApiError {
    let line = e.line().unwrap_or(1);
    let column = e
        .range()
        .and_then(|r| {
            let before = source.get(..r.start)?;
            let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
            Some(before[line_start..].chars().count() + 1)
        })
        .unwrap_or(1);
    bad(
        &format!("{path}.{part}"),
        format!(
            "the {part} template fails at line {line}, column {column}: {}",
            e.detail().unwrap_or("syntax error")
        ),
    )
    .with_detail("line", json!(line))
    .with_detail("column", json!(column))
}

/// What templates see of an event: `event`, `workspace`, `workflow`, `execution` (with a
/// link into the Studio, its duration for people and its error), and the raw `payload`.
pub fn event_data(event: &PlatformEvent, app_url: &str) -> Value {
    let p = &event.payload;
    let execution = p.get("executionId").and_then(Value::as_str).map(|id| {
        json!({
            "id": id,
            "status": p.get("status"),
            "error": p.get("error"),
            "duration": format_duration(p.get("durationMs").and_then(Value::as_i64).unwrap_or(0)),
            "durationMs": p.get("durationMs"),
            "url": format!("{}/executions/{id}", app_url.trim_end_matches('/')),
        })
    });
    json!({
        "event": event.kind,
        "eventId": event.id,
        "workspace": {"id": event.workspace_id},
        "workflow": {
            "id": event.workflow_id,
            "name": p.get("workflowName").or_else(|| p.get("name")),
        },
        "execution": execution,
        "payload": p,
    })
}

/// Data that looks like a real event of `kind`, for previews without one.
pub fn sample_event(kind: &'static str, workspace: uuid::Uuid) -> PlatformEvent {
    let id = uuid::Uuid::nil();
    PlatformEvent {
        id,
        kind,
        workspace_id: workspace,
        workflow_id: Some(id),
        occurred_at: 0,
        payload: json!({
            "workspaceId": workspace, "workflowId": id, "executionId": id,
            "workflowName": "Nightly sync", "status": if kind == "execution.failed" { "FAILED" } else { "SUCCEEDED" },
            "durationMs": 4200, "error": if kind == "execution.failed" { Value::from("HTTP 502 from api.example.com") } else { Value::Null },
            "version": 3, "name": "report.csv", "size": 2048, "email": "new.member@example.com", "role": "EDITOR",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_an_outcome() {
        let ws = uuid::Uuid::now_v7();
        let event = sample_event("execution.failed", ws);
        let data = event_data(&event, "https://flowfleet.example.com/");
        let m = default_template("execution.failed", Channel::Email)
            .render(&data, "t")
            .unwrap();
        assert_eq!(m.subject, "Workflow \"Nightly sync\" failed");
        assert!(
            m.body.contains("4.2 s") && m.body.contains("HTTP 502"),
            "{}",
            m.body
        );
        assert!(m.body.contains(
            "https://flowfleet.example.com/executions/00000000-0000-0000-0000-000000000000"
        ));
        assert!(m.html.unwrap().starts_with("<p>"));
        let sms = default_template("execution.failed", Channel::Sms)
            .render(&data, "t")
            .unwrap();
        assert_eq!(sms.body, sms.subject);
    }

    #[test]
    fn a_bad_template_is_refused_with_its_line_and_column() {
        let t = Template {
            subject: "ok".into(),
            body: "line one\n  {{ workflow.name \n".into(),
            html: None,
        };
        let e = t.check("input").unwrap_err();
        let r = e.graphql_response()["errors"][0].clone();
        assert_eq!(r["extensions"]["code"], "BAD_USER_INPUT");
        assert_eq!(r["extensions"]["path"], json!(["input", "body"]));
        assert_eq!(r["extensions"]["line"], 2, "{r}");
        assert!(r["extensions"]["column"].as_u64().unwrap() >= 3, "{r}");
        assert!(Template {
            subject: " ".into(),
            body: String::new(),
            html: None
        }
        .check("input")
        .is_err());
    }

    #[test]
    fn a_template_that_works_without_end_is_stopped() {
        let t = Template {
            subject: "s".into(),
            body:
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                    .into(),
            html: None,
        };
        assert!(t.check("t").is_ok(), "it parses");
        let e = t.render(&json!({}), "t").unwrap_err();
        assert_eq!(
            e.detail("path"),
            Some(&json!(["t", "body"])),
            "{}",
            e.message
        );
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = Template {
            subject: "{{ payload.name }}".into(),
            body: "{{ payload.name }}".into(),
            html: Some("<b>{{ payload.name }}</b>".into()),
        };
        let data = json!({"payload": {"name": "<script>"}});
        let m = t.render(&data, "t").unwrap();
        assert_eq!(m.body, "<script>");
        assert_eq!(m.html.unwrap(), "<b>&lt;script&gt;</b>");
    }
}
