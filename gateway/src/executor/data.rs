//! Pure helpers over the merged response data (a [`Value`] tree).
//!
//! Invariant kept by these helpers: the merged data only ever grows; a merge never replaces a
//! non-null value by `null`, so a fetch that fails halfway cannot erase what an earlier fetch
//! delivered.

use crate::error::PathSegment;
use crate::plan::{PathStep, Rewrite, RewriteStep, Selection};
use crate::schema::SchemaModel;
use crate::value::{Object, Value};

/// `__typename` of an object value, if it has one.
pub fn typename(value: &Value) -> Option<&str> {
    value.get("__typename").and_then(Value::as_str)
}

/// Whether an object matches a type condition (exact name, or a possible type of it).
/// An object without `__typename` matches nothing: the planner always selects it where a
/// condition has to be evaluated.
fn matches_types(value: &Value, types: &[String], schema: &SchemaModel) -> bool {
    typename(value).is_some_and(|tn| types.iter().any(|t| schema.fragment_applies(t, tn)))
}

/// Whether an inline fragment of `requires` (with this optional type condition) applies.
fn condition_applies(value: &Value, condition: Option<&str>, schema: &SchemaModel) -> bool {
    condition.is_none_or(|c| typename(value).is_some_and(|tn| schema.fragment_applies(c, tn)))
}

/// Where a walk is in the response: nothing for walks that only need the entities, the
/// path segments for the rare walk that reports a path (errors).
trait Trail {
    fn push_key(&mut self, key: &str);
    fn push_index(&mut self, index: usize);
    fn pop(&mut self);
}

impl Trail for () {
    fn push_key(&mut self, _: &str) {}
    fn push_index(&mut self, _: usize) {}
    fn pop(&mut self) {}
}

impl Trail for Vec<PathSegment> {
    fn push_key(&mut self, key: &str) {
        self.push(PathSegment::Key(key.to_string()));
    }
    fn push_index(&mut self, index: usize) {
        self.push(PathSegment::Index(index));
    }
    fn pop(&mut self) {
        Vec::pop(self);
    }
}

/// Calls `f` with every non-null object reached by following `steps` from `value`.
pub fn for_each_entity(
    value: &Value,
    steps: &[PathStep],
    schema: &SchemaModel,
    f: &mut dyn FnMut(&Value),
) {
    walk_entities(value, steps, schema, &mut (), &mut |_, entity| f(entity));
}

/// The path of the `visit`-th object (0-based) that [`for_each_entity`] would visit along
/// each of `paths` in turn.
pub fn entity_path_at(
    value: &Value,
    paths: &[Vec<PathStep>],
    schema: &SchemaModel,
    visit: usize,
) -> Option<Vec<PathSegment>> {
    let mut seen = 0;
    let mut found = None;
    let mut trail = Vec::new();
    for steps in paths {
        walk_entities(value, steps, schema, &mut trail, &mut |path, _| {
            if seen == visit && found.is_none() {
                found = Some(path.clone());
            }
            seen += 1;
        });
    }
    found
}

fn walk_entities<T: Trail>(
    value: &Value,
    steps: &[PathStep],
    schema: &SchemaModel,
    trail: &mut T,
    f: &mut dyn FnMut(&T, &Value),
) {
    if let Value::Array(items) = value {
        // Lists are walked transparently, whether or not the path spells out `@`.
        let steps = match steps.first() {
            Some(PathStep::List) => &steps[1..],
            _ => steps,
        };
        for (i, item) in items.iter().enumerate() {
            trail.push_index(i);
            walk_entities(item, steps, schema, trail, f);
            trail.pop();
        }
        return;
    }
    let Value::Object(object) = value else {
        return;
    };
    match steps.first() {
        None => f(trail, value),
        Some(PathStep::Field(key)) => {
            if let Some(child) = object.get(key) {
                trail.push_key(key);
                walk_entities(child, &steps[1..], schema, trail, f);
                trail.pop();
            }
        }
        Some(PathStep::List) => walk_entities(value, &steps[1..], schema, trail, f),
        Some(PathStep::TypeIs(types)) => {
            if matches_types(value, types, schema) {
                walk_entities(value, &steps[1..], schema, trail, f);
            }
        }
    }
}

