//! The tenancy matrix: every query, mutation and subscription of the supergraph, every field of every
//! federation entity, every gRPC method of the fleet and every HTTP route that decides by
//! role, called by each kind of caller, on
//! both backends (embedded: SQLite and in-process parts; distributed: PostgreSQL, Redis
//! and RabbitMQ). The callers ([`world::CALLERS`]) are people signed in (an outsider and a
//! member of each role) and API keys (one of each role in the workspace, and an OWNER key
//! of another workspace of the same owner). Each call must either succeed, for the callers
//! that may make it, or fail with the expected code and no data.
//!
//! The lists are read from `schemas/supergraph.graphql` and `proto/`: an operation, an
//! entity field or a method added without a row here fails the test, so the matrix grows
//! with the API.

#[path = "../support/mod.rs"]
mod support;

mod entities;
mod events;
mod files;
mod graphql;
mod grpc;
mod http;
mod notifications;
mod subscriptions;
mod world;

use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use serde_json::{json, Value};
use support::in_process::start_with;
use world::{matches, Caller, Who, CALLERS};

/// The fields of `type <name>` in an SDL document, with the subgraph that resolves each
/// (from `@join__field(graph: ...)`, where the supergraph names one).
pub fn fields_of(sdl: &str, name: &str) -> Vec<(String, Option<String>)> {
    let start = sdl
        .find(&format!("\ntype {name} "))
        .unwrap_or_else(|| panic!("no type {name}"));
    let body = &sdl[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    let mut fields = Vec::new();
    let mut in_description = false;
    for line in body.lines().map(str::trim) {
        if line.starts_with("\"\"\"") {
            in_description = !(in_description || line.len() > 3 && line.ends_with("\"\"\""));
            continue;
        }
        if in_description || line.starts_with('"') || line.is_empty() {
            continue;
        }
        let field: String = line
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if field.is_empty() || field.starts_with('_') {
            continue;
        }
        // The subgraph that resolves the field: not one that only declares it `external`
        // (for its `@requires`).
        let graph = line
            .split("@join__field(graph: ")
            .skip(1)
            .find(|rest| {
                !rest
                    .split(')')
                    .next()
                    .unwrap_or("")
                    .contains("external: true")
            })
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            });
        fields.push((field, graph));
    }
    fields
}

/// Every federation entity field: (type, field, the subgraph resolving it). The key
/// field `id` is every subgraph's and is left out.
fn entity_fields(supergraph: &str) -> Vec<(String, String, ServiceName)> {
    let mut out = Vec::new();
    for line in supergraph.lines() {
        let Some(rest) = line.strip_prefix("type ") else {
            continue;
        };
        if !line.contains("key: \"") {
            continue;
        }
        let ty = rest.split_whitespace().next().unwrap();
        for (field, graph) in fields_of(supergraph, ty) {
            if field == "id" {
                continue;
            }
            // A field of an entity that one subgraph alone defines carries no join__field.
            let graph = graph.unwrap_or_else(|| {
                let rest = line.split("@join__type(graph: ").nth(1).unwrap();
                rest.split(',').next().unwrap().to_string()
            });
            let service = ServiceName::ALL
                .into_iter()
                .find(|s| s.as_str().eq_ignore_ascii_case(&graph))
                .unwrap_or_else(|| panic!("{ty}.{field}: unknown subgraph {graph}"));
            out.push((ty.to_string(), field, service));
        }
    }
    out
}

