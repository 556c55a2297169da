//! Definitions on every backend: saving reports located problems without
//! blocking, publishing blocks on errors; versions are frozen, listed and
//! rolled back; interchange documents round-trip and bad ones are refused
//! with the path of the fault; the catalog is served to editors.

mod common;

use common::{call, code, normalized, valid_definition, Service, WORKFLOW};
use flowfleet_host::testing::Backend;
use serde_json::{json, Value};
use sqlx::Row;

const PUBLISH: &str = "mutation($id: ID!, $r: Int) { publishWorkflow(id: $id, expectedRevision: $r) { version contentHash rolledBackFrom definition workflow { status revision version } } }";

fn problems(w: &Value) -> Vec<(String, String, String)> {
    w["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().unwrap().to_string(),
                p["code"].as_str().unwrap().to_string(),
                p["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn p(severity: &str, code: &str, path: &str) -> (String, String, String) {
    (severity.into(), code.into(), path.into())
}

#[tokio::test]
async fn saving_reports_problems_and_publishing_blocks_on_errors() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let broken = json!({
            "nodes": [
                {"id": "if", "type": "condition", "config": {"field": "/n", "operator": "greaterThan", "value": 1}},
                {"id": "big", "type": "http_call"},
                {"id": "small", "type": "set", "config": {"value": 1, "merge": "yes"}},
                {"id": "loner", "type": "passthrough"}
            ],
            "edges": [
                {"source": "if", "sourceHandle": "true", "target": "big"},
                {"source": "if", "sourceHandle": "maybe", "target": "small"},
                {"source": "small", "target": "ghost"}
            ],
            "triggers": [{"kind": "CRON", "expression": "0 25 * * *", "timezone": "Atlantis/Capital"}],
            "settings": {"priority": 11}
        });
        // Saving succeeds, with every problem located.
        let w = s.create(&s.editor, json!({"definition": broken})).await;
        let id = w["id"].as_str().unwrap().to_string();
        assert_eq!(w["publishable"], false);
        assert_eq!(
            problems(&w),
            vec![
                p("ERROR", "INVALID_CRON", "triggers[0].expression"),
                p("ERROR", "INVALID_TIMEZONE", "triggers[0].timezone"),
                p("ERROR", "INVALID_SETTING", "settings.priority"),
                p("ERROR", "UNKNOWN_NODE_TYPE", "nodes[1].type"),
                p("ERROR", "INVALID_CONFIG", "nodes[2].config.merge"),
                p("ERROR", "MISSING_HANDLE", "edges[1].sourceHandle"),
                p("ERROR", "MISSING_NODE", "edges[2].target"),
                p("WARNING", "UNUSED_HANDLE", "nodes[0]"),
                p("WARNING", "DISCONNECTED_NODE", "nodes[3]"),
            ],
            "{}",
            backend.name()
        );
        let handle = &w["problems"][5];
        assert_eq!(
            (handle["nodeId"].clone(), handle["edgeIndex"].clone()),
            (json!("if"), json!(1))
        );
        assert!(
            handle["message"].as_str().unwrap().contains("true, false"),
            "{handle}"
        );

        // Publishing refuses, naming every error, with the list in the extensions.
        let r = call(s.subgraph(), &s.editor, PUBLISH, json!({"id": id})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        let message = r["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("nodes[1].type: unknown node type `http_call`"),
            "{message}"
        );
        assert_eq!(
            r["errors"][0]["extensions"]["problems"]
                .as_array()
                .unwrap()
                .len(),
            9
        );
        assert!(r["data"].is_null() || r["data"]["publishWorkflow"].is_null());

        // Warnings alone do not block.
        let only_warnings = json!({
            "nodes": [{"id": "a", "type": "passthrough"}, {"id": "b", "type": "passthrough"}],
            "triggers": [{"kind": "MANUAL"}, {"kind": "MANUAL"}]
        });
        let q = format!("mutation($id: ID!, $d: JSON!) {{ updateWorkflow(id: $id, expectedRevision: 1, input: {{definition: $d}}) {{ {WORKFLOW} }} }}");
        let saved = call(
            s.subgraph(),
            &s.editor,
            &q,
            json!({"id": id, "d": only_warnings}),
        )
        .await;
        let saved = &saved["data"]["updateWorkflow"];
        assert_eq!(saved["publishable"], true, "{saved}");
        assert_eq!(
            problems(saved).iter().filter(|x| x.0 == "WARNING").count(),
            3,
            "{saved}"
        );
        let r = call(s.subgraph(), &s.editor, PUBLISH, json!({"id": id, "r": 2})).await;
        assert_eq!(r["data"]["publishWorkflow"]["version"], 1, "{r}");

        // A definition of the wrong shape is refused at once, with its path.
        let r = call(s.subgraph(), &s.editor, "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"workspaceId": s.ws(), "name": "bad", "definition": {"nodes": [{"id": "a", "type": "set", "position": {"x": "left", "y": 0}}]}}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert_eq!(
            r["errors"][0]["extensions"]["path"], "nodes[0].position.x",
            "{r}"
        );
    }
}

#[tokio::test]
async fn versions_are_frozen_listed_and_rolled_back() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let w = s
            .create(&s.editor, json!({"definition": valid_definition()}))
            .await;
        let id = w["id"].as_str().unwrap().to_string();
        let v1 = call(s.subgraph(), &s.editor, PUBLISH, json!({"id": id, "r": 1})).await;
        let v1 = &v1["data"]["publishWorkflow"];
        assert_eq!(
            (
                v1["version"].clone(),
                v1["workflow"]["status"].clone(),
                v1["workflow"]["revision"].clone()
            ),
            (json!(1), json!("ACTIVE"), json!(2))
        );
        // Publishing at a stale revision is refused.
        let r = call(s.subgraph(), &s.editor, PUBLISH, json!({"id": id, "r": 1})).await;
        assert_eq!(code(&r), "CONFLICT", "{r}");

        let mut second = valid_definition();
        second["nodes"][0]["config"]["value"] = json!({"n": 2});
        let q = "mutation($id: ID!, $d: JSON!) { updateWorkflow(id: $id, expectedRevision: 2, input: {definition: $d}) { revision } }";
        call(s.subgraph(), &s.editor, q, json!({"id": id, "d": second})).await;
        let v2 = call(s.subgraph(), &s.editor, PUBLISH, json!({"id": id})).await;
        let v2 = &v2["data"]["publishWorkflow"];
        assert_eq!(v2["version"], 2);
        assert_ne!(v1["contentHash"], v2["contentHash"]);
        assert_eq!(v2["definition"], normalized(second.clone()));

        // Newest first, paged, counted; each version keeps its own definition.
        let list = "query($id: ID!, $after: String) { workflow(id: $id) { versions(first: 1, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { version contentHash definition publishedBy { id } } } } }";
        let page = call(s.subgraph(), &s.viewer, list, json!({"id": id})).await;
        let versions = &page["data"]["workflow"]["versions"];
        assert_eq!(
            (
                versions["totalCount"].clone(),
                versions["nodes"][0]["version"].clone(),
                versions["pageInfo"]["hasNextPage"].clone()
            ),
            (json!(2), json!(2), json!(true)),
            "{page}"
        );
        assert_eq!(
            versions["nodes"][0]["publishedBy"]["id"],
            json!(s.editor.id.to_string())
        );
        let page = call(
            s.subgraph(),
            &s.viewer,
            list,
            json!({"id": id, "after": versions["pageInfo"]["endCursor"]}),
        )
        .await;
        let older = &page["data"]["workflow"]["versions"]["nodes"][0];
        assert_eq!(
            (older["version"].clone(), older["definition"].clone()),
            (json!(1), normalized(valid_definition()))
        );

        // Rollback re-publishes version 1 as version 3, leaving the draft alone.
        let r = call(s.subgraph(), &s.editor, "mutation($id: ID!) { rollbackWorkflow(id: $id, version: 1) { version rolledBackFrom contentHash definition workflow { version } } }", json!({"id": id})).await;
        let v3 = &r["data"]["rollbackWorkflow"];
        assert_eq!(
            (
                v3["version"].clone(),
                v3["rolledBackFrom"].clone(),
                v3["workflow"]["version"].clone()
            ),
            (json!(3), json!(1), json!(3)),
            "{r}"
        );
        assert_eq!(
            (v3["contentHash"].clone(), v3["definition"].clone()),
            (v1["contentHash"].clone(), normalized(valid_definition()))
        );
        let draft = call(
            s.subgraph(),
            &s.viewer,
            "query($id: ID!) { workflow(id: $id) { definition publishedVersion { version } } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(draft["data"]["workflow"]["definition"], normalized(second));
        assert_eq!(draft["data"]["workflow"]["publishedVersion"]["version"], 3);
        let r = call(
            s.subgraph(),
            &s.editor,
            "mutation($id: ID!) { rollbackWorkflow(id: $id, version: 9) { version } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
        let r = call(
            s.subgraph(),
            &s.viewer,
            "mutation($id: ID!) { rollbackWorkflow(id: $id, version: 1) { version } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");

        // The engine reads what executions run: the newest version, or a given one.
        let mut engine = s.engine();
        let newest = engine
            .get_published_version(
                flowfleet_runtime::proto::workflow::v1::GetPublishedVersionRequest {
                    workflow_id: id.clone(),
                    version: 0,
                },
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (newest.version, newest.content_hash.clone()),
            (3, v1["contentHash"].as_str().unwrap().to_string())
        );
        let frozen: Value = serde_json::from_str(&newest.definition_json).unwrap();
        assert_eq!(frozen, normalized(valid_definition()));

        // Every publish recorded `workflow.published` in the outbox, in the same transaction.
        let events = sqlx::query(
            "SELECT payload FROM outbox WHERE kind = 'workflow.published' ORDER BY occurred_at, id",
        )
        .fetch_all(s.db.pool())
        .await
        .unwrap();
        let versions: Vec<(i64, Option<i64>)> = events
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(&r.get::<String, _>("payload")).unwrap();
                (v["version"].as_i64().unwrap(), v["rolledBackFrom"].as_i64())
            })
            .collect();
        assert_eq!(versions, vec![(1, None), (2, None), (3, Some(1))]);
        // Versions are immutable: nothing in the API changes one, and the stored rows are as published.
        let stored: String = sqlx::query(
            "SELECT definition FROM workflow_versions WHERE workflow_id = $1 AND version = 1",
        )
        .bind(&id)
        .fetch_one(s.db.pool())
        .await
        .unwrap()
        .get("definition");
        assert_eq!(
            serde_json::from_str::<Value>(&stored).unwrap(),
            normalized(valid_definition())
        );
    }
}

