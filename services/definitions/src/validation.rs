//! Validation of a workflow definition against the node catalog.
//!
//! Every problem is located (which node or edge, which field) and explained.
//! Errors block publishing; warnings are reported but never block. Saving a
//! draft reports both and blocks on neither, so an editor can save work in
//! progress. The checks read only the definition, the catalog and the
//! workspace's credentials (id to kind), so the workflow service, its gRPC
//! `ValidateDefinition` and the tests all run the same code.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::catalog::{NodeType, CATALOG};
use crate::definition::{Definition, Trigger, FOREACH, LOOP_ITEM, MAX_WEBHOOK_TIMEOUT_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// Blocks publishing.
    Error,
    /// Worth a look; never blocks.
    Warning,
}

/// What kind of problem, stable for clients to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProblemCode {
    NoNodes,
    TooLarge,
    NoTrigger,
    InvalidNodeId,
    DuplicateNodeId,
    UnknownNodeType,
    InvalidConfig,
    MissingNode,
    MissingHandle,
    Cycle,
    Unreachable,
    InvalidCron,
    InvalidTimezone,
    InvalidWebhookPath,
    DuplicateWebhookPath,
    InvalidEvent,
    InvalidSetting,
    MissingCredential,
    WrongCredentialKind,
    DisconnectedNode,
    UnusedHandle,
    DuplicateEdge,
    DuplicateTrigger,
    InvalidLoop,
}

/// One problem, located precisely.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub severity: Severity,
    pub code: ProblemCode,
    /// Where, as a path into the definition: `nodes[2].config.url`,
    /// `edges[0].sourceHandle`, `triggers[1].timezone`.
    pub path: String,
    /// The node concerned, if any.
    pub node_id: Option<String>,
    /// The edge concerned (its index in `edges`), if any.
    pub edge_index: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Most nodes and edges one definition may hold.
pub const MAX_NODES: usize = 500;
pub const MAX_EDGES: usize = 2000;
/// Longest step timeout a workflow may set (one day).
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;
pub const MAX_RETRIES: u32 = 10;

/// The workspace's credentials, as validation sees them: id to kind.
pub type CredentialKinds = BTreeMap<String, String>;

/// Validates against the platform's catalog.
pub fn validate(def: &Definition, credentials: &CredentialKinds) -> Vec<Problem> {
    validate_with(CATALOG, def, credentials)
}

/// Only the problems that block publishing.
pub fn errors(problems: &[Problem]) -> impl Iterator<Item = &Problem> {
    problems.iter().filter(|p| p.severity == Severity::Error)
}

/// Validates against a given catalog (the platform's, or a test's).
pub fn validate_with(
    catalog: &[NodeType],
    def: &Definition,
    credentials: &CredentialKinds,
) -> Vec<Problem> {
    let mut v = Validation {
        catalog,
        def,
        out: Vec::new(),
    };
    v.size();
    v.triggers(credentials);
    v.settings();
    v.nodes(credentials);
    v.edges();
    v.graph();
    v.loops();
    v.out
}

