//! What an execution does next, given where its steps stand. Pure: the store calls
//! it inside the transaction that records a step's result, so deciding and
//! recording are one atomic transition.
//!
//! A node becomes decidable once every node with an edge into it is settled
//! (succeeded or skipped): that is what makes a join wait for all its incoming
//! branches. It then runs, with the input [`readiness`] builds from the edges that
//! carry data, or is skipped when none do; a skip settles it at once, so skips
//! propagate down the graph in the same pass (nodes are visited in topological
//! order).
//!
//! Loops: a `foreach` node's step outputs the array it loops over. Its body (the
//! nodes its `item` branch reaches) is then planned once per item, as a scope of
//! its own ([`Place::item`]), starting at most `concurrency` items at a time in
//! item order. Outside the body the loop counts as settled only when every item's
//! body is, with the items' results (in order) as its output on the `done`
//! branch.

use std::collections::{BTreeMap, HashMap, HashSet};

use flowfleet_definitions::definition::{Definition, LOOP_DONE, LOOP_ITEM};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::{foreach_concurrency, readiness, sinks_output, Readiness, StepRun, StepStatus};

/// Where a step runs: a node and, inside a `foreach` body, the item's index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub node: String,
    pub item: Option<u32>,
}

/// A step's identity: one attempt at one place of one execution. A step task names it,
/// a worker claims it, and the store's unique key on step runs is it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepKey {
    pub execution: Uuid,
    pub place: Place,
    pub attempt: i64,
}

impl Place {
    /// Where `step` ran.
    pub fn of(step: &StepRun) -> Place {
        Place {
            node: step.node_id.clone(),
            item: step.item,
        }
    }
    pub fn top(node: impl Into<String>) -> Place {
        Place {
            node: node.into(),
            item: None,
        }
    }
    pub fn item(node: impl Into<String>, item: u32) -> Place {
        Place {
            node: node.into(),
            item: Some(item),
        }
    }
}

/// Where one step stands, from its latest attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    /// Queued, running, waiting for a child, or failed with another attempt queued.
    Open,
    Succeeded {
        output: Value,
        branch: Option<String>,
    },
    Skipped,
    /// Failed for good, cancelled or timed out on its last attempt.
    Failed,
}

impl NodeState {
    /// What a step's latest attempt, ended (or not) as `status`, says of its node.
    pub fn of(status: StepStatus, output: Option<Value>, branch: Option<String>) -> NodeState {
        match status {
            StepStatus::Succeeded => NodeState::Succeeded {
                output: output.unwrap_or(Value::Null),
                branch,
            },
            StepStatus::Skipped => NodeState::Skipped,
            StepStatus::Queued | StepStatus::Running | StepStatus::Waiting => NodeState::Open,
            StepStatus::Failed | StepStatus::Cancelled | StepStatus::TimedOut => NodeState::Failed,
        }
    }
}

pub type States = HashMap<Place, NodeState>;

/// A step to start now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run { place: Place, input: Value },
    Skip { place: Place },
}

impl Decision {
    pub fn place(&self) -> &Place {
        match self {
            Decision::Run { place, .. } | Decision::Skip { place } => place,
        }
    }
    pub fn node(&self) -> &str {
        &self.place().node
    }
}

/// The definition split into its top level and its loop bodies, each in
/// topological order.
struct Shape<'a> {
    def: &'a Definition,
    top: Vec<String>,
    bodies: BTreeMap<String, Vec<String>>,
}

