//! Workflows on every backend: create with tags, edit at an expected revision
//! (stale and racing writers get CONFLICT), duplicate, archive, restore,
//! delete; lists with search, filters, cursor pages and a total count.

mod common;

use common::{call, code, normalized, valid_definition, Service, WORKFLOW};
use flowfleet_host::testing::Backend;
use serde_json::{json, Value};

fn update_query() -> String {
    format!("mutation($id: ID!, $r: Int!, $i: UpdateWorkflowInput!) {{ updateWorkflow(id: $id, expectedRevision: $r, input: $i) {{ {WORKFLOW} }} }}")
}

const LIST: &str = "query($w: ID!, $first: Int = 20, $after: String, $search: String, $status: WorkflowStatus, $tag: String) { \
    _entities(representations: [{__typename: \"Workspace\", id: $w}]) { ... on Workspace { \
    workflows(first: $first, after: $after, search: $search, status: $status, tag: $tag) { \
    totalCount pageInfo { hasNextPage endCursor } nodes { name status tags } } } } }";

async fn list(s: &Service, vars: Value) -> Value {
    let mut v = json!({"w": s.ws()});
    for (k, x) in vars.as_object().unwrap() {
        v[k] = x.clone();
    }
    let r = call(s.subgraph(), &s.viewer, LIST, v).await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["_entities"][0]["workflows"].clone()
}

fn names(connection: &Value) -> Vec<&str> {
    connection["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_search_filter_page_and_count() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let made = [
            (
                "Invoice sync",
                "Copies invoices to the ledger",
                vec!["Billing", "eu"],
            ),
            ("Nightly report", "Mails the 50% summary", vec!["reports"]),
            (
                "Invoice reminders",
                "Chases unpaid invoices",
                vec!["billing"],
            ),
            ("Onboarding", "Welcomes new_users", vec![]),
        ];
        let mut ids = Vec::new();
        for (name, description, tags) in made {
            let w = s
                .create(&s.editor, json!({"name": name, "description": description, "tags": tags, "definition": valid_definition()}))
                .await;
            ids.push(w["id"].as_str().unwrap().to_string());
        }
        // Tags are lowercased and deduplicated.
        let first = call(
            s.subgraph(),
            &s.viewer,
            "query($id: ID!) { workflow(id: $id) { tags } }",
            json!({"id": ids[0]}),
        )
        .await;
        assert_eq!(
            first["data"]["workflow"]["tags"],
            json!(["billing", "eu"]),
            "{}",
            backend.name()
        );
        let publish = "mutation($id: ID!) { publishWorkflow(id: $id) { version } }";
        assert!(
            call(s.subgraph(), &s.editor, publish, json!({"id": ids[2]})).await["errors"].is_null()
        );

        let all = list(&s, json!({})).await;
        assert_eq!(all["totalCount"], 4);
        assert_eq!(
            names(&all),
            vec![
                "Onboarding",
                "Invoice reminders",
                "Nightly report",
                "Invoice sync"
            ]
        );
        // Every word must match, in the name or the description, ignoring case.
        let found = list(&s, json!({"search": "INVOICE ledger"})).await;
        assert_eq!(
            (names(&found), found["totalCount"].clone()),
            (vec!["Invoice sync"], json!(1))
        );
        // LIKE wildcards in the search are literal characters.
        assert_eq!(
            names(&list(&s, json!({"search": "50%"})).await),
            vec!["Nightly report"]
        );
        assert_eq!(
            names(&list(&s, json!({"search": "new_users"})).await),
            vec!["Onboarding"]
        );
        assert_eq!(
            names(&list(&s, json!({"search": "n_w"})).await),
            Vec::<&str>::new()
        );
        let billing = list(&s, json!({"tag": "Billing"})).await;
        assert_eq!(names(&billing), vec!["Invoice reminders", "Invoice sync"]);
        let active = list(&s, json!({"status": "ACTIVE", "tag": "billing"})).await;
        assert_eq!(
            (names(&active), active["totalCount"].clone()),
            (vec!["Invoice reminders"], json!(1))
        );
        // Pages of two: the total counts every match, the cursor continues.
        let page1 = list(&s, json!({"first": 2})).await;
        assert_eq!(
            (
                names(&page1).len(),
                page1["totalCount"].clone(),
                page1["pageInfo"]["hasNextPage"].clone()
            ),
            (2, json!(4), json!(true))
        );
        let page2 = list(
            &s,
            json!({"first": 2, "after": page1["pageInfo"]["endCursor"]}),
        )
        .await;
        assert_eq!(names(&page2), vec!["Nightly report", "Invoice sync"]);
        assert_eq!(page2["pageInfo"]["hasNextPage"], false);
        // Bad input is refused by name.
        let r = call(
            s.subgraph(),
            &s.viewer,
            LIST,
            json!({"w": s.ws(), "search": "x".repeat(201)}),
        )
        .await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        let r = call(
            s.subgraph(),
            &s.viewer,
            LIST,
            json!({"w": s.ws(), "after": "nope"}),
        )
        .await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        // Outsiders see nothing.
        let r = call(s.subgraph(), &s.outsider, LIST, json!({"w": s.ws()})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
    }
}

