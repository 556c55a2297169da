//! The node-type catalog: the one list of node types, shared by the workflow
//! service (which validates definitions against it and serves it to editors as
//! `nodeTypes`) and the execution engine (which implements every type listed
//! here).
//!
//! Why an enum and a table: [`NodeKind`] is what the engine matches on, without
//! a wildcard arm, so a kind added here does not compile until the engine runs
//! it; [`CATALOG`] describes each kind (config schema, inputs, output, branch
//! handles, credential slots) for validation and editors. A unit test checks the
//! two agree, so there is no second list to keep in sync.

use serde::Serialize;
use serde_json::Value;

/// Every node type the platform runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Set,
    Passthrough,
    Condition,
    Switch,
    Transform,
    HttpRequest,
    Foreach,
    Merge,
    Delay,
    SubWorkflow,
    WebhookResponse,
    Notify,
    StoreFile,
}

impl NodeKind {
    pub const ALL: &'static [NodeKind] = &[
        NodeKind::Set,
        NodeKind::Passthrough,
        NodeKind::Condition,
        NodeKind::Switch,
        NodeKind::Transform,
        NodeKind::HttpRequest,
        NodeKind::Foreach,
        NodeKind::Merge,
        NodeKind::Delay,
        NodeKind::SubWorkflow,
        NodeKind::WebhookResponse,
        NodeKind::Notify,
        NodeKind::StoreFile,
    ];

    /// The kind a definition's `type` names, if any.
    pub fn parse(name: &str) -> Option<NodeKind> {
        find(name).map(|t| t.kind)
    }

    pub fn spec(self) -> &'static NodeType {
        CATALOG
            .iter()
            .find(|t| t.kind == self)
            .expect("every NodeKind has a catalog entry (checked by a unit test)")
    }
}

/// How a node's output leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handles {
    /// One unnamed output: edges from the node carry no `sourceHandle`.
    Single,
    /// A fixed set of named branches; every edge names one.
    Fixed(&'static [&'static str]),
    /// Branches named by the config: the string at `field` of every element of
    /// the array at `list` (a JSON pointer), plus the `fallback` branch.
    FromConfig {
        list: &'static str,
        field: &'static str,
        fallback: &'static str,
    },
}

/// A config field holding a workspace credential's id, and the credential
/// kinds it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSlot {
    /// JSON pointer into the config, e.g. `/credentialId`.
    pub pointer: &'static str,
    pub kinds: &'static [&'static str],
}

#[derive(Debug, Clone)]
pub struct NodeType {
    pub kind: NodeKind,
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema (draft 2020-12) of the node's `config`.
    pub config_schema: &'static str,
    /// What the node receives.
    pub input: &'static str,
    /// What the node produces.
    pub output: &'static str,
    pub handles: Handles,
    pub credentials: &'static [CredentialSlot],
}

/// What a node receives, the same for every type today: the execution input
/// for a node without incoming edges, the source's output for one edge, and an
/// object keyed by source node id for several (a join, which waits for all).
const STANDARD_INPUT: &str = "The execution input when no edge leads here; the source node's output for one incoming edge; for several, an object keyed by source node id (the node waits for all of them).";

/// The comparison operators of `condition`, also named in its schema.
pub const OPERATORS: &[&str] = &[
    "equals",
    "notEquals",
    "greaterThan",
    "greaterOrEqual",
    "lessThan",
    "lessOrEqual",
    "contains",
    "exists",
];

