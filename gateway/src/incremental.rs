//! Executing an operation that uses `@defer` for a client that accepts incremental delivery.
//!
//! The whole operation (every `@defer` removed) is planned and executed once, so no
//! subgraph fetch is made twice. After each fetch merges, the gateway checks whether the
//! data holds everything the primary document (the operation without its deferred
//! fragments) selects; as soon as it does, the primary payload goes out, and the deferred
//! payloads follow from the finished data. The planner orders fetches by their data
//! dependencies, so the fetches a deferred fragment alone needs run after or beside those
//! of the primary part, and the primary payload does not wait for them.

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::admission::Admitted;
use crate::defer::{object_paths, pick, DeferPlan};
use crate::error::{PathSegment, RequestError};
use crate::executor::{typename, Execution};
use crate::gateway::{Gateway, Method};
use crate::introspection;
use crate::operation::PreparedOperation;
use crate::request::GraphQLRequest;
use crate::schema::{TypeKind, TypeRef};
use crate::selection::{CollectContext, SelectionSet};
use crate::value::Value as ResponseValue;

/// How a response is delivered.
pub(crate) enum Delivery {
    /// One response body (nothing was deferred).
    Single(Value),
    /// Payloads in order: the primary one (`hasNext: true`), then the deferred ones; the last
    /// has `hasNext: false`.
    Parts(mpsc::Receiver<Value>),
}

impl Gateway {
    /// Like `execute_with`, but operations with active `@defer`s are delivered in parts.
    pub(crate) async fn execute_incremental(
        &self,
        req: GraphQLRequest,
        headers: &http::HeaderMap,
        method: Method,
    ) -> Result<Delivery, RequestError> {
        let span = self.request_span(&req, headers);
        let admitted = span.in_scope(|| self.admit(&req, method))?;
        admitted.whole_or_refused()?;
        let active = match &admitted.operation.defer {
            Some(defer) => defer.active(&admitted.variables),
            None => Vec::new(),
        };
        let defer = match &admitted.operation.defer {
            Some(defer) if active.contains(&true) => defer,
            _ => {
                let body = self
                    .execute_prepared(
                        &admitted.supergraph,
                        &admitted.operation,
                        &admitted.variables,
                        headers,
                        None,
                    )
                    .instrument(span)
                    .await
                    .into_value();
                return Ok(Delivery::Single(body));
            }
        };
        let primary_query = defer.primary_query(&active);
        let primary = span
            .in_scope(|| {
                Self::prepared(
                    &admitted.supergraph,
                    &primary_query,
                    req.operation_name.as_deref(),
                )
            })
            .map_err(|error| {
                // The primary document is derived from a valid one; failing is our bug.
                tracing::error!(?error, %primary_query, "primary document of a deferred operation did not prepare");
                RequestError::Internal
            })?;

        let (sender, receiver) = mpsc::channel(2);
        let gateway = self.clone();
        let headers = headers.clone();
        tokio::spawn(
            async move {
                let a = &admitted;
                // One execution of the whole operation: every subgraph fetch happens once.
                let execution =
                    gateway.execution(&a.supergraph, &a.operation, &a.variables, &headers, None);
                let (waited, primary_sent) = {
                    let run = execution.run(&a.operation.plan);
                    tokio::pin!(run);
                    let mut primary_sent = false;
                    let waited = loop {
                        tokio::select! {
                            biased;
                            waited = &mut run => break waited,
                            // After each fetch: is everything the primary part selects there?
                            _ = execution.fetched.notified(), if !primary_sent => {
                                if let Some(first) = primary_payload(a, &primary, &execution, false) {
                                    if sender.send(first).await.is_err() {
                                        return; // The client went away.
                                    }
                                    primary_sent = true;
                                }
                            }
                        }
                    };
                    (waited, primary_sent)
                };
                if !primary_sent {
                    // Some of its data never came (a fetch failed): it goes out as it is.
                    let Some(first) = primary_payload(a, &primary, &execution, true) else {
                        return;
                    };
                    if sender.send(first).await.is_err() {
                        return;
                    }
                }
                let full = Gateway::respond(
                    &a.supergraph,
                    &a.operation,
                    &a.variables,
                    execution,
                    waited,
                )
                .into_value();
                let Some(defer) = a.operation.defer.as_ref() else {
                    return;
                };
                let ctx = CollectContext {
                    schema: Self::supergraph_model(&a.supergraph),
                    fragments: &a.operation.fragments,
                    variables: &a.variables,
                };
                let _ = sender
                    .send(deferred_payload(defer, &active, &full, &ctx))
                    .await;
            }
            .instrument(span),
        );
        Ok(Delivery::Parts(receiver))
    }
}

