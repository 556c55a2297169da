//! The validation catalogue: every problem code, triggered on its own and
//! checked for its severity, location and message.

use serde_json::{json, Value};

use super::*;
use crate::catalog::{CredentialSlot, Handles, NodeKind};

/// The platform's types plus one with a credential slot, so credential checks
/// are exercised whatever the platform's types are.
fn catalog() -> Vec<NodeType> {
    let mut types = CATALOG.to_vec();
    types.push(NodeType {
        kind: NodeKind::Passthrough,
        name: "needs_credential",
        description: "test type",
        config_schema: r#"{"type":"object","properties":{"credentialId":{"type":"string"}}}"#,
        input: "",
        output: "",
        handles: Handles::Single,
        credentials: &[CredentialSlot {
            pointer: "/credentialId",
            kinds: &["HTTP_BEARER", "HTTP_BASIC"],
        }],
    });
    types
}

fn check(def: Value) -> Vec<Problem> {
    let def = Definition::from_json(&def).expect("the test definition parses");
    let creds: CredentialKinds = [
        ("c-bearer".to_string(), "HTTP_BEARER".to_string()),
        ("c-smtp".to_string(), "SMTP".to_string()),
        ("c-secret".to_string(), "SECRET".to_string()),
    ]
    .into_iter()
    .collect();
    validate_with(&catalog(), &def, &creds)
}