pub const CATALOG: &[NodeType] = &[
    NodeType {
        kind: NodeKind::Set,
        name: "set",
        description: "Outputs `config.value`. With `config.merge: true` and an object input and value, outputs the input with the value's keys set.",
        config_schema: r#"{"type":"object","required":["value"],"properties":{"value":{"description":"The output, any JSON value."},"merge":{"type":"boolean","description":"Merge an object value into an object input instead of replacing it."}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "`value`, or the input merged with it.",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::Passthrough,
        name: "passthrough",
        description: "Outputs its input unchanged.",
        config_schema: r#"{"type":"object","additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "The input, unchanged.",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::Condition,
        name: "condition",
        description: "Compares the input's value at `field` (a JSON pointer; empty for the whole input) with `value` and continues on the `true` or the `false` branch. Nodes reached only through the other branch are skipped.",
        config_schema: r#"{"type":"object","required":["field","operator"],"properties":{"field":{"type":"string","pattern":"^(/.*)?$","description":"JSON pointer into the input, e.g. /order/total"},"operator":{"enum":["equals","notEquals","greaterThan","greaterOrEqual","lessThan","lessOrEqual","contains","exists"]},"value":{"description":"What to compare with; not used by `exists`."}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "The input, unchanged, on the chosen branch.",
        handles: Handles::Fixed(&["true", "false"]),
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::Switch,
        name: "switch",
        description: "Continues on the branch of the first case whose `equals` matches the input's value at `field` (a JSON pointer), else on `default`. Nodes reached only through other branches are skipped.",
        config_schema: r#"{"type":"object","required":["field","cases"],"properties":{"field":{"type":"string","pattern":"^(/.*)?$"},"cases":{"type":"array","minItems":1,"items":{"type":"object","required":["handle","equals"],"properties":{"handle":{"type":"string","pattern":"^[A-Za-z0-9_-]{1,64}$","not":{"const":"default"}},"equals":{}},"additionalProperties":false}}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "The input, unchanged, on the chosen branch.",
        handles: Handles::FromConfig {
            list: "/cases",
            field: "handle",
            fallback: "default",
        },
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::Transform,
        name: "transform",
        description: "Runs a jq program over the input (jaq: jq's language and standard library). One result is the output; several become an array; none is null.",
        config_schema: r#"{"type":"object","required":["expression"],"properties":{"expression":{"type":"string","minLength":1,"description":"A jq program, e.g. .items | map(.price) | add"}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "The program's result (an array for several results, null for none).",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::HttpRequest,
        name: "http_request",
        description: "Makes one HTTP request. `{{/pointer}}` in the URL is replaced by the input's value there. The body is `body`, or the input for POST, PUT and PATCH. Internal addresses (loopback, private, link-local, CGNAT, multicast, metadata, IPv6-mapped) are refused after DNS resolution and on every redirect unless listed in the fleet's `http_request.allow`. Statuses of 400 and above fail the step unless `failOnStatus` is false; 408, 429, 5xx and network errors are retried.",
        config_schema: r#"{"type":"object","required":["url"],"properties":{"method":{"enum":["GET","POST","PUT","PATCH","DELETE","HEAD"]},"url":{"type":"string","pattern":"^https?://","description":"May contain {{/pointer}} placeholders filled from the input."},"headers":{"type":"object","additionalProperties":{"type":"string"}},"query":{"type":"object","additionalProperties":{"type":"string"}},"body":{"description":"The JSON body; defaults to the input for POST, PUT and PATCH."},"credentialId":{"type":"string","description":"A workspace credential: HTTP_BASIC, HTTP_BEARER or HTTP_HEADER."},"failOnStatus":{"type":"boolean","description":"Fail the step on statuses of 400 and above (default true)."}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "{status, headers, body}: the body parsed as JSON when the response is JSON, else text.",
        handles: Handles::Single,
        credentials: &[CredentialSlot {
            pointer: "/credentialId",
            kinds: &["HTTP_BASIC", "HTTP_BEARER", "HTTP_HEADER"],
        }],
    },
    NodeType {
        kind: NodeKind::Foreach,
        name: "foreach",
        description: "Runs its body once per element of an array: the nodes reachable from its `item` branch, at most `concurrency` items at a time (default 10). Each body run gets one element as its input; the body's last node gives that item's result. When every item is done, the `done` branch continues with the results in item order (a join). Loops do not nest: call a sub_workflow from the body instead.",
        config_schema: r#"{"type":"object","properties":{"items":{"type":"string","pattern":"^(/.*)?$","description":"JSON pointer to the array in the input; empty (the default) for the whole input."},"concurrency":{"type":"integer","minimum":1,"maximum":1000,"description":"Items whose body runs at once (default 10)."}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "On `item`: one element per body run. On `done`: the array of the body's results, in item order (the element itself when the body is empty).",
        handles: Handles::Fixed(&["item", "done"]),
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::Merge,
        name: "merge",
        description: "Waits for every incoming branch (skipped ones excepted) and combines their outputs in edge order: `append` (default) concatenates them into one array (array outputs are spread), `object` merges object outputs key by key (later edges win), `keyed` gives an object keyed by source node id, `first` the first branch that ran.",
        config_schema: r#"{"type":"object","properties":{"mode":{"enum":["append","object","keyed","first"]}},"additionalProperties":false}"#,
        input: "An object keyed by source node id, one entry per incoming branch that ran (the node waits for all of them).",
        output: "The combined outputs.",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::Delay,
        name: "delay",
        description: "Waits, then outputs its input unchanged: `durationMs` after it is reached, or until the time at `until` (a JSON pointer to an RFC 3339 timestamp or epoch milliseconds in the input). The wait is recorded, so it survives restarts of every process, and holds no worker meanwhile. At most 30 days.",
        config_schema: r#"{"type":"object","properties":{"durationMs":{"type":"integer","minimum":0,"maximum":2592000000},"until":{"type":"string","pattern":"^/.*$","description":"JSON pointer to a timestamp in the input."}},"oneOf":[{"required":["durationMs"]},{"required":["until"]}],"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "The input, unchanged.",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::SubWorkflow,
        name: "sub_workflow",
        description: "Starts a published workflow of the same workspace as a child execution and waits for it, holding no worker meanwhile. The child's input is `input` when set, else this node's input; its output becomes this node's output, and its failure fails this node. Cancelling the parent cancels the child. Children nest at most 8 deep.",
        config_schema: r#"{"type":"object","required":["workflowId"],"properties":{"workflowId":{"type":"string","pattern":"^[0-9a-fA-F-]{36}$"},"version":{"type":"integer","minimum":1,"description":"A published version; the newest when absent."},"input":{"description":"The child's input; defaults to this node's input."}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "The child execution's output.",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::WebhookResponse,
        name: "webhook_response",
        description: "Answers the HTTP request that started the execution through a webhook trigger with `respond: WITH_NODE`: `status` (default 200), `headers`, and `body` (default: this node's input). The first webhook_response to run answers; the execution goes on either way.",
        config_schema: r#"{"type":"object","properties":{"status":{"type":"integer","minimum":200,"maximum":599},"headers":{"type":"object","additionalProperties":{"type":"string"}},"body":{"description":"The JSON body; defaults to the input."}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "{status, headers, body}: the reply.",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::Notify,
        name: "notify",
        description: "Sends a message through the notification service: to `members` (user ids) and every member holding one of `roles`, in their inbox (unless `inApp` is false) and through the e-mail channels among `channels`, and to the receivers of the webhook and SMS channels among `channels`, all of this workspace. `subject`, `body` and `html` are minijinja templates over `{input, execution: {id, workflowId}, workflow: {name}}`. Deliveries are retried by the notification service; the step does not wait for them. A retried step queues nothing twice.",
        config_schema: r#"{"type":"object","required":["subject"],"properties":{"members":{"type":"array","items":{"type":"string","pattern":"^[0-9a-fA-F-]{36}$"}},"roles":{"type":"array","items":{"enum":["OWNER","ADMIN","EDITOR","VIEWER"]}},"channels":{"type":"array","items":{"type":"string","pattern":"^[0-9a-fA-F-]{36}$"},"description":"Notification channel ids of the workspace."},"subject":{"type":"string","minLength":1,"maxLength":1000},"body":{"type":"string","maxLength":50000},"html":{"type":"string","maxLength":50000,"description":"E-mail's HTML part."},"inApp":{"type":"boolean","description":"Members also get an inbox notification (default true)."}},"anyOf":[{"required":["members"]},{"required":["roles"]},{"required":["channels"]}],"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "The input (under `input` when it is not an object) with `notified`: what was queued, `[{channel, destination, status, notificationId, deliveryId}]`.",
        handles: Handles::Single,
        credentials: &[],
    },
    NodeType {
        kind: NodeKind::StoreFile,
        name: "store_file",
        description: "Stores its input, or the value at `field` (a JSON Pointer into the input), as a file of the workspace named `name`. `encoding` says how the value becomes bytes: `json` (the default: the value as JSON), `text` (a string, as UTF-8) or `base64` (a base64 string, decoded). `contentType` defaults to `application/json`, `text/plain` or `application/octet-stream` by encoding. The file is an artifact of the execution (it follows the workspace's retention policy). A retried step may store the file again.",
        config_schema: r#"{"type":"object","required":["name"],"properties":{"name":{"type":"string","minLength":1,"maxLength":255},"field":{"type":"string","pattern":"^(/.*)?$","description":"A JSON Pointer into the input; empty or absent: the whole input."},"encoding":{"enum":["json","text","base64"]},"contentType":{"type":"string","minLength":3,"maxLength":255}},"additionalProperties":false}"#,
        input: STANDARD_INPUT,
        output: "{fileId, name, size, sha256, contentType, downloadUrl}: the stored file (`downloadUrl` is a signed link that expires).",
        handles: Handles::Single,
        credentials: &[],
    },
];

