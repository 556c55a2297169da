//! Composes a Federation v2 supergraph SDL from subgraph SDLs.
//!
//! Composition itself is `graphql-composition` (Grafbase). Its output is a valid federated
//! graph but differs from what Apollo tooling emits, and Apollo's gateway validates the join
//! spec strictly. So the SDL is post-processed into the canonical form both our planner and
//! `@apollo/gateway` accept:
//! - the `link`/`join` machinery (directive definitions, `join__FieldSet`, `link__*`) is
//!   replaced by the canonical definitions of the declared join version (v0.3, or v0.4 when
//!   `overrideLabel` is used), and Grafbase-only `@join__owner` is dropped;
//! - the `inaccessible` link is kept (with its directive definition) only when used, and so
//!   are the authorization and demand-control specs (`@requiresScopes`, `@authenticated`,
//!   `@policy`, `@cost`, `@listSize`), linked without a purpose so that a gateway that
//!   does not enforce them still loads the supergraph;
//! - root operation types get a `@join__type` per subgraph that contributes fields;
//! - custom scalars get a `@join__type` per subgraph that defines them (Grafbase emits none,
//!   and Apollo's gateway then cannot find the scalar when it extracts each subgraph);
//! - definitions are emitted in a fixed order (schema, directives, types by name), so the
//!   output is deterministic for a given set of subgraphs, whatever their input order.

use std::collections::{BTreeMap, BTreeSet};

use graphql_tools::parser::schema as s;

type Document = s::Document<'static, String>;
type Directive = s::Directive<'static, String>;

/// One subgraph to compose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphSource {
    pub name: String,
    pub url: String,
    pub sdl: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no subgraphs to compose")]
    NoSubgraphs,
    #[error("subgraph `{subgraph}` does not parse: {message}")]
    Ingest { subgraph: String, message: String },
    #[error("composition failed:\n{}", .0.join("\n"))]
    Composition(Vec<String>),
    #[error("composed supergraph could not be post-processed: {0}")]
    Render(String),
}

const LINK_V1: &str = "https://specs.apollo.dev/link/v1.0";
const INACCESSIBLE_V02: &str = "https://specs.apollo.dev/inaccessible/v0.2";

const JOIN_COMMON: &str = r#"
directive @link(url: String, as: String, for: link__Purpose, import: [link__Import]) repeatable on SCHEMA
directive @join__enumValue(graph: join__Graph!) repeatable on ENUM_VALUE
directive @join__graph(name: String!, url: String!) on ENUM_VALUE
directive @join__implements(graph: join__Graph!, interface: String!) repeatable on OBJECT | INTERFACE
directive @join__type(graph: join__Graph!, key: join__FieldSet, extension: Boolean! = false, resolvable: Boolean! = true, isInterfaceObject: Boolean! = false) repeatable on OBJECT | INTERFACE | UNION | ENUM | INPUT_OBJECT | SCALAR
directive @join__unionMember(graph: join__Graph!, member: String!) repeatable on UNION
scalar join__FieldSet
scalar link__Import
enum link__Purpose {
  "`SECURITY` features provide metadata necessary to securely resolve fields."
  SECURITY
  "`EXECUTION` features provide metadata necessary for operation execution."
  EXECUTION
}
"#;

const JOIN_FIELD_V03: &str = r#"
directive @join__field(graph: join__Graph, requires: join__FieldSet, provides: join__FieldSet, type: String, external: Boolean, override: String, usedOverridden: Boolean) repeatable on FIELD_DEFINITION | INPUT_FIELD_DEFINITION
"#;

const JOIN_FIELD_V04: &str = r#"
directive @join__field(graph: join__Graph, requires: join__FieldSet, provides: join__FieldSet, type: String, external: Boolean, override: String, usedOverridden: Boolean, overrideLabel: String) repeatable on FIELD_DEFINITION | INPUT_FIELD_DEFINITION
directive @join__directive(graphs: [join__Graph!], name: String!, args: join__DirectiveArguments) repeatable on SCHEMA | OBJECT | INTERFACE | FIELD_DEFINITION
scalar join__DirectiveArguments
"#;

