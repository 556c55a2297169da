//! The whole fleet in distributed mode: each service, the gateway and a worker
//! (then a second gateway and a second worker) as separate `flowfleet` processes
//! talking HTTP and gRPC, with PostgreSQL,
//! RabbitMQ and Redis started by `scripts/test` (FLOWFLEET_TEST_DATABASE_URL,
//! FLOWFLEET_TEST_AMQP_URL, FLOWFLEET_TEST_REDIS_URL).

mod support;

use flowfleet_host::testing::fresh_database;
use serde_json::{json, Value};
use sqlx::Connection;
use support::processes::{
    distributed_servers, fleet_env, free_port, migrate_watched, port_of, spawn, start_services,
    wait_healthy, SERVICES,
};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_six_subgraph_query_across_processes() {
    // Backend::all() says why when the servers are missing (and fails under scripts/test).
    let Some((admin_url, amqp_url, redis_url)) = distributed_servers() else {
        return;
    };
    // A fresh database for this test; each service creates its own schema in it.
    let db_name = format!("ff_{}", uuid::Uuid::now_v7().simple());
    let db_url = fresh_database(&admin_url, &db_name).await;
    let blobs = tempfile::tempdir().unwrap();
    // Every process exports its spans here, to check one trace crosses them all.
    let collector = support::otlp::Collector::start().await;

    let services = SERVICES;
    let mut env = fleet_env(&db_url, &db_name, &amqp_url, &redis_url, blobs.path());
    env.push((
        "FLOWFLEET_TELEMETRY__OTLP_ENDPOINT".into(),
        collector.endpoint(),
    ));
    // Download links point at the gateway process, which passes `/files` on.
    let gateway_port = free_port();
    env.push((
        "FLOWFLEET_STORAGE__PUBLIC_URL".into(),
        format!("http://127.0.0.1:{gateway_port}"),
    ));
    // Which process reaches which port while the fleet works, to compare with the
    // NetworkPolicies of deploy/ at the end.
    let network = support::network::Watcher::start();
    network.record("migrate", migrate_watched(&env));
    let mut procs = start_services(&mut env).await;
    let worker_port = free_port();
    env.push((
        "FLOWFLEET_WORKER__METRICS_PORT".into(),
        worker_port.to_string(),
    ));
    procs.push(spawn(&env, &["worker", "--concurrency", "2"]));
    procs.push(spawn(
        &env,
        &["gateway", "--port", &gateway_port.to_string()],
    ));
    for proc in &procs {
        network.watch(proc.child.id(), kind_of(proc));
    }
    let url = format!("http://127.0.0.1:{gateway_port}/graphql");
    // The gateway composes from the subgraphs' SDL once they all answer.
    wait_healthy(&url.replace("/graphql", ""), 90).await;

    let (c, wf) = run_scenario(&url, "ada@example.com").await;
    let data = c.ok(CROSS_SIX, json!({})).await;
    assert_cross_six(&data, &wf);

    // The CLI contract other tools rely on: `gateway --supergraph FILE --port N`, here with
    // the committed supergraph and each subgraph's URL overridden to this test's ports.
    let file_gateway_port = free_port();
    let mut file_env = env.clone();
    for s in services {
        let port = port_of(
            &env,
            &format!("FLOWFLEET_SERVICES__{}__HTTP_PORT", s.to_uppercase()),
        );
        file_env.push((
            format!("FLOWFLEET_GATEWAY__SUBGRAPH_URLS__{}", s.to_uppercase()),
            format!("http://127.0.0.1:{port}/graphql"),
        ));
    }
    let file_gateway = spawn(
        &file_env,
        &[
            "gateway",
            "--supergraph",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/supergraph.graphql"),
            "--port",
            &file_gateway_port.to_string(),
        ],
    );
    network.watch(file_gateway.child.id(), "gateway");
    let file_url = format!("http://127.0.0.1:{file_gateway_port}/graphql");
    wait_healthy(&file_url.replace("/graphql", ""), 30).await;
    let mut via_file = Client::new(&file_url);
    via_file.token = c.token.clone();
    let data = via_file.ok(CROSS_SIX, json!({})).await;
    assert_cross_six(&data, &wf);
    // GET /graphql serves queries too.
    let got: serde_json::Value = via_file
        .http
        .get(&file_url)
        .query(&[("query", "{ me { name } }")])
        .bearer_auth(c.token.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!({"data": {"me": {"name": "Ada"}}}));
    assert!(
        file_gateway.stop().success(),
        "gateway --supergraph did not exit cleanly on SIGTERM"
    );

    // The services cached membership answers in Redis, under this fleet's prefix.
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{db_name}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "nothing cached in Redis");

    // The gateway process publishes the auth service's signing keys, including the one
    // that signed this session's access token.
    assert_jwks_lists_the_signing_key(&url, c.token.as_deref().unwrap()).await;

    // Forged credentials are refused at the edge, and by every subgraph when sent to it
    // directly (zero trust inside the cluster), whatever the operation.
    let token = c.token.as_deref().unwrap();
    assert_forgeries_refused_at_the_edge(&url, token).await;
    assert_api_key_lifecycle(&url, &c, &wf).await;
    let forgeries = forged_credentials(&url, token).await;
    for s in services {
        let port = port_of(
            &env,
            &format!("FLOWFLEET_SERVICES__{}__HTTP_PORT", s.to_uppercase()),
        );
        for (attack, credential) in &forgeries {
            let mut direct = Client::new(&format!("http://127.0.0.1:{port}/graphql"));
            direct.token = Some(credential.clone());
            let (_, body) = direct.raw("{ __typename }", json!({})).await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{s}, {attack}: {body}"
            );
            assert!(body["data"].is_null(), "{s}, {attack}: {body}");
        }
        // Each service is ready: its database, the broker and Redis answer.
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "{s}");
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(
            ready["checks"][format!("database:{s}")],
            "up",
            "{s}: {ready}"
        );
        assert_eq!(ready["checks"]["broker"], "up", "{s}: {ready}");
        assert_eq!(ready["checks"]["redis"], "up", "{s}: {ready}");
    }
    // The gateway is ready when every subgraph answers.
    let ready: Value = reqwest::get(url.replace("/graphql", "/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["subgraphs"].as_object().unwrap().len(), 6, "{ready}");

    // The gateway process serves Prometheus metrics: what it did per operation and per
    // subgraph.
    let gateway_metrics = reqwest::get(url.replace("/graphql", "/metrics"))
        .await
        .unwrap();
    assert!(gateway_metrics.status().is_success());
    let gateway_metrics = gateway_metrics.text().await.unwrap();
    for expected in [
        "flowfleet_gateway_operations_total{",
        "flowfleet_gateway_subgraph_requests_total{subgraph=\"workflow\",outcome=\"ok\"}",
        "flowfleet_gateway_plan_cache_lookups_total{result=\"hit\"}",
        "flowfleet_gateway_requests_in_flight",
    ] {
        assert!(
            gateway_metrics.lines().any(|l| l.starts_with(expected)),
            "{expected} missing from\n{gateway_metrics}"
        );
    }
    // So does the worker, on its own port, counting the steps it ran.
    let worker_metrics = reqwest::get(format!("http://127.0.0.1:{worker_port}/metrics"))
        .await
        .unwrap();
    assert!(worker_metrics.status().is_success());
    let worker_ready = reqwest::get(format!("http://127.0.0.1:{worker_port}/ready"))
        .await
        .unwrap();
    assert_eq!(worker_ready.status(), 200);
    let worker_metrics = worker_metrics.text().await.unwrap();
    assert!(
        worker_metrics
            .lines()
            .any(|l| l.starts_with("flowfleet_steps_total{") && l.contains("SUCCEEDED")),
        "{worker_metrics}"
    );

    // Every series the dashboards and alerts under docker/ use is exposed by some process
    // of the fleet (or comes from a standard exporter the manifests deploy).
    let mut scraped = vec![("gateway".to_string(), gateway_metrics.clone())];
    scraped.push(("worker".to_string(), worker_metrics.clone()));
    for s in services {
        let port = port_of(
            &env,
            &format!("FLOWFLEET_SERVICES__{}__HTTP_PORT", s.to_uppercase()),
        );
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        scraped.push((s.to_string(), text));
    }
    let exposed = assert_processes_register_their_series(&scraped);
    // The dashboards and rules are read with the Python tools of deploy/tests/.venv.
    if let Some(python) = support::deploy::venv() {
        assert_dashboards_and_alerts_see_their_metrics(&python, &exposed);
    }

    // A client's W3C trace continues through every hop of a run: gateway → execution
    // subgraph (HTTP) → workflow (gRPC) → outbox → RabbitMQ → worker → storage (gRPC) →
    // outcome event → analytics and notification.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let mut traced = Client::new(&url);
    traced.token = c.token.clone();
    traced.headers.insert(
        "traceparent",
        format!("00-{trace_id}-{client_span_id}-01")
            .parse()
            .unwrap(),
    );
    traced
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
            json!({"i": {"workflowId": wf, "idempotencyKey": "traced"}}),
        )
        .await;
    eventually(60, || {
        let c = &c;
        async move {
            let (_, body) = c.raw(CROSS_SIX, json!({})).await;
            let wf = &body["data"]["me"]["memberships"][0]["workspace"]["workflows"]["nodes"][0];
            let ready =
                wf["stats"]["runs"] == 2 && body["data"]["me"]["unreadNotificationCount"] == 2;
            ready.then_some(())
        }
    })
    .await;

    // Webhooks reach the execution service through the gateway process.
    let ws = c
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await["me"]["memberships"][0]["workspace"]["id"]
        .clone();
    let secret = c
        .ok(
            "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
            json!({"i": {"workspaceId": ws, "name": "hook", "kind": "SECRET", "value": {"value": "hook-secret"}}}),
        )
        .await["createCredential"]["id"]
        .clone();
    let hooked = c
        .ok(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"workspaceId": ws, "name": "Hooked", "definition": {
                "nodes": [{"id": "echo", "type": "webhook_response", "config": {"status": 200}}],
                "triggers": [{"kind": "WEBHOOK", "path": "in", "secretCredentialId": secret, "respond": "WITH_NODE"}]}}}),
        )
        .await["createWorkflow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(
        "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
        json!({"id": hooked}),
    )
    .await;
    let hook = url.replace("/graphql", &format!("/hooks/{hooked}/in"));
    let answer = eventually(60, || {
        let hook = &hook;
        async move {
            let r = reqwest::Client::new()
                .post(hook)
                .header("x-flowfleet-token", "hook-secret")
                .json(&json!({"ping": 1}))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(r)
        }
    })
    .await;
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["body"], json!({"ping": 1}), "{body}");

    // Files: GraphQL multipart through the gateway's HTTP transport, streaming PUT and
    // ranged downloads through its `/files` pass-through.
    support::files::assert_files_through_the_gateway(&url, &c, ws.as_str().unwrap()).await;

    // A second gateway process and a second worker process: a subscriber on either
    // gateway hears the outcome of every run, whichever worker ran it.
    let second_gateway = free_port();
    let mut env2 = env.clone();
    env2.retain(|(k, _)| k != "FLOWFLEET_WORKER__METRICS_PORT");
    env2.push((
        "FLOWFLEET_WORKER__METRICS_PORT".into(),
        free_port().to_string(),
    ));
    procs.push(spawn(&env2, &["worker", "--concurrency", "2"]));
    procs.push(spawn(
        &env2,
        &["gateway", "--port", &second_gateway.to_string()],
    ));
    for proc in &procs[procs.len() - 2..] {
        network.watch(proc.child.id(), kind_of(proc));
    }
    let url2 = format!("http://127.0.0.1:{second_gateway}/graphql");
    wait_healthy(&url2.replace("/graphql", ""), 90).await;

    // An automatic persisted query registered through one gateway runs by its hash alone
    // through the other: the texts are shared through Redis.
    let text = "query Mine { me { id email } }";
    let persisted = json!({"persistedQuery": {
        "version": 1,
        "sha256Hash": flowfleet_gateway::persisted::sha256_hex(text),
    }});
    let register = c
        .http
        .post(&url)
        .bearer_auth(c.token.as_deref().unwrap())
        .json(&json!({"query": text, "extensions": persisted}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(register["data"]["me"]["id"].is_string(), "{register}");
    let by_hash = c
        .http
        .post(&url2)
        .bearer_auth(c.token.as_deref().unwrap())
        .json(&json!({"extensions": persisted}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(by_hash["data"], register["data"], "{by_hash}");
    let mut watchers = Vec::new();
    for gateway in [&url, &url2] {
        let watcher = c
            .clone_for(gateway)
            .subscribe(
                "subscription($w: ID!) { workspaceExecutions(workspaceId: $w, filter: {kinds: [FINISHED]}) { executionId execution { status workflow { name } } } }",
                json!({"w": ws}),
            )
            .await
            .unwrap_or_else(|e| panic!("subscribing through {gateway}: {e:?}"));
        watchers.push((gateway.clone(), watcher));
    }
    let mut runs = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let started = c
            .ok(
                "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
                json!({"i": {"workflowId": wf}}),
            )
            .await;
        runs.insert(
            started["startExecution"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for (gateway, watcher) in &mut watchers {
        let mut heard = std::collections::BTreeSet::new();
        while heard != runs {
            let update = tokio::time::timeout(std::time::Duration::from_secs(60), watcher.recv())
                .await
                .unwrap_or_else(|_| panic!("{gateway}: heard {heard:?} of {runs:?} in 60 s"))
                .expect("the subscription stays open");
            let update = &update["data"]["workspaceExecutions"];
            let id = update["executionId"].as_str().unwrap().to_string();
            if !runs.contains(&id) {
                continue; // an earlier run of the scenario
            }
            assert_eq!(
                update["execution"]["status"], "SUCCEEDED",
                "{gateway}: {update}"
            );
            assert!(
                update["execution"]["workflow"]["name"].is_string(),
                "{update}"
            );
            heard.insert(id);
        }
    }

    // Each service wrote only its own schema.
    let mut conn = sqlx::PgConnection::connect(&db_url).await.unwrap();
    let schemas: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT table_schema::text FROM information_schema.tables \
         WHERE table_name = 'outbox' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let schemas: Vec<String> = schemas.into_iter().map(|(s,)| s).collect();
    assert!(
        schemas.contains(&"execution".to_string()) && schemas.contains(&"auth".to_string()),
        "{schemas:?}"
    );

    // Stopping the analytics process leaves partial data and an error with a path.
    let idx = procs
        .iter()
        .position(|p| p.name == "serve analytics")
        .unwrap();
    assert!(
        procs.remove(idx).stop().success(),
        "analytics did not exit cleanly on SIGTERM"
    );
    let (status, body) = c
        .raw("{ me { name memberships { workspace { workflows { nodes { name stats { runs } } } } } } }", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["me"]["name"], "Ada", "{body}");
    assert_eq!(
        body["errors"][0]["path"],
        json!([
            "me",
            "memberships",
            0,
            "workspace",
            "workflows",
            "nodes",
            0,
            "stats"
        ]),
        "{body}"
    );

    for p in procs {
        let name = p.name.clone();
        assert!(p.stop().success(), "{name} did not exit cleanly on SIGTERM");
    }

    // Each process flushed its spans on exit.
    let spans = collector.trace(&trace_id);
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.service.as_str()).collect();
    for expected in [
        "flowfleet-gateway",
        "flowfleet-execution",
        "flowfleet-workflow",
        "flowfleet-worker",
        "flowfleet-storage",
        "flowfleet-analytics",
        "flowfleet-notification",
    ] {
        assert!(
            services.contains(expected),
            "no {expected} span in the client's trace; got {services:?}"
        );
    }
    // One connected tree: the gateway's request span is the client span's child, and
    // every other span's parent is a span of the same trace.
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for span in &spans {
        if span.parent_span_id == client_span_id {
            assert_eq!(
                (span.service.as_str(), span.name.as_str()),
                ("flowfleet-gateway", "graphql_request")
            );
        } else {
            assert!(
                ids.contains(span.parent_span_id.as_str()),
                "{span:?} has a parent outside the trace"
            );
        }
    }

    // Every connection the processes opened is one the dev overlay's NetworkPolicies allow.
    let reached = network.stop();
    let mut ports: std::collections::BTreeMap<u16, (&str, &str)> = [
        (
            port_of(&env, "FLOWFLEET_WORKER__METRICS_PORT"),
            ("worker", "metrics"),
        ),
        (gateway_port, ("gateway", "http")),
        (second_gateway, ("gateway", "http")),
        (file_gateway_port, ("gateway", "http")),
        (url_port(&db_url), ("postgres", "main")),
        (url_port(&redis_url), ("redis", "main")),
        (url_port(&amqp_url), ("rabbitmq", "main")),
        (url_port(&collector.endpoint()), ("otel-collector", "4318")),
    ]
    .into_iter()
    .collect();
    if let Ok(s3) = std::env::var("FLOWFLEET_TEST_S3_URL") {
        ports.insert(url_port(&s3), ("s3", "main"));
    }
    for s in SERVICES {
        let upper = s.to_uppercase();
        ports.insert(
            port_of(&env, &format!("FLOWFLEET_SERVICES__{upper}__HTTP_PORT")),
            (s, "http"),
        );
        ports.insert(
            port_of(&env, &format!("FLOWFLEET_SERVICES__{upper}__GRPC_PORT")),
            (s, "grpc"),
        );
    }
    // A port of none of these is somewhere else: the internet, as far as policies go.
    let unknown: Vec<&(String, u16)> = reached
        .iter()
        .filter(|(_, p)| !ports.contains_key(p))
        .collect();
    let observed: std::collections::BTreeSet<support::network::Edge> = reached
        .iter()
        .map(|(kind, port)| {
            let (to, name) = ports.get(port).copied().unwrap_or(("internet", "any"));
            (kind.clone(), to.to_string(), name.to_string())
        })
        .collect();
    assert_network_policies_allow(&observed, &format!("{unknown:?}"));

    drop(conn);
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
}

/// A process's kind from its command line: the service of `serve <service>`, else the
/// command (`gateway`, `worker`).
fn kind_of(proc: &Proc) -> &str {
    let mut words = proc.name.split_whitespace();
    match words.next() {
        Some("serve") => words.next().unwrap(),
        Some(command) => command,
        None => unreachable!("a flowfleet process has a command"),
    }
}

fn url_port(url: &str) -> u16 {
    url::Url::parse(url)
        .unwrap()
        .port()
        .expect("a URL with a port")
}

/// Every connection the processes opened is an edge the dev overlay's NetworkPolicies
/// allow (tests/deploy.rs checks that the policies allow no more than the code declares).
fn assert_network_policies_allow(
    observed: &std::collections::BTreeSet<support::network::Edge>,
    elsewhere: &str,
) {
    use support::network::{allowed_edges, fleet_pods, targets};
    let Some(objects) = support::deploy::render("dev") else {
        return;
    };
    let policies: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .cloned()
        .collect();
    let allowed = allowed_edges(&policies, &fleet_pods(&objects), &targets(&objects));
    let refused: Vec<_> = observed.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "the processes made connections the NetworkPolicies of deploy/overlays/dev refuse: \
         {refused:?} (all they made: {observed:?}; the ports taken for the internet: {elsewhere})"
    );
    // Enough was watched for the comparison to mean something.
    for edge in [
        ("gateway", "workflow", "http"),
        ("execution", "workflow", "grpc"),
        ("worker", "storage", "grpc"),
        ("migrate", "postgres", "main"),
    ] {
        let edge = (edge.0.to_string(), edge.1.to_string(), edge.2.to_string());
        assert!(
            observed.contains(&edge),
            "{edge:?} was never seen: {observed:?}"
        );
    }
}

/// Names of the series in a Prometheus text exposition.
fn series_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Each process shows its own series from start-up: what they expose together.
fn assert_processes_register_their_series(
    scraped: &[(String, String)],
) -> std::collections::BTreeSet<String> {
    let mut exposed = std::collections::BTreeSet::new();
    for (process, text) in scraped {
        let names = series_names(text);
        let mut expected = vec![
            "flowfleet_build_info",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
        ];
        if SERVICES.contains(&process.as_str()) {
            // Every service has a database (sampled every few seconds); all but analytics
            // (which only consumes) publish events through an outbox.
            expected.extend([
                "flowfleet_db_pool_connections",
                "flowfleet_db_pool_max_connections",
                "flowfleet_subgraph_request_seconds_count",
            ]);
            if process != "analytics" {
                expected.extend([
                    "flowfleet_outbox_pending_events",
                    "flowfleet_outbox_lag_seconds",
                    "flowfleet_outbox_published_total",
                ]);
            }
        }
        match process.as_str() {
            "execution" => expected.extend(["flowfleet_steps_queued", "flowfleet_cron_leader"]),
            "notification" => expected.extend([
                "flowfleet_notification_deliveries_total",
                "flowfleet_tasks_dead_lettered_total",
            ]),
            "worker" => expected.extend([
                "flowfleet_step_retries_total",
                "flowfleet_step_duration_seconds_bucket",
                "flowfleet_tasks_dead_lettered_total",
                "flowfleet_worker_busy",
            ]),
            "gateway" => expected.extend([
                "flowfleet_gateway_subgraph_retries_total",
                "flowfleet_gateway_subgraph_breaker_state",
            ]),
            _ => {}
        }
        for name in expected {
            assert!(
                names.contains(name),
                "{process} does not expose {name}:\n{text}"
            );
        }
        exposed.extend(names);
    }
    exposed
}

/// Together the processes expose every metric a dashboard or alert uses, except the
/// documented exporters' ones.
fn assert_dashboards_and_alerts_see_their_metrics(
    python: &std::path::Path,
    exposed: &std::collections::BTreeSet<String>,
) {
    let used = support::observability::metrics_used(python);
    assert!(
        used.len() > 20,
        "the dashboards and alerts use too few metrics: {used:?}"
    );
    let unknown = support::observability::unknown(python, exposed);
    assert!(
        unknown.is_empty(),
        "dashboards or alerts use metrics no process exposes and no documented exporter \
         provides (docs/runbook.md, Exporters): {unknown:#?}"
    );
}
