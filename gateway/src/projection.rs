//! Shapes the merged subgraph data into the client's response.
//!
//! Why a separate pass: subgraph responses contain extra fields (keys, `__typename`s, fields
//! fetched for `@requires`) and lack the client's view (fragments on abstract types, field
//! order). Walking the client's operation over the merged data gives the exact response and
//! is also where GraphQL null propagation happens: a `null` in a non-null position nulls the
//! nearest nullable parent, with one error at the origin.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::error::{codes, GraphQLError, PathSegment};
use crate::executor::typename;
use crate::schema::{TypeKind, TypeRef};
use crate::selection::{CollectContext, Field, Grouped, SelectionSet};

/// Identifies one field collection: the object type and the selection sets (by address:
/// they live in the prepared operation, which outlives the projection).
#[derive(PartialEq, Eq, Hash)]
struct CollectKey {
    object_type: String,
    sets: Vec<usize>,
}

/// `Type.field`, formatted only when an error needs it (projection visits every field).
pub struct FieldLabel<'a> {
    type_name: &'a str,
    field: &'a str,
}

impl std::fmt::Display for FieldLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.type_name, self.field)
    }
}

pub struct Projector<'a> {
    ctx: &'a CollectContext<'a>,
    /// Field collection results by (object type, selection sets): list items of one type
    /// share them, and collecting is a large part of projection's cost otherwise.
    collected: HashMap<CollectKey, Rc<Grouped<'a>>>,
    /// Errors already known (from subgraphs); a null-propagation error is only added when no
    /// known error explains the null (same path, an ancestor or a descendant).
    known: Vec<Vec<PathSegment>>,
    pub errors: Vec<GraphQLError>,
}

impl<'a> Projector<'a> {
    pub fn new(ctx: &'a CollectContext<'a>, existing: &[GraphQLError]) -> Self {
        Self {
            ctx,
            collected: HashMap::new(),
            known: existing.iter().filter_map(|e| e.path.clone()).collect(),
            errors: Vec::new(),
        }
    }

    /// Projects the root selection set; returns `Value::Null` if a root field's null propagated.
    pub fn project_root(
        &mut self,
        root_type: &str,
        selection_set: &'a SelectionSet,
        data: &Value,
    ) -> Value {
        let mut path = Vec::new();
        self.complete_object(root_type, data, &[selection_set], &mut path)
            .unwrap_or(Value::Null)
    }

    /// `None` means "null here, and this position is non-null": the caller must null itself.
    fn complete(
        &mut self,
        ty: &TypeRef,
        value: &Value,
        fields: &[&'a Field],
        path: &mut Vec<PathSegment>,
        label: &FieldLabel<'_>,
    ) -> Option<Value> {
        match ty {
            TypeRef::NonNull(inner) => {
                let completed = self
                    .complete(inner, value, fields, path, label)
                    .unwrap_or(Value::Null);
                if completed.is_null() {
                    self.null_error(path, label);
                    None
                } else {
                    Some(completed)
                }
            }
            TypeRef::List(inner) => {
                let Value::Array(items) = value else {
                    return Some(Value::Null);
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathSegment::Index(i));
                    let completed = self.complete(inner, item, fields, path, label);
                    path.pop();
                    match completed {
                        Some(v) => out.push(v),
                        None => return Some(Value::Null),
                    }
                }
                Some(Value::Array(out))
            }
            TypeRef::Named(name) => {
                if value.is_null() {
                    return Some(Value::Null);
                }
                let type_def = self.ctx.schema.get(name);
                match type_def.map(|t| t.kind) {
                    Some(kind) if kind.is_composite() => {}
                    // A subgraph may know enum values the API schema hides (`@inaccessible`)
                    // or lacks: such a value cannot be serialized for this client.
                    Some(TypeKind::Enum) => {
                        let known = value.as_str().is_some_and(|v| {
                            type_def.is_some_and(|t| t.enum_values.iter().any(|e| e.name == v))
                        });
                        if !known {
                            self.errors.push(
                                GraphQLError::new(format!(
                                    "Enum \"{name}\" cannot represent the value returned for {label}."
                                ))
                                .with_code(codes::INVALID_ENUM_VALUE)
                                .with_path(path.clone()),
                            );
                            self.known.push(path.clone());
                            return Some(Value::Null);
                        }
                        return Some(value.clone());
                    }
                    _ => return Some(value.clone()),
                }
                let sets: Vec<&'a SelectionSet> = fields.iter().map(|f| &f.selection_set).collect();
                Some(
                    self.complete_object(name, value, &sets, path)
                        .unwrap_or(Value::Null),
                )
            }
        }
    }

