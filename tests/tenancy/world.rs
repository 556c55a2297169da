//! Who calls, what exists in the workspace under test, and what each caller should get.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::support::eventually;
use crate::support::in_process::{Fleet, Person};

/// A person's standing in the workspace under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// A member of another workspace only.
    Outsider,
    Viewer,
    Editor,
    Admin,
    Owner,
}

/// How a call is made: signed in, or with an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Caller {
    /// A user's session (access token), as an outsider or a member of each role.
    Session(Who),
    /// An API key of the workspace with this role, made by its owner (who could give it
    /// any role: the key's role is what caps it).
    Key(Who),
    /// An OWNER key of another workspace of the same owner: it must get exactly what an
    /// outsider gets, though the person behind it owns the workspace under test.
    ForeignKey,
}

pub const CALLERS: [Caller; 10] = [
    Caller::Session(Who::Outsider),
    Caller::Session(Who::Viewer),
    Caller::Session(Who::Editor),
    Caller::Session(Who::Admin),
    Caller::Session(Who::Owner),
    Caller::Key(Who::Viewer),
    Caller::Key(Who::Editor),
    Caller::Key(Who::Admin),
    Caller::Key(Who::Owner),
    Caller::ForeignKey,
];

pub const FORBIDDEN: &str = "FORBIDDEN";
pub const NOT_FOUND: &str = "NOT_FOUND";

impl Caller {
    /// What the caller is in the workspace under test: a key of another workspace is an
    /// outsider there.
    pub fn standing(self) -> Who {
        match self {
            Caller::Session(who) | Caller::Key(who) => who,
            Caller::ForeignKey => Who::Outsider,
        }
    }

    pub fn is_key(self) -> bool {
        !matches!(self, Caller::Session(_))
    }

    /// A name for things the caller creates (names allow letters, digits and dashes).
    pub fn slug(self) -> String {
        match self {
            Caller::Session(who) => format!("{who:?}").to_lowercase(),
            Caller::Key(who) => format!("key-{who:?}").to_lowercase(),
            Caller::ForeignKey => "foreign-key".into(),
        }
    }
}

/// The expectation for an operation in the workspace that needs `min`: roles below it
/// get `FORBIDDEN`, a caller without access to the workspace gets `outsider`.
pub fn needs(min: Who, caller: Caller, outsider: &str) -> Option<String> {
    match caller.standing() {
        Who::Outsider => Some(outsider.to_string()),
        w if w < min => Some(FORBIDDEN.to_string()),
        _ => None,
    }
}

/// The expectation for what concerns a person's account (not a workspace): API keys are
/// refused; a session gets `session`'s answer.
pub fn account(caller: Caller, session: impl FnOnce(Who) -> Option<String>) -> Option<String> {
    match caller {
        Caller::Session(who) => session(who),
        _ => Some(FORBIDDEN.to_string()),
    }
}

/// Only the person themself (here: the owner), in a session.
pub fn self_only(caller: Caller, denied: &str) -> Option<String> {
    account(caller, |who| {
        (who != Who::Owner).then(|| denied.to_string())
    })
}

/// What exists in the workspace under test.
pub struct World {
    /// The people, by standing.
    pub people: HashMap<Who, Person>,
    /// Each caller as a client: sessions are the people's; keys act as the owner.
    pub callers: HashMap<Caller, Person>,
    /// A VIEWER whose role the matrix changes and who is removed and re-invited.
    pub subject: Person,
    pub workspace: String,
    pub workflow: String,
    /// A credential of the workspace (its value is for services only).
    pub credential: String,
    pub execution: String,
    pub file: String,
    pub notification: String,
    /// Where the fleet takes uploads (`PUT /files`).
    pub files_url: String,
}

impl World {
    pub fn owner(&self) -> &Person {
        &self.people[&Who::Owner]
    }

    /// The bearer credential a caller presents: an access token or an API key.
    pub fn credential_of(&self, caller: Caller) -> String {
        self.callers[&caller].token().to_string()
    }
}

pub async fn invite(owner: &Person, workspace: &str, person: &Person, email: &str, role: &str) {
    let invited = owner
        .client
        .ok(
            "mutation($w: ID!, $e: String!, $r: WorkspaceRole!) { inviteMember(workspaceId: $w, email: $e, role: $r) { token } }",
            json!({"w": workspace, "e": email, "r": role}),
        )
        .await;
    person
        .client
        .ok(
            "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
            json!({"t": invited["inviteMember"]["token"]}),
        )
        .await;
}

pub fn email_of(who: Who) -> String {
    format!("{who:?}@example.com").to_lowercase()
}

