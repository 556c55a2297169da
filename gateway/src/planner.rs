//! The one module that talks to the query-planner library (`hive-router-query-planner`).
//!
//! Why: the planner is a dependency we expect to replace (upstream folded it into its
//! `hive-router` crate). Supergraph SDL goes in, our own [`Plan`](crate::plan::Plan) comes out;
//! no other module names a type of that crate. Parsed GraphQL documents are `graphql-parser`
//! ASTs (through `graphql-tools`), a general-purpose library the rest of the gateway also uses.
//!
//! The library may panic on inputs it does not expect; every call into it is wrapped in
//! `catch_unwind` so that a planner bug fails one request instead of a connection task.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use graphql_tools::parser::query as q;
use graphql_tools::parser::schema as s;
use hive::ast::selection_item::SelectionItem;
use hive::ast::selection_set::SelectionSet;
use hive::graph::PlannerOverrideContext;
use hive::planner::plan_nodes::{
    self as nodes, FetchNode, FetchNodePathSegment, FetchRewrite, FlattenNodePathSegment,
};
use hive::planner::{Planner, QueryPlannerOptions};
use hive::state::supergraph_state::OperationKind;
use hive::utils::cancellation::CancellationToken;
use hive_router_query_planner as hive;

use crate::plan::{
    EntityFetch, EntityGroup, PathStep, Plan, PlanNode, Rewrite, RewriteStep, RootFetch, Selection,
};

/// A parsed schema document (owned strings).
pub type SchemaDocument = s::Document<'static, String>;
/// A parsed executable document (owned strings).
pub type QueryDocument = q::Document<'static, String>;

/// Why a supergraph could not be loaded. Internal: shown to operators, never to clients.
#[derive(Debug, thiserror::Error)]
pub enum PlannerInitError {
    #[error("supergraph SDL does not parse: {0}")]
    Parse(String),
    #[error("supergraph has no subgraphs (no join__Graph values)")]
    NoSubgraphs,
    #[error("query planner rejected the supergraph: {0}")]
    Rejected(String),
}

/// Why an operation could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The operation does not fit the schema or the document (client's fault).
    #[error("{0}")]
    Invalid(String),
    /// The operation uses something this gateway does not execute yet (client-visible).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The planner failed on a valid operation (our fault; details are internal).
    #[error("query planning failed: {0}")]
    Internal(String),
}

/// A subgraph as declared by the supergraph (`join__Graph` / `@join__graph`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphInfo {
    pub name: String,
    pub url: String,
}

/// Supergraph in, plans out.
pub struct QueryPlanner {
    inner: Planner,
    api_schema: Arc<SchemaDocument>,
    subgraphs: Vec<SubgraphInfo>,
}

impl std::fmt::Debug for QueryPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPlanner")
            .field("subgraphs", &self.subgraphs)
            .finish_non_exhaustive()
    }
}

impl QueryPlanner {
    pub fn new(supergraph_sdl: &str) -> Result<Self, PlannerInitError> {
        let document = hive::utils::parsing::safe_parse_schema(supergraph_sdl)
            .map_err(|e| PlannerInitError::Parse(e.to_string()))?;
        let inner = catch_unwind(AssertUnwindSafe(|| {
            Planner::new_from_supergraph(&document, QueryPlannerOptions::default())
        }))
        .map_err(|panic| PlannerInitError::Rejected(panic_message(&panic)))?
        .map_err(|e| PlannerInitError::Rejected(e.to_string()))?;

        // Sorted so that everything derived from the list is deterministic.
        let mut subgraphs: Vec<SubgraphInfo> = inner
            .supergraph
            .subgraph_endpoint_map
            .iter()
            .map(|(name, url)| SubgraphInfo {
                name: name.clone(),
                url: url.clone(),
            })
            .collect();
        subgraphs.sort_by(|a, b| a.name.cmp(&b.name));
        if subgraphs.is_empty() {
            return Err(PlannerInitError::NoSubgraphs);
        }
        let api_schema = Arc::new((*inner.consumer_schema.document).clone());
        Ok(Self {
            inner,
            api_schema,
            subgraphs,
        })
    }

    /// The API (consumer) schema: join/link machinery and `@inaccessible` parts removed,
    /// introspection types and `__schema`/`__type` added.
    pub fn api_schema(&self) -> &Arc<SchemaDocument> {
        &self.api_schema
    }

    pub fn subgraphs(&self) -> &[SubgraphInfo] {
        &self.subgraphs
    }

    /// Plans one operation of `document` (`operation_name` selects it when there are several).
    pub fn plan(
        &self,
        document: &QueryDocument,
        operation_name: Option<&str>,
    ) -> Result<Plan, PlanError> {
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Plan, PlanError> {
            let normalized = hive::ast::normalization::normalize_operation(
                &self.inner.supergraph,
                document,
                operation_name,
            )
            .map_err(|e| PlanError::Invalid(e.to_string()))?;
            let plan = self
                .inner
                .plan_from_normalized_operation(
                    normalized.executable_operation(),
                    PlannerOverrideContext::default(),
                    &CancellationToken::new(),
                )
                .map_err(|e| PlanError::Internal(e.to_string()))?;
            tracing::trace!(%plan, "query plan");
            match plan.node.as_ref() {
                Some(node) => convert_plan(node),
                None => Ok(Plan::default()),
            }
        }));
        outcome.map_err(|panic| PlanError::Internal(panic_message(&panic)))?
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "planner panicked".to_string()
    }
}

