//! Shapes the merged subgraph data into the client's response.
//!
//! Why a separate pass: subgraph responses contain extra fields (keys, `__typename`s, fields
//! fetched for `@requires`) and lack the client's view (fragments on abstract types, field
//! order). Walking the client's operation over the merged data gives the exact response and
//! is also where GraphQL null propagation happens: a `null` in a non-null position nulls the
//! nearest nullable parent, with one error at the origin.

use std::rc::Rc;

use rustc_hash::FxHashMap;

use crate::error::{codes, GraphQLError, PathSegment};
use crate::executor::typename;
use crate::schema::{TypeDef, TypeKind, TypeRef};
use crate::selection::{CollectContext, Field, Grouped, SelectionSet};
use crate::value::Value;

/// Identifies one field collection: the object type and the selection sets, both by
/// address (the type lives in the schema, the sets in the prepared operation; both outlive
/// the projection), so looking one up allocates nothing in the usual single-set case.
#[derive(PartialEq, Eq, Hash)]
struct CollectKey {
    object_type: usize,
    sets: CollectSets,
}

#[derive(PartialEq, Eq, Hash)]
enum CollectSets {
    One(usize),
    Many(Vec<usize>),
}

impl CollectSets {
    fn of(sets: &[&SelectionSet]) -> Self {
        let address = |s: &&SelectionSet| *s as *const SelectionSet as usize;
        match sets {
            [one] => CollectSets::One(address(one)),
            _ => CollectSets::Many(sets.iter().map(address).collect()),
        }
    }
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
    collected: FxHashMap<CollectKey, Rc<Grouped<'a>>>,
    /// Errors already known (from subgraphs); a null-propagation error is only added when no
    /// known error explains the null (same path, an ancestor or a descendant).
    known: Vec<Vec<PathSegment>>,
    pub errors: Vec<GraphQLError>,
    /// The response `data` as JSON text, written as the operation is walked: no second
    /// value tree is built for the response. Null propagation truncates back to the start
    /// of the value being nulled and writes `null` there.
    out: Vec<u8>,
}

/// The response path of the value being completed, as a list linked through the stack:
/// walking builds no vector and copies no key; one is only made for an error.
enum PathNode<'p> {
    Root,
    Key(&'p PathNode<'p>, &'p str),
    Index(&'p PathNode<'p>, usize),
}

impl PathNode<'_> {
    fn to_vec(&self) -> Vec<PathSegment> {
        let mut out = Vec::new();
        let mut node = self;
        loop {
            match node {
                PathNode::Root => break,
                PathNode::Key(parent, key) => {
                    out.push(PathSegment::Key((*key).to_string()));
                    node = parent;
                }
                PathNode::Index(parent, i) => {
                    out.push(PathSegment::Index(*i));
                    node = parent;
                }
            }
        }
        out.reverse();
        out
    }
}

/// "A `null` reached a non-null position here": the enclosing nullable value becomes null.
struct Propagate;

impl<'a> Projector<'a> {
    pub fn new(ctx: &'a CollectContext<'a>, existing: &[GraphQLError]) -> Self {
        Self {
            ctx,
            collected: FxHashMap::default(),
            known: existing.iter().filter_map(|e| e.path.clone()).collect(),
            errors: Vec::new(),
            out: Vec::with_capacity(4096),
        }
    }

    /// Projects the root selection set into JSON text (`null` if a root field's null
    /// propagated).
    pub fn project_root_json(
        &mut self,
        root_type: &str,
        selection_set: &'a SelectionSet,
        data: &Value,
    ) -> Vec<u8> {
        self.out.clear();
        if self
            .complete_object(root_type, data, &[selection_set], &PathNode::Root)
            .is_err()
        {
            self.out.clear();
            self.out.extend_from_slice(b"null");
        }
        std::mem::take(&mut self.out)
    }

    /// [`Self::project_root_json`] as a value.
    #[cfg(test)]
    pub fn project_root(
        &mut self,
        root_type: &str,
        selection_set: &'a SelectionSet,
        data: &Value,
    ) -> serde_json::Value {
        let json = self.project_root_json(root_type, selection_set, data);
        serde_json::from_slice(&json).unwrap_or(serde_json::Value::Null)
    }

