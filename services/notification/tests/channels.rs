//! Notifications leaving the platform, on every backend of `Backend::all()`, to real
//! servers on loopback (`receivers`): channels configured through the subgraph, rules and
//! templates deciding what is sent, deliveries retried with backoff and logged, events
//! redelivered without a second send, preferences and quiet hours, digests, and the
//! `Notify` method the `notify` node calls.

mod receivers;

use std::sync::Arc;
use std::time::Duration;

use flowfleet_auth::testing::{RealAuth, TestUser};
use flowfleet_host::testing::{Backend, TestInfra};
use flowfleet_host::Infra;
use flowfleet_notification::graphql::{schema, Ctx, NotificationSchema};
use flowfleet_notification::settings::Manage;
use flowfleet_notification::store::Store;
use flowfleet_notification::{build, MIGRATIONS};
use flowfleet_runtime::clock::SystemClock;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::events::Event;
use flowfleet_runtime::proto::notification::v1::notification_service_client::NotificationServiceClient;
use flowfleet_runtime::proto::notification::v1::NotifyRequest;
use flowfleet_security::identity::{Caller, Identity, Role};
use receivers::{Http, Smtp};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "whsec-0123456789abcdef";

fn as_user(user: &TestUser) -> Caller {
    Caller::User(Identity {
        user_id: user.id,
        email: "someone@example.com".into(),
        api_key: None,
    })
}

async fn run(schema: &NotificationSchema, caller: Caller, query: &str, vars: Value) -> Value {
    let request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(vars))
        .data(caller);
    serde_json::to_value(schema.execute(request).await).unwrap()
}

fn ok(r: &Value) -> &Value {
    assert!(r["errors"].is_null(), "{r}");
    &r["data"]
}

/// Infra whose notifications may reach loopback, and retry quickly.
fn infra_for_tests(env: &TestInfra) -> Infra {
    let mut config = (*env.infra.config).clone();
    config.notification.allow = vec!["127.0.0.1/32".into()];
    config.notification.max_attempts = 3;
    config.notification.retry_base_ms = 100;
    config.notification.retry_cap_ms = 1_000;
    config.notification.timeout_ms = 5_000;
    config.notification.app_url = "https://flowfleet.example.com".into();
    Infra {
        config: Arc::new(config),
        ..env.infra.clone()
    }
}

fn failed(workspace: Uuid, by: Uuid, name: &str) -> Event {
    Event::new(
        "execution.failed",
        1_700_000_002_500,
        json!({
            "executionId": Uuid::now_v7(), "workflowId": Uuid::now_v7(),
            "workspaceId": workspace, "version": 2, "status": "FAILED",
            "triggeredBy": by, "workflowName": name,
            "startedAtMs": 1_700_000_000_000_i64, "finishedAtMs": 1_700_000_002_500_i64,
            "durationMs": 2_500, "error": "step `charge` failed: HTTP 502",
        }),
    )
}

fn succeeded(workspace: Uuid, name: &str) -> Event {
    Event::new(
        "execution.succeeded",
        1_700_000_002_500,
        json!({
            "executionId": Uuid::now_v7(), "workflowId": Uuid::now_v7(),
            "workspaceId": workspace, "version": 1, "status": "SUCCEEDED",
            "triggeredBy": Uuid::nil(), "workflowName": name, "durationMs": 10,
        }),
    )
}

const CREATE_CHANNEL: &str = "mutation($w: ID!, $i: NotificationChannelInput!) { \
    createNotificationChannel(workspaceId: $w, input: $i) { id name kind secretsSet \
      email { host port security from replyTo to } webhook { url format } sms { baseUrl accountSid from to } } }";

const DELIVERIES: &str = "query($reps: [_Any!]!) { _entities(representations: $reps) { ... on Workspace { \
    notificationDeliveries(first: 100) { nodes { id channel channelId recipientId destination event subject status attempts lastError \
      log { attempt ok detail } } } } } }";