/// Demand-control and authorization specs: linked (without a purpose, so a gateway that
/// does not implement them still loads the supergraph) and defined when used.
const EDGE_SPECS: [(&str, &str, &str); 5] = [
    (
        "requiresScopes",
        "https://specs.apollo.dev/requiresScopes/v0.1",
        "directive @requiresScopes(scopes: [[requiresScopes__Scope!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\nscalar requiresScopes__Scope\n",
    ),
    (
        "authenticated",
        "https://specs.apollo.dev/authenticated/v0.1",
        "directive @authenticated on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n",
    ),
    (
        "policy",
        "https://specs.apollo.dev/policy/v0.1",
        "directive @policy(policies: [[policy__Policy!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\nscalar policy__Policy\n",
    ),
    (
        "cost",
        "https://specs.apollo.dev/cost/v0.1",
        "directive @cost(weight: Int!) on ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION | INPUT_FIELD_DEFINITION | OBJECT | SCALAR\n",
    ),
    (
        "listSize",
        "https://specs.apollo.dev/cost/v0.1",
        "directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!], requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION\n",
    ),
];

const INACCESSIBLE_DEF: &str = "directive @inaccessible on FIELD_DEFINITION | OBJECT | INTERFACE | UNION | ARGUMENT_DEFINITION | SCALAR | ENUM | ENUM_VALUE | INPUT_OBJECT | INPUT_FIELD_DEFINITION\n";

/// Composes `subgraphs` into a supergraph SDL (deterministic for a given set of subgraphs).
pub fn compose(subgraphs: &[SubgraphSource]) -> Result<String, ComposeError> {
    if subgraphs.is_empty() {
        return Err(ComposeError::NoSubgraphs);
    }
    let mut sorted: Vec<&SubgraphSource> = subgraphs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));

    let mut ingested = graphql_composition::Subgraphs::default();
    let mut scalar_definers = ScalarDefiners::new();
    for subgraph in sorted {
        // graphql-tools' parser rejects `extend schema @link(...)`, so cynic-parser (the one
        // graphql-composition itself uses) reads the subgraph here.
        let parsed = cynic_parser::parse_type_system_document(&subgraph.sdl).map_err(|e| {
            ComposeError::Ingest {
                subgraph: subgraph.name.clone(),
                message: e.to_string(),
            }
        })?;
        for definition in parsed.definitions() {
            if let cynic_parser::type_system::Definition::Type(
                cynic_parser::type_system::TypeDefinition::Scalar(scalar),
            ) = definition
            {
                scalar_definers
                    .entry(scalar.name().to_string())
                    .or_default()
                    .insert(subgraph.name.clone());
            }
        }
        ingested
            .ingest_str(&subgraph.sdl, &subgraph.name, Some(&subgraph.url))
            .map_err(|e| ComposeError::Ingest {
                subgraph: subgraph.name.clone(),
                message: e.to_string(),
            })?;
    }
    let graph = graphql_composition::compose(&mut ingested)
        .into_result()
        .map_err(|diagnostics| {
            ComposeError::Composition(diagnostics.iter_errors().map(str::to_string).collect())
        })?;
    let raw = graphql_composition::render_federated_sdl(&graph)
        .map_err(|e| ComposeError::Render(e.to_string()))?;
    canonicalize(&raw, &scalar_definers)
}

/// Scalar name → names of the subgraphs whose SDL defines it.
type ScalarDefiners = BTreeMap<String, BTreeSet<String>>;

