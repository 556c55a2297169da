//! Shapes the merged subgraph data into the client's response.
//!
//! Why a separate pass: subgraph responses contain extra fields (keys, `__typename`s, fields
//! fetched for `@requires`) and lack the client's view (fragments on abstract types, field
//! order). Walking the client's operation over the merged data gives the exact response and
//! is also where GraphQL null propagation happens: a `null` in a non-null position nulls the
//! nearest nullable parent, with one error at the origin.

use serde_json::{Map, Value};

use crate::error::{codes, GraphQLError, PathSegment};
use crate::executor::typename;
use crate::schema::{TypeKind, TypeRef};
use crate::selection::{CollectContext, Field, SelectionSet};

pub struct Projector<'a> {
    ctx: &'a CollectContext<'a>,
    /// Errors already known (from subgraphs); a null-propagation error is only added when no
    /// known error explains the null (same path, an ancestor or a descendant).
    known: Vec<Vec<PathSegment>>,
    pub errors: Vec<GraphQLError>,
}

impl<'a> Projector<'a> {
    pub fn new(ctx: &'a CollectContext<'a>, existing: &[GraphQLError]) -> Self {
        Self {
            ctx,
            known: existing.iter().filter_map(|e| e.path.clone()).collect(),
            errors: Vec::new(),
        }
    }

    /// Projects the root selection set; returns `Value::Null` if a root field's null propagated.
    pub fn project_root(
        &mut self,
        root_type: &str,
        selection_set: &SelectionSet,
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
        fields: &[&Field],
        path: &mut Vec<PathSegment>,
        label: &str,
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
                let composite = self
                    .ctx
                    .schema
                    .get(name)
                    .map(|t| t.kind.is_composite())
                    .unwrap_or(false);
                if !composite {
                    return Some(value.clone());
                }
                let sets: Vec<&SelectionSet> = fields.iter().map(|f| &f.selection_set).collect();
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
        sets: &[&SelectionSet],
        path: &mut Vec<PathSegment>,
    ) -> Option<Value> {
        let Value::Object(object) = value else {
            return Some(Value::Null);
        };
        let schema = self.ctx.schema;
        let concrete = match schema.get(declared).map(|t| t.kind) {
            Some(TypeKind::Object) | None => declared.to_string(),
            Some(_) => typename(value)
                .filter(|tn| schema.fragment_applies(declared, tn))
                .unwrap_or(declared)
                .to_string(),
        };
        let type_def = schema.get(&concrete).or_else(|| schema.get(declared));
        let grouped = self.ctx.collect(&concrete, sets);
        let mut out = Map::with_capacity(grouped.len());
        for (key, fields) in grouped {
            let name = fields[0].name.as_str();
            if name == "__typename" {
                out.insert(key, Value::String(concrete.clone()));
                continue;
            }
            let Some(def) = type_def.and_then(|t| t.field(name)) else {
                continue;
            };
            let label = format!("{concrete}.{name}");
            path.push(PathSegment::Key(key.clone()));
            let completed = self.complete(
                &def.ty,
                object.get(&key).unwrap_or(&Value::Null),
                &fields,
                path,
                &label,
            );
            path.pop();
            out.insert(key, completed?);
        }
        Some(Value::Object(out))
    }

    fn null_error(&mut self, path: &[PathSegment], label: &str) {
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