impl<'a> Shape<'a> {
    fn of(def: &'a Definition) -> Option<Shape<'a>> {
        let order = def.topological_order()?; // validation refuses cycles
        let bodies = def.loop_bodies();
        let inside: HashSet<&str> = bodies.values().flatten().map(String::as_str).collect();
        let top = order
            .into_iter()
            .filter(|n| !inside.contains(n.as_str()))
            .collect();
        Some(Shape { def, top, bodies })
    }

    /// Nodes of the top level none of whose edges lead to another top-level
    /// node (a loop's `item` edges lead into its body): their outputs make the
    /// execution's output.
    fn top_sinks(&self) -> Vec<&str> {
        self.top
            .iter()
            .filter(|n| {
                !self
                    .def
                    .edges
                    .iter()
                    .any(|e| &e.source == *n && self.top.contains(&e.target))
            })
            .map(String::as_str)
            .collect()
    }

    fn body_sinks(&self, foreach: &str) -> Vec<&str> {
        let body = &self.bodies[foreach];
        body.iter()
            .filter(|n| !self.def.edges.iter().any(|e| &e.source == *n))
            .map(String::as_str)
            .collect()
    }
}

/// One scope's view: the outputs and branches of what ran in it, and what is settled.
#[derive(Default)]
struct Scope {
    outputs: Map<String, Value>,
    branches: Map<String, Value>,
    settled: HashSet<String>,
}

impl Scope {
    fn record(&mut self, node: &str, state: Option<&NodeState>) {
        match state {
            Some(NodeState::Succeeded { output, branch }) => {
                self.outputs.insert(node.to_string(), output.clone());
                if let Some(b) = branch {
                    self.branches
                        .insert(node.to_string(), Value::String(b.clone()));
                }
                self.settled.insert(node.to_string());
            }
            Some(NodeState::Skipped) => {
                self.settled.insert(node.to_string());
            }
            _ => {}
        }
    }

