//! Test support: running the real `flowfleet` binary and talking GraphQL to it.

#![allow(dead_code)]

pub mod deploy;
pub mod engine;
pub mod files;
pub mod in_process;
pub mod network;
pub mod observability;
pub mod otlp;
pub mod processes;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_flowfleet");

/// A running `flowfleet` process, stopped with SIGTERM when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Stops the process with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
    }
}

/// Starts `flowfleet dev` on a free port and returns it with its GraphQL URL.
pub fn start_dev(data_dir: &std::path::Path, envs: &[(&str, String)]) -> (Proc, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["dev", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn flowfleet dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("flowfleet dev exited before printing its URL")
            .expect("read stdout");
        if let Some(url) = line.trim().strip_prefix("GraphQL: ") {
            break url.to_string();
        }
    };
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (
        Proc {
            child,
            name: "dev".into(),
        },
        url,
    )
}

pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    /// Sent with every request (e.g. a client's `traceparent`).
    pub headers: reqwest::header::HeaderMap,
}

impl Client {
    pub fn new(url: &str) -> Self {
        Client {
            http: reqwest::Client::new(),
            url: url.to_string(),
            token: None,
            headers: Default::default(),
        }
    }

    /// The same credential, sent to another endpoint (another replica's gateway).
    pub fn clone_for(&self, url: &str) -> Self {
        Client {
            http: self.http.clone(),
            url: url.to_string(),
            token: self.token.clone(),
            headers: self.headers.clone(),
        }
    }