    /// `None` when a non-null field of the object was null (the object becomes null).
    fn complete_object(
        &mut self,
        declared: &str,
        value: &Value,
        sets: &[&'a SelectionSet],
        path: &mut Vec<PathSegment>,
    ) -> Option<Value> {
        let Value::Object(object) = value else {
            return Some(Value::Null);
        };
        let schema = self.ctx.schema;
        let concrete: &str = match schema.get(declared).map(|t| t.kind) {
            Some(TypeKind::Object) | None => declared,
            Some(_) => match typename(value) {
                Some(tn) if schema.fragment_applies(declared, tn) => tn,
                // A type the API schema does not expose (`@inaccessible`, or unknown to
                // the supergraph): the client cannot be shown this object.
                Some(_) => return Some(Value::Null),
                None => declared,
            },
        };
        let type_def = schema.get(concrete).or_else(|| schema.get(declared));
        let grouped = self.collect(concrete, sets);
        let mut out = Map::with_capacity(grouped.len());
        for (key, fields) in grouped.iter() {
            let name = fields[0].name.as_str();
            if name == "__typename" {
                out.insert(key.clone(), Value::String(concrete.to_string()));
                continue;
            }
            let Some(def) = type_def.and_then(|t| t.field(name)) else {
                continue;
            };
            let label = FieldLabel {
                type_name: concrete,
                field: name,
            };
            path.push(PathSegment::Key(key.clone()));
            let completed = self.complete(
                &def.ty,
                object.get(key).unwrap_or(&Value::Null),
                fields,
                path,
                &label,
            );
            path.pop();
            out.insert(key.clone(), completed?);
        }
        Some(Value::Object(out))
    }

    fn collect(&mut self, object_type: &str, sets: &[&'a SelectionSet]) -> Rc<Grouped<'a>> {
        let key = CollectKey {
            object_type: object_type.to_string(),
            sets: sets
                .iter()
                .map(|s| *s as *const SelectionSet as usize)
                .collect(),
        };
        if let Some(hit) = self.collected.get(&key) {
            return hit.clone();
        }
        let grouped = Rc::new(self.ctx.collect(object_type, sets));
        self.collected.insert(key, grouped.clone());
        grouped
    }

    fn null_error(&mut self, path: &[PathSegment], label: &FieldLabel<'_>) {
        let explained = self
            .known
            .iter()
            .any(|known| known.starts_with(path) || path.starts_with(known));
        if explained {
            return;
        }
        self.known.push(path.to_vec());
        self.errors.push(
            GraphQLError::new(format!(
                "Cannot return null for non-nullable field {label}."
            ))
            .with_code(codes::NON_NULL_VIOLATION)
            .with_path(path.to_vec()),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use graphql_tools::parser::query as q;
    use serde_json::{json, Map, Value};

    use super::Projector;
    use crate::planner::{parse_query, parse_schema};
    use crate::schema::SchemaModel;
    use crate::selection::CollectContext;

    /// An API schema as clients see it: the supergraph's `@inaccessible` parts are gone.
    const API_SCHEMA: &str = r#"
        type Query { users: [User] owner: User! pets: [Pet] }
        type User { id: ID! kind: Kind strictKind: Kind! }
        enum Kind { REGULAR ADMIN }
        interface Pet { name: String }
        type Dog implements Pet { name: String }
    "#;

    fn project(query: &str, data: Value) -> Value {
        let schema = SchemaModel::from_document(&parse_schema(API_SCHEMA).expect("schema"));
        let document = parse_query(query).expect("query");
        let Some(q::Definition::Operation(q::OperationDefinition::SelectionSet(set))) =
            document.definitions.first()
        else {
            panic!("expected an anonymous query");
        };
        let variables = Map::new();
        let fragments = HashMap::new();
        let ctx = CollectContext {
            schema: &schema,
            fragments: &fragments,
            variables: &variables,
        };
        let mut projector = Projector::new(&ctx, &[]);
        let data = projector.project_root("Query", set, &data);
        let errors: Vec<Value> = projector.errors.iter().map(|e| e.to_json()).collect();
        json!({ "data": data, "errors": errors })
    }

    #[test]
    fn enum_value_unknown_to_the_api_schema_becomes_null_with_an_error() {
        let out = project(
            "{ users { id kind } }",
            json!({"users": [{"id": "1", "kind": "REGULAR"}, {"id": "2", "kind": "HIDDEN"}]}),
        );
        assert_eq!(
            out["data"],
            json!({"users": [{"id": "1", "kind": "REGULAR"}, {"id": "2", "kind": null}]})
        );
        assert_eq!(out["errors"].as_array().map(Vec::len), Some(1), "{out}");
        assert_eq!(out["errors"][0]["path"], json!(["users", 1, "kind"]));
        assert_eq!(
            out["errors"][0]["extensions"]["code"],
            json!("INVALID_ENUM_VALUE")
        );
    }

    #[test]
    fn unknown_enum_value_in_non_null_position_nulls_the_parent_with_one_error() {
        let out = project(
            "{ owner { id strictKind } }",
            json!({"owner": {"id": "1", "strictKind": "HIDDEN"}}),
        );
        // `owner` is non-null too, so the null reaches `data`.
        assert_eq!(out["data"], Value::Null);
        assert_eq!(out["errors"].as_array().map(Vec::len), Some(1), "{out}");
        assert_eq!(out["errors"][0]["path"], json!(["owner", "strictKind"]));
    }

    #[test]
    fn object_of_a_type_hidden_from_the_api_schema_becomes_null() {
        let out = project(
            "{ pets { __typename name } }",
            json!({"pets": [
                {"__typename": "Dog", "name": "Rex"},
                {"__typename": "Cat", "name": "Tom"}
            ]}),
        );
        assert_eq!(
            out["data"],
            json!({"pets": [{"__typename": "Dog", "name": "Rex"}, null]})
        );
    }
}
