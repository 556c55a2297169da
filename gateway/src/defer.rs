//! `@defer`: what an operation defers, and the documents that describe its payloads.
//!
//! The query planner does not plan `@defer`, so the gateway does it around the planner:
//! - the **full** document is the operation with every `@defer` removed; it is what is
//!   planned and executed, once (see `incremental`);
//! - the **primary** document is the operation without its active deferred fragments; it is
//!   never executed, only projected over the full execution's data as soon as that data
//!   holds everything it selects: the first payload;
//! - each deferred fragment's payload is read out of the full result at the fragment's
//!   paths.

use std::collections::{HashMap, HashSet};

use graphql_tools::parser::query as q;
use serde_json::{Map, Value};

use crate::error::PathSegment;
use crate::planner::QueryDocument;
use crate::selection::{CollectContext, FragmentDefinition, SelectionSet};

/// The `@defer` directive as the API schema declares it.
pub const DIRECTIVE_SDL: &str =
    "directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT";

type Directives = [q::Directive<'static, String>];

fn defer_directive(directives: &Directives) -> Option<&q::Directive<'static, String>> {
    directives.iter().find(|d| d.name == "defer")
}

/// Whether a `@defer` applies with these variables (`if` defaults to true).
pub fn is_active(directives: &Directives, variables: &Map<String, Value>) -> bool {
    let Some(directive) = defer_directive(directives) else {
        return false;
    };
    match directive.arguments.iter().find(|(name, _)| name == "if") {
        None => true,
        Some((_, q::Value::Boolean(b))) => *b,
        Some((_, q::Value::Variable(v))) => {
            variables.get(v).and_then(Value::as_bool).unwrap_or(true)
        }
        Some(_) => true,
    }
}

/// One deferred fragment at one place in the response.
#[derive(Debug, Clone)]
pub struct DeferredFragment {
    /// Ordinal of the `@defer` occurrence in the document (pre-order, definitions in order).
    pub node: usize,
    pub label: Option<String>,
    /// Response keys from the root to the object the fragment applies to.
    pub path: Vec<String>,
    /// The deferred selection (for a spread, the fragment definition's).
    pub selection: SelectionSet,
}

/// What an operation defers. Built once per prepared operation.
#[derive(Debug)]
pub struct DeferPlan {
    document: QueryDocument,
    /// The `@defer` directives by ordinal, to evaluate `if` per request.
    directives: Vec<Vec<q::Directive<'static, String>>>,
    pub fragments: Vec<DeferredFragment>,
}

fn operation_set<'a>(op: &'a q::OperationDefinition<'static, String>) -> &'a SelectionSet {
    match op {
        q::OperationDefinition::SelectionSet(s) => s,
        q::OperationDefinition::Query(o) => &o.selection_set,
        q::OperationDefinition::Mutation(o) => &o.selection_set,
        q::OperationDefinition::Subscription(o) => &o.selection_set,
    }
}

fn operation_set_mut<'a>(
    op: &'a mut q::OperationDefinition<'static, String>,
) -> &'a mut SelectionSet {
    match op {
        q::OperationDefinition::SelectionSet(s) => s,
        q::OperationDefinition::Query(o) => &mut o.selection_set,
        q::OperationDefinition::Mutation(o) => &mut o.selection_set,
        q::OperationDefinition::Subscription(o) => &mut o.selection_set,
    }
}

/// Address of an AST node: identifies a `@defer` occurrence within one document.
fn address<T>(node: &T) -> usize {
    node as *const T as usize
}

