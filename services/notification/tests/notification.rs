//! The notification service on every backend of `Backend::all()`: embedded
//! (SQLite, the in-process bus and cache) and distributed (PostgreSQL, RabbitMQ,
//! Redis). Members and roles come from the real auth service, in process.

use std::sync::Arc;
use std::time::Duration;

use flowfleet_auth::testing::RealAuth;
use flowfleet_host::testing::{Backend, TestInfra};
use flowfleet_notification::domain::Message;
use flowfleet_notification::graphql::{schema, Ctx, NotificationSchema};
use flowfleet_notification::store::Store;
use flowfleet_notification::{build, MIGRATIONS};
use flowfleet_runtime::clock::SystemClock;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::Db;
use flowfleet_runtime::events::Event;
use flowfleet_runtime::proto::notification::v1::notification_service_client::NotificationServiceClient;
use flowfleet_runtime::proto::notification::v1::SendNotificationRequest;
use flowfleet_security::identity::{Caller, Identity, Role};
use serde_json::{json, Value};
use uuid::Uuid;

/// The service's database on `env`'s backend, migrated.
async fn db(env: &TestInfra) -> Db {
    env.db(ServiceName::Notification, &MIGRATIONS).await
}

/// The subgraph on `db`; workspace settings ask a real auth service of `env`.
async fn graphql(db: &Db, env: &TestInfra) -> NotificationSchema {
    let access = RealAuth::start(env).await.access();
    schema(
        Ctx {
            store: Store::new(db.clone()),
            clock: Arc::new(SystemClock),
            manage: flowfleet_notification::settings::Manage {
                store: Store::new(db.clone()),
                access,
                secrets: env.infra.secrets.clone(),
                clock: Arc::new(SystemClock),
                app_url: String::new(),
            },
        },
        no_live_events(&env.infra),
    )
}

fn as_user(user: Uuid) -> Caller {
    Caller::User(Identity {
        user_id: user,
        email: "ada@example.com".into(),
        api_key: None,
    })
}

fn outcome(workspace: Uuid, triggered_by: Uuid, succeeded: bool, name: &str) -> Event {
    let (kind, status, error) = if succeeded {
        ("execution.succeeded", "SUCCEEDED", Value::Null)
    } else {
        (
            "execution.failed",
            "FAILED",
            json!("step `fetch` failed: HTTP 502"),
        )
    };
    Event::new(
        kind,
        1_700_000_002_500,
        json!({
            "executionId": Uuid::now_v7(), "workflowId": Uuid::now_v7(),
            "workspaceId": workspace, "version": 2, "status": status,
            "triggeredBy": triggered_by, "workflowName": name,
            "startedAtMs": 1_700_000_000_000_i64, "finishedAtMs": 1_700_000_002_500_i64,
            "durationMs": 2_500, "error": error,
        }),
    )
}

async fn run(schema: &NotificationSchema, caller: Caller, query: &str, vars: Value) -> Value {
    let request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(vars))
        .data(caller);
    serde_json::to_value(schema.execute(request).await).unwrap()
}

const INBOX: &str = "query($reps: [_Any!]!, $first: Int, $after: String, $unread: Boolean) { \
    _entities(representations: $reps) { ... on User { \
      unreadNotificationCount \
      notifications(first: $first, after: $after, unreadOnly: $unread) { \
        totalCount pageInfo { hasNextPage endCursor } \
        nodes { id workspaceId channel subject body status createdAt readAt } } } } }";

async fn inbox(schema: &NotificationSchema, caller: Caller, user: Uuid, vars: Value) -> Value {
    let mut vars = vars;
    vars["reps"] = json!([{"__typename": "User", "id": user}]);
    run(schema, caller, INBOX, vars).await
}

const MARK_READ: &str = "mutation($id: ID!) { markNotificationRead(id: $id) { id status readAt } }";

fn error_code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn execution_events_notify_whoever_triggered_them_once() {
    for backend in Backend::all() {
        execution_events_notify_whoever_triggered_them_once_on(&backend).await;
    }
}

