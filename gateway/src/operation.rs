//! Turning a query string into something executable: parse, validate, select the operation,
//! plan. The result depends only on (schema, query, operation name), so it is cached.

use std::collections::HashMap;
use std::sync::Arc;

use graphql_tools::parser::query as q;
use graphql_tools::validation::rules::default_rules_validation_plan;
use graphql_tools::validation::validate::{validate, ValidationPlan};
use serde_json::{Map, Value};

use crate::defer::{strip_all, DeferPlan};
use crate::demand::{shape, DemandControl};
use crate::error::RequestError;
use crate::introspection::is_introspection_root;
use crate::plan::Plan;
use crate::planner::{PlanError, QueryDocument, QueryPlanner, SchemaDocument};
use crate::schema::{SchemaModel, TypeRef};
use crate::selection::{value_to_json, FragmentDefinition, SelectionSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

#[derive(Debug)]
pub struct VariableDef {
    pub name: String,
    pub ty: TypeRef,
    pub default: Option<Value>,
}

/// A validated, planned operation. Immutable; shared between requests.
#[derive(Debug)]
pub struct PreparedOperation {
    pub kind: OperationKind,
    pub root_type: String,
    pub selection_set: SelectionSet,
    pub fragments: HashMap<String, FragmentDefinition>,
    pub variables: Vec<VariableDef>,
    /// Whether the root selection asks for `__schema` or `__type`.
    pub uses_introspection: bool,
    /// The plan of the whole operation (with any `@defer` ignored).
    pub plan: Plan,
    /// What the operation defers, if it uses `@defer`.
    pub defer: Option<DeferPlan>,
}

#[cfg(test)]
impl PreparedOperation {
    /// An empty query operation around `plan`.
    pub fn for_tests(plan: Plan) -> Self {
        let pos = graphql_tools::parser::Pos { line: 1, column: 1 };
        Self {
            kind: OperationKind::Query,
            root_type: "Query".into(),
            selection_set: SelectionSet {
                span: (pos, pos),
                items: Vec::new(),
            },
            fragments: HashMap::new(),
            variables: Vec::new(),
            uses_introspection: false,
            plan,
            defer: None,
        }
    }
}

pub struct Preparer {
    validation: ValidationPlan,
    /// Shape limits checked before validation and planning.
    demand: DemandControl,
}

impl Default for Preparer {
    fn default() -> Self {
        Self::new(DemandControl::default())
    }
}

impl Preparer {
    pub fn new(demand: DemandControl) -> Self {
        Self {
            validation: default_rules_validation_plan(),
            demand,
        }
    }

    pub fn prepare(
        &self,
        planner: &QueryPlanner,
        api_schema: &SchemaDocument,
        model: &SchemaModel,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedOperation>, RequestError> {
        self.demand.check_tokens(query)?;
        let document: QueryDocument = graphql_tools::parser::parse_query::<String>(query)
            .map_err(|e| RequestError::Parse(format!("Syntax error: {}", e.to_string().trim())))?
            .into_static();
        let fragments: HashMap<String, FragmentDefinition> = document
            .definitions
            .iter()
            .filter_map(|d| match d {
                q::Definition::Fragment(f) => Some((f.name.clone(), f.clone())),
                _ => None,
            })
            .collect();
        if self.demand.limits_shape() {
            if let Some((selection, directives)) = operation_for_shape(&document, operation_name) {
                self.demand
                    .check_shape(shape::measure(selection, directives, &fragments))?;
            }
        }

        let errors = validate(api_schema, &document, &self.validation);
        if !errors.is_empty() {
            return Err(RequestError::Validation(
                errors.into_iter().map(|e| e.message).collect(),
            ));
        }

        let (kind, operation_selection, variable_defs) =
            select_operation(&document, operation_name)?;
        let root_type = match kind {
            OperationKind::Query => Some(model.query_type.clone()),
            OperationKind::Mutation => model.mutation_type.clone(),
            OperationKind::Subscription => model.subscription_type.clone(),
        }
        .ok_or_else(|| {
            RequestError::Validation(vec![
                "The schema does not support this operation type.".into()
            ])
        })?;

        let uses_introspection = root_field_names(&operation_selection, &fragments)
            .iter()
            .any(|n| is_introspection_root(n));

        // The planner does not know `@defer`: it plans the operation without it, and the
        // deferred parts are delivered around it (see `defer`).
        let defer = DeferPlan::analyze(&document, operation_name);
        if kind == OperationKind::Subscription && defer.is_some() {
            return Err(RequestError::Unsupported(
                "@defer is not supported in subscriptions: each event is delivered whole; \
                 remove @defer from the subscription."
                    .into(),
            ));
        }
        let planned = match &defer {
            Some(_) => strip_all(&document),
            None => document,
        };
        let plan = plan_without_meta_fields(
            planner,
            &planned,
            operation_name,
            &operation_selection,
            &fragments,
        )?;

        let variables = variable_defs
            .iter()
            .map(|v| VariableDef {
                name: v.name.clone(),
                ty: type_ref(&v.var_type),
                default: v
                    .default_value
                    .as_ref()
                    .map(|d| value_to_json(d, &Map::new())),
            })
            .collect();

        Ok(Arc::new(PreparedOperation {
            kind,
            root_type,
            selection_set: operation_selection,
            fragments,
            variables,
            uses_introspection,
            plan,
            defer,
        }))
    }
}

type VariableDefinitions = Vec<q::VariableDefinition<'static, String>>;

/// The selection and the number of directives of the operation `operation_name` picks
/// (or the only one), for demand control before validation; `None` when there is no such
/// operation (selection reports that after validation).
fn operation_for_shape<'d>(
    document: &'d QueryDocument,
    operation_name: Option<&str>,
) -> Option<(&'d SelectionSet, usize)> {
    let mut operations = document.definitions.iter().filter_map(|d| match d {
        q::Definition::Operation(op) => Some(match op {
            q::OperationDefinition::SelectionSet(s) => (None, s, 0),
            q::OperationDefinition::Query(o) => {
                (o.name.as_deref(), &o.selection_set, o.directives.len())
            }
            q::OperationDefinition::Mutation(o) => {
                (o.name.as_deref(), &o.selection_set, o.directives.len())
            }
            q::OperationDefinition::Subscription(o) => {
                (o.name.as_deref(), &o.selection_set, o.directives.len())
            }
        }),
        _ => None,
    });
    let (_, selection, directives) = match operation_name {
        Some(name) => operations.find(|(n, ..)| *n == Some(name))?,
        None => {
            let first = operations.next()?;
            if operations.next().is_some() {
                return None;
            }
            first
        }
    };
    Some((selection, directives))
}

fn select_operation(
    document: &QueryDocument,
    operation_name: Option<&str>,
) -> Result<(OperationKind, SelectionSet, VariableDefinitions), RequestError> {
    let operations: Vec<(
        Option<&String>,
        OperationKind,
        &SelectionSet,
        &VariableDefinitions,
    )> = document
        .definitions
        .iter()
        .filter_map(|d| match d {
            q::Definition::Operation(op) => Some(op),
            _ => None,
        })
        .map(|op| match op {
            q::OperationDefinition::SelectionSet(s) => (None, OperationKind::Query, s, &EMPTY_VARS),
            q::OperationDefinition::Query(o) => (
                o.name.as_ref(),
                OperationKind::Query,
                &o.selection_set,
                &o.variable_definitions,
            ),
            q::OperationDefinition::Mutation(o) => (
                o.name.as_ref(),
                OperationKind::Mutation,
                &o.selection_set,
                &o.variable_definitions,
            ),
            q::OperationDefinition::Subscription(o) => (
                o.name.as_ref(),
                OperationKind::Subscription,
                &o.selection_set,
                &o.variable_definitions,
            ),
        })
        .collect();
    let chosen = match operation_name {
        Some(name) => operations
            .iter()
            .find(|(n, ..)| n.map(String::as_str) == Some(name))
            .ok_or_else(|| {
                RequestError::BadUserInput(format!("Unknown operation named \"{name}\"."))
            })?,
        None => match operations.as_slice() {
            [single] => single,
            [] => {
                return Err(RequestError::BadUserInput(
                    "The document contains no operation.".into(),
                ))
            }
            _ => {
                return Err(RequestError::BadUserInput(
                    "Must provide operation name if query contains multiple operations.".into(),
                ))
            }
        },
    };
    Ok((chosen.1, chosen.2.clone(), chosen.3.clone()))
}

static EMPTY_VARS: VariableDefinitions = Vec::new();

/// Names of root fields, looking through fragments (directives ignored: a conservative view).
fn root_field_names(
    set: &SelectionSet,
    fragments: &HashMap<String, FragmentDefinition>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![set];
    let mut seen = std::collections::HashSet::new();
    while let Some(set) = stack.pop() {
        for item in &set.items {
            match item {
                q::Selection::Field(f) => out.push(f.name.clone()),
                q::Selection::InlineFragment(f) => stack.push(&f.selection_set),
                q::Selection::FragmentSpread(s) => {
                    if let Some(f) = fragments.get(&s.fragment_name) {
                        if seen.insert(f.name.clone()) {
                            stack.push(&f.selection_set);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Plans the operation with the root meta-fields (`__typename`, `__schema`, `__type`) removed:
/// the gateway answers those itself. No plan at all when nothing else is selected.
fn plan_without_meta_fields(
    planner: &QueryPlanner,
    document: &QueryDocument,
    operation_name: Option<&str>,
    selection: &SelectionSet,
    fragments: &HashMap<String, FragmentDefinition>,
) -> Result<Plan, RequestError> {
    let names = root_field_names(selection, fragments);
    if names.iter().all(|n| n.starts_with("__")) {
        return Ok(Plan::default());
    }
    let mut stripped = document.clone();
    for definition in &mut stripped.definitions {
        if let q::Definition::Operation(op) = definition {
            let set = match op {
                q::OperationDefinition::SelectionSet(s) => s,
                q::OperationDefinition::Query(o) => &mut o.selection_set,
                q::OperationDefinition::Mutation(o) => &mut o.selection_set,
                q::OperationDefinition::Subscription(o) => &mut o.selection_set,
            };
            set.items.retain(
                |item| !matches!(item, q::Selection::Field(f) if is_introspection_root(&f.name)),
            );
        }
    }
    planner
        .plan(&stripped, operation_name)
        .map_err(|error| match error {
            PlanError::Invalid(message) => RequestError::Validation(vec![message]),
            PlanError::Unsupported(message) => RequestError::Unsupported(message.to_string()),
            PlanError::Internal(message) => {
                tracing::error!(%message, "query planning failed");
                RequestError::Internal
            }
        })
}

fn type_ref(ty: &q::Type<'static, String>) -> TypeRef {
    match ty {
        q::Type::NamedType(n) => TypeRef::Named(n.clone()),
        q::Type::ListType(inner) => TypeRef::List(Box::new(type_ref(inner))),
        q::Type::NonNullType(inner) => TypeRef::NonNull(Box::new(type_ref(inner))),
    }
}

/// Applies defaults and checks required variables. Values are passed to subgraphs as given;
/// subgraphs validate them against their own types.
pub fn coerce_variables(
    definitions: &[VariableDef],
    provided: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, RequestError> {
    let mut out = Map::new();
    for def in definitions {
        match provided.and_then(|p| p.get(&def.name)) {
            Some(Value::Null) if def.ty.is_non_null() => {
                return Err(RequestError::BadUserInput(format!(
                    "Variable \"${}\" of non-null type \"{}\" must not be null.",
                    def.name, def.ty
                )))
            }
            Some(value) => {
                out.insert(def.name.clone(), value.clone());
            }
            None => match &def.default {
                Some(default) => {
                    out.insert(def.name.clone(), default.clone());
                }
                None if def.ty.is_non_null() => {
                    return Err(RequestError::BadUserInput(format!(
                        "Variable \"${}\" of required type \"{}\" was not provided.",
                        def.name, def.ty
                    )))
                }
                None => {}
            },
        }
    }
    Ok(out)
}