pub fn find(name: &str) -> Option<&'static NodeType> {
    CATALOG.iter().find(|t| t.name == name)
}

impl NodeType {
    pub fn schema(&self) -> Value {
        serde_json::from_str(self.config_schema).expect("catalog schemas are valid JSON")
    }

    /// The node's branch names for this config; `None` for a single output.
    pub fn handles_for(&self, config: &Value) -> Option<Vec<String>> {
        match self.handles {
            Handles::Single => None,
            Handles::Fixed(names) => Some(names.iter().map(|s| s.to_string()).collect()),
            Handles::FromConfig {
                list,
                field,
                fallback,
            } => {
                let mut names: Vec<String> = config
                    .pointer(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item.get(field).and_then(Value::as_str))
                    .map(str::to_string)
                    .collect();
                names.push(fallback.to_string());
                Some(names)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_entry_and_every_entry_a_kind() {
        for kind in NodeKind::ALL {
            assert_eq!(
                CATALOG.iter().filter(|t| t.kind == *kind).count(),
                1,
                "{kind:?}"
            );
        }
        assert_eq!(CATALOG.len(), NodeKind::ALL.len());
        for t in CATALOG {
            assert_eq!(NodeKind::parse(t.name), Some(t.kind));
        }
    }

    #[test]
    fn every_schema_compiles() {
        for t in CATALOG {
            jsonschema::validator_for(&t.schema()).unwrap_or_else(|e| panic!("{}: {e}", t.name));
        }
    }

    #[test]
    fn switch_handles_come_from_its_cases() {
        let config = serde_json::json!({"field": "/r", "cases": [{"handle": "eu", "equals": "EU"}, {"handle": "us", "equals": "US"}]});
        assert_eq!(
            NodeKind::Switch.spec().handles_for(&config).unwrap(),
            vec!["eu", "us", "default"]
        );
        assert_eq!(NodeKind::Set.spec().handles_for(&config), None);
    }
}
