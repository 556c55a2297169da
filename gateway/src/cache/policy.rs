//! Which subgraph fetches may be cached, and for how long: a fetch is cacheable when every
//! field it selects is covered by a policy (for the field, `Type.field`, or for its type,
//! `Type`), as with `@cacheControl`: the shortest `max_age` wins and one private field makes
//! the whole answer private (kept per caller). A field without a policy, a mutation, or a
//! field the gateway cannot place (not in the API schema) makes a fetch uncacheable.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use graphql_tools::parser::query as q;

use crate::schema::SchemaModel;

/// Who may see a cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The same for every caller.
    Public,
    /// Kept per credential (the `Authorization` header).
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub max_age: Duration,
    pub scope: Scope,
}

/// What a fetch's operation allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub max_age: Duration,
    pub scope: Scope,
    /// The object types whose fields it selects: an event about one of them evicts it.
    pub types: BTreeSet<String>,
}

/// The verdict on one subgraph operation text, `None` when it may not be cached.
pub(crate) fn verdict(
    operation: &str,
    policies: &HashMap<String, CachePolicy>,
    schema: &SchemaModel,
) -> Option<Verdict> {
    let document = graphql_tools::parser::parse_query::<String>(operation).ok()?;
    let mut fragments = HashMap::new();
    let mut operations = Vec::new();
    for definition in &document.definitions {
        match definition {
            q::Definition::Fragment(fragment) => {
                fragments.insert(fragment.name.as_str(), fragment);
            }
            q::Definition::Operation(operation) => operations.push(operation),
        }
    }
    let [operation] = operations.as_slice() else {
        return None;
    };
    let selection_set = match operation {
        q::OperationDefinition::Query(query) => &query.selection_set,
        q::OperationDefinition::SelectionSet(set) => set,
        _ => return None,
    };
    let mut walk = Walk {
        policies,
        schema,
        fragments: &fragments,
        verdict: Verdict {
            max_age: Duration::MAX,
            scope: Scope::Public,
            types: BTreeSet::new(),
        },
        depth: 0,
    };
    walk.root(selection_set)?;
    (walk.verdict.max_age > Duration::ZERO && walk.verdict.max_age != Duration::MAX)
        .then_some(walk.verdict)
}

struct Walk<'a> {
    policies: &'a HashMap<String, CachePolicy>,
    schema: &'a SchemaModel,
    fragments: &'a HashMap<&'a str, &'a q::FragmentDefinition<'a, String>>,
    verdict: Verdict,
    depth: usize,
}

impl Walk<'_> {
    fn root(&mut self, set: &q::SelectionSet<'_, String>) -> Option<()> {
        for selection in &set.items {
            match selection {
                // An entity fetch: the fields under `... on T` are fields of T.
                q::Selection::Field(field) if field.name == "_entities" => {
                    for item in &field.selection_set.items {
                        match item {
                            q::Selection::InlineFragment(fragment) => {
                                let Some(q::TypeCondition::On(name)) = &fragment.type_condition
                                else {
                                    return None;
                                };
                                self.set(name, &fragment.selection_set)?;
                            }
                            q::Selection::Field(f) if f.name == "__typename" => {}
                            _ => return None,
                        }
                    }
                }
                _ => {
                    let query = self.schema.query_type.clone();
                    self.selection(&query, selection)?
                }
            }
        }
        Some(())
    }

    fn set(&mut self, parent: &str, set: &q::SelectionSet<'_, String>) -> Option<()> {
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        for selection in &set.items {
            self.selection(parent, selection)?;
        }
        self.depth -= 1;
        Some(())
    }

    fn selection(&mut self, parent: &str, selection: &q::Selection<'_, String>) -> Option<()> {
        match selection {
            q::Selection::Field(field) => {
                if field.name == "__typename" {
                    return Some(());
                }
                let definition = self.schema.get(parent)?.field(&field.name)?;
                let policy = self
                    .policies
                    .get(&format!("{parent}.{}", field.name))
                    .or_else(|| self.policies.get(parent))?;
                self.verdict.max_age = self.verdict.max_age.min(policy.max_age);
                if policy.scope == Scope::Private {
                    self.verdict.scope = Scope::Private;
                }
                if parent != self.schema.query_type {
                    self.verdict.types.insert(parent.to_string());
                }
                let child = definition.ty.named();
                if field.selection_set.items.is_empty() {
                    return Some(());
                }
                self.set(child, &field.selection_set)
            }
            q::Selection::InlineFragment(fragment) => match &fragment.type_condition {
                Some(q::TypeCondition::On(name)) => self.set(name, &fragment.selection_set),
                None => self.set(parent, &fragment.selection_set),
            },
            q::Selection::FragmentSpread(spread) => {
                let fragment = self.fragments.get(spread.fragment_name.as_str())?;
                let q::TypeCondition::On(name) = &fragment.type_condition;
                self.set(name, &fragment.selection_set)
            }
        }
    }
}