/// A plan whose first step opens a subscription becomes `subscription` plus the steps
/// that follow it (run once per event); any other plan converts node by node.
fn convert_plan(node: &nodes::PlanNode) -> Result<Plan, PlanError> {
    match node {
        nodes::PlanNode::Subscription(subscription) => Ok(Plan {
            root: None,
            subscription: Some(Arc::new(root_fetch(&subscription.primary))),
        }),
        nodes::PlanNode::Sequence(sequence) => match sequence.nodes.split_first() {
            Some((nodes::PlanNode::Subscription(subscription), rest)) => {
                let mut rest: Vec<PlanNode> =
                    rest.iter().map(convert_node).collect::<Result<_, _>>()?;
                let root = match rest.len() {
                    0 => None,
                    1 => rest.pop(),
                    _ => Some(PlanNode::Sequence(rest)),
                };
                Ok(Plan {
                    root,
                    subscription: Some(Arc::new(root_fetch(&subscription.primary))),
                })
            }
            _ => Ok(Plan {
                root: Some(convert_node(node)?),
                subscription: None,
            }),
        },
        _ => Ok(Plan {
            root: Some(convert_node(node)?),
            subscription: None,
        }),
    }
}

fn convert_node(node: &nodes::PlanNode) -> Result<PlanNode, PlanError> {
    Ok(match node {
        nodes::PlanNode::Fetch(fetch) => match &fetch.requires {
            Some(requires) => {
                PlanNode::Entities(Arc::new(single_group_fetch(fetch, requires, &[])))
            }
            None => PlanNode::Root(Arc::new(root_fetch(fetch))),
        },
        nodes::PlanNode::Flatten(flatten) => {
            let nodes::PlanNode::Fetch(fetch) = flatten.node.as_ref() else {
                return Err(PlanError::Internal(
                    "flatten node wraps a non-fetch node".into(),
                ));
            };
            let Some(requires) = &fetch.requires else {
                return Err(PlanError::Internal(
                    "flattened fetch without requires".into(),
                ));
            };
            PlanNode::Entities(Arc::new(single_group_fetch(
                fetch,
                requires,
                flatten.path.as_slice(),
            )))
        }
        nodes::PlanNode::BatchFetch(batch) => {
            let groups = batch
                .entity_batch
                .aliases
                .iter()
                .map(|alias| EntityGroup {
                    response_key: alias.alias.clone(),
                    variable: alias.representations_variable_name.clone(),
                    paths: alias
                        .merge_paths
                        .iter()
                        .map(|p| convert_path(p.as_slice()))
                        .collect(),
                    requires: convert_selections(&alias.requires),
                    input_rewrites: convert_rewrites(alias.input_rewrites.as_deref()),
                    output_rewrites: convert_rewrites(alias.output_rewrites.as_deref()),
                    first_field: first_field_under(
                        &batch.operation.document.operation.selection_set,
                        &alias.alias,
                    ),
                })
                .collect::<Vec<_>>();
            if groups.is_empty() {
                return Err(PlanError::Internal("batch fetch without aliases".into()));
            }
            PlanNode::Entities(Arc::new(EntityFetch {
                subgraph: batch.service_name.clone(),
                operation: batch.operation.document_str.clone(),
                variable_usages: usages(batch.variable_usages.as_ref()),
                groups,
            }))
        }
        nodes::PlanNode::Sequence(seq) => PlanNode::Sequence(
            seq.nodes
                .iter()
                .map(convert_node)
                .collect::<Result<_, _>>()?,
        ),
        nodes::PlanNode::Parallel(par) => PlanNode::Parallel(
            par.nodes
                .iter()
                .map(convert_node)
                .collect::<Result<_, _>>()?,
        ),
        nodes::PlanNode::Condition(cond) => PlanNode::Condition {
            variable: cond.condition.clone(),
            if_true: cond
                .if_clause
                .as_deref()
                .map(convert_node)
                .transpose()?
                .map(Box::new),
            if_false: cond
                .else_clause
                .as_deref()
                .map(convert_node)
                .transpose()?
                .map(Box::new),
        },
        nodes::PlanNode::Subscription(_) => {
            return Err(PlanError::Internal(
                "a subscription fetch that is not the plan's first step".into(),
            ))
        }
        nodes::PlanNode::Defer(_) => {
            return Err(PlanError::Unsupported("@defer is not supported yet."))
        }
    })
}