async fn execution_events_notify_whoever_triggered_them_once_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let infra = env.infra.clone();
    let bus = infra.bus.clone();
    let auth = RealAuth::start(&env).await;
    let mut parts = build(&infra, db.clone(), auth.access(), auth.grpc())
        .await
        .unwrap();
    // Someone else listening for what the notification service announces.
    let mut announced = bus
        .subscribe("test.notifications", &["notification.*"])
        .await
        .unwrap();
    let tasks = parts.spawn_tasks();

    let owner = auth.user("ada@example.com").await;
    let (workspace, ada) = (owner.workspace, owner.id);
    let failed = outcome(workspace, ada, false, "Nightly sync");
    bus.publish(&failed).await.unwrap();
    bus.publish(&failed).await.unwrap();
    bus.publish(&outcome(workspace, ada, true, "Billing export"))
        .await
        .unwrap();

    let schema = graphql(&db, &env).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = inbox(&schema, as_user(ada), ada, json!({})).await;
        let nodes = r["data"]["_entities"][0]["notifications"]["nodes"].as_array();
        // The queue is consumed in order: the duplicate came before the success.
        if nodes.is_some_and(|n| {
            n.iter()
                .any(|n| n["subject"].as_str().unwrap().contains("succeeded"))
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events were not consumed: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fresh request once both events are in: within one request the count and
    // the list resolve concurrently and may read different snapshots.
    let r = inbox(&schema, as_user(ada), ada, json!({})).await;
    let user = &r["data"]["_entities"][0];
    assert_eq!(user["unreadNotificationCount"], 2, "{r}");
    let list = &user["notifications"];
    assert_eq!(list["totalCount"], 2);
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(
        nodes[0]["subject"], "Workflow \"Billing export\" succeeded",
        "newest first"
    );
    assert_eq!(nodes[1]["subject"], "Workflow \"Nightly sync\" failed");
    let body = nodes[1]["body"].as_str().unwrap();
    assert!(
        body.contains("2.5 s") && body.contains("HTTP 502"),
        "{body}"
    );
    assert_eq!(nodes[1]["channel"], "IN_APP");
    assert_eq!(nodes[1]["status"], "SENT");
    assert_eq!(nodes[1]["workspaceId"], workspace.to_string());
    assert!(nodes[1]["readAt"].is_null());

    // Each stored notification is announced once, through the outbox.
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), announced.next())
            .await
            .expect("notification.created was not published")
            .unwrap();
        assert_eq!(d.event.kind, "notification.created");
        assert_eq!(d.event.payload["recipientId"], ada.to_string());
        d.ack().await.unwrap();
    }

    infra.shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn an_inbox_is_visible_to_its_owner_only() {
    for backend in Backend::all() {
        an_inbox_is_visible_to_its_owner_only_on(&backend).await;
    }
}

async fn an_inbox_is_visible_to_its_owner_only_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    Store::new(db.clone())
        .insert(
            &flowfleet_notification::domain::Notification::in_app(
                Uuid::now_v7(),
                ada,
                Message::parse("Hello", "").unwrap(),
                1,
            ),
            None,
        )
        .await
        .unwrap();
    let schema = graphql(&db, &env).await;

    let r = inbox(&schema, as_user(bob), ada, json!({})).await;
    assert_eq!(error_code(&r), "FORBIDDEN", "{r}");
    assert!(!r.to_string().contains("Hello"), "{r}");
    let r = inbox(&schema, Caller::Anonymous, ada, json!({})).await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");
    let r = inbox(&schema, as_user(bob), bob, json!({})).await;
    assert_eq!(
        r["data"]["_entities"][0]["notifications"]["totalCount"], 0,
        "{r}"
    );
    let r = inbox(&schema, as_user(ada), ada, json!({})).await;
    assert_eq!(
        r["data"]["_entities"][0]["notifications"]["totalCount"], 1,
        "{r}"
    );
}

#[tokio::test]
async fn marking_read_is_for_the_recipient_only() {
    for backend in Backend::all() {
        marking_read_is_for_the_recipient_only_on(&backend).await;
    }
}

async fn marking_read_is_for_the_recipient_only_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let store = Store::new(db.clone());
    let mut ids = Vec::new();
    for subject in ["one", "two"] {
        let n = flowfleet_notification::domain::Notification::in_app(
            Uuid::now_v7(),
            ada,
            Message::parse(subject, "").unwrap(),
            1,
        );
        store.insert(&n, None).await.unwrap();
        ids.push(n.id);
    }
    let schema = graphql(&db, &env).await;
    let vars = json!({"id": ids[0]});

    // Someone else's notification looks exactly like a missing one.
    let r = run(&schema, as_user(bob), MARK_READ, vars.clone()).await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
    let r = run(
        &schema,
        as_user(ada),
        MARK_READ,
        json!({"id": Uuid::now_v7()}),
    )
    .await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
    let r = run(&schema, Caller::Anonymous, MARK_READ, vars.clone()).await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");

    let r = run(&schema, as_user(ada), MARK_READ, vars.clone()).await;
    let marked = &r["data"]["markNotificationRead"];
    assert_eq!(marked["status"], "READ", "{r}");
    let read_at = marked["readAt"].as_str().unwrap().to_string();
    // Marking again keeps the first read time.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = run(&schema, as_user(ada), MARK_READ, vars).await;
    assert_eq!(
        r["data"]["markNotificationRead"]["readAt"],
        read_at.as_str()
    );

    let r = inbox(&schema, as_user(ada), ada, json!({"unread": true})).await;
    let user = &r["data"]["_entities"][0];
    assert_eq!(user["unreadNotificationCount"], 1, "{r}");
    assert_eq!(user["notifications"]["totalCount"], 1);
    assert_eq!(user["notifications"]["nodes"][0]["id"], ids[1].to_string());
}