/// The primary payload from the data fetched so far, once it holds everything the
/// primary document selects (or at once with `force`). Errors are those about what the
/// payload holds; the rest go with the deferred parts.
fn primary_payload(
    a: &Admitted,
    primary: &PreparedOperation,
    execution: &Execution<'_>,
    force: bool,
) -> Option<Value> {
    let model = Gateway::supergraph_model(&a.supergraph);
    let ctx = CollectContext {
        schema: model,
        fragments: &primary.fragments,
        variables: &a.variables,
    };
    let data = execution.data.lock().unwrap_or_else(|p| p.into_inner());
    if !force && !has_all(&ctx, &primary.root_type, &data, &[&primary.selection_set]) {
        return None;
    }
    let errors = execution
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Introspection fields are resolved by the gateway, on a copy of the data so far.
    let resolved;
    let projected_from: &ResponseValue = if primary.uses_introspection {
        let mut copy = data.clone();
        if let ResponseValue::Object(map) = &mut copy {
            introspection::resolve_root(&ctx, &primary.root_type, &primary.selection_set, map);
        }
        resolved = copy;
        &resolved
    } else {
        &data
    };
    let (body, _) = Gateway::project(&a.supergraph, primary, &a.variables, projected_from, errors);
    drop(data);
    let mut payload: Value = serde_json::from_slice(&body).ok()?;
    if let Some(Value::Array(errors)) = payload.get("errors").cloned() {
        let kept: Vec<Value> = errors
            .into_iter()
            .filter(|e| about_payload(&payload["data"], &e["path"]))
            .collect();
        match kept.is_empty() {
            true => payload.as_object_mut()?.remove("errors"),
            false => payload
                .as_object_mut()?
                .insert("errors".into(), Value::Array(kept)),
        };
    }
    payload
        .as_object_mut()?
        .insert("hasNext".into(), Value::Bool(true));
    Some(payload)
}

/// Whether an error (by its `path`) concerns `data`: it has no path, or its path leads
/// into `data` or to a `null` in it. A path through a key `data` does not have is about a
/// deferred part.
fn about_payload(data: &Value, path: &Value) -> bool {
    let Some(path) = path.as_array() else {
        return true;
    };
    let mut at = data;
    for segment in path {
        if at.is_null() {
            return true;
        }
        let next = match segment {
            Value::String(key) => at.get(key.as_str()),
            Value::Number(i) => i.as_u64().and_then(|i| at.get(i as usize)),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

/// Whether `value` holds every field that `sets` select on it, all the way down: a key
/// that is missing means its fetch has not merged yet. `null` counts as there (nothing
/// under it can arrive), and meta fields (`__typename`, introspection) are the gateway's.
fn has_all(
    ctx: &CollectContext<'_>,
    declared: &str,
    value: &ResponseValue,
    sets: &[&SelectionSet],
) -> bool {
    match value {
        ResponseValue::Array(items) => items.iter().all(|item| has_all(ctx, declared, item, sets)),
        ResponseValue::Object(object) => {
            let schema = ctx.schema;
            let concrete = match schema.get(declared).map(|t| t.kind) {
                Some(TypeKind::Object) | None => declared,
                Some(_) => typename(value).unwrap_or(declared),
            };
            let Some(type_def) = schema.get(concrete).or_else(|| schema.get(declared)) else {
                return true;
            };
            for (key, fields) in ctx.collect(concrete, sets) {
                let name = fields[0].name.as_str();
                if name.starts_with("__") {
                    continue;
                }
                let Some(def) = type_def.field(name) else {
                    continue;
                };
                let Some(child) = object.get(key.as_str()) else {
                    return false;
                };
                let below: Vec<&SelectionSet> = fields
                    .iter()
                    .map(|f| &f.selection_set)
                    .filter(|s| !s.items.is_empty())
                    .collect();
                if !below.is_empty() && !has_all(ctx, named(&def.ty), child, &below) {
                    return false;
                }
            }
            true
        }
        _ => true,
    }
}

fn named(ty: &TypeRef) -> &str {
    match ty {
        TypeRef::Named(name) => name,
        TypeRef::List(inner) | TypeRef::NonNull(inner) => named(inner),
    }
}

fn get<'a>(value: &'a Value, path: &[PathSegment]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, segment| match segment {
        PathSegment::Key(k) => v.get(k.as_str()),
        PathSegment::Index(i) => v.get(*i),
    })
}

/// The final payload: one incremental item per active deferred fragment and object.
fn deferred_payload(
    defer: &DeferPlan,
    active: &[bool],
    full: &Value,
    ctx: &CollectContext<'_>,
) -> Value {
    let data = &full["data"];
    let errors: &[Value] = full["errors"].as_array().map_or(&[], Vec::as_slice);
    let mut items = Vec::new();
    for fragment in defer
        .fragments
        .iter()
        .filter(|f| active.get(f.node).copied().unwrap_or(false))
    {
        for path in object_paths(data, &fragment.path) {
            let Some(target) = get(data, &path) else {
                continue;
            };
            let picked = pick(target, &fragment.selection, ctx);
            let Value::Object(fields) = &picked else {
                continue;
            };
            if fields.is_empty() {
                // The fragment's type condition does not apply to this object.
                continue;
            }
            let path_json: Vec<Value> = path
                .iter()
                .map(|s| match s {
                    PathSegment::Key(k) => Value::String(k.clone()),
                    PathSegment::Index(i) => json!(i),
                })
                .collect();
            let own_errors: Vec<Value> = errors
                .iter()
                .filter(|e| {
                    e["path"].as_array().is_some_and(|p| {
                        p.len() > path_json.len()
                            && p[..path_json.len()] == path_json[..]
                            && p[path_json.len()]
                                .as_str()
                                .is_some_and(|k| fields.contains_key(k))
                    })
                })
                .cloned()
                .collect();
            let mut item = Map::new();
            item.insert("data".into(), picked.clone());
            item.insert("path".into(), Value::Array(path_json));
            if let Some(label) = &fragment.label {
                item.insert("label".into(), Value::String(label.clone()));
            }
            if !own_errors.is_empty() {
                item.insert("errors".into(), Value::Array(own_errors));
            }
            items.push(Value::Object(item));
        }
    }
    json!({"incremental": items, "hasNext": false})
}
