//! Notifications across the fleet, on every backend, through the gateway: an invitation
//! e-mailed through the workspace's e-mail channel (and accepted with the link it
//! carries), and the `notify` node sending from a workflow. The SMTP server is real and
//! on loopback (`receivers`, shared with the notification service's own tests).

#[path = "../services/notification/tests/receivers/mod.rs"]
mod receivers;
mod support;

use flowfleet_host::testing::Backend;
use serde_json::{json, Value};

use receivers::Smtp;
use support::engine::{finished, publish_as, start, workspace};
use support::eventually;
use support::in_process::{start_with, Fleet, Person};

const CREATE_CHANNEL: &str = "mutation($w: ID!, $i: NotificationChannelInput!) { \
    createNotificationChannel(workspaceId: $w, input: $i) { id } }";

async fn fleet(backend: &Backend) -> Fleet {
    start_with(backend, |c| {
        c.notification.allow = vec!["127.0.0.1/32".into()];
        c.notification.retry_base_ms = 100;
        c.notification.app_url = "https://app.example.com".into();
    })
    .await
}

async fn email_channel(owner: &Person, smtp: &Smtp) -> String {
    let ws = workspace(owner).await;
    let r = owner
        .client
        .ok(
            CREATE_CHANNEL,
            json!({"w": ws, "i": {"name": "Mail", "email": {"host": "127.0.0.1", "port": smtp.port(),
                "security": "NONE", "from": "flowfleet@example.com"}}}),
        )
        .await;
    r["createNotificationChannel"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn invitations_are_emailed_with_a_link_that_works() {
    for backend in Backend::all() {
        let fleet = fleet(&backend).await;
        let smtp = Smtp::start().await;
        let owner = fleet.sign_up("owner@example.com").await;
        let ws = workspace(&owner).await;
        let invite = "mutation($w: ID!, $e: String!) { inviteMember(workspaceId: $w, email: $e, role: EDITOR) { token emailed } }";

        // Without an e-mail channel the inviter shares the token.
        let r = owner
            .client
            .ok(invite, json!({"w": ws, "e": "first@example.com"}))
            .await;
        assert_eq!(r["inviteMember"]["emailed"], false, "{r}");

        email_channel(&owner, &smtp).await;
        let r = owner
            .client
            .ok(invite, json!({"w": ws, "e": "invitee@example.com"}))
            .await;
        assert_eq!(r["inviteMember"]["emailed"], true, "{r}");
        let token = r["inviteMember"]["token"].as_str().unwrap().to_string();
        let mail = eventually(30, || {
            let smtp = smtp.clone();
            async move {
                smtp.mails()
                    .into_iter()
                    .find(|m| m.to == vec!["invitee@example.com".to_string()])
            }
        })
        .await;
        let text = mail.text();
        assert!(
            text.contains("Subject: owner@example.com invited you to owner@example.com's workspace on Flowfleet"),
            "{text}"
        );
        let link = format!("https://app.example.com/invitations/accept?token={token}");
        assert!(text.contains(&link), "{text}");

        // The delivery log names the message but never shows the token.
        let log = eventually(30, || {
            let owner = &owner;
            async move {
                let log = owner
                    .client
                    .ok(
                        "{ me { memberships { workspace { \
                           notificationDeliveries { nodes { event subject status destination } } } } } }",
                        json!({}),
                    )
                    .await;
                let status = log["me"]["memberships"][0]["workspace"]["notificationDeliveries"]
                    ["nodes"][0]["status"]
                    .clone();
                (status == "SENT").then_some(log)
            }
        })
        .await;
        let nodes = &log["me"]["memberships"][0]["workspace"]["notificationDeliveries"]["nodes"];
        assert_eq!(nodes[0]["event"], "member.invited", "{log}");
        assert_eq!(nodes[0]["destination"], "invitee@example.com", "{log}");
        assert!(!log.to_string().contains(&token), "{log}");

        // The invitee accepts with the token the e-mail carried.
        let invitee = fleet.sign_up("invitee@example.com").await;
        let r = invitee
            .client
            .ok(
                "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
                json!({"t": token}),
            )
            .await;
        assert_eq!(r["acceptInvitation"]["role"], "EDITOR");
    }
}

#[tokio::test]
async fn the_notify_node_sends_from_a_workflow() {
    for backend in Backend::all() {
        let fleet = fleet(&backend).await;
        let smtp = Smtp::start().await;
        let owner = fleet.sign_up("owner@example.com").await;
        let mail = email_channel(&owner, &smtp).await;
        let definition = json!({
            "nodes": [
                {"id": "tell", "type": "notify", "config": {
                    "roles": ["OWNER"], "channels": [mail],
                    "subject": "Order {{ input.order }} in {{ workflow.name }}",
                    "body": "Total {{ input.total }}"}},
            ],
            "edges": [],
            "triggers": [{"kind": "MANUAL"}],
        });
        let wf = publish_as(&owner, definition).await;
        let id = start(&owner, &wf, json!({"order": 42, "total": "9.99"})).await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{e}");
        let notified = &e["output"]["notified"];
        let channels: Vec<&str> = notified
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["channel"].as_str().unwrap())
            .collect();
        assert_eq!(channels, vec!["IN_APP", "EMAIL"], "{e}");
        assert_eq!(notified[1]["destination"], "owner@example.com");
        assert_eq!(e["output"]["order"], 42, "the input goes on");

        let sent = eventually(30, || {
            let smtp = smtp.clone();
            async move {
                smtp.mails()
                    .into_iter()
                    .find(|m| m.text().contains("Order 42 in Engine test"))
            }
        })
        .await;
        assert_eq!(sent.to, vec!["owner@example.com".to_string()]);
        assert!(sent.text().contains("Total 9.99"), "{}", sent.text());

        // The inbox has it too.
        let inbox = owner
            .client
            .ok("{ me { notifications { nodes { subject } } } }", json!({}))
            .await;
        let subjects: Vec<Value> = inbox["me"]["notifications"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["subject"].clone())
            .collect();
        assert!(
            subjects.contains(&json!("Order 42 in Engine test")),
            "{inbox}"
        );
    }
}

/// A run no one started (a cron schedule) reports its failure to the workflow's owner.
#[tokio::test]
async fn a_cron_runs_failure_reaches_the_workflow_owner() {
    for backend in Backend::all() {
        let fleet = fleet(&backend).await;
        let owner = fleet.sign_up("owner@example.com").await;
        let definition = json!({
            "nodes": [{"id": "fail", "type": "transform", "maxRetries": 0,
                       "config": {"expression": "error(\"the nightly export broke\")"}}],
            "edges": [],
            "triggers": [{"kind": "CRON", "expression": "* * * * * *"}],
        });
        let wf = publish_as(&owner, definition).await;
        let notice = eventually(60, || {
            let owner = &owner;
            async move {
                let inbox = owner
                    .client
                    .ok(
                        "{ me { notifications { nodes { subject body } } } }",
                        json!({}),
                    )
                    .await;
                inbox["me"]["notifications"]["nodes"]
                    .as_array()?
                    .iter()
                    .find(|n| n["subject"] == "Workflow \"Engine test\" failed")
                    .cloned()
            }
        })
        .await;
        assert!(
            notice["body"]
                .as_str()
                .unwrap()
                .contains("the nightly export broke"),
            "{notice}"
        );
        // It was a cron run: nobody started it.
        let runs = owner
            .client
            .ok(
                "query($id: ID!) { workflow(id: $id) { executions(first: 1, filter: {trigger: \"CRON\"}) { totalCount } } }",
                json!({"id": wf}),
            )
            .await;
        assert!(
            runs["workflow"]["executions"]["totalCount"]
                .as_i64()
                .unwrap()
                >= 1
        );
        owner
            .client
            .ok(
                "mutation($id: ID!) { archiveWorkflow(id: $id) { id } }",
                json!({"id": wf}),
            )
            .await;
    }
}
