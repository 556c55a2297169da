//! The gateway's own query-plan model.
//!
//! Why this exists: the planner library is a dependency we expect to replace (upstream moved it
//! into a larger crate). The executor only ever sees these types; `planner.rs` is the single
//! place that translates the library's plan into them. Everything here is plain data, cheap to
//! share behind an `Arc` and cache per operation.

use std::sync::Arc;

/// A complete plan for one client operation. `root == None` means nothing has to be fetched
/// (for example an operation that only asks for `__typename` or introspection).
///
/// A subscription's plan has a `subscription`: the fetch that opens the event stream on the
/// subgraph owning the root field. `root` then runs once per event, on the event's data,
/// to resolve the rest of the selection from other subgraphs.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub root: Option<PlanNode>,
    pub subscription: Option<Arc<RootFetch>>,
}

#[derive(Debug, Clone)]
pub enum PlanNode {
    /// A fetch against a root type of one subgraph; its data is deep-merged at the root.
    Root(Arc<RootFetch>),
    /// One `_entities` request (possibly several aliased `_entities` fields) against one
    /// subgraph, merged into entities found at the groups' paths.
    Entities(Arc<EntityFetch>),
    Sequence(Vec<PlanNode>),
    Parallel(Vec<PlanNode>),
    /// Runs `if_true` when the boolean variable is true, `if_false` otherwise.
    Condition {
        variable: String,
        if_true: Option<Box<PlanNode>>,
        if_false: Option<Box<PlanNode>>,
    },
}

#[derive(Debug, Clone)]
pub struct RootFetch {
    pub subgraph: String,
    /// The GraphQL document sent to the subgraph.
    pub operation: String,
    pub is_mutation: bool,
    /// Client variables the operation uses (forwarded as-is).
    pub variable_usages: Vec<String>,
    /// Response keys of the root fields selected; used to give errors a client path.
    pub root_keys: Vec<String>,
    pub output_rewrites: Vec<Rewrite>,
}

#[derive(Debug, Clone)]
pub struct EntityFetch {
    pub subgraph: String,
    pub operation: String,
    pub variable_usages: Vec<String>,
    /// Invariant: at least one group; every group has a distinct `response_key` and `variable`.
    pub groups: Vec<EntityGroup>,
}

/// One `_entities` field of an entity fetch and where its results go.
#[derive(Debug, Clone)]
pub struct EntityGroup {
    /// Response key of the `_entities` field in the subgraph response (`_entities` or an alias).
    pub response_key: String,
    /// Name of the variable carrying this group's representations.
    pub variable: String,
    /// Paths (from the root of the merged data) at which the entities are found.
    pub paths: Vec<Vec<PathStep>>,
    /// Selection used to build one representation from one entity.
    pub requires: Vec<Selection>,
    pub input_rewrites: Vec<Rewrite>,
    pub output_rewrites: Vec<Rewrite>,
    /// Response key of the first field the fetch selects, to point errors at something useful.
    pub first_field: Option<String>,
}

/// A step of a flatten path over the merged data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Field(String),
    /// Every element of a list.
    List,
    /// Keep only objects whose `__typename` is one of these.
    TypeIs(Vec<String>),
}

/// A minimal selection (for `requires`): no arguments, no directives.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Copies the merged data's `data_key` into the representation's `name`. They differ when
    /// the planner fetched a field under an internal alias (e.g. a `@requires` field with
    /// arguments that conflict with the client's): the planner writes `name: data_key`.
    Field {
        data_key: String,
        name: String,
        selections: Vec<Selection>,
    },
    InlineFragment {
        type_condition: Option<String>,
        selections: Vec<Selection>,
    },
}

/// Rewrites applied to representations (input) or results (output).
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Set the value at `path` to `value` (a string, e.g. a `__typename`).
    SetValue {
        path: Vec<RewriteStep>,
        value: String,
    },
    /// Rename the key at the end of `path` to `to`.
    RenameKey { path: Vec<RewriteStep>, to: String },
}

#[derive(Debug, Clone)]
pub enum RewriteStep {
    Key(String),
    TypeIs(Vec<String>),
}

impl Plan {
    /// Number of fetches whose operation uses any of `variables`.
    pub fn fetches_using(&self, variables: &[String]) -> usize {
        fn count(node: &PlanNode, variables: &[String]) -> usize {
            let uses = |usages: &[String]| usages.iter().any(|u| variables.contains(u)) as usize;
            match node {
                PlanNode::Root(fetch) => uses(&fetch.variable_usages),
                PlanNode::Entities(fetch) => uses(&fetch.variable_usages),
                PlanNode::Sequence(nodes) | PlanNode::Parallel(nodes) => {
                    nodes.iter().map(|n| count(n, variables)).sum()
                }
                PlanNode::Condition {
                    if_true, if_false, ..
                } => {
                    if_true.as_deref().map_or(0, |n| count(n, variables))
                        + if_false.as_deref().map_or(0, |n| count(n, variables))
                }
            }
        }
        self.root.as_ref().map_or(0, |root| count(root, variables))
            + self.subscription.as_ref().map_or(0, |fetch| {
                fetch.variable_usages.iter().any(|u| variables.contains(u)) as usize
            })
    }

    /// Number of subgraph requests the plan can make at most; handy for tests and logs.
    pub fn fetch_count(&self) -> usize {
        fn count(node: &PlanNode) -> usize {
            match node {
                PlanNode::Root(_) | PlanNode::Entities(_) => 1,
                PlanNode::Sequence(nodes) | PlanNode::Parallel(nodes) => {
                    nodes.iter().map(count).sum()
                }
                PlanNode::Condition {
                    if_true, if_false, ..
                } => if_true.as_deref().map_or(0, count) + if_false.as_deref().map_or(0, count),
            }
        }
        self.root.as_ref().map_or(0, count)
    }
}