#[tokio::test]
async fn edits_need_the_current_revision_and_racing_writers_have_one_winner() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let w = s
            .create(&s.editor, json!({"definition": valid_definition()}))
            .await;
        let id = w["id"].as_str().unwrap().to_string();
        assert_eq!(w["revision"], 1);
        let q = update_query();
        let ok = call(
            s.subgraph(),
            &s.editor,
            &q,
            json!({"id": id, "r": 1, "i": {"name": "Renamed", "tags": ["a"]}}),
        )
        .await;
        assert!(ok["errors"].is_null(), "{ok}");
        assert_eq!(
            (
                ok["data"]["updateWorkflow"]["revision"].clone(),
                ok["data"]["updateWorkflow"]["name"].clone()
            ),
            (json!(2), json!("Renamed"))
        );
        // The untouched fields keep their values.
        assert_eq!(
            ok["data"]["updateWorkflow"]["definition"],
            normalized(valid_definition())
        );
        // A writer still at revision 1 is told to reload.
        let stale = call(
            s.subgraph(),
            &s.editor,
            &q,
            json!({"id": id, "r": 1, "i": {"name": "Lost"}}),
        )
        .await;
        assert_eq!(code(&stale), "CONFLICT", "{stale}");
        assert!(
            stale["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("revision 2"),
            "{stale}"
        );

        // Rounds of eight writers racing from one revision: exactly one wins.
        let mut revision = 2;
        for round in 0..4 {
            let attempts = (0..8).map(|i| {
                let q = q.clone();
                let s = &s;
                let id = id.clone();
                async move {
                    let who = if i % 2 == 0 { &s.editor } else { &s.owner };
                    call(s.subgraph(), who, &q, json!({"id": id, "r": revision, "i": {"description": format!("round {round} writer {i}")}})).await
                }
            });
            let results = futures::future::join_all(attempts).await;
            let winners: Vec<&Value> = results.iter().filter(|r| r["errors"].is_null()).collect();
            let conflicts = results.iter().filter(|r| code(r) == "CONFLICT").count();
            assert_eq!(
                (winners.len(), conflicts),
                (1, 7),
                "{} round {round}: {results:#?}",
                backend.name()
            );
            revision += 1;
            let now = call(
                s.subgraph(),
                &s.viewer,
                "query($id: ID!) { workflow(id: $id) { revision description } }",
                json!({"id": id}),
            )
            .await;
            assert_eq!(now["data"]["workflow"]["revision"], revision);
            assert_eq!(
                now["data"]["workflow"]["description"],
                winners[0]["data"]["updateWorkflow"]["description"]
            );
        }

        // Nothing to change, bad fields, wrong roles.
        let r = call(
            s.subgraph(),
            &s.editor,
            &q,
            json!({"id": id, "r": revision, "i": {}}),
        )
        .await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let r = call(
            s.subgraph(),
            &s.editor,
            &q,
            json!({"id": id, "r": revision, "i": {"tags": ["x".repeat(41)]}}),
        )
        .await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let r = call(
            s.subgraph(),
            &s.viewer,
            &q,
            json!({"id": id, "r": revision, "i": {"name": "v"}}),
        )
        .await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = call(
            s.subgraph(),
            &s.outsider,
            &q,
            json!({"id": id, "r": revision, "i": {"name": "o"}}),
        )
        .await;
        assert_eq!(code(&r), "NOT_FOUND");
    }
}

