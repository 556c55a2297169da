//! Authorization directives at the edge: `@authenticated`, `@requiresScopes(scopes:)` and
//! `@policy(policies:)` on the supergraph's types and fields, enforced by the gateway
//! before anything is fetched.
//!
//! A field the caller may not see is removed from the operation, with an error at its
//! path (`UNAUTHENTICATED` for a caller who is not signed in, `FORBIDDEN` otherwise), and
//! the rest is planned and served: a client asking for ten fields and entitled to nine
//! gets nine. A field whose whole selection was removed goes too. This is a first check,
//! not the only one: subgraphs still decide for themselves.
//!
//! Who the caller is comes from [`Access`], which the layer that verified the credential
//! puts in the request's extensions (the `flowfleet` binary's edge layer); without it the
//! caller is anonymous with no scopes, so a gateway that nobody told about callers serves
//! no protected field. `@requiresScopes` lists alternatives of scopes that must all be
//! held (`[["a", "b"], ["c"]]`: a and b, or c). `@policy` names policies a
//! [`PolicyHook`] decides, with the same any-of-all-of shape; without a hook, no policy is
//! granted.
//!
//! The filtered operation depends on the operation and on what the caller holds, so it is
//! kept per (operation text, name, access) and planned like any operation (cached by its
//! text).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use graphql_tools::parser::query as q;
use graphql_tools::parser::schema as s;
use rustc_hash::FxHashMap;

use crate::error::{GraphQLError, PathSegment};
use crate::schema::{SchemaModel, TypeRef};

/// What the caller holds, as verified at the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Access {
    pub authenticated: bool,
    pub scopes: BTreeSet<String>,
}

tokio::task_local! {
    /// The access of the request this task serves (set by the HTTP handlers).
    pub(crate) static ACCESS: Access;
}

/// The current request's access; anonymous outside a request.
pub(crate) fn current() -> Access {
    ACCESS.try_with(Access::clone).unwrap_or_default()
}

/// Verifies a credential given later than the request's headers (a WebSocket's
/// `connection_init` payload, turned into headers) and says what it holds.
pub type AccessCheck =
    Arc<dyn Fn(http::HeaderMap) -> futures::future::BoxFuture<'static, Access> + Send + Sync>;

/// Decides `@policy` names for a caller: returns the policies it grants among those
/// asked.
pub type PolicyHook = Arc<dyn Fn(&Access, &[String]) -> BTreeSet<String> + Send + Sync>;

/// What a type or field requires.
#[derive(Debug, Clone, Default)]
struct Requirement {
    authenticated: bool,
    /// Any of these sets, all of each.
    scopes: Vec<Vec<String>>,
    policies: Vec<Vec<String>>,
}

impl Requirement {
    fn is_empty(&self) -> bool {
        !self.authenticated && self.scopes.is_empty() && self.policies.is_empty()
    }
}

/// The supergraph's authorization directives.
#[derive(Debug, Default)]
pub(crate) struct AccessModel {
    types: FxHashMap<String, Requirement>,
    fields: FxHashMap<(String, String), Requirement>,
    /// Every policy named anywhere (asked of the hook once per request).
    policies: BTreeSet<String>,
}