    /// Stands `node` in as settled with `output` on `branch` (a loop seen from
    /// its body, or from after it).
    fn settle(&mut self, node: &str, output: Value, branch: &str) {
        self.outputs.insert(node.to_string(), output);
        self.branches
            .insert(node.to_string(), Value::String(branch.to_string()));
        self.settled.insert(node.to_string());
    }
}

/// Where a loop stands.
enum Progress {
    /// Every item's body is settled: the results, in item order.
    Complete(Vec<Value>),
    Running,
}

/// Decides the unsettled nodes of one scope whose predecessors are all settled.
fn plan_scope(
    def: &Definition,
    nodes: &[String],
    item: Option<u32>,
    execution_input: &Value,
    mut scope: Scope,
    states: &States,
    out: &mut Vec<Decision>,
) {
    for node in nodes {
        let place = Place {
            node: node.clone(),
            item,
        };
        if states.contains_key(&place) {
            continue;
        }
        if !def
            .predecessors(node)
            .iter()
            .all(|p| scope.settled.contains(*p))
        {
            continue;
        }
        match readiness(def, node, execution_input, &scope.outputs, &scope.branches) {
            Readiness::Run(input) => out.push(Decision::Run { place, input }),
            Readiness::Skip => {
                scope.settled.insert(node.clone());
                out.push(Decision::Skip { place });
            }
        }
    }
}

/// The loop's progress, deciding (into `out`) the next steps of its started
/// items and starting new items while fewer than its concurrency are open.
fn run_loop(
    shape: &Shape,
    foreach: &str,
    items: &[Value],
    execution_input: &Value,
    states: &States,
    out: &mut Vec<Decision>,
) -> Progress {
    let body = &shape.bodies[foreach];
    if body.is_empty() {
        return Progress::Complete(items.to_vec());
    }
    let limit = shape
        .def
        .node(foreach)
        .map(foreach_concurrency)
        .unwrap_or(1);
    let sinks = shape.body_sinks(foreach);
    let mut results = Vec::with_capacity(items.len());
    let mut open = 0;
    let mut started = 0;
    for (i, value) in items.iter().enumerate() {
        let i = i as u32;
        let mut scope = Scope::default();
        let mut any = false;
        for b in body {
            let state = states.get(&Place::item(b.clone(), i));
            any |= state.is_some();
            scope.record(b, state);
        }
        if !any {
            break; // items start in order: none after this one has started either
        }
        started += 1;
        if body.iter().all(|b| scope.settled.contains(b)) {
            results.push(sinks_output(&sinks, &scope.outputs));
            continue;
        }
        open += 1;
        scope.settle(foreach, value.clone(), LOOP_ITEM);
        plan_scope(
            shape.def,
            body,
            Some(i),
            execution_input,
            scope,
            states,
            out,
        );
    }
    if started == items.len() && open == 0 {
        return Progress::Complete(results);
    }
    for (i, value) in items.iter().enumerate().skip(started) {
        if open >= limit {
            break;
        }
        open += 1;
        let mut scope = Scope::default();
        scope.settle(foreach, value.clone(), LOOP_ITEM);
        plan_scope(
            shape.def,
            body,
            Some(i as u32),
            execution_input,
            scope,
            states,
            out,
        );
    }
    Progress::Running
}

/// The top level's scope: what ran there, with every finished loop standing in
/// as settled on its `done` branch with its results. Loops still running get
/// their next steps decided into `out`.
fn top_scope(
    shape: &Shape,
    execution_input: &Value,
    states: &States,
    out: &mut Vec<Decision>,
) -> Scope {
    let mut scope = Scope::default();
    for node in &shape.top {
        let state = states.get(&Place::top(node.clone()));
        match (shape.bodies.contains_key(node), state) {
            (true, Some(NodeState::Succeeded { output, .. })) => {
                let items = output.as_array().map(Vec::as_slice).unwrap_or_default();
                if let Progress::Complete(results) =
                    run_loop(shape, node, items, execution_input, states, out)
                {
                    scope.settle(node, Value::Array(results), LOOP_DONE);
                }
            }
            _ => scope.record(node, state),
        }
    }
    scope
}

/// Every step that can start now and has not: steps without state whose
/// predecessors are all settled, including those settled by skips decided in this
/// same pass. Never returns a place that already has a state.
pub fn next_steps(def: &Definition, execution_input: &Value, states: &States) -> Vec<Decision> {
    let Some(shape) = Shape::of(def) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let scope = top_scope(&shape, execution_input, states, &mut out);
    plan_scope(
        def,
        &shape.top,
        None,
        execution_input,
        scope,
        states,
        &mut out,
    );
    out
}

/// The execution's output once every top-level node is settled (every loop
/// finished); `None` while any is open (or failed, which fails the execution
/// instead).
pub fn completion(def: &Definition, states: &States) -> Option<Value> {
    let shape = Shape::of(def)?;
    let scope = top_scope(&shape, &Value::Null, states, &mut Vec::new());
    if !shape.top.iter().all(|n| scope.settled.contains(n)) {
        return None;
    }
    Some(sinks_output(&shape.top_sinks(), &scope.outputs))
}

/// What the latest attempt at each place says: a step is what its latest attempt is,
/// whatever came before. The one rule for planning, retries and reading progress.
pub fn latest_attempts<T>(
    attempts: impl IntoIterator<Item = (Place, i64, T)>,
) -> HashMap<Place, T> {
    let mut latest: HashMap<Place, (i64, T)> = HashMap::new();
    for (place, attempt, value) in attempts {
        if latest.get(&place).is_none_or(|(seen, _)| *seen < attempt) {
            latest.insert(place, (attempt, value));
        }
    }
    latest.into_iter().map(|(p, (_, v))| (p, v)).collect()
}

/// The states recorded steps stand for (the latest attempt of each counts).
pub fn states_of(steps: &[StepRun]) -> States {
    latest_attempts(steps.iter().map(|s| {
        (
            Place::of(s),
            s.attempt,
            NodeState::of(s.status, s.output.clone(), s.branch.clone()),
        )
    }))
}

/// Steps a success adds to the execution's count beyond those it queues now: a
/// loop's step announces every item's body.
pub fn announced_steps(def: &Definition, node: &str, output: &Value) -> i64 {
    match (def.loop_bodies().get(node), output.as_array()) {
        (Some(body), Some(items)) => (body.len() * items.len()) as i64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Definition {
        Definition::from_json(&v).unwrap()
    }

    fn top(node: &str) -> Place {
        Place::top(node)
    }

    fn run(node: &str, input: Value) -> Decision {
        Decision::Run {
            place: top(node),
            input,
        }
    }

    fn states<const N: usize>(entries: [(&str, NodeState); N]) -> States {
        entries.into_iter().map(|(n, s)| (top(n), s)).collect()
    }

    fn ok(output: Value) -> NodeState {
        NodeState::Succeeded {
            output,
            branch: None,
        }
    }

    fn diamond() -> Definition {
        def(json!({
            "nodes": [
                {"id": "a", "type": "passthrough"},
                {"id": "b", "type": "passthrough"},
                {"id": "c", "type": "passthrough"},
                {"id": "d", "type": "passthrough"}
            ],
            "edges": [
                {"source": "a", "target": "b"}, {"source": "a", "target": "c"},
                {"source": "b", "target": "d"}, {"source": "c", "target": "d"}
            ],
            "triggers": [{"kind": "MANUAL"}]
        }))
    }

    #[test]
    fn entry_nodes_start_with_the_execution_input() {
        let d = diamond();
        assert_eq!(
            next_steps(&d, &json!({"x": 1}), &HashMap::new()),
            vec![run("a", json!({"x": 1}))]
        );
    }

    #[test]
    fn a_join_waits_for_every_incoming_branch() {
        let d = diamond();
        let mut states = states([("a", ok(json!(1)))]);
        let next = next_steps(&d, &json!({}), &states);
        assert_eq!(
            next.iter().map(Decision::node).collect::<Vec<_>>(),
            ["b", "c"]
        );
        states.insert(top("b"), ok(json!("from b")));
        states.insert(top("c"), NodeState::Open);
        assert_eq!(next_steps(&d, &json!({}), &states), vec![]);
        states.insert(top("c"), ok(json!("from c")));
        assert_eq!(
            next_steps(&d, &json!({}), &states),
            vec![run("d", json!({"b": "from b", "c": "from c"}))]
        );
        assert_eq!(completion(&d, &states), None);
        states.insert(top("d"), ok(json!("done")));
        assert_eq!(completion(&d, &states), Some(json!("done")));
        assert_eq!(next_steps(&d, &json!({}), &states), vec![]);
    }

    #[test]
    fn an_untaken_branch_skips_everything_only_it_reaches_in_one_pass() {
        let d = def(json!({
            "nodes": [
                {"id": "if", "type": "condition", "config": {"field": "/ok", "operator": "exists"}},
                {"id": "yes", "type": "passthrough"},
                {"id": "yes2", "type": "passthrough"},
                {"id": "no", "type": "passthrough"},
                {"id": "end", "type": "passthrough"}
            ],
            "edges": [
                {"source": "if", "sourceHandle": "true", "target": "yes"},
                {"source": "yes", "target": "yes2"},
                {"source": "if", "sourceHandle": "false", "target": "no"},
                {"source": "yes2", "target": "end"},
                {"source": "no", "target": "end"}
            ],
            "triggers": [{"kind": "MANUAL"}]
        }));
        let mut states = states([(
            "if",
            NodeState::Succeeded {
                output: json!({"v": 1}),
                branch: Some("false".into()),
            },
        )]);
        assert_eq!(
            next_steps(&d, &json!({}), &states),
            vec![
                Decision::Skip { place: top("yes") },
                run("no", json!({"v": 1})),
                Decision::Skip { place: top("yes2") },
            ]
        );
        states.insert(top("yes"), NodeState::Skipped);
        states.insert(top("yes2"), NodeState::Skipped);
        states.insert(top("no"), ok(json!("n")));
        // The join runs with the branch that ran.
        assert_eq!(
            next_steps(&d, &json!({}), &states),
            vec![run("end", json!("n"))]
        );
    }

    #[test]
    fn a_failed_node_blocks_what_follows_and_completes_nothing() {
        let d = diamond();
        let states = states([
            ("a", ok(json!(1))),
            ("b", NodeState::Failed),
            ("c", ok(json!(2))),
        ]);
        assert_eq!(next_steps(&d, &json!({}), &states), vec![]);
        assert_eq!(completion(&d, &states), None);
    }

    /// `load` → foreach `loop` (2 at a time) → body `double` → `check`; `sum` on `done`.
    fn looping() -> Definition {
        def(json!({
            "nodes": [
                {"id": "load", "type": "passthrough"},
                {"id": "loop", "type": "foreach", "config": {"items": "/xs", "concurrency": 2}},
                {"id": "double", "type": "transform", "config": {"expression": ". * 2"}},
                {"id": "check", "type": "passthrough"},
                {"id": "sum", "type": "transform", "config": {"expression": "add"}}
            ],
            "edges": [
                {"source": "load", "target": "loop"},
                {"source": "loop", "sourceHandle": "item", "target": "double"},
                {"source": "double", "target": "check"},
                {"source": "loop", "sourceHandle": "done", "target": "sum"}
            ],
            "triggers": [{"kind": "MANUAL"}]
        }))
    }

    fn item_run(node: &str, item: u32, input: Value) -> Decision {
        Decision::Run {
            place: Place::item(node, item),
            input,
        }
    }

    #[test]
    fn a_loop_runs_its_body_per_item_within_its_concurrency_then_joins_in_item_order() {
        let d = looping();
        let mut s = states([
            ("load", ok(json!({"xs": [1, 2, 3]}))),
            ("loop", ok(json!([1, 2, 3]))),
        ]);
        assert_eq!(announced_steps(&d, "loop", &json!([1, 2, 3])), 6);
        // Two items start; the third waits for a free slot.
        assert_eq!(
            next_steps(&d, &json!({}), &s),
            vec![
                item_run("double", 0, json!(1)),
                item_run("double", 1, json!(2))
            ]
        );
        s.insert(Place::item("double", 0), NodeState::Open);
        s.insert(Place::item("double", 1), ok(json!(4)));
        assert_eq!(
            next_steps(&d, &json!({}), &s),
            vec![item_run("check", 1, json!(4))]
        );
        s.insert(Place::item("check", 1), ok(json!(4)));
        // Item 1 is done: item 2 takes its slot.
        assert_eq!(
            next_steps(&d, &json!({}), &s),
            vec![item_run("double", 2, json!(3))]
        );
        s.insert(Place::item("double", 2), ok(json!(6)));
        s.insert(Place::item("check", 2), ok(json!(6)));
        assert_eq!(next_steps(&d, &json!({}), &s), vec![]);
        assert_eq!(completion(&d, &s), None);
        // The last item finishes out of order; results keep item order.
        s.insert(Place::item("double", 0), ok(json!(2)));
        s.insert(Place::item("check", 0), ok(json!(2)));
        assert_eq!(
            next_steps(&d, &json!({}), &s),
            vec![run("sum", json!([2, 4, 6]))]
        );
        s.insert(top("sum"), ok(json!(12)));
        assert_eq!(completion(&d, &s), Some(json!(12)));
    }

    #[test]
    fn an_empty_loop_goes_straight_to_done() {
        let d = looping();
        let s = states([("load", ok(json!({"xs": []}))), ("loop", ok(json!([])))]);
        assert_eq!(next_steps(&d, &json!({}), &s), vec![run("sum", json!([]))]);
    }

    #[test]
    fn a_loop_without_done_edges_is_the_output() {
        let d = def(json!({
            "nodes": [
                {"id": "loop", "type": "foreach"},
                {"id": "double", "type": "transform", "config": {"expression": ". * 2"}}
            ],
            "edges": [{"source": "loop", "sourceHandle": "item", "target": "double"}],
            "triggers": [{"kind": "MANUAL"}]
        }));
        let mut s = states([("loop", ok(json!([5])))]);
        s.insert(Place::item("double", 0), ok(json!(10)));
        assert_eq!(completion(&d, &s), Some(json!([10])));
    }
}