/// The post-processing described in the module docs.
fn canonicalize(raw: &str, scalar_definers: &ScalarDefiners) -> Result<String, ComposeError> {
    let parsed: Document = graphql_tools::parser::parse_schema::<String>(raw)
        .map_err(|e| ComposeError::Render(e.to_string()))?
        .into_static();

    let mut schema_def = None;
    let mut types = Vec::new();
    for definition in parsed.definitions {
        match definition {
            s::Definition::SchemaDefinition(def) => schema_def = Some(def),
            s::Definition::DirectiveDefinition(def) if is_machinery(&def.name) => {}
            s::Definition::DirectiveDefinition(def) if def.name == "inaccessible" => {}
            s::Definition::DirectiveDefinition(def)
                if EDGE_SPECS.iter().any(|(name, ..)| *name == def.name) => {}
            s::Definition::TypeDefinition(def)
                if matches!(type_name(&def), "requiresScopes__Scope" | "policy__Policy") => {}
            s::Definition::TypeDefinition(def) if is_machinery(type_name(&def)) => {}
            s::Definition::TypeDefinition(def) => types.push(def),
            other => {
                return Err(ComposeError::Render(format!(
                    "unexpected definition in composed SDL: {other}"
                )))
            }
        }
    }
    let mut schema_def =
        schema_def.ok_or_else(|| ComposeError::Render("no schema definition".into()))?;

    // Usage scan (and removal of Grafbase-only @join__owner).
    let mut uses_inaccessible = false;
    let mut uses_override_label = false;
    let mut edge_used: BTreeSet<&'static str> = BTreeSet::new();
    for def in &mut types {
        for_each_directive_list(def, &mut |directives| {
            directives.retain(|d| d.name != "join__owner");
            for d in directives.iter() {
                if let Some((name, ..)) = EDGE_SPECS.iter().find(|(name, ..)| *name == d.name) {
                    edge_used.insert(name);
                }
                uses_inaccessible |= d.name == "inaccessible";
                uses_override_label |= d.name == "join__field"
                    && d.arguments.iter().any(|(n, _)| n == "overrideLabel");
            }
        });
    }

    let root_names = [
        schema_def.query.clone().unwrap_or_else(|| "Query".into()),
        schema_def
            .mutation
            .clone()
            .unwrap_or_else(|| "Mutation".into()),
        schema_def
            .subscription
            .clone()
            .unwrap_or_else(|| "Subscription".into()),
    ];
    let graph_by_subgraph = graph_enum_values(&types);
    let all_graphs: Vec<String> = graph_by_subgraph.values().cloned().collect();
    for def in &mut types {
        match def {
            s::TypeDefinition::Object(object) if root_names.contains(&object.name) => {
                add_root_join_types(object, &all_graphs);
            }
            s::TypeDefinition::Scalar(scalar) => {
                add_scalar_join_types(scalar, scalar_definers, &graph_by_subgraph);
            }
            _ => {}
        }
    }

    let join_version = if uses_override_label { "v0.4" } else { "v0.3" };
    let mut links = vec![
        link_directive(LINK_V1, None),
        link_directive(
            &format!("https://specs.apollo.dev/join/{join_version}"),
            Some("EXECUTION"),
        ),
    ];
    if uses_inaccessible {
        links.push(link_directive(INACCESSIBLE_V02, Some("SECURITY")));
    }
    let mut linked = BTreeSet::new();
    for (name, url, _) in EDGE_SPECS {
        if !edge_used.contains(name) || !linked.insert(url) {
            continue;
        }
        let mut link = link_directive(url, None);
        // `@listSize` is not the cost spec's own name: it is imported.
        if url.ends_with("/cost/v0.1") && edge_used.contains("listSize") {
            link.arguments.push((
                "import".to_string(),
                s::Value::List(vec![s::Value::String("@listSize".to_string())]),
            ));
        }
        links.push(link);
    }
    schema_def.directives.retain(|d| d.name != "link");
    links.append(&mut schema_def.directives);
    schema_def.directives = links;

    let mut machinery_sdl = String::from(JOIN_COMMON);
    machinery_sdl.push_str(if uses_override_label {
        JOIN_FIELD_V04
    } else {
        JOIN_FIELD_V03
    });
    if uses_inaccessible {
        machinery_sdl.push_str(INACCESSIBLE_DEF);
    }
    for (name, _, definition) in EDGE_SPECS {
        if edge_used.contains(name) {
            machinery_sdl.push_str(definition);
        }
    }
    let machinery: Document = graphql_tools::parser::parse_schema::<String>(&machinery_sdl)
        .map_err(|e| ComposeError::Render(format!("canonical join definitions: {e}")))?
        .into_static();

    let mut directives = Vec::new();
    for definition in machinery.definitions {
        match definition {
            s::Definition::DirectiveDefinition(def) => directives.push(def),
            s::Definition::TypeDefinition(def) => types.push(def),
            _ => {}
        }
    }
    directives.sort_by(|a, b| a.name.cmp(&b.name));
    types.sort_by(|a, b| type_name(a).cmp(type_name(b)));

    let mut definitions = vec![s::Definition::SchemaDefinition(schema_def)];
    definitions.extend(
        directives
            .into_iter()
            .map(s::Definition::DirectiveDefinition),
    );
    definitions.extend(types.into_iter().map(s::Definition::TypeDefinition));
    Ok(s::Document { definitions }.to_string())
}

/// Definitions owned by the link/join specs; replaced by canonical ones.
fn is_machinery(name: &str) -> bool {
    (name.starts_with("join__") && name != "join__Graph")
        || name.starts_with("link__")
        || name == "link"
}

fn type_name<'a>(def: &'a s::TypeDefinition<'static, String>) -> &'a str {
    match def {
        s::TypeDefinition::Scalar(t) => &t.name,
        s::TypeDefinition::Object(t) => &t.name,
        s::TypeDefinition::Interface(t) => &t.name,
        s::TypeDefinition::Union(t) => &t.name,
        s::TypeDefinition::Enum(t) => &t.name,
        s::TypeDefinition::InputObject(t) => &t.name,
    }
}

