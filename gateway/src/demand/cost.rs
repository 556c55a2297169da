//! Static cost of an operation from Federation's demand-control directives, and its actual
//! cost from the response.
//!
//! The rules (those of the IBM GraphQL cost specification that `@cost` and `@listSize`
//! come from, as Apollo Router applies them):
//! - a field costs its `@cost(weight:)`, else its type's `@cost`, else 1 when it returns an
//!   object, interface or union and 0 when it returns a scalar or enum;
//! - a field returning a list costs (its weight + its selection's cost) × the list's size:
//!   the largest value given to one of its `@listSize(slicingArguments:)` (a literal or a
//!   variable), else its `@listSize(assumedSize:)`, else the configured default list size.
//!   With `@listSize(sizedFields:)` (connections: `edges`, `nodes`), that size applies to
//!   those fields of its selection instead;
//! - each root field of a mutation adds 10;
//! - fragments count wherever they are spread, every type condition included (an upper
//!   bound for abstract types); introspection fields cost nothing.
//!
//! The actual cost applies the same weights to the response: lists count the items they
//! returned, and fields that came back `null` count nothing below them.

use graphql_tools::parser::query as q;
use graphql_tools::parser::schema as s;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use crate::schema::{SchemaModel, TypeRef};
use crate::selection::{FragmentDefinition, SelectionSet};
use std::collections::HashMap;

/// What a mutation's root field adds.
const MUTATION_WEIGHT: f64 = 10.0;