async fn api_key(owner: &Person, workspace: &str, role: Who, url: &str) -> Person {
    let created = owner
        .client
        .ok(
            "mutation($w: ID!, $n: String!, $r: WorkspaceRole!) { createApiKey(workspaceId: $w, name: $n, role: $r) { key } }",
            json!({"w": workspace, "n": format!("matrix {role:?}"), "r": format!("{role:?}").to_uppercase()}),
        )
        .await;
    let mut client = crate::support::Client::new(url);
    client.token = Some(created["createApiKey"]["key"].as_str().unwrap().to_string());
    Person {
        id: owner.id.clone(),
        client,
    }
}

pub async fn world(fleet: &Fleet) -> World {
    let mut people = HashMap::new();
    for who in [
        Who::Outsider,
        Who::Viewer,
        Who::Editor,
        Who::Admin,
        Who::Owner,
    ] {
        people.insert(who, fleet.sign_up(&email_of(who)).await);
    }
    let subject = fleet.sign_up("subject@example.com").await;
    let owner = &people[&Who::Owner];
    let me = owner
        .client
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await;
    let workspace = me["me"]["memberships"][0]["workspace"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (who, role) in [
        (Who::Viewer, "VIEWER"),
        (Who::Editor, "EDITOR"),
        (Who::Admin, "ADMIN"),
    ] {
        invite(owner, &workspace, &people[&who], &email_of(who), role).await;
    }
    invite(owner, &workspace, &subject, "subject@example.com", "VIEWER").await;

    // The callers: each person's session, the owner's keys of each role, and an OWNER key
    // of a second workspace of the owner's.
    let mut callers = HashMap::new();
    for caller in CALLERS {
        let person = match caller {
            Caller::Session(who) => {
                let p = &people[&who];
                let mut client = crate::support::Client::new(&fleet.url);
                client.token = p.client.token.clone();
                Person {
                    id: p.id.clone(),
                    client,
                }
            }
            Caller::Key(role) => api_key(owner, &workspace, role, &fleet.url).await,
            Caller::ForeignKey => {
                let second = owner
                    .client
                    .ok(
                        "mutation { createWorkspace(name: \"second\") { id } }",
                        json!({}),
                    )
                    .await;
                let second = second["createWorkspace"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                api_key(owner, &second, Who::Owner, &fleet.url).await
            }
        };
        callers.insert(caller, person);
    }

    let workflow = create_workflow(owner, &workspace).await;
    let created = owner
        .client
        .ok(
            "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
            json!({"i": {"workspaceId": workspace, "name": "matrix", "kind": "HTTP_BEARER", "value": {"token": "t0ken"}}}),
        )
        .await;
    let credential = created["createCredential"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    owner
        .client
        .ok(
            "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
            json!({"id": workflow}),
        )
        .await;
    let started = owner
        .client
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
            json!({"i": {"workflowId": workflow}}),
        )
        .await;
    let execution = started["startExecution"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The run's artifact (storage), the owner's notification (from its outcome event) and
    // the workflow's statistics (analytics, from the same event).
    let (file, notification) = eventually(60, || {
        let (owner, execution, workflow) = (&owner.client, &execution, &workflow);
        async move {
            let (_, body) = owner
                .raw(
                    "query($id: ID!, $w: ID!) { execution(id: $id) { status artifacts { id } } \
                     workflow(id: $w) { stats { runs } } \
                     me { notifications { nodes { id } } } }",
                    json!({"id": execution, "w": workflow}),
                )
                .await;
            if body["data"]["workflow"]["stats"]["runs"] != 1 {
                return None;
            }
            let file = body["data"]["execution"]["artifacts"][0]["id"].as_str()?;
            let notification = body["data"]["me"]["notifications"]["nodes"][0]["id"].as_str()?;
            Some((file.to_string(), notification.to_string()))
        }
    })
    .await;
    World {
        people,
        callers,
        subject,
        workspace,
        workflow,
        credential,
        execution,
        file,
        notification,
        files_url: fleet.url.replace("/graphql", "/files"),
    }
}

pub async fn create_workflow(person: &Person, workspace: &str) -> String {
    let created = person
        .client
        .ok(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"workspaceId": workspace, "name": "Matrix", "definition": {
                "nodes": [{"id": "a", "type": "set", "config": {"value": {"x": 1}}}],
                "edges": [], "triggers": [{"kind": "MANUAL"}]}}}),
        )
        .await;
    created["createWorkflow"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A call's outcome: `Ok` with the returned data, or the error code.
pub type Outcome = Result<Value, String>;

/// Whether an outcome is what was expected (`None`: success).
pub fn matches(outcome: &Outcome, expected: &Option<String>) -> bool {
    match (outcome, expected) {
        (Ok(_), None) => true,
        (Err(code), Some(want)) => code == want,
        _ => false,
    }
}