#[tokio::test]
async fn duplicate_archive_restore_and_delete() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let w = s.create(&s.editor, json!({"name": "Source", "tags": ["t"], "description": "d", "definition": valid_definition()})).await;
        let id = w["id"].as_str().unwrap().to_string();
        let m = |q: &str| format!("mutation($id: ID!) {{ {q} }}");

        let copy = call(
            s.subgraph(),
            &s.owner,
            &m(&format!("duplicateWorkflow(id: $id) {{ {WORKFLOW} }}")),
            json!({"id": id}),
        )
        .await;
        let copy = &copy["data"]["duplicateWorkflow"];
        assert_eq!(
            (
                copy["name"].clone(),
                copy["status"].clone(),
                copy["revision"].clone()
            ),
            (json!("Source (copy)"), json!("DRAFT"), json!(1))
        );
        assert_eq!(
            (
                copy["definition"].clone(),
                copy["tags"].clone(),
                copy["description"].clone()
            ),
            (normalized(valid_definition()), json!(["t"]), json!("d"))
        );
        assert_ne!(copy["id"], w["id"]);
        let named = call(
            s.subgraph(),
            &s.editor,
            "mutation($id: ID!) { duplicateWorkflow(id: $id, name: \"Fork\") { name } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(named["data"]["duplicateWorkflow"]["name"], "Fork");

        // An active workflow cannot be deleted; archive it first.
        call(
            s.subgraph(),
            &s.editor,
            &m("publishWorkflow(id: $id) { version }"),
            json!({"id": id}),
        )
        .await;
        let r = call(
            s.subgraph(),
            &s.owner,
            &m("deleteWorkflow(id: $id)"),
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&r), "CONFLICT", "{r}");
        let archived = call(
            s.subgraph(),
            &s.editor,
            &m("archiveWorkflow(id: $id) { status revision }"),
            json!({"id": id}),
        )
        .await;
        assert_eq!(
            archived["data"]["archiveWorkflow"]["status"], "ARCHIVED",
            "{archived}"
        );
        let revision = archived["data"]["archiveWorkflow"]["revision"]
            .as_i64()
            .unwrap();
        // Archived: no edits, no publishing, no second archive.
        for q in [
            "updateWorkflow(id: $id, expectedRevision: 0, input: {name: \"x\"}) { id }"
                .replace('0', &revision.to_string()),
            "publishWorkflow(id: $id) { version }".into(),
            "archiveWorkflow(id: $id) { id }".into(),
        ] {
            let r = call(s.subgraph(), &s.editor, &m(&q), json!({"id": id})).await;
            assert_eq!(code(&r), "CONFLICT", "{q}: {r}");
        }
        // Restoring a published workflow makes it ACTIVE again; a never-published one DRAFT.
        let restored = call(
            s.subgraph(),
            &s.editor,
            &m("restoreWorkflow(id: $id, expectedRevision: 0) { status }")
                .replace('0', &revision.to_string()),
            json!({"id": id}),
        )
        .await;
        assert_eq!(
            restored["data"]["restoreWorkflow"]["status"], "ACTIVE",
            "{restored}"
        );
        let r = call(
            s.subgraph(),
            &s.editor,
            &m("restoreWorkflow(id: $id) { status }"),
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&r), "CONFLICT");
        let draft_id = copy["id"].as_str().unwrap();
        call(
            s.subgraph(),
            &s.editor,
            &m("archiveWorkflow(id: $id) { id }"),
            json!({"id": draft_id}),
        )
        .await;
        let r = call(
            s.subgraph(),
            &s.editor,
            &m("restoreWorkflow(id: $id) { status }"),
            json!({"id": draft_id}),
        )
        .await;
        assert_eq!(r["data"]["restoreWorkflow"]["status"], "DRAFT", "{r}");

        // Deleting needs ADMIN or above, and a stale revision is refused.
        call(
            s.subgraph(),
            &s.editor,
            &m("archiveWorkflow(id: $id) { id }"),
            json!({"id": id}),
        )
        .await;
        let r = call(
            s.subgraph(),
            &s.editor,
            &m("deleteWorkflow(id: $id)"),
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        let r = call(
            s.subgraph(),
            &s.owner,
            &m("deleteWorkflow(id: $id, expectedRevision: 1)"),
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&r), "CONFLICT", "{r}");
        let r = call(
            s.subgraph(),
            &s.owner,
            &m("deleteWorkflow(id: $id)"),
            json!({"id": id}),
        )
        .await;
        assert_eq!(r["data"]["deleteWorkflow"], json!(id), "{r}");
        let gone = call(
            s.subgraph(),
            &s.owner,
            "query($id: ID!) { workflow(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&gone), "NOT_FOUND");
        // Its versions went with it; the copy stayed.
        let versions: i64 = sqlx::Row::get(
            &sqlx::query("SELECT COUNT(*) AS n FROM workflow_versions WHERE workflow_id = $1")
                .bind(&id)
                .fetch_one(s.db.pool())
                .await
                .unwrap(),
            "n",
        );
        assert_eq!(versions, 0);
        let left = call(
            s.subgraph(),
            &s.owner,
            "query($id: ID!) { workflow(id: $id) { name } }",
            json!({"id": draft_id}),
        )
        .await;
        assert_eq!(left["data"]["workflow"]["name"], "Source (copy)");
    }
}