/// Calls `f` with every non-null object reached by following `steps`, mutably, in the same
/// order as [`for_each_entity`].
pub fn for_each_entity_mut(
    value: &mut Value,
    steps: &[PathStep],
    schema: &SchemaModel,
    f: &mut dyn FnMut(&mut Value),
) {
    if let Value::Array(items) = value {
        let steps = match steps.first() {
            Some(PathStep::List) => &steps[1..],
            _ => steps,
        };
        for item in items.iter_mut() {
            for_each_entity_mut(item, steps, schema, f);
        }
        return;
    }
    if !value.is_object() {
        return;
    }
    match steps.first() {
        None => f(value),
        Some(PathStep::Field(key)) => {
            if let Some(child) = value.get_mut(key) {
                for_each_entity_mut(child, &steps[1..], schema, f);
            }
        }
        Some(PathStep::List) => for_each_entity_mut(value, &steps[1..], schema, f),
        Some(PathStep::TypeIs(types)) => {
            if matches_types(value, types, schema) {
                for_each_entity_mut(value, &steps[1..], schema, f);
            }
        }
    }
}

/// Fast and unkeyed: a collision (even a contrived one in subgraph data) only costs a
/// comparison, since every hash match is confirmed by comparing values.
type ValueHasher = rustc_hash::FxHasher;

fn feed(value: &Value, h: &mut ValueHasher) {
    use std::hash::Hash;
    match value {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n).hash(h),
        Value::String(s) => (3u8, s.as_str()).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            items.iter().for_each(|i| feed(i, h));
        }
        Value::Object(map) => {
            5u8.hash(h);
            for (k, v) in map.iter() {
                k.as_str().hash(h);
                feed(v, h);
            }
            6u8.hash(h);
        }
    }
}

/// A structural hash of a JSON value (object keys in order), for finding equal values
/// without serializing them. Equal values hash equally; callers still compare on a match.
pub fn hash_value(value: &Value) -> u64 {
    use std::hash::Hasher;
    let mut h = ValueHasher::default();
    feed(value, &mut h);
    h.finish()
}

/// Whether no selection list (at any depth) names one field twice: then [`select`] never
/// merges, and [`select_hash`] / [`select_equals`] agree with it exactly.
pub fn selections_are_flat(selections: &[Selection]) -> bool {
    fn names<'s>(selections: &'s [Selection], out: &mut Vec<&'s str>) -> bool {
        for selection in selections {
            match selection {
                Selection::Field {
                    name, selections, ..
                } => {
                    if out.contains(&name.as_str()) || !selections_are_flat(selections) {
                        return false;
                    }
                    out.push(name);
                }
                Selection::InlineFragment { selections, .. } => {
                    if !names(selections, out) {
                        return false;
                    }
                }
            }
        }
        true
    }
    names(selections, &mut Vec::new())
}

/// `hash_value(&select(entity, selections)?)` without building the representation.
/// Only for flat selections (see [`selections_are_flat`]).
pub fn select_hash(entity: &Value, selections: &[Selection], schema: &SchemaModel) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    fn value(
        entity: &Value,
        selections: &[Selection],
        schema: &SchemaModel,
        h: &mut ValueHasher,
    ) -> Option<()> {
        match entity {
            Value::Array(items) => {
                (4u8, items.len()).hash(h);
                for item in items {
                    value(item, selections, schema, h)?;
                }
                Some(())
            }
            Value::Object(_) => {
                5u8.hash(h);
                object(entity, selections, schema, h)?;
                6u8.hash(h);
                Some(())
            }
            other => {
                feed(other, h);
                Some(())
            }
        }
    }
    fn object(
        entity: &Value,
        selections: &[Selection],
        schema: &SchemaModel,
        h: &mut ValueHasher,
    ) -> Option<()> {
        for selection in selections {
            match selection {
                Selection::Field {
                    data_key,
                    name,
                    selections,
                } => {
                    let child = entity.get(data_key)?;
                    name.as_str().hash(h);
                    if selections.is_empty() {
                        feed(child, h);
                    } else {
                        value(child, selections, schema, h)?;
                    }
                }
                Selection::InlineFragment {
                    type_condition,
                    selections,
                } => {
                    let applies = condition_applies(entity, type_condition.as_deref(), schema);
                    if applies {
                        object(entity, selections, schema, h)?;
                    }
                }
            }
        }
        Some(())
    }
    let mut h = ValueHasher::default();
    value(entity, selections, schema, &mut h)?;
    Some(h.finish())
}

