//! The value type of subgraph responses and of the merged data built from them.
//!
//! Why not `serde_json::Value`: the executor looks up, merges and copies far more object
//! keys than it parses. `serde_json`'s order-preserving map hashes every key with SipHash on
//! each lookup and owns every key and string on the heap, so copying one entity result to
//! each place it belongs (the same product under many reviews) allocated once per key and
//! per string. Here an object is a small vector searched linearly, because GraphQL
//! selections name few fields and comparing a handful of short keys is cheaper than hashing
//! one; keys and strings are [`SmolStr`], inline up to 23 bytes and shared by reference
//! count beyond, so a copy allocates only its vectors.
//!
//! Invariant: an [`Object`] never holds a key twice ([`Object::insert`] replaces, and
//! parsing a duplicated key keeps the last value, as `serde_json` does).
//!
//! Client variables, errors and the final response stay `serde_json` values: they are built
//! once per request, not copied per entity. [`From`] converts at those edges.

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
pub use smol_str::SmolStr;

/// A JSON value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(SmolStr),
    Array(Vec<Value>),
    Object(Object),
}

/// A JSON object: keys in insertion order, each at most once.
///
/// Small objects (the usual case) are searched linearly. From [`INDEXED_FROM`] keys on, a
/// hash index (SipHash, randomly keyed: keys may come from clients' aliases) keeps lookups
/// constant-time, so an operation with thousands of aliases cannot make parsing and merging
/// quadratic.
#[derive(Clone, Debug, Default)]
pub struct Object {
    entries: Vec<(SmolStr, Value)>,
    #[expect(
        clippy::box_collection,
        reason = "a pointer keeps every small object small; a map is 48 bytes inline"
    )]
    index: Option<Box<HashMap<SmolStr, usize>>>,
}

/// Size from which an [`Object`] keeps a hash index of its keys.
const INDEXED_FROM: usize = 24;

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
            index: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k.as_str() == key),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key` to `value`, in place when present (returning the old value), else last.
    pub fn insert(&mut self, key: impl Into<SmolStr>, value: Value) -> Option<Value> {
        let key = key.into();
        if let Some(i) = self.position(&key) {
            return Some(std::mem::replace(&mut self.entries[i].1, value));
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() >= INDEXED_FROM {
            self.reindex();
        }
        None
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.position(key)?;
        let (_, value) = self.entries.remove(i);
        if self.index.is_some() {
            self.reindex();
        }
        Some(value)
    }

    fn reindex(&mut self) {
        self.index = (self.entries.len() >= INDEXED_FROM).then(|| {
            Box::new(
                self.entries
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect(),
            )
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SmolStr, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl IntoIterator for Object {
    type Item = (SmolStr, Value);
    type IntoIter = std::vec::IntoIter<(SmolStr, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(SmolStr, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (SmolStr, Value)>>(iter: I) -> Self {
        let mut object = Object::new();
        for (key, value) in iter {
            object.insert(key, value);
        }
        object
    }
}

/// Objects are equal when they hold the same keys with equal values, in any order (as JSON
/// objects are, and as `serde_json`'s maps compare).
impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Value {
    /// The field `key` of an object; `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(object) => object.get(key),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        match self {
            Value::Object(object) => object.get_mut(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// Takes the value, leaving `null`.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }
}

impl From<serde_json::Value> for Value {
    fn from(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n),
            serde_json::Value::String(s) => Value::String(s.into()),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                let mut object = Object::with_capacity(map.len());
                for (key, value) in map {
                    object.insert(key, value.into());
                }
                Value::Object(object)
            }
        }
    }
}

impl From<Value> for serde_json::Value {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Number(n) => serde_json::Value::Number(n),
            Value::String(s) => serde_json::Value::String(s.into()),
            Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(Into::into).collect())
            }
            Value::Object(object) => serde_json::Value::Object(
                object
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.into())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(object) => object.serialize(serializer),
        }
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key.as_str(), value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.into()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s.into()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Object::with_capacity(map.size_hint().unwrap_or(0).min(256));
        while let Some(key) = map.next_key::<SmolStr>()? {
            let value = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_writes_json_in_key_order() {
        let text =
            r#"{"b":1,"a":[true,null,"x",2.5,{"long":"a string longer than twenty-three bytes"}]}"#;
        let value: Value = serde_json::from_str(text).expect("parse");
        assert_eq!(serde_json::to_string(&value).expect("write"), text);
    }

    #[test]
    fn a_duplicated_key_keeps_the_last_value_once() {
        let value: Value = serde_json::from_str(r#"{"a":1,"b":2,"a":3}"#).expect("parse");
        assert_eq!(
            serde_json::to_string(&value).expect("write"),
            r#"{"a":3,"b":2}"#
        );
    }

    #[test]
    fn objects_compare_without_regard_to_key_order() {
        let a = Value::from(json!({"x": 1, "y": {"z": [1, 2]}}));
        let b: Value = serde_json::from_str(r#"{"y":{"z":[1,2]},"x":1}"#).expect("parse");
        assert_eq!(a, b);
        assert_ne!(a, Value::from(json!({"x": 1, "y": {"z": [2, 1]}})));
        assert_ne!(a, Value::from(json!({"x": 1})));
    }

    #[test]
    fn converts_to_and_from_serde_json() {
        let original = json!({"n": -3, "f": 1.5, "s": "é", "l": [null, false], "o": {}});
        let ours = Value::from(original.clone());
        assert_eq!(serde_json::Value::from(ours), original);
    }

    #[test]
    fn insert_replaces_in_place_and_remove_keeps_order() {
        let mut object = Object::new();
        object.insert("a", Value::Null);
        object.insert("b", Value::Bool(true));
        object.insert("c", Value::Null);
        assert_eq!(object.insert("a", Value::from("x")), Some(Value::Null));
        assert_eq!(object.remove("b"), Some(Value::Bool(true)));
        let keys: Vec<&str> = object.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(object.get("a").and_then(Value::as_str), Some("x"));
    }

    #[test]
    fn large_objects_are_indexed_and_stay_consistent() {
        let mut object = Object::new();
        for i in 0..100 {
            object.insert(format!("k{i}"), Value::from(i.to_string().as_str()));
        }
        assert!(object.index.is_some());
        assert_eq!(object.insert("k7", Value::Null), Some(Value::from("7")));
        assert_eq!(object.remove("k3"), Some(Value::from("3")));
        assert_eq!(object.len(), 99);
        assert_eq!(object.get("k4"), Some(&Value::from("4")));
        assert_eq!(object.get("k3"), None);
        assert_eq!(object.iter().nth(3).map(|(k, _)| k.as_str()), Some("k4"));
        let parsed: Value =
            serde_json::from_str(&serde_json::to_string(&object).expect("write")).expect("parse");
        assert_eq!(parsed, Value::Object(object));
    }
}