impl DeferPlan {
    /// `None` when the document uses no `@defer`. `operation_name` chooses the operation as
    /// for execution (the document was validated and the choice checked before).
    pub fn analyze(document: &QueryDocument, operation_name: Option<&str>) -> Option<Self> {
        // Number every occurrence in document order.
        let mut ordinals = HashMap::new();
        let mut directives = Vec::new();
        for_each_defer(document, &mut |addr, d| {
            ordinals.insert(addr, directives.len());
            directives.push(d.to_vec());
        });
        if directives.is_empty() {
            return None;
        }
        // The walk below identifies occurrences by address, so it must walk `document`
        // itself, never a copy of it.
        let selection = document.definitions.iter().find_map(|d| match d {
            q::Definition::Operation(op) => {
                let name = match op {
                    q::OperationDefinition::SelectionSet(_) => None,
                    q::OperationDefinition::Query(o) => o.name.as_deref(),
                    q::OperationDefinition::Mutation(o) => o.name.as_deref(),
                    q::OperationDefinition::Subscription(o) => o.name.as_deref(),
                };
                (operation_name.is_none() || name == operation_name).then(|| operation_set(op))
            }
            _ => None,
        })?;
        // Where each occurrence lands in the response, following spreads.
        let mut out = Vec::new();
        let fragments_by_name: HashMap<&str, &FragmentDefinition> = document
            .definitions
            .iter()
            .filter_map(|d| match d {
                q::Definition::Fragment(f) => Some((f.name.as_str(), f)),
                _ => None,
            })
            .collect();
        collect(
            selection,
            &mut Vec::new(),
            &fragments_by_name,
            &ordinals,
            &mut HashSet::new(),
            &mut out,
        );
        Some(Self {
            document: document.clone(),
            directives,
            fragments: out,
        })
    }

    /// Per occurrence ordinal: deferred with these variables?
    pub fn active(&self, variables: &Map<String, Value>) -> Vec<bool> {
        self.directives
            .iter()
            .map(|d| is_active(d, variables))
            .collect()
    }

    /// The operation without the active deferred fragments, as text.
    pub fn primary_query(&self, active: &[bool]) -> String {
        without_deferred(&self.document, active).to_string()
    }
}

fn for_each_defer(document: &QueryDocument, f: &mut dyn FnMut(usize, &Directives)) {
    fn walk(set: &SelectionSet, f: &mut dyn FnMut(usize, &Directives)) {
        for item in &set.items {
            match item {
                q::Selection::Field(field) => walk(&field.selection_set, f),
                q::Selection::InlineFragment(fragment) => {
                    if defer_directive(&fragment.directives).is_some() {
                        f(address(fragment), &fragment.directives);
                    }
                    walk(&fragment.selection_set, f);
                }
                q::Selection::FragmentSpread(spread) => {
                    if defer_directive(&spread.directives).is_some() {
                        f(address(spread), &spread.directives);
                    }
                }
            }
        }
    }
    for definition in &document.definitions {
        match definition {
            q::Definition::Operation(op) => walk(operation_set(op), f),
            q::Definition::Fragment(fragment) => walk(&fragment.selection_set, f),
        }
    }
}

fn label_of(directives: &Directives) -> Option<String> {
    defer_directive(directives).and_then(|d| {
        d.arguments
            .iter()
            .find_map(|(name, value)| match (name.as_str(), value) {
                ("label", q::Value::String(label)) => Some(label.clone()),
                _ => None,
            })
    })
}