/// `select(entity, selections) == Some(candidate)` without building the representation.
/// Only for flat selections (see [`selections_are_flat`]).
pub fn select_equals(
    entity: &Value,
    selections: &[Selection],
    schema: &SchemaModel,
    candidate: &Value,
) -> bool {
    fn value(
        entity: &Value,
        selections: &[Selection],
        schema: &SchemaModel,
        candidate: &Value,
    ) -> bool {
        match (entity, candidate) {
            (Value::Array(items), Value::Array(expected)) => {
                items.len() == expected.len()
                    && items
                        .iter()
                        .zip(expected)
                        .all(|(i, e)| value(i, selections, schema, e))
            }
            (Value::Object(_), Value::Object(expected)) => {
                let mut matched = 0;
                object(entity, selections, schema, expected, &mut matched)
                    && matched == expected.len()
            }
            (other, expected) => other == expected,
        }
    }
    fn object(
        entity: &Value,
        selections: &[Selection],
        schema: &SchemaModel,
        expected: &Object,
        matched: &mut usize,
    ) -> bool {
        for selection in selections {
            match selection {
                Selection::Field {
                    data_key,
                    name,
                    selections,
                } => {
                    let (Some(child), Some(want)) = (entity.get(data_key), expected.get(name))
                    else {
                        return false;
                    };
                    let same = if selections.is_empty() {
                        child == want
                    } else {
                        value(child, selections, schema, want)
                    };
                    if !same {
                        return false;
                    }
                    *matched += 1;
                }
                Selection::InlineFragment {
                    type_condition,
                    selections,
                } => {
                    let applies = condition_applies(entity, type_condition.as_deref(), schema);
                    if applies && !object(entity, selections, schema, expected, matched) {
                        return false;
                    }
                }
            }
        }
        true
    }
    value(entity, selections, schema, candidate)
}