fn supergraph() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/supergraph.graphql"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_entity_field_and_method_as_every_kind_of_caller() {
    let supergraph = supergraph();
    let mut operations = graphql::operations(&supergraph);
    // Rows of their own (events.rs), run even before the supergraph file lists them.
    operations.extend(events::OPERATIONS.map(String::from));
    let entity_fields = entity_fields(&supergraph);
    let subscription_operations = subscriptions::operations(&supergraph);
    assert!(
        subscription_operations.contains(&"executionUpdated".to_string())
            && subscription_operations.contains(&"notificationReceived".to_string()),
        "{subscription_operations:?}"
    );
    let methods = grpc::methods();
    assert!(
        operations.len() >= 20 && operations.contains("startExecution"),
        "{operations:?}"
    );
    for wanted in [
        "Workspace.executions",
        "Workflow.executions",
        "Execution.artifacts",
        "User.notifications",
    ] {
        assert!(
            entity_fields
                .iter()
                .any(|(t, f, _)| format!("{t}.{f}") == wanted),
            "{wanted} is not among the entity fields: {entity_fields:?}"
        );
    }
    assert!(
        methods.len() >= 9 && methods.contains("PutFile"),
        "{methods:?}"
    );
    for backend in Backend::all() {
        let name = backend.name();
        // Many callers fail to sign in from one address on purpose; that is not what this
        // test is about.
        let fleet = start_with(&backend, |c| c.security.login_max_failures_per_ip = 10_000).await;
        let w = world::world(&fleet).await;
        let mut failures = Vec::new();
        let mut cells = 0;
        for operation in &operations {
            for caller in CALLERS {
                let (outcome, expected) = match events::OPERATIONS.contains(&operation.as_str()) {
                    true => events::row(operation, &w, caller).await,
                    false => graphql::row(operation, &w, caller).await,
                };
                cells += 1;
                if !matches(&outcome, &expected) {
                    failures.push(format!(
                        "{name}: {operation} as {caller:?}: got {outcome:?}, expected {expected:?}"
                    ));
                }
            }
        }
        for operation in &subscription_operations {
            for (caller, outcome, expected) in subscriptions::rows(operation, &w).await {
                cells += 1;
                if !matches(&outcome, &expected) {
                    failures.push(format!(
                        "{name}: subscription {operation} as {caller:?}: got {outcome:?}, expected {expected:?}"
                    ));
                }
            }
        }
        for (ty, field, graph) in &entity_fields {
            for caller in CALLERS {
                let (outcome, expected) =
                    entities::row(&fleet, &w, ty, field, *graph, caller).await;
                cells += 1;
                if !matches(&outcome, &expected) {
                    failures.push(format!(
                        "{name}: {ty}.{field} ({graph:?}) as {caller:?}: got {outcome:?}, expected {expected:?}"
                    ));
                }
            }
        }
        for method in &methods {
            for caller in CALLERS {
                let (outcome, expected) = grpc::row(method, &fleet, &w, caller).await;
                cells += 1;
                if !matches(&outcome, &expected) {
                    failures.push(format!(
                        "{name}: gRPC {method} as {caller:?}: got {outcome:?}, expected {expected:?}"
                    ));
                }
            }
            // Without a credential, or with a forged one (the owner's token with another
            // subject, or without its signature), every method but the key check refuses
            // outright.
            if method != "VerifyApiKey" {
                for (what, credential) in forged_credentials(&w) {
                    let outcome = grpc::call(method, &fleet, &w, credential.as_deref()).await;
                    cells += 1;
                    if outcome.as_ref().err().map(String::as_str) != Some("Unauthenticated") {
                        failures.push(format!("{name}: gRPC {method} {what}: {outcome:?}"));
                    }
                }
            }
        }
        for route in http::ROUTES {
            for caller in CALLERS {
                let (outcome, expected) = http::row(route, &fleet, &w, caller).await;
                cells += 1;
                if !matches(&outcome, &expected) {
                    failures.push(format!(
                        "{name}: {route} as {caller:?}: got {outcome:?}, expected {expected:?}"
                    ));
                }
            }
        }
        eprintln!(
            "{name}: {cells} cells ({} operations, {} subscriptions, {} entity fields, {} gRPC methods, {} HTTP routes, {} callers)",
            operations.len(),
            subscription_operations.len(),
            entity_fields.len(),
            methods.len(),
            http::ROUTES.len(),
            CALLERS.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {cells} cells differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// No credential, the owner's token with another subject, and the owner's token without
/// its signature.
fn forged_credentials(w: &world::World) -> Vec<(&'static str, Option<String>)> {
    let owner_token = w.credential_of(Caller::Session(Who::Owner));
    let parts: Vec<&str> = owner_token.split('.').collect();
    let forged_payload = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = json!(w.people[&Who::Outsider].id);
        format!(
            "{}.{}.{}",
            parts[0],
            engine.encode(claims.to_string()),
            parts[2]
        )
    };
    vec![
        ("without a credential", None),
        ("with a tampered token", Some(forged_payload)),
        (
            "with an unsigned token",
            Some(format!("{}.{}.", parts[0], parts[1])),
        ),
    ]
}