fn collect(
    set: &SelectionSet,
    path: &mut Vec<String>,
    fragments: &HashMap<&str, &FragmentDefinition>,
    ordinals: &HashMap<usize, usize>,
    expanding: &mut HashSet<String>,
    out: &mut Vec<DeferredFragment>,
) {
    for item in &set.items {
        match item {
            q::Selection::Field(field) => {
                path.push(field.alias.clone().unwrap_or_else(|| field.name.clone()));
                collect(
                    &field.selection_set,
                    path,
                    fragments,
                    ordinals,
                    expanding,
                    out,
                );
                path.pop();
            }
            q::Selection::InlineFragment(fragment) => {
                if let Some(&node) = ordinals.get(&address(fragment)) {
                    out.push(DeferredFragment {
                        node,
                        label: label_of(&fragment.directives),
                        path: path.clone(),
                        selection: fragment.selection_set.clone(),
                    });
                }
                collect(
                    &fragment.selection_set,
                    path,
                    fragments,
                    ordinals,
                    expanding,
                    out,
                );
            }
            q::Selection::FragmentSpread(spread) => {
                let Some(definition) = fragments.get(spread.fragment_name.as_str()) else {
                    continue;
                };
                if let Some(&node) = ordinals.get(&address(spread)) {
                    out.push(DeferredFragment {
                        node,
                        label: label_of(&spread.directives),
                        path: path.clone(),
                        selection: definition.selection_set.clone(),
                    });
                }
                // Validation rejects cycles; `expanding` keeps this walk finite regardless.
                if expanding.insert(spread.fragment_name.clone()) {
                    collect(
                        &definition.selection_set,
                        path,
                        fragments,
                        ordinals,
                        expanding,
                        out,
                    );
                    expanding.remove(&spread.fragment_name);
                }
            }
        }
    }
}

/// Removes active deferred fragments (pre-order numbering, as in `for_each_defer`) and the
/// `@defer` directive of inactive ones; an emptied selection set gets `__typename`.
fn remove_active(set: &mut SelectionSet, active: &[bool], counter: &mut usize) {
    let mut items = std::mem::take(&mut set.items);
    items.retain_mut(|item| match item {
        q::Selection::Field(field) => {
            if !field.selection_set.items.is_empty() {
                remove_active(&mut field.selection_set, active, counter);
            }
            true
        }
        q::Selection::InlineFragment(fragment) => {
            let deferred = defer_directive(&fragment.directives).is_some().then(|| {
                *counter += 1;
                active.get(*counter - 1).copied().unwrap_or(false)
            });
            fragment.directives.retain(|d| d.name != "defer");
            remove_active(&mut fragment.selection_set, active, counter);
            deferred != Some(true)
        }
        q::Selection::FragmentSpread(spread) => {
            let deferred = defer_directive(&spread.directives).is_some().then(|| {
                *counter += 1;
                active.get(*counter - 1).copied().unwrap_or(false)
            });
            spread.directives.retain(|d| d.name != "defer");
            deferred != Some(true)
        }
    });
    if items.is_empty() {
        items.push(q::Selection::Field(q::Field {
            position: set.span.0,
            alias: None,
            name: "__typename".to_string(),
            arguments: Vec::new(),
            directives: Vec::new(),
            selection_set: SelectionSet {
                span: set.span,
                items: Vec::new(),
            },
        }));
    }
    set.items = items;
}

/// The document with every `@defer` removed: the operation as if nothing were deferred.
pub fn strip_all(document: &QueryDocument) -> QueryDocument {
    without_deferred(document, &[])
}

/// A copy of `document` without the fragments `active` marks (by ordinal), without any
/// `@defer` directive, and without what only the removed fragments used.
fn without_deferred(document: &QueryDocument, active: &[bool]) -> QueryDocument {
    let mut document = document.clone();
    let mut counter = 0;
    for definition in &mut document.definitions {
        let set = match definition {
            q::Definition::Operation(op) => operation_set_mut(op),
            q::Definition::Fragment(f) => &mut f.selection_set,
        };
        remove_active(set, active, &mut counter);
    }
    prune_unused(&mut document);
    document
}

