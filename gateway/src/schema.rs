//! The API schema as the executor needs it: types, fields, nullability, possible types.
//!
//! Why: projection (null propagation, abstract types), variable checks and introspection all
//! need fast lookups by type and field name, which a parsed SDL document does not give. The
//! model is built once per supergraph from the planner's API (consumer) schema document.

use rustc_hash::{FxHashMap, FxHashSet};

use graphql_tools::parser::schema as s;

use crate::planner::SchemaDocument;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    Named(String),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    pub fn is_non_null(&self) -> bool {
        matches!(self, TypeRef::NonNull(_))
    }

    /// The named type inside the list and non-null wrappers.
    pub fn named(&self) -> &str {
        match self {
            TypeRef::Named(name) => name,
            TypeRef::List(inner) | TypeRef::NonNull(inner) => inner.named(),
        }
    }

    fn from_ast(ty: &s::Type<'static, String>) -> Self {
        match ty {
            s::Type::NamedType(name) => TypeRef::Named(name.clone()),
            s::Type::ListType(inner) => TypeRef::List(Box::new(Self::from_ast(inner))),
            s::Type::NonNullType(inner) => TypeRef::NonNull(Box::new(Self::from_ast(inner))),
        }
    }
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeRef::Named(name) => f.write_str(name),
            TypeRef::List(inner) => write!(f, "[{inner}]"),
            TypeRef::NonNull(inner) => write!(f, "{inner}!"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    InputObject,
}

impl TypeKind {
    /// The `__TypeKind` enum value.
    pub fn as_introspection(self) -> &'static str {
        match self {
            TypeKind::Scalar => "SCALAR",
            TypeKind::Object => "OBJECT",
            TypeKind::Interface => "INTERFACE",
            TypeKind::Union => "UNION",
            TypeKind::Enum => "ENUM",
            TypeKind::InputObject => "INPUT_OBJECT",
        }
    }

    pub fn is_composite(self) -> bool {
        matches!(
            self,
            TypeKind::Object | TypeKind::Interface | TypeKind::Union
        )
    }
}