#[tokio::test]
async fn inbox_pages_newest_first() {
    for backend in Backend::all() {
        inbox_pages_newest_first_on(&backend).await;
    }
}

async fn inbox_pages_newest_first_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let ada = Uuid::now_v7();
    let store = Store::new(db.clone());
    let mut ids = Vec::new();
    for i in 0..5 {
        let n = flowfleet_notification::domain::Notification::in_app(
            Uuid::now_v7(),
            ada,
            Message::parse(&format!("n{i}"), "").unwrap(),
            i,
        );
        store.insert(&n, None).await.unwrap();
        ids.push(n.id.to_string());
    }
    ids.reverse();
    let schema = graphql(&db, &env).await;
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let r = inbox(
            &schema,
            as_user(ada),
            ada,
            json!({"first": 2, "after": after}),
        )
        .await;
        let list = &r["data"]["_entities"][0]["notifications"];
        assert_eq!(list["totalCount"], 5, "{r}");
        for n in list["nodes"].as_array().unwrap() {
            seen.push(n["id"].as_str().unwrap().to_string());
        }
        if list["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = list["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ids);

    let r = inbox(&schema, as_user(ada), ada, json!({"first": 101})).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    let r = inbox(&schema, as_user(ada), ada, json!({"after": "nope"})).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
}

#[tokio::test]
async fn send_notification_delivers_in_app_and_refuses_channels_it_cannot_use() {
    for backend in Backend::all() {
        send_notification_delivers_in_app_and_refuses_channels_it_cannot_use_on(&backend).await;
    }
}

async fn send_notification_delivers_in_app_and_refuses_channels_it_cannot_use_on(
    backend: &Backend,
) {
    let env = backend.start().await;
    let db = db(&env).await;
    let infra = env.infra.clone();
    // Ada is a viewer of the owner's workspace; the stranger is in none of it.
    let auth = RealAuth::start(&env).await;
    let owner = auth.user("owner@example.com").await;
    let ada = auth
        .member(&owner, "ada@example.com", Role::Viewer)
        .await
        .id;
    let stranger = auth.user("stranger@example.com").await.id;
    let workspace = owner.workspace;
    let parts = build(&infra, db.clone(), auth.access(), auth.grpc())
        .await
        .unwrap();
    let mut client = NotificationServiceClient::new(flowfleet_runtime::grpc::in_process(
        parts.grpc.clone(),
        Some(infra.service_credentials(flowfleet_runtime::config::ServiceName::Execution)),
    ));
    let request = |recipient: Uuid, channel: &str| SendNotificationRequest {
        workspace_id: workspace.to_string(),
        recipient_id: recipient.to_string(),
        channel: channel.into(),
        subject: "Report ready".into(),
        body: "The weekly report is in the files.".into(),
    };

    let sent = client
        .send_notification(request(ada, "IN_APP"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.status, "SENT");
    let r = inbox(&graphql(&db, &env).await, as_user(ada), ada, json!({})).await;
    let nodes = &r["data"]["_entities"][0]["notifications"]["nodes"];
    assert_eq!(nodes[0]["id"], sent.notification_id, "{r}");
    assert_eq!(nodes[0]["subject"], "Report ready");

    // E-mail needs the workspace's e-mail channel; webhooks and SMS reach channels,
    // not members.
    for (channel, says) in [
        ("EMAIL", "no EMAIL channel"),
        ("WEBHOOK", "use Notify"),
        ("SMS", "use Notify"),
    ] {
        let e = client
            .send_notification(request(ada, channel))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{channel}");
        assert!(e.message().contains(says), "{}", e.message());
    }
    let e = client
        .send_notification(request(ada, "PIGEON"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = client
        .send_notification(request(stranger, "IN_APP"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let mut empty = request(ada, "IN_APP");
    empty.subject = " ".into();
    let e = client.send_notification(empty).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 1, "refused requests store nothing");
}

#[tokio::test]
async fn the_subgraph_extends_user_with_notifications() {
    for backend in Backend::all() {
        the_subgraph_extends_user_with_notifications_on(&backend).await;
    }
}

async fn the_subgraph_extends_user_with_notifications_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let auth = RealAuth::start(&env).await;
    let parts = build(&env.infra, db, auth.access(), auth.grpc())
        .await
        .unwrap();
    let sdl = parts.subgraph.sdl();
    assert!(sdl.contains("type User @key(fields: \"id\")"), "{sdl}");
    assert!(
        sdl.contains("notifications(first: Int = 20, after: String, unreadOnly: Boolean = false): NotificationConnection\n"),
        "{sdl}"
    );
    assert!(sdl.contains("unreadNotificationCount: Int!"), "{sdl}");
    assert!(
        sdl.contains("markNotificationRead(id: ID!): Notification!"),
        "{sdl}"
    );
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