    /// A GraphQL request with this client's headers and credential, accepting `accept`.
    fn request(&self, accept: &str, query: &str, variables: Value) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .header("accept", accept)
            .json(&json!({"query": query, "variables": variables}));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn raw(&self, query: &str, variables: Value) -> (u16, Value) {
        // A current GraphQL-over-HTTP client: request errors come back as 4xx.
        let req = self.request("application/graphql-response+json", query, variables);
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    /// Opens a subscription over SSE (GraphQL over SSE, as the gateway serves it): each
    /// event's response arrives on the receiver, which closes when the stream completes.
    /// A request refused before streaming gives its status and body.
    pub async fn subscribe(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Value>, (u16, Value)> {
        use futures::StreamExt as _;
        let req = self.request("text/event-stream", query, variables);
        let resp = req.send().await.expect("request sent");
        let streaming = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !streaming {
            let status = resp.status().as_u16();
            return Err((status, resp.json().await.expect("JSON body")));
        }
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut body = resp.bytes_stream();
        tokio::spawn(async move {
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let mut kind = "";
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(k) = line.strip_prefix("event: ") {
                            kind = if k == "next" { "next" } else { "other" };
                        } else if let Some(d) = line.strip_prefix("data: ") {
                            data.push_str(d);
                        }
                    }
                    if kind == "next" {
                        let value = serde_json::from_str(&data).expect("an event is JSON");
                        if sender.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(receiver)
    }

    /// Sends a GraphQL request that must succeed without errors; returns `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.raw(query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub const CROSS_SIX: &str = r#"
query Dashboard {
  me {
    id name
    unreadNotificationCount
    notifications { nodes { subject status } }
    memberships {
      role
      workspace {
        id name
        workflows {
          totalCount
          nodes {
            id name status version
            lastExecution {
              status output progress { done total }
              artifacts { name contentType size sha256 downloadUrl }
            }
            stats { runs succeeded successRate lastRunAt }
          }
        }
      }
    }
  }
}"#;

/// Signs up, creates and publishes a two-step workflow, runs it, and waits until
/// every subgraph has seen the outcome. Returns the signed-in client and the
/// workflow id.
pub async fn run_scenario(url: &str, email: &str) -> (Client, String) {
    let mut c = Client::new(url);
    let data = c
        .ok(
            "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken user { id name } } }",
            json!({"i": {"email": email, "password": "correct horse battery", "name": "Ada"}}),
        )
        .await;
    c.token = Some(data["signUp"]["accessToken"].as_str().unwrap().to_string());
    let me = c
        .ok(
            "{ me { memberships { role workspace { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(me["me"]["memberships"][0]["role"], "OWNER");
    let ws = me["me"]["memberships"][0]["workspace"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let definition = json!({
        "nodes": [
            {"id": "greet", "type": "set", "config": {"value": {"greeting": "hello"}}},
            {"id": "merge", "type": "set", "config": {"value": {"from": "flowfleet"}, "merge": true}}
        ],
        "edges": [{"source": "greet", "target": "merge"}],
        "triggers": [{"kind": "MANUAL"}]
    });
    let created = c
        .ok(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id status } }",
            json!({"i": {"workspaceId": ws, "name": "Greeter", "definition": definition}}),
        )
        .await;
    assert_eq!(created["createWorkflow"]["status"], "DRAFT");
    let wf = created["createWorkflow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let published = c
        .ok(
            "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
            json!({"id": wf}),
        )
        .await;
    assert_eq!(published["publishWorkflow"]["version"], 1);
    let started = c
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id status } }",
            json!({"i": {"workflowId": wf, "input": {"n": 1}, "idempotencyKey": "first"}}),
        )
        .await;
    let exec_id = started["startExecution"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The same idempotency key returns the same execution.
    let again = c
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
            json!({"i": {"workflowId": wf, "idempotencyKey": "first"}}),
        )
        .await;
    assert_eq!(again["startExecution"]["id"], exec_id.as_str());
    // Wait for the worker (execution), the artifact (storage), and the outcome
    // event's consumers (analytics, notification).
    eventually(60, || {
        let c = &c;
        async move {
            let (_, body) = c.raw(CROSS_SIX, json!({})).await;
            let wf = &body["data"]["me"]["memberships"][0]["workspace"]["workflows"]["nodes"][0];
            let ready = wf["lastExecution"]["status"] == "SUCCEEDED"
                && wf["stats"]["runs"] == 1
                && body["data"]["me"]["unreadNotificationCount"] == 1;
            ready.then_some(())
        }
    })
    .await;
    (c, wf)
}

/// Checks the cross-six response in full.
pub fn assert_cross_six(data: &Value, wf: &str) {
    let me = &data["me"];
    assert_eq!(me["name"], "Ada");
    assert_eq!(me["unreadNotificationCount"], 1);
    assert_eq!(
        me["notifications"]["nodes"][0]["subject"],
        "Workflow \"Greeter\" succeeded"
    );
    let ws = &me["memberships"][0]["workspace"];
    assert_eq!(ws["name"], "Ada's workspace");
    assert_eq!(ws["workflows"]["totalCount"], 1);
    let w = &ws["workflows"]["nodes"][0];
    assert_eq!(w["id"], wf);
    assert_eq!(w["status"], "ACTIVE");
    assert_eq!(w["version"], 1);
    let last = &w["lastExecution"];
    assert_eq!(last["status"], "SUCCEEDED");
    assert_eq!(
        last["output"],
        json!({"greeting": "hello", "from": "flowfleet"})
    );
    assert_eq!(last["progress"], json!({"done": 2, "total": 2}));
    let artifact = &last["artifacts"][0];
    assert_eq!(artifact["name"], "output.json");
    assert_eq!(artifact["contentType"], "application/json");
    assert_eq!(artifact["sha256"].as_str().unwrap().len(), 64);
    assert!(artifact["downloadUrl"]
        .as_str()
        .unwrap()
        .contains("signature="));
    assert_eq!(w["stats"]["runs"], 1);
    assert_eq!(w["stats"]["succeeded"], 1);
    assert_eq!(w["stats"]["successRate"], 1.0);
}

/// `GET /.well-known/jwks.json` beside the GraphQL `url` answers, and lists the key (`kid`)
/// that signed `token`.
pub async fn assert_jwks_lists_the_signing_key(url: &str, token: &str) {
    use base64::Engine as _;
    let response = reqwest::get(url.replace("/graphql", "/.well-known/jwks.json"))
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let jwks: Value = response.json().await.unwrap();
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("a JWT header is base64url"),
    )
    .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "{jwks} lacks the key {}",
        header["kid"]
    );
}

/// Credentials forged from a real access `token` and the public keys at `url`'s JWKS:
/// what an attacker without the private key can make. (Expired, not-yet-valid and
/// wrong-issuer or wrong-audience tokens need the private key; the verifier's own test
/// covers them, with a key of its own.)
pub async fn forged_credentials(url: &str, token: &str) -> Vec<(&'static str, String)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let jwks: Value = reqwest::get(url.replace("/graphql", "/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let (header, payload, signature) = (parts[0], parts[1], parts[2]);
    let decode =
        |s: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap() };
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let mut header_json = decode(header);
    let kid = header_json["kid"].clone();
    let mut claims = decode(payload);
    claims["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let public_x = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the signing key is published")["x"]
        .as_str()
        .unwrap()
        .to_string();
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = kid.as_str().map(str::to_string);
        jsonwebtoken::encode(
            &h,
            &decode(payload),
            &jsonwebtoken::EncodingKey::from_secret(&URL_SAFE_NO_PAD.decode(&public_x).unwrap()),
        )
        .unwrap()
    };
    let mut flipped: Vec<char> = signature.chars().collect();
    flipped[5] = if flipped[5] == 'A' { 'B' } else { 'A' };
    let flipped: String = flipped.into_iter().collect();
    header_json["kid"] = json!("not-a-published-key");
    vec![
        (
            "alg none",
            format!(
                "{}.{payload}.",
                encode(&json!({"alg": "none", "typ": "JWT", "kid": kid}))
            ),
        ),
        ("HS256 signed with the public key", hs256),
        (
            "tampered payload",
            format!("{header}.{}.{signature}", encode(&claims)),
        ),
        (
            "tampered signature",
            format!("{header}.{payload}.{flipped}"),
        ),
        ("signature stripped", format!("{header}.{payload}.")),
        (
            "unknown kid",
            format!("{}.{payload}.{signature}", encode(&header_json)),
        ),
        ("garbage", "x.y.z".to_string()),
        (
            "an API key that does not exist",
            format!("ffk_{}", "A".repeat(43)),
        ),
    ]
}