fn requirement(directives: &[s::Directive<'static, String>]) -> Requirement {
    let mut requirement = Requirement::default();
    let nested = |value: &s::Value<'static, String>| -> Vec<Vec<String>> {
        let s::Value::List(any) = value else {
            return Vec::new();
        };
        any.iter()
            .map(|all| match all {
                s::Value::List(all) => all
                    .iter()
                    .filter_map(|v| match v {
                        s::Value::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
                s::Value::String(one) => vec![one.clone()],
                _ => Vec::new(),
            })
            .collect()
    };
    for directive in directives {
        let argument = |name: &str| {
            directive
                .arguments
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| nested(v))
                .unwrap_or_default()
        };
        match directive.name.as_str() {
            "authenticated" => requirement.authenticated = true,
            "requiresScopes" => requirement.scopes.extend(argument("scopes")),
            "policy" => requirement.policies.extend(argument("policies")),
            _ => {}
        }
    }
    requirement
}

impl AccessModel {
    /// Reads the authorization directives of a parsed supergraph.
    pub fn from_document(document: &crate::planner::SchemaDocument) -> Self {
        let mut model = AccessModel::default();
        for site in crate::schema::directive_sites(document) {
            let on_type = requirement(site.directives);
            if !on_type.is_empty() {
                model.remember(&on_type);
                model.types.insert(site.type_name.to_string(), on_type);
            }
            for field in site.fields {
                let on_field = requirement(&field.directives);
                if !on_field.is_empty() {
                    model.remember(&on_field);
                    model
                        .fields
                        .insert((site.type_name.to_string(), field.name.clone()), on_field);
                }
            }
        }
        model
    }

    fn remember(&mut self, requirement: &Requirement) {
        self.policies
            .extend(requirement.policies.iter().flatten().cloned());
    }

    /// Whether the supergraph asks anything of anyone.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.fields.is_empty()
    }

    /// Whether `access` (with the policies it was granted) may see `field` of `parent`,
    /// which returns `named`; `None` when it may, the error code when it may not.
    fn denied(
        &self,
        access: &Access,
        granted: &BTreeSet<String>,
        parent: &str,
        field: &str,
        named: &str,
    ) -> Option<&'static str> {
        let requirements = [
            self.fields.get(&(parent.to_string(), field.to_string())),
            self.types.get(named),
        ];
        for requirement in requirements.into_iter().flatten() {
            let needs_identity = requirement.authenticated
                || !requirement.scopes.is_empty()
                || !requirement.policies.is_empty();
            if needs_identity && !access.authenticated {
                return Some("UNAUTHENTICATED");
            }
            let holds = |sets: &[Vec<String>], held: &dyn Fn(&String) -> bool| {
                sets.is_empty() || sets.iter().any(|all| all.iter().all(held))
            };
            if !holds(&requirement.scopes, &|s| access.scopes.contains(s))
                || !holds(&requirement.policies, &|p| granted.contains(p))
            {
                return Some("FORBIDDEN");
            }
        }
        None
    }
}

/// An operation with what the caller may not see taken out.
#[derive(Debug, Clone)]
pub(crate) struct Filtered {
    /// The text to plan and run, or `None` when nothing was taken out.
    pub query: Option<String>,
    /// One error per field taken out, at its path.
    pub errors: Vec<GraphQLError>,
    /// Whether nothing is left of the operation.
    pub empty: bool,
}

/// Takes out of `document` (already validated) what `access` may not see.
pub(crate) fn filter(
    model: &AccessModel,
    schema: &SchemaModel,
    policy: Option<&PolicyHook>,
    access: &Access,
    document: &q::Document<'static, String>,
    root: &str,
    operation_name: Option<&str>,
) -> Filtered {
    let asked: Vec<String> = model.policies.iter().cloned().collect();
    let granted = match (policy, asked.is_empty()) {
        (Some(hook), false) => hook(access, &asked),
        _ => BTreeSet::new(),
    };
    let mut filter = Filter {
        model,
        schema,
        access,
        granted: &granted,
        fragments: document
            .definitions
            .iter()
            .filter_map(|d| match d {
                q::Definition::Fragment(f) => Some((f.name.clone(), f)),
                _ => None,
            })
            .collect(),
        errors: Vec::new(),
        changed: false,
    };
    let mut filtered = document.clone();
    let mut empty = false;
    for definition in &mut filtered.definitions {
        let q::Definition::Operation(operation) = definition else {
            continue;
        };
        let (name, selection) = match operation {
            q::OperationDefinition::SelectionSet(s) => (None, s),
            q::OperationDefinition::Query(o) => (o.name.clone(), &mut o.selection_set),
            q::OperationDefinition::Mutation(o) => (o.name.clone(), &mut o.selection_set),
            q::OperationDefinition::Subscription(o) => (o.name.clone(), &mut o.selection_set),
        };
        if operation_name.is_some() && name.as_deref() != operation_name {
            continue;
        }
        let mut path = Vec::new();
        filter.selection(root, selection, &mut path);
        empty = selection.items.is_empty();
    }
    if !filter.changed {
        return Filtered {
            query: None,
            errors: Vec::new(),
            empty: false,
        };
    }
    // Fragments with something taken out were inlined where spread, and variables may now
    // be used by nothing: drop both (validation refuses them).
    crate::defer::prune_unused(&mut filtered);
    Filtered {
        query: Some(filtered.to_string()),
        errors: filter.errors,
        empty,
    }
}