#[tokio::test]
async fn interchange_round_trips_and_refuses_bad_documents_precisely() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let secret = s.secret("hook-secret").await;
        let definition = json!({
            "nodes": [
                {"id": "route", "type": "switch", "name": "Route", "config": {"field": "/region", "cases": [{"handle": "eu", "equals": "EU"}]}, "position": {"x": 1.5, "y": -2}},
                {"id": "eu", "type": "set", "config": {"value": "vat"}},
                {"id": "rest", "type": "passthrough"}
            ],
            "edges": [{"source": "route", "sourceHandle": "eu", "target": "eu"}, {"source": "route", "sourceHandle": "default", "target": "rest"}],
            "triggers": [{"kind": "CRON", "expression": "*/5 * * * *", "timezone": "Europe/Paris"}, {"kind": "WEBHOOK", "path": "orders", "secretCredentialId": secret}, {"kind": "EVENT", "event": "execution.failed"}],
            "settings": {"timeoutMs": 5000, "maxRetries": 1, "priority": 8, "concurrencyLimit": 2}
        });
        let w = s.create(&s.editor, json!({"name": "Router", "description": "routes", "tags": ["ops"], "definition": definition})).await;
        let export = "query($id: ID!) { workflow(id: $id) { export } }";
        let doc = call(s.subgraph(), &s.editor, export, json!({"id": w["id"]})).await["data"]
            ["workflow"]["export"]
            .clone();
        assert_eq!(
            (
                doc["format"].clone(),
                doc["formatVersion"].clone(),
                doc["name"].clone()
            ),
            (json!("flowfleet.workflow"), json!(1), json!("Router")),
            "{doc}"
        );
        let import = "mutation($w: ID!, $d: JSON!, $n: String) { importWorkflow(workspaceId: $w, document: $d, name: $n) { id name description tags status definition } }";
        let imported = call(
            s.subgraph(),
            &s.editor,
            import,
            json!({"w": s.ws(), "d": doc}),
        )
        .await;
        let imported = &imported["data"]["importWorkflow"];
        assert_eq!(
            (
                imported["name"].clone(),
                imported["description"].clone(),
                imported["tags"].clone(),
                imported["status"].clone()
            ),
            (
                json!("Router"),
                json!("routes"),
                json!(["ops"]),
                json!("DRAFT")
            ),
            "{imported}"
        );
        // The round trip yields the same definition, down to the content hash.
        assert_eq!(imported["definition"], w["definition"]);
        let again = call(
            s.subgraph(),
            &s.editor,
            export,
            json!({"id": imported["id"]}),
        )
        .await["data"]["workflow"]["export"]
            .clone();
        assert_eq!(again["contentHash"], doc["contentHash"]);
        assert_eq!(again["definition"], doc["definition"]);
        // Viewers may not export (a document can be imported anywhere).
        let r = call(s.subgraph(), &s.viewer, export, json!({"id": w["id"]})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");

        // Bad documents: each refused with the path of its fault, nothing created.
        let before = count_workflows(&s).await;
        let mut cases: Vec<(Value, &str)> = Vec::new();
        let mut d = doc.clone();
        d["format"] = json!("n8n");
        cases.push((d, "format"));
        let mut d = doc.clone();
        d["formatVersion"] = json!(7);
        cases.push((d, "formatVersion"));
        let mut d = doc.clone();
        d["definition"]["nodes"][0]["config"]["field"] = json!("/country");
        cases.push((d, "contentHash"));
        let mut d = doc.clone();
        d.as_object_mut().unwrap().remove("contentHash");
        d["definition"]["edges"][1]["target"] = json!(42);
        cases.push((d, "definition.edges[1].target"));
        let mut d = doc.clone();
        d.as_object_mut().unwrap().remove("name");
        cases.push((d, "document"));
        for (bad, path) in cases {
            let r = call(
                s.subgraph(),
                &s.editor,
                import,
                json!({"w": s.ws(), "d": bad}),
            )
            .await;
            assert_eq!(
                (code(&r), r["errors"][0]["extensions"]["path"].as_str()),
                ("BAD_USER_INPUT", Some(path)),
                "{r}"
            );
        }
        assert_eq!(count_workflows(&s).await, before);
        // An edited document without its hash imports, and its problems show.
        let mut edited = doc.clone();
        edited.as_object_mut().unwrap().remove("contentHash");
        edited["definition"]["nodes"][1]["type"] = json!("teleport");
        let r = call(s.subgraph(), &s.editor, &format!("mutation($w: ID!, $d: JSON!) {{ importWorkflow(workspaceId: $w, document: $d, name: \"Edited\") {{ {WORKFLOW} }} }}"), json!({"w": s.ws(), "d": edited})).await;
        let problems = &r["data"]["importWorkflow"]["problems"];
        assert_eq!(
            (problems[0]["code"].clone(), problems[0]["path"].clone()),
            (json!("UNKNOWN_NODE_TYPE"), json!("nodes[1].type")),
            "{r}"
        );
    }
}