#[derive(Debug, Clone)]
pub struct InputValueDef {
    pub name: String,
    pub description: Option<String>,
    pub ty: TypeRef,
    /// Default value printed as GraphQL literal (what introspection reports).
    pub default_value: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub description: Option<String>,
    pub args: Vec<InputValueDef>,
    pub ty: TypeRef,
    pub deprecation: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EnumValueDef {
    pub name: String,
    pub description: Option<String>,
    pub deprecation: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TypeDef {
    pub name: String,
    pub kind: TypeKind,
    pub description: Option<String>,
    pub fields: Vec<FieldDef>,
    pub interfaces: Vec<String>,
    /// Object types that can appear where this (abstract) type is expected.
    pub possible_types: Vec<String>,
    pub enum_values: Vec<EnumValueDef>,
    pub input_fields: Vec<InputValueDef>,
    pub specified_by: Option<String>,
}

impl TypeDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct DirectiveDef {
    pub name: String,
    pub description: Option<String>,
    pub locations: Vec<String>,
    pub args: Vec<InputValueDef>,
    pub repeatable: bool,
}

/// Invariant: every `TypeRef::Named` reachable from a field refers to a key of `types`
/// (built-in scalars are added when the document does not declare them).
#[derive(Debug, Clone)]
pub struct SchemaModel {
    pub query_type: String,
    pub mutation_type: Option<String>,
    pub subscription_type: Option<String>,
    /// In document order (introspection lists them in this order).
    pub types: Vec<TypeDef>,
    // Fx hashing: these are looked up for every object and field of every response, with
    // keys from our own schema (no untrusted keys, so no need for DoS-resistant hashing).
    index: FxHashMap<String, usize>,
    possible: FxHashMap<String, FxHashSet<String>>,
    pub directives: Vec<DirectiveDef>,
}

const BUILTIN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

impl SchemaModel {
    pub fn from_document(document: &SchemaDocument) -> Self {
        let mut types = Vec::new();
        let mut directives = Vec::new();
        let mut roots: (Option<String>, Option<String>, Option<String>) = (None, None, None);

        for definition in &document.definitions {
            match definition {
                s::Definition::SchemaDefinition(schema) => {
                    roots = (
                        schema.query.clone(),
                        schema.mutation.clone(),
                        schema.subscription.clone(),
                    );
                }
                s::Definition::TypeDefinition(def) => types.push(type_def(def)),
                s::Definition::DirectiveDefinition(def) => directives.push(DirectiveDef {
                    name: def.name.clone(),
                    description: def.description.clone(),
                    locations: def
                        .locations
                        .iter()
                        .map(|l| l.as_str().to_string())
                        .collect(),
                    args: def.arguments.iter().map(input_value).collect(),
                    repeatable: def.repeatable,
                }),
                s::Definition::TypeExtension(_) => {}
            }
        }
        for scalar in BUILTIN_SCALARS {
            if !types.iter().any(|t: &TypeDef| t.name == scalar) {
                types.push(TypeDef {
                    name: scalar.to_string(),
                    kind: TypeKind::Scalar,
                    description: None,
                    fields: Vec::new(),
                    interfaces: Vec::new(),
                    possible_types: Vec::new(),
                    enum_values: Vec::new(),
                    input_fields: Vec::new(),
                    specified_by: None,
                });
            }
        }

        // Possible types: union members are given; interface implementors are derived.
        let implementors: Vec<(String, String)> = types
            .iter()
            .flat_map(|t| {
                t.interfaces
                    .iter()
                    .map(move |iface| (iface.clone(), t.name.clone()))
            })
            .collect();
        for (iface, object) in implementors {
            if let Some(def) = types.iter_mut().find(|t| t.name == iface) {
                if def.kind == TypeKind::Interface {
                    def.possible_types.push(object);
                }
            }
        }

        let index = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect::<FxHashMap<_, _>>();
        let possible = types
            .iter()
            .map(|t| {
                let set = match t.kind {
                    TypeKind::Object => std::iter::once(t.name.clone()).collect(),
                    _ => t.possible_types.iter().cloned().collect(),
                };
                (t.name.clone(), set)
            })
            .collect();
        let has = |name: &str| index.contains_key(name);
        let query_type = roots.0.unwrap_or_else(|| "Query".to_string());
        let mutation_type = roots
            .1
            .or_else(|| has("Mutation").then(|| "Mutation".into()));
        let subscription_type = roots
            .2
            .or_else(|| has("Subscription").then(|| "Subscription".into()));

        Self {
            query_type,
            mutation_type,
            subscription_type,
            types,
            index,
            possible,
            directives,
        }
    }

    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.index.get(name).map(|&i| &self.types[i])
    }

    /// Whether an object of type `object` satisfies a fragment on `condition`.
    pub fn fragment_applies(&self, condition: &str, object: &str) -> bool {
        condition == object
            || self
                .possible
                .get(condition)
                .is_some_and(|set| set.contains(object))
    }
}

fn deprecation(directives: &[s::Directive<'static, String>]) -> Option<String> {
    directives.iter().find(|d| d.name == "deprecated").map(|d| {
        d.arguments
            .iter()
            .find(|(name, _)| name == "reason")
            .and_then(|(_, value)| match value {
                s::Value::String(reason) => Some(reason.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "No longer supported".to_string())
    })
}

fn input_value(value: &s::InputValue<'static, String>) -> InputValueDef {
    InputValueDef {
        name: value.name.clone(),
        description: value.description.clone(),
        ty: TypeRef::from_ast(&value.value_type),
        default_value: value.default_value.as_ref().map(|v| v.to_string()),
    }
}

fn field_def(field: &s::Field<'static, String>) -> FieldDef {
    FieldDef {
        name: field.name.clone(),
        description: field.description.clone(),
        args: field.arguments.iter().map(input_value).collect(),
        ty: TypeRef::from_ast(&field.field_type),
        deprecation: deprecation(&field.directives),
    }
}

fn type_def(def: &s::TypeDefinition<'static, String>) -> TypeDef {
    let mut out = TypeDef {
        name: String::new(),
        kind: TypeKind::Scalar,
        description: None,
        fields: Vec::new(),
        interfaces: Vec::new(),
        possible_types: Vec::new(),
        enum_values: Vec::new(),
        input_fields: Vec::new(),
        specified_by: None,
    };
    match def {
        s::TypeDefinition::Scalar(t) => {
            out.name = t.name.clone();
            out.description = t.description.clone();
            out.specified_by = t
                .directives
                .iter()
                .find(|d| d.name == "specifiedBy")
                .and_then(|d| d.arguments.iter().find(|(n, _)| n == "url"))
                .and_then(|(_, v)| match v {
                    s::Value::String(url) => Some(url.clone()),
                    _ => None,
                });
        }
        s::TypeDefinition::Object(t) => {
            out.name = t.name.clone();
            out.kind = TypeKind::Object;
            out.description = t.description.clone();
            out.fields = t.fields.iter().map(field_def).collect();
            out.interfaces = t.implements_interfaces.clone();
        }
        s::TypeDefinition::Interface(t) => {
            out.name = t.name.clone();
            out.kind = TypeKind::Interface;
            out.description = t.description.clone();
            out.fields = t.fields.iter().map(field_def).collect();
            out.interfaces = t.implements_interfaces.clone();
        }
        s::TypeDefinition::Union(t) => {
            out.name = t.name.clone();
            out.kind = TypeKind::Union;
            out.description = t.description.clone();
            out.possible_types = t.types.clone();
        }
        s::TypeDefinition::Enum(t) => {
            out.name = t.name.clone();
            out.kind = TypeKind::Enum;
            out.description = t.description.clone();
            out.enum_values = t
                .values
                .iter()
                .map(|v| EnumValueDef {
                    name: v.name.clone(),
                    description: v.description.clone(),
                    deprecation: deprecation(&v.directives),
                })
                .collect();
        }
        s::TypeDefinition::InputObject(t) => {
            out.name = t.name.clone();
            out.kind = TypeKind::InputObject;
            out.description = t.description.clone();
            out.input_fields = t.fields.iter().map(input_value).collect();
        }
    }
    out
}

/// A type's directives and, for objects and interfaces, its fields: where the supergraph's
/// demand-control and authorization directives sit.
pub(crate) struct DirectiveSite<'d> {
    pub type_name: &'d str,
    pub directives: &'d [s::Directive<'static, String>],
    pub fields: &'d [s::Field<'static, String>],
}

/// Every output type of `document` with its directives and fields (input types carry no
/// directives the gateway enforces).
pub(crate) fn directive_sites(
    document: &SchemaDocument,
) -> impl Iterator<Item = DirectiveSite<'_>> {
    document.definitions.iter().filter_map(|definition| {
        let s::Definition::TypeDefinition(definition) = definition else {
            return None;
        };
        let (type_name, directives, fields): (&String, _, &[_]) = match definition {
            s::TypeDefinition::Object(o) => (&o.name, &o.directives, &o.fields),
            s::TypeDefinition::Interface(i) => (&i.name, &i.directives, &i.fields),
            s::TypeDefinition::Scalar(t) => (&t.name, &t.directives, &[]),
            s::TypeDefinition::Enum(t) => (&t.name, &t.directives, &[]),
            s::TypeDefinition::Union(t) => (&t.name, &t.directives, &[]),
            s::TypeDefinition::InputObject(_) => return None,
        };
        Some(DirectiveSite {
            type_name,
            directives,
            fields,
        })
    })
}