async fn deliveries(schema: &NotificationSchema, owner: &TestUser) -> Vec<Value> {
    let r = run(
        schema,
        as_user(owner),
        DELIVERIES,
        json!({"reps": [{"__typename": "Workspace", "id": owner.workspace}]}),
    )
    .await;
    ok(&r)["_entities"][0]["notificationDeliveries"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until `done` holds of the delivery log, or fails with the log.
async fn wait_for(
    schema: &NotificationSchema,
    owner: &TestUser,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = deliveries(schema, owner).await;
        if done(&all) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {}",
            serde_json::to_string_pretty(&all).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by_channel<'a>(all: &'a [Value], channel_id: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|d| d["channelId"] == channel_id)
        .collect()
}

fn code_and_path(r: &Value) -> (String, Value) {
    let e = &r["errors"][0]["extensions"];
    (
        e["code"].as_str().unwrap_or("").to_string(),
        e["path"].clone(),
    )
}

#[tokio::test]
async fn channels_deliver_what_rules_and_templates_say() {
    for backend in Backend::all() {
        channels_deliver_on(&backend).await;
    }
}

async fn channels_deliver_on(backend: &Backend) {
    let env = backend.start().await;
    let infra = infra_for_tests(&env);
    let auth = RealAuth::start(&env).await;
    let owner = auth.user("owner@example.com").await;
    let ada = auth.member(&owner, "ada@example.com", Role::Editor).await;
    let viewer = auth.member(&owner, "vic@example.com", Role::Viewer).await;
    let smtp = Smtp::start().await;
    let http = Http::start(SECRET).await;
    let db = env.db(ServiceName::Notification, &MIGRATIONS).await;
    let mut parts = build(&infra, db.clone(), auth.access(), auth.grpc())
        .await
        .unwrap();
    let tasks = parts.spawn_tasks();
    let store = Store::new(db.clone());
    let schema = schema(
        Ctx {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            manage: Manage {
                store,
                access: auth.access(),
                secrets: infra.secrets.clone(),
                clock: Arc::new(SystemClock),
                app_url: "https://flowfleet.example.com".into(),
            },
        },
        no_live_events(&env.infra),
    );
    let ws = owner.workspace;

    // ---- channels: configured by admins; secrets go in and never come out ----
    let create = |input: Value| {
        let schema = &schema;
        let owner = &owner;
        async move {
            run(
                schema,
                as_user(owner),
                CREATE_CHANNEL,
                json!({"w": ws, "i": input}),
            )
            .await
        }
    };
    let r = create(json!({"name": "Mail", "email": {"host": "127.0.0.1", "port": smtp.port(), "security": "NONE",
        "from": "flowfleet@example.com", "replyTo": "ops@example.com"}}))
    .await;
    let mail = ok(&r)["createNotificationChannel"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = create(
        json!({"name": "Ops hook", "webhook": {"url": http.url("ops"), "signingSecret": SECRET}}),
    )
    .await;
    assert_eq!(
        ok(&r)["createNotificationChannel"]["secretsSet"],
        json!(["signingSecret"])
    );
    assert!(!r.to_string().contains(SECRET), "a secret came back: {r}");
    let hook = r["data"]["createNotificationChannel"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = create(json!({"name": "Slack", "webhook": {"url": http.url("slack"), "format": "SLACK", "signingSecret": SECRET}})).await;
    let slack = ok(&r)["createNotificationChannel"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = create(
        json!({"name": "On call", "sms": {"baseUrl": http.base(), "accountSid": "AC123",
        "authToken": "sms-token-secret", "from": "+15005550006", "to": ["+14155550100"]}}),
    )
    .await;
    assert!(!r.to_string().contains("sms-token-secret"), "{r}");
    let sms = ok(&r)["createNotificationChannel"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = create(
        json!({"name": "Flaky", "webhook": {"url": http.url("flaky"), "signingSecret": SECRET}}),
    )
    .await;
    let flaky = ok(&r)["createNotificationChannel"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    http.fail("flaky", 1_000);

    // Bad addresses, numbers and URLs are refused with where they are.
    for (input, path) in [
        (
            json!({"name": "x", "email": {"host": "127.0.0.1", "from": "a@example.com", "to": ["ok@example.com", "nope"]}}),
            json!(["input", "email", "to", 1]),
        ),
        (
            json!({"name": "x", "sms": {"accountSid": "AC1", "authToken": "t", "from": "555-0100", "to": ["+14155550100"]}}),
            json!(["input", "sms", "from"]),
        ),
        (
            json!({"name": "x", "webhook": {"url": "ftp://example.com/", "signingSecret": SECRET}}),
            json!(["input", "webhook", "url"]),
        ),
        (
            json!({"name": "x", "webhook": {"url": "https://example.com/", "signingSecret": "short"}}),
            json!(["input", "webhook", "signingSecret"]),
        ),
    ] {
        let r = create(input).await;
        assert_eq!(
            code_and_path(&r),
            ("BAD_USER_INPUT".to_string(), path),
            "{r}"
        );
    }
    // Configuring is for admins.
    let r = run(
        &schema,
        as_user(&ada),
        CREATE_CHANNEL,
        json!({"w": ws, "i": {"name": "mine", "webhook": {"url": http.url("x"), "signingSecret": SECRET}}}),
    )
    .await;
    assert_eq!(code_and_path(&r).0, "FORBIDDEN", "{r}");

    // ---- templates: checked on save, previewed without sending ----
    let set_template = "mutation($w: ID!, $t: NotificationTemplateInput!) { \
        setNotificationTemplate(workspaceId: $w, event: \"execution.failed\", channel: EMAIL, template: $t) { isDefault subject } }";
    let r = run(
        &schema,
        as_user(&owner),
        set_template,
        json!({"w": ws, "t": {"subject": "ok", "body": "fine\n  {{ workflow.name "}}),
    )
    .await;
    let e = &r["errors"][0]["extensions"];
    assert_eq!(e["code"], "BAD_USER_INPUT", "{r}");
    assert_eq!(e["path"], json!(["template", "body"]), "{r}");
    assert_eq!(e["line"], 2, "{r}");
    let r = run(
        &schema,
        as_user(&owner),
        set_template,
        json!({"w": ws, "t": {"subject": "[{{ workflow.name }}] failed",
            "body": "Error: {{ execution.error }}\nSee {{ execution.url }}",
            "html": "<p>Error: <b>{{ execution.error }}</b></p>"}}),
    )
    .await;
    assert_eq!(ok(&r)["setNotificationTemplate"]["isDefault"], false);
    let r = run(
        &schema,
        as_user(&owner),
        "query($w: ID!) { previewNotification(workspaceId: $w, event: \"execution.failed\", channel: EMAIL) { subject body html } }",
        json!({"w": ws}),
    )
    .await;
    assert_eq!(
        ok(&r)["previewNotification"]["subject"],
        "[Nightly sync] failed"
    );

    // ---- a rule: failures reach Ada by e-mail, and every receiver ----
    let r = run(
        &schema,
        as_user(&owner),
        "mutation($w: ID!, $i: NotificationRuleInput!) { createNotificationRule(workspaceId: $w, input: $i) { id events } }",
        json!({"w": ws, "i": {"name": "Failures", "events": ["execution.failed"], "memberIds": [ada.id],
            "channelIds": [mail, hook, slack, sms, flaky]}}),
    )
    .await;
    ok(&r);

    // The same event twice (a redelivery): one of everything.
    let event = failed(ws, owner.id, "Billing");
    infra.bus.publish(&event).await.unwrap();
    infra.bus.publish(&event).await.unwrap();
    let all = wait_for(&schema, &owner, "every delivery settles", |all| {
        all.len() >= 5 && all.iter().all(|d| d["status"] != "PENDING")
    })
    .await;
    assert_eq!(all.len(), 5, "one delivery per destination");

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].to, vec!["ada@example.com".to_string()]);
    assert_eq!(mails[0].from, "flowfleet@example.com");
    let data = &mails[0].text();
    assert!(data.contains("Subject: [Billing] failed"), "{data}");
    assert!(data.contains("Reply-To: ops@example.com"), "{data}");
    assert!(
        data.contains("text/plain") && data.contains("text/html"),
        "{data}"
    );
    assert!(
        data.contains("Error: step `charge` failed: HTTP 502"),
        "{data}"
    );
    assert!(
        data.contains("https://flowfleet.example.com/executions/"),
        "{data}"
    );
    let email = by_channel(&all, &mail);
    assert_eq!(email[0]["status"], "SENT");
    assert_eq!(email[0]["recipientId"], ada.id.to_string());
    assert!(
        email[0]["log"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("SMTP 250"),
        "{all:?}"
    );

    let ops = http.received("ops");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].status, 200, "the receiver verified the signature");
    let body = ops[0].json();
    assert_eq!(body["event"], "execution.failed");
    assert_eq!(body["subject"], "Workflow \"Billing\" failed");
    assert_eq!(body["data"]["payload"]["workflowName"], "Billing");
    // The signature is over the timestamp and the body: a byte changed fails it.
    let mut forged = ops[0].body.to_vec();
    forged[1] ^= 1;
    assert!(receivers::verify(SECRET, &ops[0].headers, &forged).is_err());
    assert!(receivers::verify(SECRET, &ops[0].headers, &ops[0].body).is_ok());

    let slack_body = http.received("slack")[0].json();
    assert_eq!(slack_body["text"], "Workflow \"Billing\" failed");
    assert_eq!(slack_body["blocks"][0]["type"], "header");

    let texts = http.received("sms/AC123");
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0].status, 201, "the SMS API took our credentials");
    let form = texts[0].form();
    assert!(
        form.contains(&("To".into(), "+14155550100".into())),
        "{form:?}"
    );
    assert!(form.contains(&("From".into(), "+15005550006".into())));
    assert!(form
        .iter()
        .any(|(k, v)| k == "Body" && v == "Workflow \"Billing\" failed"));

    // The failing receiver: three attempts, waiting longer each time, then FAILED.
    let bad = &by_channel(&all, &flaky)[0];
    assert_eq!(bad["status"], "FAILED", "{bad}");
    assert_eq!(bad["attempts"], 3);
    assert_eq!(bad["lastError"], "HTTP 503");
    assert_eq!(bad["log"].as_array().unwrap().len(), 3);
    assert!(bad["log"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["ok"] == false));
    let tries = http.received("flaky");
    assert_eq!(tries.len(), 3);
    let first_wait = tries[1].at - tries[0].at;
    let second_wait = tries[2].at - tries[1].at;
    assert!(first_wait >= Duration::from_millis(50), "{first_wait:?}");
    assert!(second_wait >= Duration::from_millis(100), "{second_wait:?}");

    // Ada's inbox notification shows its e-mail delivery; the owner, who started the
    // run, got the default notice.
    let r = run(
        &schema,
        as_user(&ada),
        "query($reps: [_Any!]!) { _entities(representations: $reps) { ... on User { \
           notifications { nodes { subject deliveries { channel status log { ok } } } } } } }",
        json!({"reps": [{"__typename": "User", "id": ada.id}]}),
    )
    .await;
    let nodes = &ok(&r)["_entities"][0]["notifications"]["nodes"];
    assert_eq!(nodes[0]["deliveries"][0]["channel"], "EMAIL", "{r}");
    assert_eq!(nodes[0]["deliveries"][0]["status"], "SENT", "{r}");

    // ---- preferences: quiet hours hold e-mail back, a muted kind everything ----
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    let end = (now + chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    let prefs = "mutation($i: NotificationPreferencesInput!) { updateNotificationPreferences(input: $i) { mutedEvents quietHours { start end } } }";
    let r = run(
        &schema,
        as_user(&ada),
        prefs,
        json!({"i": {"quietHours": {"start": start, "end": end}}}),
    )
    .await;
    assert_eq!(
        ok(&r)["updateNotificationPreferences"]["quietHours"]["start"],
        start
    );
    let r = run(
        &schema,
        as_user(&ada),
        prefs,
        json!({"i": {"quietHours": {"start": "25:00", "end": "07:00"}}}),
    )
    .await;
    assert_eq!(
        code_and_path(&r),
        (
            "BAD_USER_INPUT".into(),
            json!(["input", "quietHours", "start"])
        )
    );
    infra
        .bus
        .publish(&failed(ws, owner.id, "Quiet"))
        .await
        .unwrap();
    let all = wait_for(&schema, &owner, "the quiet e-mail is suppressed", |all| {
        by_channel(all, &mail).len() == 2
    })
    .await;
    let quiet = by_channel(&all, &mail)
        .into_iter()
        .find(|d| d["subject"] == "[Quiet] failed")
        .unwrap();
    assert_eq!(quiet["status"], "SUPPRESSED", "{quiet}");
    assert_eq!(quiet["lastError"], "within the recipient's quiet hours");

    // A muted kind reaches her nowhere: no inbox notification, the e-mail suppressed.
    let r = run(
        &schema,
        as_user(&ada),
        prefs,
        json!({"i": {"mutedEvents": ["execution.failed"]}}),
    )
    .await;
    assert_eq!(
        ok(&r)["updateNotificationPreferences"]["mutedEvents"],
        json!(["execution.failed"])
    );
    infra
        .bus
        .publish(&failed(ws, owner.id, "Muted"))
        .await
        .unwrap();
    let all = wait_for(&schema, &owner, "the muted e-mail is suppressed", |all| {
        by_channel(all, &mail).len() == 3
    })
    .await;
    let muted = by_channel(&all, &mail)
        .into_iter()
        .find(|d| d["subject"] == "[Muted] failed")
        .unwrap();
    assert_eq!(muted["status"], "SUPPRESSED", "{muted}");
    assert_eq!(muted["lastError"], "the recipient muted this event");
    let r = run(
        &schema,
        as_user(&ada),
        "query($reps: [_Any!]!) { _entities(representations: $reps) { ... on User { \
           notifications { nodes { subject } } } } }",
        json!({"reps": [{"__typename": "User", "id": ada.id}]}),
    )
    .await;
    let subjects = ok(&r)["_entities"][0]["notifications"]["nodes"].to_string();
    assert!(
        subjects.contains("Quiet"),
        "quiet hours spare the inbox: {subjects}"
    );
    assert!(!subjects.contains("Muted"), "{subjects}");
    assert_eq!(
        smtp.mails().len(),
        1,
        "neither the quiet nor the muted e-mail went out"
    );

    // An attempt is claimed once: a duplicate task for it finds it taken.
    let store = Store::new(db.clone());
    let pending = store
        .insert_delivery(
            &flowfleet_notification::domain::delivery::Delivery {
                id: Uuid::now_v7(),
                status: flowfleet_notification::domain::delivery::DeliveryStatus::Pending,
                attempts: 0,
                key: format!("claim-test:{}", Uuid::now_v7()),
                ..store
                    .delivery(email[0]["id"].as_str().unwrap().parse().unwrap())
                    .await
                    .unwrap()
                    .unwrap()
            },
            None,
        )
        .await
        .unwrap()
        .0;
    assert!(store.claim_attempt(pending.id, 1).await.unwrap());
    assert!(
        !store.claim_attempt(pending.id, 1).await.unwrap(),
        "a duplicate claims nothing"
    );
    assert!(store.claim_attempt(pending.id, 2).await.unwrap());

    // ---- a digest: three successes, one message ----
    let r = create(json!({"name": "Digest hook", "webhook": {"url": http.url("digest"), "signingSecret": SECRET}})).await;
    let digest_hook = ok(&r)["createNotificationChannel"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = run(
        &schema,
        as_user(&owner),
        "mutation($w: ID!, $i: NotificationRuleInput!) { createNotificationRule(workspaceId: $w, input: $i) { id } }",
        json!({"w": ws, "i": {"name": "Daily digest", "events": ["execution.succeeded"], "inApp": false,
            "channelIds": [digest_hook], "digestWindowSeconds": 2}}),
    )
    .await;
    ok(&r);
    for name in ["One", "Two", "Three"] {
        infra.bus.publish(&succeeded(ws, name)).await.unwrap();
    }
    let all = wait_for(&schema, &owner, "the digest is sent", |all| {
        by_channel(all, &digest_hook)
            .iter()
            .any(|d| d["event"] == "digest" && d["status"] == "SENT")
    })
    .await;
    let batched: Vec<_> = by_channel(&all, &digest_hook)
        .into_iter()
        .filter(|d| d["status"] == "BATCHED")
        .collect();
    assert_eq!(batched.len(), 3, "{all:?}");
    let digests = http.received("digest");
    assert_eq!(digests.len(), 1, "one message for three events");
    let body = digests[0].json();
    assert_eq!(
        body["subject"],
        "3 notifications: Workflow \"One\" succeeded and more"
    );
    for name in ["One", "Two", "Three"] {
        assert!(body["body"].as_str().unwrap().contains(name), "{body}");
    }

    // ---- Notify, as the `notify` node calls it ----
    let mut client = NotificationServiceClient::new(flowfleet_runtime::grpc::in_process(
        parts.grpc.clone(),
        Some(infra.service_credentials(ServiceName::Execution)),
    ));
    let request = NotifyRequest {
        workspace_id: ws.to_string(),
        source: "step:one".into(),
        member_ids: vec![],
        roles: vec!["VIEWER".into()],
        channel_ids: vec![mail.clone()],
        subject: "Order {{ order.id }} shipped".into(),
        body: "Total: {{ order.total }}".into(),
        html: String::new(),
        data_json: json!({"order": {"id": 42, "total": "9.99"}}).to_string(),
        in_app: true,
    };
    let first = client.notify(request.clone()).await.unwrap().into_inner();
    let again = client.notify(request.clone()).await.unwrap().into_inner();
    assert_eq!(first, again, "a repeated step queues nothing new");
    let channels: Vec<_> = first.queued.iter().map(|q| q.channel.as_str()).collect();
    assert_eq!(channels, vec!["IN_APP", "EMAIL"], "{first:?}");
    assert_eq!(first.queued[1].destination, "vic@example.com");
    wait_for(&schema, &owner, "the notify e-mail is sent", |all| {
        all.iter()
            .any(|d| d["subject"] == "Order 42 shipped" && d["status"] == "SENT")
    })
    .await;
    let shipped: Vec<_> = smtp
        .mails()
        .into_iter()
        .filter(|m| m.text().contains("Order 42 shipped"))
        .collect();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].to, vec!["vic@example.com".to_string()]);
    assert!(shipped[0].text().contains("Total: 9.99"));
    let _ = viewer;
    let e = client
        .notify(NotifyRequest {
            channel_ids: vec![Uuid::now_v7().to_string()],
            source: "step:two".into(),
            ..request.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = client
        .notify(NotifyRequest {
            subject: "{% if %}".into(),
            source: "step:three".into(),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    infra.shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

/// A live event feed nobody fills: these tests do not subscribe.
fn no_live_events(infra: &flowfleet_host::Infra) -> flowfleet_runtime::events::live::LiveEvents {
    flowfleet_runtime::events::live::LiveEvents::start(
        infra.bus.clone(),
        &[],
        16,
        infra.shutdown.clone(),
    )
    .0
}