async fn count_workflows(s: &Service) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM workflows")
        .fetch_one(s.db.pool())
        .await
        .unwrap()
        .get("n")
}

#[tokio::test]
async fn the_catalog_describes_schemas_inputs_outputs_and_branches() {
    let s = Service::start(&Backend::Embedded).await;
    let r = call(s.subgraph(), &s.viewer, "{ nodeTypes { name configSchema input output branching handles handlesFromConfig { list field fallback } credentialFields { pointer kinds } } }", json!({})).await;
    let types = r["data"]["nodeTypes"].as_array().unwrap();
    let by_name = |n: &str| types.iter().find(|t| t["name"] == n).unwrap().clone();
    let names: Vec<&str> = types.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "set",
            "passthrough",
            "condition",
            "switch",
            "transform",
            "http_request",
            "foreach",
            "merge",
            "delay",
            "sub_workflow",
            "webhook_response",
            "notify",
            "store_file"
        ]
    );
    assert_eq!(
        by_name("notify")["configSchema"]["required"],
        json!(["subject"])
    );
    assert_eq!(
        by_name("http_request")["credentialFields"],
        json!([{"pointer": "/credentialId", "kinds": ["HTTP_BASIC", "HTTP_BEARER", "HTTP_HEADER"]}])
    );
    assert_eq!(by_name("condition")["handles"], json!(["true", "false"]));
    assert_eq!(
        by_name("switch")["handlesFromConfig"],
        json!({"list": "/cases", "field": "handle", "fallback": "default"})
    );
    assert_eq!(by_name("set")["branching"], false);
    assert_eq!(by_name("set")["configSchema"]["required"], json!(["value"]));
    assert!(by_name("passthrough")["input"]
        .as_str()
        .unwrap()
        .contains("execution input"));
}
