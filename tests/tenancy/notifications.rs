//! The rows for the notification service's workspace settings (channels, rules,
//! templates, previews, the delivery log: ADMIN or above) and a person's preferences
//! (their own, in a session).

use serde_json::{json, Value};

use crate::graphql::graphql;
use crate::world::{account, needs, self_only, Caller, Outcome, Who, World, FORBIDDEN, NOT_FOUND};

const HOOK: &str = "https://hooks.example.com/flowfleet";
const SECRET: &str = "0123456789abcdef-secret";

/// A webhook channel of the world's workspace, made by its owner.
async fn channel(w: &World, name: &str) -> Value {
    let r = w
        .owner()
        .client
        .ok(
            "mutation($w: ID!, $i: NotificationChannelInput!) { createNotificationChannel(workspaceId: $w, input: $i) { id } }",
            json!({"w": w.workspace, "i": {"name": name, "webhook": {"url": HOOK, "signingSecret": SECRET}}}),
        )
        .await;
    r["createNotificationChannel"]["id"].clone()
}

/// A rule of the world's workspace, made by its owner.
async fn rule(w: &World) -> Value {
    let r = w
        .owner()
        .client
        .ok(
            "mutation($w: ID!, $i: NotificationRuleInput!) { createNotificationRule(workspaceId: $w, input: $i) { id } }",
            json!({"w": w.workspace, "i": {"name": "r", "events": ["execution.failed"], "roles": ["OWNER"]}}),
        )
        .await;
    r["createNotificationRule"]["id"].clone()
}

/// The row of a notification operation, or `None` when `operation` is not one.
pub async fn row(operation: &str, w: &World, caller: Caller) -> Option<(Outcome, Option<String>)> {
    let me = &w.callers[&caller];
    let ws = &w.workspace;
    let admin_here = needs(Who::Admin, caller, FORBIDDEN);
    let admin_by_id = needs(Who::Admin, caller, NOT_FOUND);
    Some(match operation {
        "createNotificationChannel" => (
            graphql(
                me,
                "mutation($w: ID!, $i: NotificationChannelInput!) { createNotificationChannel(workspaceId: $w, input: $i) { id } }",
                json!({"w": ws, "i": {"name": format!("c-{}", caller.slug()), "webhook": {"url": HOOK, "signingSecret": SECRET}}}),
                operation,
            )
            .await,
            admin_here,
        ),
        "updateNotificationChannel" | "deleteNotificationChannel" => {
            let id = channel(w, &format!("{operation}-{}", caller.slug())).await;
            let query = if operation == "updateNotificationChannel" {
                "mutation($id: ID!, $i: NotificationChannelInput!) { updateNotificationChannel(id: $id, input: $i) { id } }"
            } else {
                "mutation($id: ID!) { deleteNotificationChannel(id: $id) }"
            };
            let vars = json!({"id": id, "i": {"name": format!("renamed-{}", caller.slug()), "webhook": {"url": HOOK}}});
            (graphql(me, query, vars, operation).await, admin_by_id)
        }
        "createNotificationRule" => (
            graphql(
                me,
                "mutation($w: ID!, $i: NotificationRuleInput!) { createNotificationRule(workspaceId: $w, input: $i) { id } }",
                json!({"w": ws, "i": {"name": "mine", "events": ["execution.failed"], "roles": ["ADMIN"]}}),
                operation,
            )
            .await,
            admin_here,
        ),
        "updateNotificationRule" | "deleteNotificationRule" => {
            let id = rule(w).await;
            let query = if operation == "updateNotificationRule" {
                "mutation($id: ID!, $i: NotificationRuleInput!) { updateNotificationRule(id: $id, input: $i) { id } }"
            } else {
                "mutation($id: ID!) { deleteNotificationRule(id: $id) }"
            };
            let vars = json!({"id": id, "i": {"name": "changed", "events": ["execution.succeeded"], "roles": ["OWNER"]}});
            (graphql(me, query, vars, operation).await, admin_by_id)
        }
        "setNotificationTemplate" => (
            graphql(
                me,
                "mutation($w: ID!) { setNotificationTemplate(workspaceId: $w, event: \"execution.failed\", channel: SMS, \
                   template: {subject: \"{{ workflow.name }} failed\", body: \"\"}) { isDefault } }",
                json!({"w": ws}),
                operation,
            )
            .await,
            admin_here,
        ),
        "resetNotificationTemplate" => (
            graphql(
                me,
                "mutation($w: ID!) { resetNotificationTemplate(workspaceId: $w, event: \"execution.failed\", channel: SMS) { isDefault } }",
                json!({"w": ws}),
                operation,
            )
            .await,
            admin_here,
        ),
        "previewNotification" => (
            graphql(
                me,
                "query($w: ID!) { previewNotification(workspaceId: $w, event: \"execution.failed\", channel: EMAIL) { subject } }",
                json!({"w": ws}),
                operation,
            )
            .await,
            admin_here,
        ),
        // Preferences are a person's own, across workspaces: sessions only.
        "updateNotificationPreferences" => (
            graphql(
                me,
                "mutation { updateNotificationPreferences(input: {mutedChannels: [SMS]}) { mutedChannels } }",
                json!({}),
                operation,
            )
            .await,
            account(caller, |_| None),
        ),
        _ => return None,
    })
}

/// The selection of a notification entity field, if `field` is one.
pub fn selection(field: &str) -> Option<String> {
    Some(match field {
        "notificationChannels" | "notificationRules" => format!("{field} {{ id }}"),
        "notificationTemplates" => "notificationTemplates { event }".into(),
        "notificationDeliveries" => "notificationDeliveries { nodes { id } }".into(),
        "notificationPreferences" => "notificationPreferences { mutedEvents }".into(),
        _ => return None,
    })
}

/// The expectation for a notification entity field, if it is one.
pub fn expected(ty: &str, field: &str, caller: Caller) -> Option<Option<String>> {
    Some(match (ty, field) {
        (
            "Workspace",
            "notificationChannels"
            | "notificationRules"
            | "notificationTemplates"
            | "notificationDeliveries",
        ) => needs(Who::Admin, caller, FORBIDDEN),
        ("User", "notificationPreferences") => self_only(caller, FORBIDDEN),
        _ => return None,
    })
}
