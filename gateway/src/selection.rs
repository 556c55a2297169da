//! Field collection over the client's operation (the spec's `CollectFields`).
//!
//! Why: projection and introspection both need "the fields selected on an object of type T",
//! with fragments expanded, `@skip`/`@include` applied and fields grouped by response key in
//! document order.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};

use graphql_tools::parser::query as q;
use serde_json::{Map, Value};

use crate::schema::SchemaModel;

pub type Field = q::Field<'static, String>;
pub type SelectionSet = q::SelectionSet<'static, String>;
pub type FragmentDefinition = q::FragmentDefinition<'static, String>;

/// What field collection needs besides the selection sets.
pub struct CollectContext<'a> {
    pub schema: &'a SchemaModel,
    pub fragments: &'a HashMap<String, FragmentDefinition>,
    pub variables: &'a Map<String, Value>,
}

/// Fields grouped by response key, in first-seen order.
pub type Grouped<'d> = Vec<(String, Vec<&'d Field>)>;

impl<'a> CollectContext<'a> {
    /// Collects the fields selected on an object of type `object_type` by `sets`.
    pub fn collect<'d>(&self, object_type: &str, sets: &[&'d SelectionSet]) -> Grouped<'d>
    where
        'a: 'd,
    {
        let mut out: Grouped<'d> = Vec::new();
        let mut index: FxHashMap<String, usize> = FxHashMap::default();
        let mut visited = FxHashSet::default();
        for set in sets {
            self.collect_into(object_type, set, &mut out, &mut index, &mut visited);
        }
        out
    }

    fn collect_into<'d>(
        &self,
        object_type: &str,
        set: &'d SelectionSet,
        out: &mut Grouped<'d>,
        index: &mut FxHashMap<String, usize>,
        visited: &mut FxHashSet<&'d str>,
    ) where
        'a: 'd,
    {
        for selection in &set.items {
            match selection {
                q::Selection::Field(field) => {
                    if !self.included(&field.directives) {
                        continue;
                    }
                    let key = field.alias.as_ref().unwrap_or(&field.name);
                    match index.get(key) {
                        Some(&i) => out[i].1.push(field),
                        None => {
                            index.insert(key.clone(), out.len());
                            out.push((key.clone(), vec![field]));
                        }
                    }
                }
                q::Selection::InlineFragment(fragment) => {
                    if !self.included(&fragment.directives) {
                        continue;
                    }
                    let applies = match &fragment.type_condition {
                        None => true,
                        Some(q::TypeCondition::On(cond)) => {
                            self.schema.fragment_applies(cond, object_type)
                        }
                    };
                    if applies {
                        self.collect_into(
                            object_type,
                            &fragment.selection_set,
                            out,
                            index,
                            visited,
                        );
                    }
                }
                q::Selection::FragmentSpread(spread) => {
                    if !self.included(&spread.directives) {
                        continue;
                    }
                    let Some(fragment) = self.fragments.get(&spread.fragment_name) else {
                        continue;
                    };
                    // Validation rejects cycles; `visited` also keeps a spread from being
                    // expanded twice in one selection set.
                    if !visited.insert(fragment.name.as_str()) {
                        continue;
                    }
                    let q::TypeCondition::On(cond) = &fragment.type_condition;
                    if self.schema.fragment_applies(cond, object_type) {
                        self.collect_into(
                            object_type,
                            &fragment.selection_set,
                            out,
                            index,
                            visited,
                        );
                    }
                }
            }
        }
    }

    /// `@skip(if:)` / `@include(if:)` evaluation; missing variables count as `false`.
    pub fn included(&self, directives: &[q::Directive<'static, String>]) -> bool {
        for directive in directives {
            let wanted = match directive.name.as_str() {
                "skip" => false,
                "include" => true,
                _ => continue,
            };
            let value = directive
                .arguments
                .iter()
                .find(|(name, _)| name == "if")
                .map(|(_, v)| self.bool_value(v))
                .unwrap_or(false);
            if value != wanted {
                return false;
            }
        }
        true
    }

    fn bool_value(&self, value: &q::Value<'static, String>) -> bool {
        match value {
            q::Value::Boolean(b) => *b,
            q::Value::Variable(name) => self
                .variables
                .get(name)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            _ => false,
        }
    }

    /// An argument's value as JSON (variables resolved).
    pub fn argument(&self, field: &Field, name: &str) -> Option<Value> {
        field
            .arguments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| value_to_json(v, self.variables))
    }
}

/// Converts a GraphQL literal to JSON, resolving variables from `variables`.
pub fn value_to_json(value: &q::Value<'static, String>, variables: &Map<String, Value>) -> Value {
    match value {
        q::Value::Variable(name) => variables.get(name).cloned().unwrap_or(Value::Null),
        q::Value::Int(n) => n.as_i64().map(Value::from).unwrap_or(Value::Null),
        q::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        q::Value::String(s) => Value::String(s.clone()),
        q::Value::Boolean(b) => Value::Bool(*b),
        q::Value::Null => Value::Null,
        q::Value::Enum(e) => Value::String(e.clone()),
        q::Value::List(items) => {
            Value::Array(items.iter().map(|v| value_to_json(v, variables)).collect())
        }
        q::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v, variables)))
                .collect(),
        ),
    }
}