/// Drops fragment definitions no operation reaches and variable definitions an operation no
/// longer uses, which removing deferred parts (or fields a caller may not see, in
/// `authorization`) can leave behind: validation rejects both.
pub(crate) fn prune_unused(document: &mut QueryDocument) {
    fn uses(set: &SelectionSet, spreads: &mut HashSet<String>, variables: &mut HashSet<String>) {
        fn value(v: &q::Value<'static, String>, variables: &mut HashSet<String>) {
            match v {
                q::Value::Variable(name) => {
                    variables.insert(name.clone());
                }
                q::Value::List(items) => items.iter().for_each(|i| value(i, variables)),
                q::Value::Object(fields) => fields.iter().for_each(|(_, i)| value(i, variables)),
                _ => {}
            }
        }
        let directive_values = |ds: &Directives, variables: &mut HashSet<String>| {
            for d in ds {
                for (_, v) in &d.arguments {
                    value(v, variables);
                }
            }
        };
        for item in &set.items {
            match item {
                q::Selection::Field(f) => {
                    f.arguments.iter().for_each(|(_, v)| value(v, variables));
                    directive_values(&f.directives, variables);
                    uses(&f.selection_set, spreads, variables);
                }
                q::Selection::InlineFragment(f) => {
                    directive_values(&f.directives, variables);
                    uses(&f.selection_set, spreads, variables);
                }
                q::Selection::FragmentSpread(s) => {
                    directive_values(&s.directives, variables);
                    spreads.insert(s.fragment_name.clone());
                }
            }
        }
    }
    let fragment_sets: HashMap<String, SelectionSet> = document
        .definitions
        .iter()
        .filter_map(|d| match d {
            q::Definition::Fragment(f) => Some((f.name.clone(), f.selection_set.clone())),
            _ => None,
        })
        .collect();
    // Per operation: the fragments and variables it reaches, transitively.
    let mut reached_fragments = HashSet::new();
    for definition in &mut document.definitions {
        let q::Definition::Operation(op) = definition else {
            continue;
        };
        let mut spreads = HashSet::new();
        let mut variables = HashSet::new();
        uses(operation_set(op), &mut spreads, &mut variables);
        let mut queue: Vec<String> = spreads.iter().cloned().collect();
        while let Some(name) = queue.pop() {
            if let Some(set) = fragment_sets.get(&name) {
                let mut more = HashSet::new();
                uses(set, &mut more, &mut variables);
                for m in more {
                    if spreads.insert(m.clone()) {
                        queue.push(m);
                    }
                }
            }
        }
        let definitions = match op {
            q::OperationDefinition::Query(o) => Some(&mut o.variable_definitions),
            q::OperationDefinition::Mutation(o) => Some(&mut o.variable_definitions),
            q::OperationDefinition::Subscription(o) => Some(&mut o.variable_definitions),
            q::OperationDefinition::SelectionSet(_) => None,
        };
        if let Some(definitions) = definitions {
            definitions.retain(|v| variables.contains(&v.name));
        }
        reached_fragments.extend(spreads);
    }
    document.definitions.retain(|d| match d {
        q::Definition::Fragment(f) => reached_fragments.contains(&f.name),
        _ => true,
    });
}