#[derive(Debug, Clone, Default)]
struct ListSize {
    assumed_size: Option<f64>,
    slicing_arguments: Vec<String>,
    sized_fields: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct FieldCost {
    weight: Option<f64>,
    list_size: Option<ListSize>,
}

/// The cost directives of a supergraph.
#[derive(Debug, Default)]
pub(crate) struct CostModel {
    /// (type, field) -> directives on that field.
    fields: FxHashMap<(String, String), FieldCost>,
    /// Type -> its `@cost(weight:)`.
    types: FxHashMap<String, f64>,
}

impl CostModel {
    /// Reads `@cost` and `@listSize` from a parsed supergraph (one without them gives the
    /// default weights everywhere).
    pub fn from_document(document: &crate::planner::SchemaDocument) -> Self {
        let mut model = CostModel::default();
        for site in crate::schema::directive_sites(document) {
            if let Some(weight) = weight_of(site.directives) {
                model.types.insert(site.type_name.to_string(), weight);
            }
            for field in site.fields {
                let cost = FieldCost {
                    weight: weight_of(&field.directives),
                    list_size: list_size_of(&field.directives),
                };
                if cost.weight.is_some() || cost.list_size.is_some() {
                    model
                        .fields
                        .insert((site.type_name.to_string(), field.name.clone()), cost);
                }
            }
        }
        model
    }
}

fn weight_of(directives: &[s::Directive<'static, String>]) -> Option<f64> {
    let directive = directives.iter().find(|d| d.name == "cost")?;
    directive
        .arguments
        .iter()
        .find(|(name, _)| name == "weight")
        .and_then(|(_, value)| number(value))
}

fn list_size_of(directives: &[s::Directive<'static, String>]) -> Option<ListSize> {
    let directive = directives.iter().find(|d| d.name == "listSize")?;
    let mut size = ListSize::default();
    for (name, value) in &directive.arguments {
        let strings = || match value {
            s::Value::List(items) => items
                .iter()
                .filter_map(|i| match i {
                    s::Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        match name.as_str() {
            "assumedSize" => size.assumed_size = number(value),
            "slicingArguments" => size.slicing_arguments = strings(),
            "sizedFields" => size.sized_fields = strings(),
            _ => {}
        }
    }
    Some(size)
}

fn number(value: &s::Value<'static, String>) -> Option<f64> {
    match value {
        s::Value::Int(n) => n.as_i64().map(|n| n as f64),
        s::Value::Float(f) => Some(*f),
        s::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Everything a cost computation reads.
pub(crate) struct Costing<'a> {
    pub costs: &'a CostModel,
    pub schema: &'a SchemaModel,
    pub fragments: &'a HashMap<String, FragmentDefinition>,
    pub variables: &'a Map<String, Value>,
    pub default_list_size: f64,
}

/// A field's type and weight.
struct Weighed<'m> {
    /// Its innermost named type.
    named: &'m str,
    is_list: bool,
    /// Whether that type is an object, interface or union.
    composite: bool,
    /// `@cost` of the field, else of its type, else 1 for composites and 0 otherwise.
    weight: f64,
    directives: Option<&'m FieldCost>,
}

/// The innermost named type of `ty`, and whether it is a list.
fn unwrap(ty: &TypeRef) -> (&str, bool) {
    match ty {
        TypeRef::Named(name) => (name, false),
        TypeRef::NonNull(inner) => unwrap(inner),
        TypeRef::List(inner) => (unwrap(inner).0, true),
    }
}

impl<'a> Costing<'a> {
    /// The estimated cost of `selection` on the root type `root`.
    pub fn estimate(&self, root: &str, selection: &SelectionSet, mutation: bool) -> f64 {
        let mut path = Vec::new();
        let fields = self.selection(root, selection, None, &mut path);
        if mutation {
            let mut root_fields = 0.0;
            self.for_each_field(root, selection, &mut Vec::new(), &mut |_, _| {
                root_fields += 1.0
            });
            fields + root_fields * MUTATION_WEIGHT
        } else {
            fields
        }
    }

    /// Calls `f` with each field of `selection` (through fragments) and its parent type.
    fn for_each_field<'s>(
        &'s self,
        parent: &'s str,
        selection: &'s SelectionSet,
        path: &mut Vec<&'s str>,
        f: &mut dyn FnMut(&'s str, &'s q::Field<'static, String>),
    ) {
        for item in &selection.items {
            match item {
                q::Selection::Field(field) => f(parent, field),
                q::Selection::InlineFragment(inline) => {
                    let on = match &inline.type_condition {
                        Some(q::TypeCondition::On(name)) => name.as_str(),
                        None => parent,
                    };
                    self.for_each_field(on, &inline.selection_set, path, f);
                }
                q::Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    let Some(fragment) = self.fragments.get(name) else {
                        continue;
                    };
                    if path.contains(&name) {
                        continue;
                    }
                    let q::TypeCondition::On(on) = &fragment.type_condition;
                    path.push(name);
                    self.for_each_field(on, &fragment.selection_set, path, f);
                    path.pop();
                }
            }
        }
    }

    /// The cost of `selection` on `parent`; `sized` is a list size that applies to the
    /// fields it names (a parent's `@listSize(sizedFields:)`).
    fn selection<'s>(
        &'s self,
        parent: &'s str,
        selection: &'s SelectionSet,
        sized: Option<(&[String], f64)>,
        path: &mut Vec<&'s str>,
    ) -> f64 {
        let mut total = 0.0;
        let mut fields = Vec::new();
        self.for_each_field(parent, selection, path, &mut |parent, field| {
            fields.push((parent, field))
        });
        for (parent, field) in fields {
            total += self.field(parent, field, sized);
        }
        total
    }

    /// What the estimate and the actual cost both read of `field` on `parent`; `None` for
    /// introspection fields and fields the schema does not have (they cost nothing).
    fn weighed(&self, parent: &str, field: &q::Field<'static, String>) -> Option<Weighed<'_>> {
        if field.name.starts_with("__") {
            return None;
        }
        let definition = self.schema.get(parent)?.field(&field.name)?;
        let (named, is_list) = unwrap(&definition.ty);
        let directives = self
            .costs
            .fields
            .get(&(parent.to_string(), field.name.clone()));
        let composite = self
            .schema
            .get(named)
            .is_some_and(|t| t.kind.is_composite());
        let weight = directives
            .and_then(|d| d.weight)
            .or_else(|| self.costs.types.get(named).copied())
            .unwrap_or(if composite { 1.0 } else { 0.0 });
        Some(Weighed {
            named,
            is_list,
            composite,
            weight,
            directives,
        })
    }

    fn field(
        &self,
        parent: &str,
        field: &q::Field<'static, String>,
        sized: Option<(&[String], f64)>,
    ) -> f64 {
        let Some(Weighed {
            named,
            is_list,
            composite,
            weight,
            directives,
        }) = self.weighed(parent, field)
        else {
            return 0.0;
        };
        let list_size = directives.and_then(|d| d.list_size.as_ref());
        let size = self.list_size(field, list_size);
        // A connection: the size belongs to the fields it names, not to this field.
        let (own_size, passed) = match list_size {
            Some(l) if !l.sized_fields.is_empty() => (None, Some((&l.sized_fields[..], size))),
            _ => (is_list.then_some(size), None),
        };
        let own_size = match sized {
            Some((names, size)) if names.contains(&field.name) => Some(size),
            _ => own_size,
        };
        let children = if composite {
            self.selection(named, &field.selection_set, passed, &mut Vec::new())
        } else {
            0.0
        };
        (weight + children) * own_size.unwrap_or(1.0)
    }

    /// The size of the list `field` returns: its largest slicing argument, its assumed
    /// size, or the default.
    fn list_size(&self, field: &q::Field<'static, String>, list_size: Option<&ListSize>) -> f64 {
        let Some(list_size) = list_size else {
            return self.default_list_size;
        };
        let sliced = field
            .arguments
            .iter()
            .filter(|(name, _)| list_size.slicing_arguments.contains(name))
            .filter_map(|(_, value)| match value {
                q::Value::Int(n) => n.as_i64().map(|n| n as f64),
                q::Value::Variable(name) => self.variables.get(name).and_then(Value::as_f64),
                _ => None,
            })
            .fold(None, |max: Option<f64>, n| {
                Some(max.map_or(n, |m| m.max(n)))
            });
        sliced
            .or(list_size.assumed_size)
            .unwrap_or(self.default_list_size)
    }

    /// The cost of `selection` on `parent` as answered by `data` (the response's object).
    pub fn actual(
        &self,
        root: &str,
        selection: &SelectionSet,
        data: &Value,
        mutation: bool,
    ) -> f64 {
        let mut root_fields = 0.0;
        let mut total = 0.0;
        let mut fields = Vec::new();
        self.for_each_field(root, selection, &mut Vec::new(), &mut |parent, field| {
            fields.push((parent, field))
        });
        for (parent, field) in fields {
            root_fields += 1.0;
            total += self.actual_field(parent, field, data);
        }
        if mutation {
            total += root_fields * MUTATION_WEIGHT;
        }
        total
    }

    fn actual_field(&self, parent: &str, field: &q::Field<'static, String>, object: &Value) -> f64 {
        let Some(weighed) = self.weighed(parent, field) else {
            return 0.0;
        };
        let key = field.alias.as_deref().unwrap_or(&field.name);
        let Some(value) = object.get(key) else {
            return 0.0;
        };
        self.actual_value(
            weighed.named,
            weighed.weight,
            weighed.composite,
            field,
            value,
        )
    }

    fn actual_value(
        &self,
        named: &str,
        weight: f64,
        composite: bool,
        field: &q::Field<'static, String>,
        value: &Value,
    ) -> f64 {
        match value {
            Value::Null => 0.0,
            Value::Array(items) => items
                .iter()
                .map(|item| self.actual_value(named, weight, composite, field, item))
                .sum(),
            Value::Object(_) if composite => {
                // The object's own type, for fields selected under a type condition.
                let concrete = value
                    .get("__typename")
                    .and_then(Value::as_str)
                    .unwrap_or(named);
                let mut fields = Vec::new();
                self.for_each_field(named, &field.selection_set, &mut Vec::new(), &mut |p, f| {
                    fields.push((p, f))
                });
                let children: f64 = fields
                    .into_iter()
                    .filter(|(p, _)| {
                        *p == named || *p == concrete || self.schema.fragment_applies(p, concrete)
                    })
                    .map(|(p, f)| self.actual_field(p, f, value))
                    .sum();
                weight + children
            }
            _ => weight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = "type Query { x: Int } type Mutation { a: T, b: [T] } \
                       type T { id: Int, items: [T] @listSize(assumedSize: 3) }";

    fn estimate(query: &str, mutation: bool) -> f64 {
        let schema = SchemaModel::from_document(&crate::planner::parse_schema(SDL).unwrap());
        let costs = CostModel::from_document(&crate::planner::parse_schema(SDL).unwrap());
        let document = graphql_tools::parser::parse_query::<String>(query)
            .unwrap()
            .into_static();
        let selection = document
            .definitions
            .into_iter()
            .find_map(|d| match d {
                q::Definition::Operation(q::OperationDefinition::Mutation(m)) => {
                    Some(m.selection_set)
                }
                q::Definition::Operation(q::OperationDefinition::SelectionSet(s)) => Some(s),
                _ => None,
            })
            .unwrap();
        let costing = Costing {
            costs: &costs,
            schema: &schema,
            fragments: &HashMap::new(),
            variables: &Map::new(),
            default_list_size: 10.0,
        };
        let root = if mutation { "Mutation" } else { "Query" };
        costing.estimate(root, &selection, mutation)
    }

    #[test]
    fn a_mutation_adds_ten_per_root_field() {
        // `a`: an object (1) + 10; `b`: ten objects by default (10) + 10.
        assert_eq!(estimate("mutation { a { id } }", true), 11.0);
        assert_eq!(estimate("mutation { a { id } b { id } }", true), 31.0);
    }

    #[test]
    fn assumed_sizes_multiply_down_the_tree() {
        // a (1) + items: 3 × (1 + items: 3 × 1) = 1 + 3 × 4 = 13, plus 10 for the mutation.
        assert_eq!(
            estimate("mutation { a { items { items { id } } } }", true),
            23.0
        );
    }
}
