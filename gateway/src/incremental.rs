//! Executing an operation that uses `@defer` for a client that accepts incremental delivery:
//! the primary payload as soon as it is ready, then the deferred payloads (see `defer`).

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::defer::{object_paths, pick, DeferPlan};
use crate::error::{PathSegment, RequestError};
use crate::gateway::{Gateway, Method};
use crate::request::GraphQLRequest;
use crate::selection::CollectContext;

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
                let first =
                    gateway.execute_prepared(&a.supergraph, &primary, &a.variables, &headers, None);
                let full = gateway.execute_prepared(
                    &a.supergraph,
                    &a.operation,
                    &a.variables,
                    &headers,
                    None,
                );
                tokio::pin!(first, full);
                let mut full_result = None;
                // Both run concurrently; the primary payload goes out as soon as it is ready.
                let mut first_result = loop {
                    tokio::select! {
                        first = &mut first => break first.into_value(),
                        done = &mut full, if full_result.is_none() => full_result = Some(done),
                    }
                };
                if let Value::Object(map) = &mut first_result {
                    map.insert("hasNext".into(), Value::Bool(true));
                }
                if sender.send(first_result).await.is_err() {
                    return; // The client went away.
                }
                let full_result = match full_result {
                    Some(done) => done,
                    None => full.await,
                }
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
                    .send(deferred_payload(defer, &active, &full_result, &ctx))
                    .await;
            }
            .instrument(span),
        );
        Ok(Delivery::Parts(receiver))
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