/// The deferred fragment's fields out of an object of the full result (response-shaped),
/// leaving out fragments deferred further down (they have payloads of their own).
pub fn pick(value: &Value, set: &SelectionSet, ctx: &CollectContext<'_>) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|i| pick(i, set, ctx)).collect()),
        Value::Object(object) => {
            let mut out = Map::new();
            pick_into(object, set, ctx, &mut out);
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Merges a field picked again (it is selected more than once) into the first pick. Both
/// come from the same response value, so they differ only in which subfields they hold.
fn merge_picked(target: &mut Value, source: Value) {
    match (target, source) {
        (Value::Object(t), Value::Object(s)) => {
            for (key, value) in s {
                match t.get_mut(&key) {
                    Some(existing) => merge_picked(existing, value),
                    None => {
                        t.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(s)) => {
            for (existing, value) in t.iter_mut().zip(s) {
                merge_picked(existing, value);
            }
        }
        _ => {}
    }
}

fn pick_into(
    object: &Map<String, Value>,
    set: &SelectionSet,
    ctx: &CollectContext<'_>,
    out: &mut Map<String, Value>,
) {
    for item in &set.items {
        match item {
            q::Selection::Field(field) => {
                if !ctx.included(&field.directives) {
                    continue;
                }
                let key = field.alias.as_ref().unwrap_or(&field.name);
                let Some(value) = object.get(key) else {
                    continue;
                };
                let picked = if field.selection_set.items.is_empty() {
                    value.clone()
                } else {
                    pick(value, &field.selection_set, ctx)
                };
                match out.get_mut(key) {
                    Some(existing) => merge_picked(existing, picked),
                    None => {
                        out.insert(key.clone(), picked);
                    }
                }
            }
            q::Selection::InlineFragment(fragment) => {
                if ctx.included(&fragment.directives)
                    && !is_active(&fragment.directives, ctx.variables)
                {
                    pick_into(object, &fragment.selection_set, ctx, out);
                }
            }
            q::Selection::FragmentSpread(spread) => {
                if !ctx.included(&spread.directives) || is_active(&spread.directives, ctx.variables)
                {
                    continue;
                }
                if let Some(definition) = ctx.fragments.get(&spread.fragment_name) {
                    pick_into(object, &definition.selection_set, ctx, out);
                }
            }
        }
    }
}

/// The concrete paths (with list indexes) of the non-null objects reached by `keys` from
/// the root of `data`.
pub fn object_paths(data: &Value, keys: &[String]) -> Vec<Vec<PathSegment>> {
    fn walk(
        value: &Value,
        keys: &[String],
        current: &mut Vec<PathSegment>,
        out: &mut Vec<Vec<PathSegment>>,
    ) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    current.push(PathSegment::Index(i));
                    walk(item, keys, current, out);
                    current.pop();
                }
            }
            Value::Object(object) => match keys.split_first() {
                None => out.push(current.clone()),
                Some((key, rest)) => {
                    if let Some(child) = object.get(key) {
                        current.push(PathSegment::Key(key.clone()));
                        walk(child, rest, current, out);
                        current.pop();
                    }
                }
            },
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(data, keys, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::parse_query;

    fn plan(query: &str) -> DeferPlan {
        let document = parse_query(query).expect("query");
        DeferPlan::analyze(&document, None).expect("defers")
    }

    #[test]
    fn finds_deferred_fragments_with_paths_and_labels() {
        let p = plan(
            "query($d: Boolean!) { me { id ...Extra @defer(label: \"extra\") } \
             top { ... @defer(if: $d) { name ... @defer { price } } } } \
             fragment Extra on User { reviews { body } }",
        );
        let found: Vec<(usize, Option<&str>, Vec<&str>)> = p
            .fragments
            .iter()
            .map(|f| {
                (
                    f.node,
                    f.label.as_deref(),
                    f.path.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (0, Some("extra"), vec!["me"]),
                (1, None, vec!["top"]),
                (2, None, vec!["top"]),
            ]
        );
        let vars = |d: bool| {
            serde_json::json!({ "d": d })
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(p.active(&vars(true)), vec![true, true, true]);
        assert_eq!(p.active(&vars(false)), vec![true, false, true]);
    }

    #[test]
    fn primary_document_drops_active_fragments_and_what_only_they_used() {
        let p = plan(
            "query($d: Boolean!, $n: Int) { me { ...Extra @defer } \
             top { ... @defer(if: $d) { name(size: $n) } } } \
             fragment Extra on User { reviews { body } }",
        );
        let primary = p.primary_query(&[true, true]);
        let reparsed = parse_query(&primary).expect("primary parses");
        let text = reparsed.to_string();
        assert!(!text.contains("defer"), "{text}");
        assert!(!text.contains("Extra"), "unused fragment kept: {text}");
        assert!(!text.contains("$n"), "unused variable kept: {text}");
        assert!(text.contains("me {\n    __typename"), "{text}");
        // Inactive (`if: false`) fragments stay, without the directive.
        let primary = p.primary_query(&[true, false]);
        assert!(primary.contains("name(size: $n)"), "{primary}");
        assert!(!primary.contains("@defer"), "{primary}");
    }
}