struct Filter<'a> {
    model: &'a AccessModel,
    schema: &'a SchemaModel,
    access: &'a Access,
    granted: &'a BTreeSet<String>,
    fragments: HashMap<String, &'a q::FragmentDefinition<'static, String>>,
    errors: Vec<GraphQLError>,
    changed: bool,
}

fn named(ty: &TypeRef) -> &str {
    match ty {
        TypeRef::Named(name) => name,
        TypeRef::NonNull(inner) | TypeRef::List(inner) => named(inner),
    }
}

impl Filter<'_> {
    /// Filters `selection` on `parent` in place; fragment spreads whose fragment has
    /// something to take out are replaced by the filtered fragment, inline.
    fn selection(
        &mut self,
        parent: &str,
        selection: &mut q::SelectionSet<'static, String>,
        path: &mut Vec<PathSegment>,
    ) {
        let items = std::mem::take(&mut selection.items);
        for item in items {
            match item {
                q::Selection::Field(mut field) => {
                    let key = field.alias.clone().unwrap_or_else(|| field.name.clone());
                    path.push(PathSegment::Key(key));
                    let definition = self
                        .schema
                        .get(parent)
                        .and_then(|t| t.field(&field.name))
                        .map(|f| named(&f.ty).to_string());
                    let keep = match &definition {
                        // `__typename` and introspection fields, or unknown (validation
                        // refused those already).
                        None => true,
                        Some(named) => {
                            match self.model.denied(
                                self.access,
                                self.granted,
                                parent,
                                &field.name,
                                named,
                            ) {
                                Some(code) => {
                                    self.deny(code, path);
                                    false
                                }
                                None => {
                                    if !field.selection_set.items.is_empty() {
                                        self.selection(named, &mut field.selection_set, path);
                                        // Nothing left below: the field goes too.
                                        !field.selection_set.items.is_empty()
                                    } else {
                                        true
                                    }
                                }
                            }
                        }
                    };
                    path.pop();
                    if keep {
                        selection.items.push(q::Selection::Field(field));
                    } else {
                        self.changed = true;
                    }
                }
                q::Selection::InlineFragment(mut inline) => {
                    let on = match &inline.type_condition {
                        Some(q::TypeCondition::On(name)) => name.clone(),
                        None => parent.to_string(),
                    };
                    self.selection(&on, &mut inline.selection_set, path);
                    if !inline.selection_set.items.is_empty() {
                        selection.items.push(q::Selection::InlineFragment(inline));
                    }
                }
                q::Selection::FragmentSpread(spread) => {
                    let Some(fragment) = self.fragments.get(&spread.fragment_name).copied() else {
                        selection.items.push(q::Selection::FragmentSpread(spread));
                        continue;
                    };
                    // Inline the fragment here, filtered for this place (its errors get
                    // this place's path).
                    let q::TypeCondition::On(on) = &fragment.type_condition;
                    let mut body = fragment.selection_set.clone();
                    let before = self.changed;
                    self.changed = false;
                    self.selection(on, &mut body, path);
                    if !self.changed {
                        self.changed = before;
                        selection.items.push(q::Selection::FragmentSpread(spread));
                        continue;
                    }
                    self.changed = true;
                    if !body.items.is_empty() {
                        selection
                            .items
                            .push(q::Selection::InlineFragment(q::InlineFragment {
                                position: spread.position,
                                type_condition: Some(fragment.type_condition.clone()),
                                directives: spread.directives,
                                selection_set: body,
                            }));
                    }
                }
            }
        }
    }

    fn deny(&mut self, code: &'static str, path: &[PathSegment]) {
        let message = match code {
            "UNAUTHENTICATED" => "Sign in to see this field; it was left out of the response.",
            _ => "You are not allowed to see this field; it was left out of the response.",
        };
        self.errors.push(
            GraphQLError::new(message)
                .with_code(code)
                .with_path(path.to_vec()),
        );
    }
}
