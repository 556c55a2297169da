//! Resolves `__schema` and `__type` against the API schema.
//!
//! Why here and not in a subgraph: the client must see the composed API schema (no join
//! machinery, no `_entities`), which only the gateway knows. The resolver produces values
//! keyed by the client's response keys, like subgraph data, so the normal projection pass
//! shapes them (aliases, `__typename`, fragments) with no special cases.

use serde_json::{Map, Value};

use crate::schema::{
    DirectiveDef, EnumValueDef, FieldDef, InputValueDef, SchemaModel, TypeDef, TypeKind, TypeRef,
};
use crate::selection::{CollectContext, Field, SelectionSet};

/// Whether a root field name is an introspection entry point.
pub fn is_introspection_root(name: &str) -> bool {
    name == "__schema" || name == "__type"
}

/// Resolves the introspection root fields of `selection_set` into `data` (keyed by response key).
pub fn resolve_root(
    ctx: &CollectContext<'_>,
    root_type: &str,
    selection_set: &SelectionSet,
    data: &mut crate::value::Object,
) {
    let resolver = Resolver { ctx };
    for (key, fields) in ctx.collect(root_type, &[selection_set]) {
        let value = match fields[0].name.as_str() {
            "__schema" => resolver.object(Node::Schema, &fields),
            "__type" => {
                let name = ctx.argument(fields[0], "name");
                match name
                    .as_ref()
                    .and_then(Value::as_str)
                    .and_then(|n| ctx.schema.get(n))
                {
                    Some(def) => resolver.object(Node::Named(def), &fields),
                    None => Value::Null,
                }
            }
            _ => continue,
        };
        data.insert(key, value.into());
    }
}