struct Validation<'a> {
    catalog: &'a [NodeType],
    def: &'a Definition,
    out: Vec<Problem>,
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<'a> Validation<'a> {
    fn push(
        &mut self,
        severity: Severity,
        code: ProblemCode,
        path: String,
        node: Option<&str>,
        edge: Option<usize>,
        message: String,
    ) {
        self.out.push(Problem {
            severity,
            code,
            path,
            node_id: node.map(str::to_string),
            edge_index: edge,
            message,
        });
    }

    fn error(&mut self, code: ProblemCode, path: impl Into<String>, message: impl Into<String>) {
        self.push(
            Severity::Error,
            code,
            path.into(),
            None,
            None,
            message.into(),
        );
    }

    fn node_type(&self, name: &str) -> Option<&'a NodeType> {
        self.catalog.iter().find(|t| t.name == name)
    }

    fn size(&mut self) {
        let def = self.def;
        if def.nodes.is_empty() {
            self.error(
                ProblemCode::NoNodes,
                "nodes",
                "a workflow needs at least one node",
            );
        }
        if def.nodes.len() > MAX_NODES {
            self.error(
                ProblemCode::TooLarge,
                "nodes",
                format!(
                    "a workflow may have at most {MAX_NODES} nodes; this one has {}",
                    def.nodes.len()
                ),
            );
        }
        if def.edges.len() > MAX_EDGES {
            self.error(
                ProblemCode::TooLarge,
                "edges",
                format!(
                    "a workflow may have at most {MAX_EDGES} edges; this one has {}",
                    def.edges.len()
                ),
            );
        }
    }

    fn triggers(&mut self, credentials: &CredentialKinds) {
        let def = self.def;
        if def.triggers.is_empty() {
            self.error(
                ProblemCode::NoTrigger,
                "triggers",
                "a workflow needs at least one trigger, e.g. {\"kind\": \"MANUAL\"}",
            );
        }
        let mut webhook_paths = BTreeSet::new();
        let mut seen = Vec::new();
        for (i, t) in def.triggers.iter().enumerate() {
            // Two webhooks with one path are an error, reported below.
            if seen.contains(&t) && !matches!(t, Trigger::Webhook { .. }) {
                self.push(
                    Severity::Warning,
                    ProblemCode::DuplicateTrigger,
                    format!("triggers[{i}]"),
                    None,
                    None,
                    "the same trigger is listed twice; it starts the workflow once".into(),
                );
            }
            seen.push(t);
            match t {
                Trigger::Manual => {}
                Trigger::Cron {
                    expression,
                    timezone,
                } => {
                    if let Err(e) = parse_cron(expression) {
                        self.error(
                            ProblemCode::InvalidCron,
                            format!("triggers[{i}].expression"),
                            format!("`{expression}` is not a valid cron expression ({e}); use five fields (minute hour day month weekday), e.g. `0 9 * * 1-5`"),
                        );
                    }
                    if chrono_tz::Tz::from_str(timezone).is_err() {
                        self.error(
                            ProblemCode::InvalidTimezone,
                            format!("triggers[{i}].timezone"),
                            format!("`{timezone}` is not an IANA time zone; use a name like `Europe/Paris` or `UTC`"),
                        );
                    }
                }
                Trigger::Webhook {
                    path,
                    secret_credential_id,
                    timeout_ms,
                    ..
                } => {
                    self.webhook_secret(i, secret_credential_id.as_deref(), credentials);
                    if timeout_ms.is_some_and(|t| t == 0 || t > MAX_WEBHOOK_TIMEOUT_MS) {
                        self.error(
                            ProblemCode::InvalidSetting,
                            format!("triggers[{i}].timeoutMs"),
                            format!(
                                "a webhook waits 1 to {MAX_WEBHOOK_TIMEOUT_MS} ms for its reply"
                            ),
                        );
                    }
                    if !path.is_empty() && !valid_id(path) {
                        self.error(
                            ProblemCode::InvalidWebhookPath,
                            format!("triggers[{i}].path"),
                            format!("webhook path `{path}` must be 1 to 64 letters, digits, `_` or `-` (or empty)"),
                        );
                    } else if !webhook_paths.insert(path.as_str()) {
                        self.error(
                            ProblemCode::DuplicateWebhookPath,
                            format!("triggers[{i}].path"),
                            format!(
                                "two webhook triggers use the path `{path}`; give each its own"
                            ),
                        );
                    }
                }
                Trigger::Event { event } => {
                    if let Err(e) = crate::events::TriggerEvent::parse(event) {
                        self.error(
                            ProblemCode::InvalidEvent,
                            format!("triggers[{i}].event"),
                            format!(
                                "{e}; an EVENT trigger names one of {} or a custom event such as `order.created`",
                                crate::events::PLATFORM_EVENTS.map(|p| format!("`{p}`")).join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    /// A webhook must name the SECRET credential its callers prove they hold.
    fn webhook_secret(&mut self, i: usize, id: Option<&str>, credentials: &CredentialKinds) {
        let path = format!("triggers[{i}].secretCredentialId");
        match id.map(|id| (id, credentials.get(id))) {
            None => self.error(
                ProblemCode::MissingCredential,
                path,
                "a webhook trigger needs `secretCredentialId`: a SECRET credential whose value callers send as a token or use to sign the body",
            ),
            Some((id, None)) => self.error(
                ProblemCode::MissingCredential,
                path,
                format!("no credential `{id}` in this workspace; create a SECRET credential or pick another"),
            ),
            Some((id, Some(kind))) if kind != "SECRET" => self.error(
                ProblemCode::WrongCredentialKind,
                path,
                format!("credential `{id}` is {kind}; a webhook secret must be a SECRET credential"),
            ),
            Some(_) => {}
        }
    }

    /// Each `foreach` body is entered only through the loop's `item` branch and
    /// left only at its end (what follows the loop hangs off `done`), and holds
    /// no other loop.
    fn loops(&mut self) {
        let def = self.def;
        for (foreach, body) in def.loop_bodies() {
            let inside = |id: &str| body.iter().any(|b| b == id);
            for (i, e) in def.edges.iter().enumerate() {
                let from_loop =
                    e.source == foreach && e.source_handle.as_deref() == Some(LOOP_ITEM);
                if inside(&e.target) && !inside(&e.source) && !from_loop {
                    self.push(
                        Severity::Error,
                        ProblemCode::InvalidLoop,
                        format!("edges[{i}]"),
                        Some(&e.target),
                        Some(i),
                        format!("node `{}` is in the body of loop `{foreach}`, so it can only be reached from the loop's `item` branch or its body; this edge comes from `{}`", e.target, e.source),
                    );
                }
                if inside(&e.source) && !inside(&e.target) {
                    self.push(
                        Severity::Error,
                        ProblemCode::InvalidLoop,
                        format!("edges[{i}]"),
                        Some(&e.source),
                        Some(i),
                        format!("node `{}` is in the body of loop `{foreach}` and this edge leaves the body; connect what follows the loop to its `done` branch", e.source),
                    );
                }
            }
            for id in &body {
                if def.node(id).is_some_and(|n| n.node_type == FOREACH) {
                    let position = def.nodes.iter().position(|n| &n.id == id).unwrap_or(0);
                    self.push(
                        Severity::Error,
                        ProblemCode::InvalidLoop,
                        format!("nodes[{position}]"),
                        Some(id),
                        None,
                        format!("loop `{id}` is inside the body of loop `{foreach}`; loops do not nest: call a sub_workflow from the body instead"),
                    );
                }
            }
        }
    }

    fn settings(&mut self) {
        let s = &self.def.settings;
        if s.priority > 9 {
            self.error(
                ProblemCode::InvalidSetting,
                "settings.priority",
                format!("priority must be 0 to 9, got {}", s.priority),
            );
        }
        if s.timeout_ms == 0 || s.timeout_ms > MAX_TIMEOUT_MS {
            self.error(
                ProblemCode::InvalidSetting,
                "settings.timeoutMs",
                format!(
                    "timeoutMs must be 1 to {MAX_TIMEOUT_MS} (one day), got {}",
                    s.timeout_ms
                ),
            );
        }
        if s.max_retries > MAX_RETRIES {
            self.error(
                ProblemCode::InvalidSetting,
                "settings.maxRetries",
                format!(
                    "maxRetries must be 0 to {MAX_RETRIES}, got {}",
                    s.max_retries
                ),
            );
        }
    }

    fn nodes(&mut self, credentials: &CredentialKinds) {
        let def = self.def;
        let mut seen = BTreeSet::new();
        for (i, n) in def.nodes.iter().enumerate() {
            let node = Some(n.id.as_str());
            if !valid_id(&n.id) {
                self.push(
                    Severity::Error,
                    ProblemCode::InvalidNodeId,
                    format!("nodes[{i}].id"),
                    node,
                    None,
                    format!(
                        "node id `{}` must be 1 to 64 letters, digits, `_` or `-`",
                        n.id
                    ),
                );
            } else if !seen.insert(n.id.as_str()) {
                self.push(
                    Severity::Error,
                    ProblemCode::DuplicateNodeId,
                    format!("nodes[{i}].id"),
                    node,
                    None,
                    format!("node id `{}` is used by an earlier node too", n.id),
                );
            }
            let Some(t) = self.node_type(&n.node_type) else {
                let known: Vec<&str> = self.catalog.iter().map(|t| t.name).collect();
                self.push(
                    Severity::Error,
                    ProblemCode::UnknownNodeType,
                    format!("nodes[{i}].type"),
                    node,
                    None,
                    format!(
                        "unknown node type `{}`; known types: {}",
                        n.node_type,
                        known.join(", ")
                    ),
                );
                continue;
            };
            self.config(i, n.id.as_str(), t, &n.config);
            for slot in t.credentials {
                let Some(value) = n.config.pointer(slot.pointer) else {
                    continue;
                };
                let path = format!("nodes[{i}].config{}", pointer_path(slot.pointer));
                let Some(id) = value.as_str() else {
                    continue; // the schema check reports the type
                };
                match credentials.get(id) {
                    None => self.push(
                        Severity::Error,
                        ProblemCode::MissingCredential,
                        path,
                        node,
                        None,
                        format!(
                            "no credential `{id}` in this workspace; create it or pick another"
                        ),
                    ),
                    Some(kind) if !slot.kinds.contains(&kind.as_str()) => self.push(
                        Severity::Error,
                        ProblemCode::WrongCredentialKind,
                        path,
                        node,
                        None,
                        format!(
                            "credential `{id}` is {kind}; a `{}` node needs one of {}",
                            t.name,
                            slot.kinds.join(", ")
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
    }

    /// Checks the config against its type's JSON Schema, one problem per
    /// failing value, located by the value's path.
    fn config(&mut self, i: usize, node: &str, t: &NodeType, config: &Value) {
        let validator = match jsonschema::validator_for(&t.schema()) {
            Ok(v) => v,
            Err(e) => {
                // The catalog's own unit test keeps this from happening.
                tracing::error!(node_type = t.name, error = %e, "catalog schema does not compile");
                return;
            }
        };
        for e in validator.iter_errors(config) {
            let at = e.instance_path().to_string();
            self.push(
                Severity::Error,
                ProblemCode::InvalidConfig,
                format!("nodes[{i}].config{}", pointer_path(&at)),
                Some(node),
                None,
                format!("config of `{}` node: {e}", t.name),
            );
        }
    }

    fn edges(&mut self) {
        let def = self.def;
        let index = def.index();
        let mut seen = BTreeSet::new();
        for (i, e) in def.edges.iter().enumerate() {
            let edge = Some(i);
            for (end, id) in [("source", &e.source), ("target", &e.target)] {
                if !index.contains_key(id.as_str()) {
                    self.push(
                        Severity::Error,
                        ProblemCode::MissingNode,
                        format!("edges[{i}].{end}"),
                        None,
                        edge,
                        format!("edge {end} `{id}` is not a node of this workflow"),
                    );
                }
            }
            if !seen.insert((&e.source, &e.source_handle, &e.target)) {
                self.push(
                    Severity::Warning,
                    ProblemCode::DuplicateEdge,
                    format!("edges[{i}]"),
                    None,
                    edge,
                    "the same edge is drawn twice".into(),
                );
            }
            let Some(source) = index.get(e.source.as_str()).map(|&s| &def.nodes[s]) else {
                continue;
            };
            let Some(t) = self.node_type(&source.node_type) else {
                continue;
            };
            let node = Some(source.id.as_str());
            match (t.handles_for(&source.config), &e.source_handle) {
                (None, None) => {}
                (None, Some(h)) => self.push(
                    Severity::Error,
                    ProblemCode::MissingHandle,
                    format!("edges[{i}].sourceHandle"),
                    node,
                    edge,
                    format!("a `{}` node has a single output and no branch `{h}`; remove `sourceHandle`", t.name),
                ),
                (Some(handles), None) => self.push(
                    Severity::Error,
                    ProblemCode::MissingHandle,
                    format!("edges[{i}].sourceHandle"),
                    node,
                    edge,
                    format!("an edge from a `{}` node must name its branch: one of {}", t.name, handles.join(", ")),
                ),
                (Some(handles), Some(h)) if !handles.contains(h) => self.push(
                    Severity::Error,
                    ProblemCode::MissingHandle,
                    format!("edges[{i}].sourceHandle"),
                    node,
                    edge,
                    format!("node `{}` has no branch `{h}`; its branches are {}", source.id, handles.join(", ")),
                ),
                (Some(_), Some(_)) => {}
            }
        }
        // Branches nothing is connected to: their work is dropped.
        for n in &def.nodes {
            let Some(handles) = self
                .node_type(&n.node_type)
                .and_then(|t| t.handles_for(&n.config))
            else {
                continue;
            };
            let position = index[n.id.as_str()];
            for h in handles {
                let used = def
                    .edges
                    .iter()
                    .any(|e| e.source == n.id && e.source_handle.as_deref() == Some(h.as_str()));
                if !used {
                    self.push(
                        Severity::Warning,
                        ProblemCode::UnusedHandle,
                        format!("nodes[{position}]"),
                        Some(&n.id),
                        None,
                        format!("branch `{h}` of node `{}` leads nowhere; executions taking it end there", n.id),
                    );
                }
            }
        }
    }

    /// Cycles, nodes no entry reaches, and nodes without any edge.
    fn graph(&mut self) {
        let def = self.def;
        let index = def.index();
        for (i, e) in def.edges.iter().enumerate() {
            if e.source == e.target {
                self.push(
                    Severity::Error,
                    ProblemCode::Cycle,
                    format!("edges[{i}]"),
                    Some(&e.source),
                    Some(i),
                    format!(
                        "edge connects node `{}` to itself; workflows must be acyclic",
                        e.source
                    ),
                );
            }
        }
        let next = def.successors();
        let (_, left) = def.kahn();
        if !left.is_empty() {
            let on_cycle = on_cycles(&next, &left);
            let names: Vec<&str> = on_cycle.iter().map(|&i| def.nodes[i].id.as_str()).collect();
            if names.len() > 1 || def.edges.iter().all(|e| e.source != e.target) {
                let first = names.first().copied();
                self.push(
                    Severity::Error,
                    ProblemCode::Cycle,
                    "edges".into(),
                    first,
                    None,
                    format!(
                        "nodes {} form a cycle; workflows must be acyclic",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        // Entries are nodes no edge leads into; every other node must be
        // reachable from one of them.
        let mut entered = vec![false; def.nodes.len()];
        for &t in next.iter().flatten() {
            entered[t] = true;
        }
        let mut reached = vec![false; def.nodes.len()];
        let mut stack: Vec<usize> = (0..def.nodes.len()).filter(|&i| !entered[i]).collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut reached[i], true) {
                stack.extend(&next[i]);
            }
        }
        for (i, n) in def.nodes.iter().enumerate() {
            if index.get(n.id.as_str()) != Some(&i) {
                continue; // a duplicate id, already reported
            }
            if !reached[i] {
                self.push(
                    Severity::Error,
                    ProblemCode::Unreachable,
                    format!("nodes[{i}]"),
                    Some(&n.id),
                    None,
                    format!(
                        "node `{}` cannot be reached: every path into it starts on a cycle",
                        n.id
                    ),
                );
            } else if def.nodes.len() > 1
                && !def
                    .edges
                    .iter()
                    .any(|e| e.source == n.id || e.target == n.id)
            {
                self.push(
                    Severity::Warning,
                    ProblemCode::DisconnectedNode,
                    format!("nodes[{i}]"),
                    Some(&n.id),
                    None,
                    format!(
                        "node `{}` has no edges; it runs on its own with the execution input",
                        n.id
                    ),
                );
            }
        }
    }
}

/// Of the nodes Kahn's algorithm left, those on a cycle: peel off, in linear
/// time, the ones with no edge to another left node (they only hang behind a
/// cycle), until none is left to peel.
fn on_cycles(next: &[Vec<usize>], left: &[usize]) -> Vec<usize> {
    let mut kept = vec![false; next.len()];
    for &i in left {
        kept[i] = true;
    }
    let mut previous: Vec<Vec<usize>> = vec![Vec::new(); next.len()];
    let mut outdegree = vec![0usize; next.len()];
    for &i in left {
        for &t in next[i].iter().filter(|&&t| kept[t]) {
            previous[t].push(i);
            outdegree[i] += 1;
        }
    }
    let mut dead: Vec<usize> = left
        .iter()
        .copied()
        .filter(|&i| outdegree[i] == 0)
        .collect();
    while let Some(t) = dead.pop() {
        kept[t] = false;
        for &p in &previous[t] {
            outdegree[p] -= 1;
            if outdegree[p] == 0 {
                dead.push(p);
            }
        }
    }
    (0..next.len()).filter(|&i| kept[i]).collect()
}

/// `/a/0/b` as `.a[0].b`, to extend a `nodes[i].config` path.
fn pointer_path(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|seg| {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            if seg.parse::<usize>().is_ok() {
                format!("[{seg}]")
            } else {
                format!(".{seg}")
            }
        })
        .collect()
}

/// Parses a cron expression the way schedulers will: five fields, or six with
/// seconds first.
pub fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    let fields = expression.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!("it has {fields} fields"));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