fn string_arg(name: &str, value: &str) -> (String, s::Value<'static, String>) {
    (name.to_string(), s::Value::String(value.to_string()))
}

fn link_directive(url: &str, purpose: Option<&str>) -> Directive {
    let mut arguments = vec![string_arg("url", url)];
    if let Some(purpose) = purpose {
        arguments.push(("for".to_string(), s::Value::Enum(purpose.to_string())));
    }
    Directive {
        position: Default::default(),
        name: "link".to_string(),
        arguments,
    }
}

/// Root types need a `@join__type` for every subgraph that resolves some of their fields;
/// a field without `@join__field` is resolvable in every subgraph.
fn add_root_join_types(object: &mut s::ObjectType<'static, String>, all_graphs: &[String]) {
    if object.directives.iter().any(|d| d.name == "join__type") {
        return;
    }
    let mut graphs = BTreeSet::new();
    for field in &object.fields {
        let owners: Vec<String> = field
            .directives
            .iter()
            .filter(|d| d.name == "join__field")
            .filter_map(|d| d.arguments.iter().find(|(n, _)| n == "graph"))
            .filter_map(|(_, v)| match v {
                s::Value::Enum(g) => Some(g.clone()),
                _ => None,
            })
            .collect();
        if owners.is_empty() {
            graphs.extend(all_graphs.iter().cloned());
        } else {
            graphs.extend(owners);
        }
    }
    object.directives.extend(graphs.into_iter().map(join_type));
}

/// `@join__type(graph: <graph>)`.
fn join_type(graph: String) -> Directive {
    Directive {
        position: Default::default(),
        name: "join__type".to_string(),
        arguments: vec![("graph".to_string(), s::Value::Enum(graph))],
    }
}

/// Subgraph name → its `join__Graph` enum value, read from the `@join__graph(name:)` arguments.
fn graph_enum_values(types: &[s::TypeDefinition<'static, String>]) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for def in types {
        let s::TypeDefinition::Enum(graphs) = def else {
            continue;
        };
        if graphs.name != "join__Graph" {
            continue;
        }
        for value in &graphs.values {
            let name = value
                .directives
                .iter()
                .filter(|d| d.name == "join__graph")
                .flat_map(|d| d.arguments.iter())
                .find_map(|(n, v)| match v {
                    s::Value::String(name) if n == "name" => Some(name.clone()),
                    _ => None,
                });
            if let Some(name) = name {
                values.insert(name, value.name.clone());
            }
        }
    }
    values
}

/// A custom scalar needs a `@join__type` for every subgraph that defines it, or Apollo's
/// subgraph extraction leaves it out of those subgraphs' schemas.
fn add_scalar_join_types(
    scalar: &mut s::ScalarType<'static, String>,
    scalar_definers: &ScalarDefiners,
    graph_by_subgraph: &BTreeMap<String, String>,
) {
    if scalar.directives.iter().any(|d| d.name == "join__type") {
        return;
    }
    let Some(definers) = scalar_definers.get(&scalar.name) else {
        return;
    };
    let graphs: BTreeSet<&String> = definers
        .iter()
        .filter_map(|subgraph| graph_by_subgraph.get(subgraph))
        .collect();
    scalar
        .directives
        .extend(graphs.into_iter().cloned().map(join_type));
}

/// Calls `f` on every directive list of a type definition (type, fields, arguments, values).
fn for_each_directive_list(
    def: &mut s::TypeDefinition<'static, String>,
    f: &mut dyn FnMut(&mut Vec<Directive>),
) {
    let fields = |fields: &mut Vec<s::Field<'static, String>>,
                  f: &mut dyn FnMut(&mut Vec<Directive>)| {
        for field in fields {
            f(&mut field.directives);
            for arg in &mut field.arguments {
                f(&mut arg.directives);
            }
        }
    };
    match def {
        s::TypeDefinition::Scalar(t) => f(&mut t.directives),
        s::TypeDefinition::Object(t) => {
            f(&mut t.directives);
            fields(&mut t.fields, f);
        }
        s::TypeDefinition::Interface(t) => {
            f(&mut t.directives);
            fields(&mut t.fields, f);
        }
        s::TypeDefinition::Union(t) => f(&mut t.directives),
        s::TypeDefinition::Enum(t) => {
            f(&mut t.directives);
            for value in &mut t.values {
                f(&mut value.directives);
            }
        }
        s::TypeDefinition::InputObject(t) => {
            f(&mut t.directives);
            for field in &mut t.fields {
                f(&mut field.directives);
            }
        }
    }
}