    fn write_value(&mut self, value: &Value) {
        // Writing JSON to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    /// Writes the completed value; `Ok(false)` when it wrote `null`.
    fn complete(
        &mut self,
        ty: &TypeRef,
        value: &Value,
        fields: &[&'a Field],
        path: &PathNode<'_>,
        label: &FieldLabel<'_>,
    ) -> Result<bool, Propagate> {
        match ty {
            TypeRef::NonNull(inner) => match self.complete(inner, value, fields, path, label) {
                Ok(true) => Ok(true),
                Ok(false) | Err(Propagate) => {
                    self.null_error(path, label);
                    Err(Propagate)
                }
            },
            TypeRef::List(inner) => {
                let Value::Array(items) = value else {
                    self.out.extend_from_slice(b"null");
                    return Ok(false);
                };
                let start = self.out.len();
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    let item_path = PathNode::Index(path, i);
                    let completed = self.complete(inner, item, fields, &item_path, label);
                    if completed.is_err() {
                        self.out.truncate(start);
                        self.out.extend_from_slice(b"null");
                        return Ok(false);
                    }
                }
                self.out.push(b']');
                Ok(true)
            }
            TypeRef::Named(name) => {
                if value.is_null() {
                    self.out.extend_from_slice(b"null");
                    return Ok(false);
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
                                .with_path(path.to_vec()),
                            );
                            self.known.push(path.to_vec());
                            self.out.extend_from_slice(b"null");
                            return Ok(false);
                        }
                        self.write_value(value);
                        return Ok(true);
                    }
                    _ => {
                        self.write_value(value);
                        return Ok(true);
                    }
                }
                let sets: Vec<&'a SelectionSet> = fields.iter().map(|f| &f.selection_set).collect();
                let start = self.out.len();
                match self.complete_object(name, value, &sets, path) {
                    Ok(true) => Ok(true),
                    Ok(false) => Ok(false),
                    Err(Propagate) => {
                        self.out.truncate(start);
                        self.out.extend_from_slice(b"null");
                        Ok(false)
                    }
                }
            }
        }
    }

    /// Writes the object; `Ok(false)` when it wrote `null` (not an object, or a type the
    /// client cannot see); `Err` when a non-null field was null (the caller nulls it).
    fn complete_object(
        &mut self,
        declared: &str,
        value: &Value,
        sets: &[&'a SelectionSet],
        path: &PathNode<'_>,
    ) -> Result<bool, Propagate> {
        let Value::Object(object) = value else {
            self.out.extend_from_slice(b"null");
            return Ok(false);
        };
        let schema = self.ctx.schema;
        let concrete: &str = match schema.get(declared).map(|t| t.kind) {
            Some(TypeKind::Object) | None => declared,
            Some(_) => match typename(value) {
                Some(tn) if schema.fragment_applies(declared, tn) => tn,
                // A type the API schema does not expose (`@inaccessible`, or unknown to
                // the supergraph): the client cannot be shown this object.
                Some(_) => {
                    self.out.extend_from_slice(b"null");
                    return Ok(false);
                }
                None => declared,
            },
        };
        let concrete_def = schema.get(concrete);
        let type_def = concrete_def.or_else(|| schema.get(declared));
        let grouped = self.collect(concrete, concrete_def, sets);
        self.out.push(b'{');
        let mut first = true;
        for (key, fields) in grouped.iter() {
            let name = fields[0].name.as_str();
            let def = if name == "__typename" {
                None
            } else {
                match type_def.and_then(|t| t.field(name)) {
                    Some(def) => Some(def),
                    None => continue,
                }
            };
            if !first {
                self.out.push(b',');
            }
            first = false;
            // Response keys are GraphQL names (letters, digits, `_`): nothing to escape.
            self.out.push(b'"');
            self.out.extend_from_slice(key.as_bytes());
            self.out.extend_from_slice(b"\":");
            let Some(def) = def else {
                self.out.push(b'"');
                self.out.extend_from_slice(concrete.as_bytes());
                self.out.push(b'"');
                continue;
            };
            let label = FieldLabel {
                type_name: concrete,
                field: name,
            };
            let field_path = PathNode::Key(path, key);
            let completed = self.complete(
                &def.ty,
                object.get(key).unwrap_or(&Value::Null),
                fields,
                &field_path,
                &label,
            );
            completed?;
        }
        self.out.push(b'}');
        Ok(true)
    }

    fn collect(
        &mut self,
        object_type: &str,
        def: Option<&TypeDef>,
        sets: &[&'a SelectionSet],
    ) -> Rc<Grouped<'a>> {
        let Some(def) = def else {
            // A type outside the schema: rare, not worth a cache entry.
            return Rc::new(self.ctx.collect(object_type, sets));
        };
        let key = CollectKey {
            object_type: def as *const TypeDef as usize,
            sets: CollectSets::of(sets),
        };
        if let Some(hit) = self.collected.get(&key) {
            return hit.clone();
        }
        let grouped = Rc::new(self.ctx.collect(object_type, sets));
        self.collected.insert(key, grouped.clone());
        grouped
    }

    fn null_error(&mut self, path: &PathNode<'_>, label: &FieldLabel<'_>) {
        let path = path.to_vec();
        let path = path.as_slice();
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
        let data = projector.project_root("Query", set, &data.into());
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