/// Every forged credential is refused at the gateway's edge: `401`, `UNAUTHENTICATED`, no
/// data.
pub async fn assert_forgeries_refused_at_the_edge(url: &str, token: &str) {
    for (attack, credential) in forged_credentials(url, token).await {
        let mut client = Client::new(url);
        client.token = Some(credential);
        let (status, body) = client.raw("{ me { id email } }", json!({})).await;
        assert_eq!(status, 401, "{attack}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{attack}: {body}"
        );
        assert!(body.get("data").is_none(), "{attack}: {body}");
    }
}

/// An API key through the gateway: it reads its workspace's workflows as a VIEWER, cannot
/// write, cannot reach account operations, and stops working everywhere (edge and
/// subgraphs, across processes) the moment it is revoked.
pub async fn assert_api_key_lifecycle(url: &str, owner: &Client, workflow: &str) {
    let me = owner
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await;
    let ws = me["me"]["memberships"][0]["workspace"]["id"].clone();
    let created = owner
        .ok(
            "mutation($w: ID!) { createApiKey(workspaceId: $w, name: \"reporting\", role: VIEWER) { key apiKey { id } } }",
            json!({"w": ws}),
        )
        .await;
    let key = created["createApiKey"]["key"].as_str().unwrap().to_string();
    let id = created["createApiKey"]["apiKey"]["id"].clone();
    let mut integration = Client::new(url);
    integration.token = Some(key);
    let read = integration
        .ok(
            "query($id: ID!) { workflow(id: $id) { id name } }",
            json!({"id": workflow}),
        )
        .await;
    assert_eq!(read["workflow"]["id"], workflow, "{read}");
    let (_, write) = integration
        .raw(
            "mutation($w: ID!) { createWorkflow(input: {workspaceId: $w, name: \"nope\", definition: {nodes: [], edges: [], triggers: []}}) { id } }",
            json!({"w": ws}),
        )
        .await;
    assert_eq!(
        write["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{write}"
    );
    let (_, account) = integration.raw("{ me { id } }", json!({})).await;
    assert_eq!(
        account["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{account}"
    );

    owner
        .ok(
            "mutation($i: ID!) { revokeApiKey(id: $i) { id } }",
            json!({"i": id}),
        )
        .await;
    let (status, refused) = integration
        .raw(
            "query($id: ID!) { workflow(id: $id) { id } }",
            json!({"id": workflow}),
        )
        .await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
}