/// Merges `source` into `target`: objects key by key, equally long lists element-wise,
/// anything else replaces the target unless the source is `null`.
pub fn deep_merge(target: &mut Value, source: Value) {
    match (target, source) {
        (Value::Object(t), Value::Object(s)) => {
            for (key, value) in s {
                match t.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        t.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(s)) if t.len() == s.len() => {
            for (existing, value) in t.iter_mut().zip(s) {
                deep_merge(existing, value);
            }
        }
        (_, Value::Null) => {}
        (t, s) => *t = s,
    }
}

/// [`deep_merge`] from a borrowed source: copies only what the target lacks.
pub fn deep_merge_ref(target: &mut Value, source: &Value) {
    match (target, source) {
        (Value::Object(t), Value::Object(s)) => {
            for (key, value) in s.iter() {
                match t.get_mut(key) {
                    Some(existing) => deep_merge_ref(existing, value),
                    None => {
                        t.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(s)) if t.len() == s.len() => {
            for (existing, value) in t.iter_mut().zip(s) {
                deep_merge_ref(existing, value);
            }
        }
        (_, Value::Null) => {}
        (t, s) => *t = s.clone(),
    }
}

/// Builds an entity representation: the value of `selections` applied to `entity`.
/// Output keys are field names (representations are in subgraph-schema terms).
///
/// `None` when a selected field is absent from the entity: an earlier fetch could not provide
/// it (e.g. the entity was `null` in the subgraph that owns the key), so no subgraph can
/// resolve a representation built from it.
pub fn select(entity: &Value, selections: &[Selection], schema: &SchemaModel) -> Option<Value> {
    match entity {
        Value::Array(items) => items
            .iter()
            .map(|item| select(item, selections, schema))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(_) => {
            let mut out = Object::new();
            select_into(entity, selections, schema, &mut out)?;
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

fn select_into(
    entity: &Value,
    selections: &[Selection],
    schema: &SchemaModel,
    out: &mut Object,
) -> Option<()> {
    for selection in selections {
        match selection {
            Selection::Field {
                data_key,
                name,
                selections,
            } => {
                let value = entity.get(data_key)?;
                let value = if selections.is_empty() {
                    value.clone()
                } else {
                    select(value, selections, schema)?
                };
                match out.get_mut(name) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        out.insert(name.as_str(), value);
                    }
                }
            }
            Selection::InlineFragment {
                type_condition,
                selections,
            } => {
                let applies = condition_applies(entity, type_condition.as_deref(), schema);
                if applies {
                    select_into(entity, selections, schema, out)?;
                }
            }
        }
    }
    Some(())
}

/// Applies input/output rewrites to a value (a representation or a fetched entity/root).
pub fn apply_rewrites(value: &mut Value, rewrites: &[Rewrite], schema: &SchemaModel) {
    for rewrite in rewrites {
        match rewrite {
            Rewrite::SetValue { path, value: to } => {
                walk_rewrite(value, path, schema, &mut |object, key| {
                    object.insert(key, Value::from(to.as_str()));
                })
            }
            Rewrite::RenameKey { path, to } => {
                walk_rewrite(value, path, schema, &mut |object, key| {
                    if let Some(v) = object.remove(key) {
                        object.insert(to.as_str(), v);
                    }
                })
            }
        }
    }
}

fn walk_rewrite(
    value: &mut Value,
    steps: &[RewriteStep],
    schema: &SchemaModel,
    apply: &mut dyn FnMut(&mut Object, &str),
) {
    if let Value::Array(items) = value {
        for item in items {
            walk_rewrite(item, steps, schema, apply);
        }
        return;
    }
    let Some(step) = steps.first() else {
        return;
    };
    match step {
        RewriteStep::TypeIs(types) => {
            if matches_types(value, types, schema) {
                walk_rewrite(value, &steps[1..], schema, apply);
            }
        }
        RewriteStep::Key(key) => {
            let Value::Object(object) = value else {
                return;
            };
            if steps.len() == 1 {
                apply(object, key);
            } else if let Some(child) = object.get_mut(key) {
                walk_rewrite(child, &steps[1..], schema, apply);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! json {
        ($($t:tt)+) => {
            Value::from(serde_json::json!($($t)+))
        };
    }

    fn schema() -> SchemaModel {
        let sdl = "type Query { book: Book } type Book { id: ID upc: ID price: Int }";
        SchemaModel::from_document(&crate::planner::parse_schema(sdl).expect("schema"))
    }

    fn field(data_key: &str, name: &str) -> Selection {
        Selection::Field {
            data_key: data_key.into(),
            name: name.into(),
            selections: Vec::new(),
        }
    }

    #[test]
    fn representation_is_not_built_when_a_key_field_is_missing() {
        let requires = [field("__typename", "__typename"), field("id", "id")];
        let schema = schema();
        // The subgraph that provides `id` returned null for this entity: no `id` key.
        assert_eq!(
            select(
                &json!({"__typename": "Book", "upc": "b3"}),
                &requires,
                &schema
            ),
            None
        );
        // A present null is a value (nullable `@requires` fields may be null).
        assert_eq!(
            select(
                &json!({"__typename": "Book", "id": null}),
                &requires,
                &schema
            ),
            Some(json!({"__typename": "Book", "id": null}))
        );
    }

    #[test]
    fn representation_reads_the_planner_alias_and_writes_the_field_name() {
        // The planner fetched `_internal_qp_alias_0: price(currency: "EUR")` next to the
        // client's `price(currency: "USD")`, and requires `price: _internal_qp_alias_0`.
        let requires = [
            field("__typename", "__typename"),
            field("_internal_qp_alias_0", "price"),
        ];
        let entity = json!({"__typename": "Book", "price": 11, "_internal_qp_alias_0": 22});
        assert_eq!(
            select(&entity, &requires, &schema()),
            Some(json!({"__typename": "Book", "price": 22}))
        );
    }

    #[test]
    fn streaming_hash_and_equality_agree_with_built_representations() {
        let schema = schema();
        let requires = [
            field("__typename", "__typename"),
            Selection::InlineFragment {
                type_condition: Some("Book".into()),
                selections: vec![field("upc", "upc"), field("_internal_qp_alias_0", "price")],
            },
        ];
        assert!(selections_are_flat(&requires));
        let a = json!({"__typename": "Book", "upc": "b1", "_internal_qp_alias_0": 3, "id": 9});
        let b = json!({"__typename": "Book", "upc": "b2", "_internal_qp_alias_0": 3});
        let built = select(&a, &requires, &schema).expect("representation");
        assert_eq!(
            select_hash(&a, &requires, &schema),
            Some(hash_value(&built))
        );
        assert!(select_equals(&a, &requires, &schema, &built));
        assert!(!select_equals(&b, &requires, &schema, &built));
        assert_ne!(
            select_hash(&b, &requires, &schema),
            Some(hash_value(&built))
        );
        // Missing key field: no representation, no hash.
        assert_eq!(
            select_hash(&json!({"__typename": "Book"}), &requires, &schema),
            None
        );
        assert!(!selections_are_flat(&[
            field("upc", "upc"),
            field("upc", "upc")
        ]));
    }

    #[test]
    fn merge_never_erases_with_null() {
        let mut target = json!({"a": {"b": 1}, "list": [{"x": 1}, {"x": 2}]});
        deep_merge(
            &mut target,
            json!({"a": null, "list": [{"y": 1}, {"y": 2}], "c": 3}),
        );
        assert_eq!(
            target,
            json!({"a": {"b": 1}, "list": [{"x": 1, "y": 1}, {"x": 2, "y": 2}], "c": 3})
        );
    }
}