/// A valid two-node workflow with `extra` merged in at the top level.
fn with(extra: Value) -> Value {
    let mut base = json!({
        "nodes": [
            {"id": "a", "type": "set", "config": {"value": 1}},
            {"id": "b", "type": "passthrough"}
        ],
        "edges": [{"source": "a", "target": "b"}],
        "triggers": [{"kind": "MANUAL"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// The one problem found, checked for code, severity and path.
fn only(problems: Vec<Problem>, code: ProblemCode, severity: Severity, path: &str) -> Problem {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problems.into_iter().next().unwrap();
    assert_eq!(
        (p.code, p.severity, p.path.as_str()),
        (code, severity, path),
        "{p:#?}"
    );
    p
}

#[test]
fn a_valid_definition_has_no_problems() {
    assert_eq!(check(with(json!({}))), vec![]);
}

#[test]
fn no_nodes_and_no_trigger() {
    let problems = check(json!({}));
    let codes: Vec<ProblemCode> = problems.iter().map(|p| p.code).collect();
    assert_eq!(codes, vec![ProblemCode::NoNodes, ProblemCode::NoTrigger]);
    let p = only(
        check(with(json!({"triggers": []}))),
        ProblemCode::NoTrigger,
        Severity::Error,
        "triggers",
    );
    assert!(p.message.contains("MANUAL"), "{}", p.message);
}

#[test]
fn unknown_node_type_lists_the_known_ones() {
    let p = only(
        check(with(
            json!({"nodes": [{"id": "a", "type": "set", "config": {"value": 1}}, {"id": "b", "type": "emailer"}]}),
        )),
        ProblemCode::UnknownNodeType,
        Severity::Error,
        "nodes[1].type",
    );
    assert_eq!(p.node_id.as_deref(), Some("b"));
    assert!(
        p.message.contains("`emailer`") && p.message.contains("passthrough"),
        "{}",
        p.message
    );
}

#[test]
fn config_not_matching_its_schema_names_the_field() {
    let p = only(
        check(with(json!({"nodes": [
            {"id": "a", "type": "set", "config": {"value": 1, "merge": "yes"}},
            {"id": "b", "type": "passthrough"}
        ]}))),
        ProblemCode::InvalidConfig,
        Severity::Error,
        "nodes[0].config.merge",
    );
    assert!(p.message.contains("boolean"), "{}", p.message);
    // A missing required field is located at the config itself.
    let p = only(
        check(with(
            json!({"nodes": [{"id": "a", "type": "set"}, {"id": "b", "type": "passthrough"}]}),
        )),
        ProblemCode::InvalidConfig,
        Severity::Error,
        "nodes[0].config",
    );
    assert!(p.message.contains("value"), "{}", p.message);
    // Nested: the second case of a switch.
    let problems = check(json!({
        "nodes": [{"id": "s", "type": "switch", "config": {"field": "/k", "cases": [{"handle": "x", "equals": 1}, {"handle": "bad handle", "equals": 2}]}}],
        "triggers": [{"kind": "MANUAL"}]
    }));
    assert!(
        problems
            .iter()
            .any(|p| p.code == ProblemCode::InvalidConfig
                && p.path == "nodes[0].config.cases[1].handle"),
        "{problems:#?}"
    );
}

#[test]
fn node_ids_must_be_valid_and_unique() {
    let problems = check(with(json!({"nodes": [
        {"id": "a", "type": "set", "config": {"value": 1}},
        {"id": "b", "type": "passthrough"},
        {"id": "a", "type": "passthrough"},
        {"id": "no spaces", "type": "passthrough"}
    ]})));
    let found: Vec<(ProblemCode, &str)> =
        problems.iter().map(|p| (p.code, p.path.as_str())).collect();
    assert!(
        found.contains(&(ProblemCode::DuplicateNodeId, "nodes[2].id")),
        "{problems:#?}"
    );
    assert!(
        found.contains(&(ProblemCode::InvalidNodeId, "nodes[3].id")),
        "{problems:#?}"
    );
}

#[test]
fn edges_to_missing_nodes() {
    let p = only(
        check(with(
            json!({"edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "ghost"}]}),
        )),
        ProblemCode::MissingNode,
        Severity::Error,
        "edges[1].target",
    );
    assert_eq!(p.edge_index, Some(1));
    assert!(p.message.contains("`ghost`"), "{}", p.message);
}

fn branching(edges: Value) -> Vec<Problem> {
    check(json!({
        "nodes": [
            {"id": "if", "type": "condition", "config": {"field": "/n", "operator": "greaterThan", "value": 3}},
            {"id": "yes", "type": "passthrough"},
            {"id": "no", "type": "passthrough"}
        ],
        "edges": edges,
        "triggers": [{"kind": "MANUAL"}]
    }))
}

#[test]
fn edges_to_missing_handles() {
    assert_eq!(
        branching(json!([
            {"source": "if", "sourceHandle": "true", "target": "yes"},
            {"source": "if", "sourceHandle": "false", "target": "no"}
        ])),
        vec![]
    );
    let p = only(
        branching(json!([
            {"source": "if", "sourceHandle": "true", "target": "yes"},
            {"source": "if", "sourceHandle": "maybe", "target": "no"}
        ]))
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect(),
        ProblemCode::MissingHandle,
        Severity::Error,
        "edges[1].sourceHandle",
    );
    assert!(
        p.message.contains("no branch `maybe`") && p.message.contains("true, false"),
        "{}",
        p.message
    );
    // A branching node's edge must name its branch...
    let errors: Vec<Problem> = branching(json!([
        {"source": "if", "sourceHandle": "true", "target": "yes"},
        {"source": "if", "target": "no"}
    ]))
    .into_iter()
    .filter(|p| p.severity == Severity::Error)
    .collect();
    only(
        errors,
        ProblemCode::MissingHandle,
        Severity::Error,
        "edges[1].sourceHandle",
    );
    // ...and a single-output node's must not.
    only(
        check(with(
            json!({"edges": [{"source": "a", "sourceHandle": "true", "target": "b"}]}),
        )),
        ProblemCode::MissingHandle,
        Severity::Error,
        "edges[0].sourceHandle",
    );
    // A switch's branches come from its cases.
    let problems = check(json!({
        "nodes": [
            {"id": "s", "type": "switch", "config": {"field": "/r", "cases": [{"handle": "eu", "equals": "EU"}]}},
            {"id": "x", "type": "passthrough"}, {"id": "y", "type": "passthrough"}
        ],
        "edges": [{"source": "s", "sourceHandle": "eu", "target": "x"}, {"source": "s", "sourceHandle": "us", "target": "y"}],
        "triggers": [{"kind": "MANUAL"}]
    }));
    assert!(
        problems
            .iter()
            .any(|p| p.code == ProblemCode::MissingHandle && p.path == "edges[1].sourceHandle"),
        "{problems:#?}"
    );
}

#[test]
fn an_unused_branch_is_a_warning() {
    let p = only(
        branching(
            json!([{"source": "if", "sourceHandle": "true", "target": "yes"}, {"source": "yes", "target": "no"}]),
        ),
        ProblemCode::UnusedHandle,
        Severity::Warning,
        "nodes[0]",
    );
    assert!(p.message.contains("`false`"), "{}", p.message);
}

#[test]
fn cycles_name_their_nodes_and_what_they_cut_off() {
    let problems = check(json!({
        "nodes": [
            {"id": "start", "type": "passthrough"},
            {"id": "a", "type": "passthrough"},
            {"id": "b", "type": "passthrough"},
            {"id": "after", "type": "passthrough"}
        ],
        "edges": [
            {"source": "start", "target": "a"},
            {"source": "a", "target": "b"},
            {"source": "b", "target": "a"},
            {"source": "b", "target": "after"}
        ],
        "triggers": [{"kind": "MANUAL"}]
    }));
    let cycle: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.code == ProblemCode::Cycle)
        .collect();
    assert_eq!(cycle.len(), 1, "{problems:#?}");
    assert!(
        cycle[0].message.contains("`a`, `b`") && !cycle[0].message.contains("after"),
        "{}",
        cycle[0].message
    );
    // `start` reaches them all: nothing is unreachable.
    assert!(
        problems.iter().all(|p| p.code != ProblemCode::Unreachable),
        "{problems:#?}"
    );
    let p = only(
        check(with(
            json!({"edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "b"}]}),
        )),
        ProblemCode::Cycle,
        Severity::Error,
        "edges[1]",
    );
    assert!(p.message.contains("to itself"), "{}", p.message);
}

#[test]
fn nodes_no_entry_reaches_are_unreachable() {
    let problems = check(json!({
        "nodes": [
            {"id": "ok", "type": "passthrough"},
            {"id": "a", "type": "passthrough"},
            {"id": "b", "type": "passthrough"},
            {"id": "c", "type": "passthrough"}
        ],
        "edges": [
            {"source": "ok", "target": "c"},
            {"source": "a", "target": "b"},
            {"source": "b", "target": "a"}
        ],
        "triggers": [{"kind": "MANUAL"}]
    }));
    let unreachable: Vec<(&str, Option<&str>)> = problems
        .iter()
        .filter(|p| p.code == ProblemCode::Unreachable)
        .map(|p| (p.path.as_str(), p.node_id.as_deref()))
        .collect();
    assert_eq!(
        unreachable,
        vec![("nodes[1]", Some("a")), ("nodes[2]", Some("b"))]
    );
}

#[test]
fn a_node_without_edges_is_a_warning() {
    let p = only(
        check(with(json!({"nodes": [
            {"id": "a", "type": "set", "config": {"value": 1}},
            {"id": "b", "type": "passthrough"},
            {"id": "lonely", "type": "passthrough"}
        ]}))),
        ProblemCode::DisconnectedNode,
        Severity::Warning,
        "nodes[2]",
    );
    assert_eq!(p.node_id.as_deref(), Some("lonely"));
}

#[test]
fn cron_expressions_and_time_zones() {
    assert_eq!(
        check(with(
            json!({"triggers": [{"kind": "CRON", "expression": "0 9 * * 1-5", "timezone": "Europe/Paris"}]})
        )),
        vec![]
    );
    assert_eq!(
        check(with(
            json!({"triggers": [{"kind": "CRON", "expression": "*/30 * * * * *"}]})
        )),
        vec![]
    );
    for bad in ["61 * * * *", "* * *", "every monday", "0 9 * * 8"] {
        let p = only(
            check(with(
                json!({"triggers": [{"kind": "CRON", "expression": bad}]}),
            )),
            ProblemCode::InvalidCron,
            Severity::Error,
            "triggers[0].expression",
        );
        assert!(p.message.contains(bad), "{}", p.message);
    }
    let p = only(
        check(with(
            json!({"triggers": [{"kind": "CRON", "expression": "0 9 * * *", "timezone": "Mars/Olympus"}]}),
        )),
        ProblemCode::InvalidTimezone,
        Severity::Error,
        "triggers[0].timezone",
    );
    assert!(p.message.contains("Mars/Olympus"), "{}", p.message);
}

#[test]
fn webhook_paths_and_event_names() {
    only(
        check(with(
            json!({"triggers": [{"kind": "WEBHOOK", "path": "../etc", "secretCredentialId": "c-secret"}]}),
        )),
        ProblemCode::InvalidWebhookPath,
        Severity::Error,
        "triggers[0].path",
    );
    only(
        check(with(
            json!({"triggers": [{"kind": "WEBHOOK", "path": "orders", "secretCredentialId": "c-secret"}, {"kind": "WEBHOOK", "path": "orders", "auth": "HMAC", "secretCredentialId": "c-secret"}]}),
        )),
        ProblemCode::DuplicateWebhookPath,
        Severity::Error,
        "triggers[1].path",
    );
    only(
        check(with(
            json!({"triggers": [{"kind": "EVENT", "event": "Execution Failed"}]}),
        )),
        ProblemCode::InvalidEvent,
        Severity::Error,
        "triggers[0].event",
    );
}

#[test]
fn event_triggers_name_the_five_platform_events_or_a_custom_event() {
    let events = [
        "execution.succeeded",
        "execution.failed",
        "workflow.published",
        "file.created",
        "member.joined",
        "order.created",
        "invoice_paid",
    ];
    let triggers: Vec<Value> = events
        .iter()
        .map(|e| json!({"kind": "EVENT", "event": e}))
        .collect();
    assert_eq!(check(with(json!({"triggers": triggers}))), vec![]);
    // Other platform kinds, the custom prefix, bad shapes and lengths.
    for (event, says) in [
        ("execution.cancelled", "starts with `execution.`"),
        ("user.deleted", "starts with `user.`"),
        ("notification.sent", "starts with `notification.`"),
        ("custom.order.created", "starts with `custom.`"),
        ("order..created", "is not an event name"),
        ("Order.Created", "is not an event name"),
        ("", "1 to 100 characters"),
    ] {
        let p = only(
            check(with(
                json!({"triggers": [{"kind": "EVENT", "event": event}]}),
            )),
            ProblemCode::InvalidEvent,
            Severity::Error,
            "triggers[0].event",
        );
        assert!(p.message.contains(says), "{event}: {}", p.message);
        assert!(p.message.contains("`member.joined`"), "{}", p.message);
    }
    let long = "a".repeat(101);
    only(
        check(with(
            json!({"triggers": [{"kind": "EVENT", "event": long}]}),
        )),
        ProblemCode::InvalidEvent,
        Severity::Error,
        "triggers[0].event",
    );
    only(
        check(with(
            json!({"triggers": [{"kind": "MANUAL"}, {"kind": "MANUAL"}]}),
        )),
        ProblemCode::DuplicateTrigger,
        Severity::Warning,
        "triggers[1]",
    );
}

#[test]
fn settings_out_of_range() {
    let problems = check(with(
        json!({"settings": {"priority": 12, "timeoutMs": 0, "maxRetries": 50, "concurrencyLimit": 2}}),
    ));
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "settings.priority",
            "settings.timeoutMs",
            "settings.maxRetries"
        ]
    );
    assert!(problems
        .iter()
        .all(|p| p.code == ProblemCode::InvalidSetting));
}

#[test]
fn credentials_must_exist_in_the_workspace_and_fit_the_node() {
    let def = |id: &str| json!({"nodes": [{"id": "call", "type": "needs_credential", "config": {"credentialId": id}}], "triggers": [{"kind": "MANUAL"}]});
    assert_eq!(check(def("c-bearer")), vec![]);
    let p = only(
        check(def("c-gone")),
        ProblemCode::MissingCredential,
        Severity::Error,
        "nodes[0].config.credentialId",
    );
    assert!(p.message.contains("`c-gone`"), "{}", p.message);
    let p = only(
        check(def("c-smtp")),
        ProblemCode::WrongCredentialKind,
        Severity::Error,
        "nodes[0].config.credentialId",
    );
    assert!(
        p.message.contains("SMTP") && p.message.contains("HTTP_BEARER"),
        "{}",
        p.message
    );
}

#[test]
fn webhooks_need_a_secret_credential() {
    let hook = |extra: Value| {
        let mut t = json!({"kind": "WEBHOOK", "path": "in", "respond": "WITH_NODE"});
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        check(with(json!({ "triggers": [t] })))
    };
    assert_eq!(
        hook(json!({"secretCredentialId": "c-secret", "timeoutMs": 5000})),
        vec![]
    );
    let p = only(
        hook(json!({})),
        ProblemCode::MissingCredential,
        Severity::Error,
        "triggers[0].secretCredentialId",
    );
    assert!(p.message.contains("SECRET"), "{}", p.message);
    only(
        hook(json!({"secretCredentialId": "c-gone"})),
        ProblemCode::MissingCredential,
        Severity::Error,
        "triggers[0].secretCredentialId",
    );
    only(
        hook(json!({"secretCredentialId": "c-bearer"})),
        ProblemCode::WrongCredentialKind,
        Severity::Error,
        "triggers[0].secretCredentialId",
    );
    only(
        hook(json!({"secretCredentialId": "c-secret", "timeoutMs": 0})),
        ProblemCode::InvalidSetting,
        Severity::Error,
        "triggers[0].timeoutMs",
    );
}

/// A loop over `/orders`: `each` (its body, with `tax`) then `total` on `done`.
fn looping(extra_edges: Value, extra_nodes: Value) -> Vec<Problem> {
    let mut nodes = vec![
        json!({"id": "loop", "type": "foreach", "config": {"items": "/orders", "concurrency": 4}}),
        json!({"id": "each", "type": "passthrough"}),
        json!({"id": "tax", "type": "passthrough"}),
        json!({"id": "total", "type": "passthrough"}),
    ];
    nodes.extend(extra_nodes.as_array().unwrap().iter().cloned());
    let mut edges = vec![
        json!({"source": "loop", "sourceHandle": "item", "target": "each"}),
        json!({"source": "each", "target": "tax"}),
        json!({"source": "loop", "sourceHandle": "done", "target": "total"}),
    ];
    edges.extend(extra_edges.as_array().unwrap().iter().cloned());
    check(json!({"nodes": nodes, "edges": edges, "triggers": [{"kind": "MANUAL"}]}))
}

#[test]
fn loop_bodies_are_entered_through_item_and_left_through_done() {
    assert_eq!(looping(json!([]), json!([])), vec![]);
    let def = Definition::from_json(&json!({
        "nodes": [{"id": "loop", "type": "foreach"}, {"id": "each", "type": "passthrough"}, {"id": "tax", "type": "passthrough"}, {"id": "total", "type": "passthrough"}],
        "edges": [{"source": "loop", "sourceHandle": "item", "target": "each"}, {"source": "each", "target": "tax"}, {"source": "loop", "sourceHandle": "done", "target": "total"}]
    }))
    .unwrap();
    assert_eq!(
        def.loop_bodies(),
        [(
            "loop".to_string(),
            vec!["each".to_string(), "tax".to_string()]
        )]
        .into()
    );
    // Leaving the body other than through `done`.
    let p = only(
        looping(
            json!([{"source": "tax", "target": "after"}, {"source": "total", "target": "after"}]),
            json!([{"id": "after", "type": "passthrough"}]),
        ),
        ProblemCode::InvalidLoop,
        Severity::Error,
        "edges[4]",
    );
    assert!(p.message.contains("`total`"), "{}", p.message);
    // What the body reaches is in the body, so a node after both the body and
    // `done` is entered from outside it.
    let p = only(
        looping(json!([{"source": "tax", "target": "total"}]), json!([])),
        ProblemCode::InvalidLoop,
        Severity::Error,
        "edges[2]",
    );
    assert!(p.message.contains("`loop`"), "{}", p.message);
    // Entering the body from outside.
    let p = only(
        looping(
            json!([{"source": "start", "target": "tax"}, {"source": "start", "target": "loop"}]),
            json!([{"id": "start", "type": "passthrough"}]),
        ),
        ProblemCode::InvalidLoop,
        Severity::Error,
        "edges[3]",
    );
    assert!(p.message.contains("`start`"), "{}", p.message);
    // A loop in a loop.
    let p = only(
        looping(
            json!([{"source": "tax", "target": "inner"}, {"source": "inner", "sourceHandle": "item", "target": "deep"}, {"source": "inner", "sourceHandle": "done", "target": "after"}]),
            json!([{"id": "inner", "type": "foreach"}, {"id": "deep", "type": "passthrough"}, {"id": "after", "type": "passthrough"}]),
        ),
        ProblemCode::InvalidLoop,
        Severity::Error,
        "nodes[4]",
    );
    assert!(p.message.contains("sub_workflow"), "{}", p.message);
}

#[test]
fn too_large() {
    let nodes: Vec<Value> = (0..=MAX_NODES)
        .map(|i| json!({"id": format!("n{i}"), "type": "passthrough"}))
        .collect();
    let edges: Vec<Value> = (0..MAX_NODES)
        .map(|i| json!({"source": format!("n{i}"), "target": format!("n{}", i + 1)}))
        .collect();
    let problems = check(json!({"nodes": nodes, "edges": edges, "triggers": [{"kind": "MANUAL"}]}));
    only(problems, ProblemCode::TooLarge, Severity::Error, "nodes");
}

#[test]
fn cron_weekdays_follow_standard_cron() {
    use chrono::TimeZone;
    let saturday = chrono_tz::Europe::Paris
        .with_ymd_and_hms(2026, 11, 21, 10, 0, 0)
        .unwrap();
    let next = parse_cron("0 9 * * 1-5")
        .unwrap()
        .find_next_occurrence(&saturday, false)
        .unwrap();
    assert_eq!(
        next,
        chrono_tz::Europe::Paris
            .with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .unwrap()
    );
}

#[test]
fn a_repeated_edge_is_a_warning() {
    let p = only(
        check(with(
            json!({"edges": [{"source": "a", "target": "b"}, {"source": "a", "target": "b"}]}),
        )),
        ProblemCode::DuplicateEdge,
        Severity::Warning,
        "edges[1]",
    );
    assert_eq!(p.edge_index, Some(1));
}