#[derive(Clone, Copy)]
enum Node<'s> {
    Schema,
    Named(&'s TypeDef),
    /// A `LIST` or `NON_NULL` wrapper around the given type.
    Wrapper(&'s TypeRef),
    Field(&'s FieldDef),
    InputValue(&'s InputValueDef),
    EnumValue(&'s EnumValueDef),
    Directive(&'s DirectiveDef),
}

impl Node<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Node::Schema => "__Schema",
            Node::Named(_) | Node::Wrapper(_) => "__Type",
            Node::Field(_) => "__Field",
            Node::InputValue(_) => "__InputValue",
            Node::EnumValue(_) => "__EnumValue",
            Node::Directive(_) => "__Directive",
        }
    }
}

struct Resolver<'c, 's> {
    ctx: &'c CollectContext<'s>,
}

fn opt_str(value: &Option<String>) -> Value {
    value
        .as_ref()
        .map_or(Value::Null, |s| Value::String(s.clone()))
}

impl<'s> Resolver<'_, 's> {
    fn object(&self, node: Node<'s>, fields: &[&Field]) -> Value {
        let sets: Vec<&SelectionSet> = fields.iter().map(|f| &f.selection_set).collect();
        let mut out = Map::new();
        for (key, fields) in self.ctx.collect(node.type_name(), &sets) {
            let value = self.field(node, fields[0].name.as_str(), &fields);
            out.insert(key, value);
        }
        Value::Object(out)
    }

    fn list(&self, nodes: impl IntoIterator<Item = Node<'s>>, fields: &[&Field]) -> Value {
        Value::Array(nodes.into_iter().map(|n| self.object(n, fields)).collect())
    }

    fn type_ref(&self, ty: &'s TypeRef, fields: &[&Field]) -> Value {
        match ty {
            TypeRef::Named(name) => match self.ctx.schema.get(name) {
                Some(def) => self.object(Node::Named(def), fields),
                None => Value::Null,
            },
            wrapper => self.object(Node::Wrapper(wrapper), fields),
        }
    }

    fn include_deprecated(&self, fields: &[&Field]) -> bool {
        self.ctx
            .argument(fields[0], "includeDeprecated")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    fn field(&self, node: Node<'s>, name: &str, fields: &[&Field]) -> Value {
        let schema: &'s SchemaModel = self.ctx.schema;
        if name == "__typename" {
            return Value::String(node.type_name().to_string());
        }
        match node {
            Node::Schema => match name {
                "types" => self.list(schema.types.iter().map(Node::Named), fields),
                "queryType" => self.named(Some(&schema.query_type), fields),
                "mutationType" => self.named(schema.mutation_type.as_ref(), fields),
                "subscriptionType" => self.named(schema.subscription_type.as_ref(), fields),
                "directives" => self.list(schema.directives.iter().map(Node::Directive), fields),
                _ => Value::Null,
            },
            Node::Named(def) => self.named_type_field(def, name, fields),
            Node::Wrapper(ty) => match (name, ty) {
                ("kind", TypeRef::List(_)) => Value::String("LIST".into()),
                ("kind", _) => Value::String("NON_NULL".into()),
                ("ofType", TypeRef::List(inner) | TypeRef::NonNull(inner)) => {
                    self.type_ref(inner, fields)
                }
                _ => Value::Null,
            },
            Node::Field(def) => match name {
                "name" => Value::String(def.name.clone()),
                "description" => opt_str(&def.description),
                "args" => self.list(def.args.iter().map(Node::InputValue), fields),
                "type" => self.type_ref(&def.ty, fields),
                "isDeprecated" => Value::Bool(def.deprecation.is_some()),
                "deprecationReason" => opt_str(&def.deprecation),
                _ => Value::Null,
            },
            Node::InputValue(def) => match name {
                "name" => Value::String(def.name.clone()),
                "description" => opt_str(&def.description),
                "type" => self.type_ref(&def.ty, fields),
                "defaultValue" => opt_str(&def.default_value),
                "isDeprecated" => Value::Bool(false),
                _ => Value::Null,
            },
            Node::EnumValue(def) => match name {
                "name" => Value::String(def.name.clone()),
                "description" => opt_str(&def.description),
                "isDeprecated" => Value::Bool(def.deprecation.is_some()),
                "deprecationReason" => opt_str(&def.deprecation),
                _ => Value::Null,
            },
            Node::Directive(def) => match name {
                "name" => Value::String(def.name.clone()),
                "description" => opt_str(&def.description),
                "locations" => Value::Array(
                    def.locations
                        .iter()
                        .map(|l| Value::String(l.clone()))
                        .collect(),
                ),
                "args" => self.list(def.args.iter().map(Node::InputValue), fields),
                "isRepeatable" => Value::Bool(def.repeatable),
                _ => Value::Null,
            },
        }
    }

    fn named(&self, name: Option<&String>, fields: &[&Field]) -> Value {
        match name.and_then(|n| self.ctx.schema.get(n)) {
            Some(def) => self.object(Node::Named(def), fields),
            None => Value::Null,
        }
    }

    fn named_type_field(&self, def: &'s TypeDef, name: &str, fields: &[&Field]) -> Value {
        let schema: &'s SchemaModel = self.ctx.schema;
        let has_fields = matches!(def.kind, TypeKind::Object | TypeKind::Interface);
        match name {
            "kind" => Value::String(def.kind.as_introspection().into()),
            "name" => Value::String(def.name.clone()),
            "description" => opt_str(&def.description),
            "specifiedByURL" => opt_str(&def.specified_by),
            "fields" if has_fields => {
                let all = self.include_deprecated(fields);
                self.list(
                    def.fields
                        .iter()
                        // `__schema`/`__type` are meta-fields, not part of the query type.
                        .filter(|f| !f.name.starts_with("__"))
                        .filter(|f| all || f.deprecation.is_none())
                        .map(Node::Field),
                    fields,
                )
            }
            "interfaces" if has_fields => self.list(
                def.interfaces
                    .iter()
                    .filter_map(|i| schema.get(i))
                    .map(Node::Named),
                fields,
            ),
            "possibleTypes" if matches!(def.kind, TypeKind::Interface | TypeKind::Union) => self
                .list(
                    def.possible_types
                        .iter()
                        .filter_map(|t| schema.get(t))
                        .map(Node::Named),
                    fields,
                ),
            "enumValues" if def.kind == TypeKind::Enum => {
                let all = self.include_deprecated(fields);
                self.list(
                    def.enum_values
                        .iter()
                        .filter(|v| all || v.deprecation.is_none())
                        .map(Node::EnumValue),
                    fields,
                )
            }
            "inputFields" if def.kind == TypeKind::InputObject => {
                self.list(def.input_fields.iter().map(Node::InputValue), fields)
            }
            "isOneOf" if def.kind == TypeKind::InputObject => Value::Bool(false),
            _ => Value::Null,
        }
    }
}