fn root_fetch(fetch: &FetchNode) -> RootFetch {
    let root_keys = fetch
        .operation
        .document
        .operation
        .selection_set
        .items
        .iter()
        .filter_map(|item| match item {
            SelectionItem::Field(field) => Some(field.selection_identifier().to_string()),
            _ => None,
        })
        .collect();
    RootFetch {
        subgraph: fetch.service_name.clone(),
        operation: fetch.operation.document_str.clone(),
        is_mutation: matches!(fetch.operation_kind, Some(OperationKind::Mutation)),
        variable_usages: usages(fetch.variable_usages.as_ref()),
        root_keys,
        output_rewrites: convert_rewrites(fetch.output_rewrites.as_deref()),
    }
}

fn single_group_fetch(
    fetch: &FetchNode,
    requires: &SelectionSet,
    path: &[FlattenNodePathSegment],
) -> EntityFetch {
    EntityFetch {
        subgraph: fetch.service_name.clone(),
        operation: fetch.operation.document_str.clone(),
        variable_usages: usages(fetch.variable_usages.as_ref()),
        groups: vec![EntityGroup {
            response_key: "_entities".to_string(),
            variable: "representations".to_string(),
            paths: vec![convert_path(path)],
            requires: convert_selections(requires),
            input_rewrites: convert_rewrites(fetch.input_rewrites.as_deref()),
            output_rewrites: convert_rewrites(fetch.output_rewrites.as_deref()),
            first_field: first_field_under(
                &fetch.operation.document.operation.selection_set,
                "_entities",
            ),
        }],
    }
}

fn usages(set: Option<&std::collections::BTreeSet<String>>) -> Vec<String> {
    set.map(|s| s.iter().cloned().collect()).unwrap_or_default()
}

fn convert_path(path: &[FlattenNodePathSegment]) -> Vec<PathStep> {
    path.iter()
        .map(|segment| match segment {
            FlattenNodePathSegment::Field(name) => PathStep::Field(name.clone()),
            FlattenNodePathSegment::List => PathStep::List,
            FlattenNodePathSegment::TypeCondition(types) => {
                PathStep::TypeIs(types.iter().cloned().collect())
            }
        })
        .collect()
}

fn convert_selections(set: &SelectionSet) -> Vec<Selection> {
    set.items
        .iter()
        .filter_map(|item| match item {
            SelectionItem::Field(field) => Some(Selection::Field {
                data_key: field.name.clone(),
                name: field.selection_identifier().to_string(),
                selections: convert_selections(&field.selections),
            }),
            SelectionItem::InlineFragment(fragment) => Some(Selection::InlineFragment {
                type_condition: Some(fragment.type_condition.clone()),
                selections: convert_selections(&fragment.selections),
            }),
            // Requires selections are always inlined by the planner.
            SelectionItem::FragmentSpread(_) => None,
        })
        .collect()
}

fn convert_rewrites(rewrites: Option<&[FetchRewrite]>) -> Vec<Rewrite> {
    let steps = |path: &[FetchNodePathSegment]| -> Vec<RewriteStep> {
        path.iter()
            .map(|segment| match segment {
                FetchNodePathSegment::Key(key) => RewriteStep::Key(key.clone()),
                FetchNodePathSegment::TypenameEquals(types) => {
                    RewriteStep::TypeIs(types.iter().cloned().collect())
                }
            })
            .collect()
    };
    rewrites
        .unwrap_or_default()
        .iter()
        .map(|rewrite| match rewrite {
            FetchRewrite::ValueSetter(setter) => Rewrite::SetValue {
                path: steps(&setter.path),
                value: setter.set_value_to.clone(),
            },
            FetchRewrite::KeyRenamer(renamer) => Rewrite::RenameKey {
                path: steps(&renamer.path),
                to: renamer.rename_key_to.clone(),
            },
        })
        .collect()
}

/// Response key of the first real field under the root field `root_key` (looking through
/// inline fragments), e.g. `inStock` in `_entities { ... on Product { inStock } }`.
fn first_field_under(root: &SelectionSet, root_key: &str) -> Option<String> {
    fn first_field(set: &SelectionSet) -> Option<String> {
        set.items.iter().find_map(|item| match item {
            SelectionItem::Field(field) if field.name != "__typename" => {
                Some(field.selection_identifier().to_string())
            }
            SelectionItem::InlineFragment(fragment) => first_field(&fragment.selections),
            _ => None,
        })
    }
    root.items.iter().find_map(|item| match item {
        SelectionItem::Field(field) if field.selection_identifier() == root_key => {
            first_field(&field.selections)
        }
        _ => None,
    })
}

/// Parses an executable document into the AST shared by planner, validation and execution.
pub fn parse_query(source: &str) -> Result<QueryDocument, String> {
    hive::utils::parsing::safe_parse_operation(source).map_err(|e| e.to_string())
}

/// Parses a schema document.
pub fn parse_schema(source: &str) -> Result<SchemaDocument, String> {
    hive::utils::parsing::safe_parse_schema(source).map_err(|e| e.to_string())
}
