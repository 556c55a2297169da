//! Root and entity fetches: build the subgraph request, call the transport, merge the result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use serde_json::{Map, Value};
use tracing::Instrument;

use super::data::{apply_rewrites, collect_slots, deep_merge, get, get_mut, select};
use super::{dedupe, Execution};
use crate::error::{codes, GraphQLError, PathSegment};
use crate::plan::{EntityFetch, RootFetch};
use crate::transport::{SubgraphRequest, SubgraphTransport, TransportError};

/// Why a subgraph call gave no response; the client sees only this, never the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchFailure {
    TimedOut,
    Failed,
}

/// Per `_entities` field: the deduplicated representations and where each result goes.
struct GroupInput {
    representations: Vec<Value>,
    /// (entity path in the merged data, index into `representations`)
    slots: Vec<(Vec<PathSegment>, usize)>,
}

impl Execution<'_> {
    pub(super) async fn root_fetch(&self, fetch: &RootFetch) {
        let span = tracing::info_span!("subgraph_fetch", subgraph = %fetch.subgraph, kind = "root");
        // Built inside the span, so a request hook injects this fetch as the parent.
        let request = span.in_scope(|| {
            self.request(
                &fetch.subgraph,
                &fetch.operation,
                &fetch.variable_usages,
                Map::new(),
            )
        });
        let error_path: Vec<PathSegment> = fetch
            .root_keys
            .first()
            .map(|k| vec![k.as_str().into()])
            .unwrap_or_default();
        let mut body = match self.call(request).instrument(span).await {
            Ok(body) => body,
            Err(failure) => {
                self.push_errors([self.fetch_failed(&fetch.subgraph, failure, error_path)]);
                return;
            }
        };
        let errors = take_errors(&mut body);
        self.push_errors(errors.into_iter().map(|e| {
            let path = e.get("path").and_then(Value::as_array).map(|p| to_path(p));
            self.subgraph_error(&fetch.subgraph, e, path)
        }));
        if let Some(mut data) = body.get_mut("data").map(Value::take) {
            if data.is_object() {
                apply_rewrites(&mut data, &fetch.output_rewrites, self.schema);
                let mut merged = self.data.lock().unwrap_or_else(|p| p.into_inner());
                deep_merge(&mut merged, data);
            }
        }
    }

    pub(super) async fn entity_fetch(&self, fetch: &EntityFetch) {
        let inputs = self.collect_representations(fetch);
        if inputs.iter().all(|g| g.representations.is_empty()) {
            // Nothing to resolve (e.g. every parent is null): no request at all.
            return;
        }
        let mut extra = Map::new();
        for (group, input) in fetch.groups.iter().zip(&inputs) {
            extra.insert(
                group.variable.clone(),
                Value::Array(input.representations.clone()),
            );
        }
        let span = tracing::info_span!(
            "subgraph_fetch",
            subgraph = %fetch.subgraph,
            kind = "entities",
            representations = inputs.iter().map(|g| g.representations.len()).sum::<usize>()
        );
        let request = span.in_scope(|| {
            self.request(
                &fetch.subgraph,
                &fetch.operation,
                &fetch.variable_usages,
                extra,
            )
        });
        let mut body = match self.call(request).instrument(span).await {
            Ok(body) => body,
            Err(failure) => {
                let path = fetch
                    .groups
                    .iter()
                    .zip(&inputs)
                    .find_map(|(group, input)| {
                        input.slots.first().map(|(path, _)| {
                            let mut path = path.clone();
                            path.extend(group.first_field.as_deref().map(PathSegment::from));
                            path
                        })
                    })
                    .unwrap_or_default();
                self.push_errors([self.fetch_failed(&fetch.subgraph, failure, path)]);
                return;
            }
        };

        // Subgraph errors: `[<_entities key>, i, ...rest]` maps to the first entity that sent
        // representation `i`, followed by `rest`.
        let errors = take_errors(&mut body);
        let mapped: Vec<GraphQLError> = errors
            .into_iter()
            .map(|e| {
                let path = e.get("path").and_then(Value::as_array).and_then(|p| {
                    let key = p.first()?.as_str()?;
                    let index = p.get(1)?.as_u64()? as usize;
                    let group = fetch.groups.iter().position(|g| g.response_key == key)?;
                    let (slot, _) = inputs[group].slots.iter().find(|(_, rep)| *rep == index)?;
                    let mut path = slot.clone();
                    path.extend(to_path(&p[2..]));
                    Some(path)
                });
                let path = path.or_else(|| {
                    inputs
                        .iter()
                        .find_map(|g| g.slots.first().map(|(p, _)| p.clone()))
                });
                self.subgraph_error(&fetch.subgraph, e, path)
            })
            .collect();
        self.push_errors(mapped);

        let Some(Value::Object(mut data)) = body.get_mut("data").map(Value::take) else {
            return;
        };
        let mut merged = self.data.lock().unwrap_or_else(|p| p.into_inner());
        for (group, input) in fetch.groups.iter().zip(inputs) {
            let Some(Value::Array(mut results)) = data.remove(&group.response_key) else {
                continue;
            };
            for result in results.iter_mut() {
                apply_rewrites(result, &group.output_rewrites, self.schema);
            }
            for (slot, index) in input.slots {
                let Some(result) = results.get(index) else {
                    continue;
                };
                if let Some(target) = get_mut(&mut merged, &slot) {
                    deep_merge(target, result.clone());
                }
            }
        }
    }

    fn collect_representations(&self, fetch: &EntityFetch) -> Vec<GroupInput> {
        let merged = self.data.lock().unwrap_or_else(|p| p.into_inner());
        fetch
            .groups
            .iter()
            .map(|group| {
                let mut slots = Vec::new();
                for path in &group.paths {
                    collect_slots(&merged, path, self.schema, &mut Vec::new(), &mut slots);
                }
                let mut representations = Vec::new();
                let mut seen: HashMap<String, usize> = HashMap::new();
                let mut placed = Vec::with_capacity(slots.len());
                for slot in slots {
                    let Some(entity) = get(&merged, &slot) else {
                        continue;
                    };
                    let Some(mut representation) = select(entity, &group.requires, self.schema)
                    else {
                        continue;
                    };
                    apply_rewrites(&mut representation, &group.input_rewrites, self.schema);
                    // A representation without __typename cannot be resolved (the entity
                    // did not match any type condition of `requires`).
                    if representation.get("__typename").is_none() {
                        continue;
                    }
                    let key = representation.to_string();
                    let index = *seen.entry(key).or_insert_with(|| {
                        representations.push(representation);
                        representations.len() - 1
                    });
                    placed.push((slot, index));
                }
                GroupInput {
                    representations,
                    slots: placed,
                }
            })
            .collect()
    }

    fn request(
        &self,
        subgraph: &str,
        query: &str,
        usages: &[String],
        mut variables: Map<String, Value>,
    ) -> SubgraphRequest {
        for name in usages {
            if let Some(value) = self.variables.get(name) {
                variables.insert(name.clone(), value.clone());
            }
        }
        let mut headers = self.headers.clone();
        if let Some(hook) = &self.request_hook {
            hook(&mut headers);
        }
        // The files go with the (only, checked at admission) request using their variables.
        let uploads = self.uploads.as_ref().and_then(|(names, uploads)| {
            usages
                .iter()
                .any(|u| names.contains(u))
                .then(|| uploads.clone())
        });
        SubgraphRequest {
            subgraph: subgraph.to_string(),
            query: query.to_string(),
            operation_name: None,
            variables,
            headers,
            uploads,
        }
    }

    /// Calls the subgraph, or joins an identical in-flight call when this execution may;
    /// a failure has already been logged with its internal details.
    async fn call(&self, request: SubgraphRequest) -> Result<Value, FetchFailure> {
        if request.uploads.is_some() {
            let transport = self.transports.get(&request.subgraph);
            if !transport.supports_uploads() {
                tracing::warn!(subgraph = %request.subgraph, "files cannot be sent over this subgraph's transport");
                return Err(FetchFailure::Failed);
            }
            // Never shared: the files can be read once.
            return call_transport(transport, request, self.timeout).await;
        }
        let Some(dedupe) = self.dedupe else {
            return call_transport(
                self.transports.get(&request.subgraph),
                request,
                self.timeout,
            )
            .await;
        };
        let key = dedupe::Key::of(&request);
        let fetch = call_transport(
            self.transports.get(&request.subgraph),
            request,
            self.timeout,
        );
        let (result, sent) = dedupe.run(key, fetch.boxed()).await;
        if !sent {
            tracing::debug!("shared an identical in-flight subgraph request");
        }
        result
    }

    fn fetch_failed(
        &self,
        subgraph: &str,
        failure: FetchFailure,
        path: Vec<PathSegment>,
    ) -> GraphQLError {
        let error = match failure {
            FetchFailure::TimedOut => {
                GraphQLError::new(format!("Request to subgraph \"{subgraph}\" timed out."))
                    .with_code(codes::SUBGRAPH_TIMEOUT)
            }
            FetchFailure::Failed => {
                GraphQLError::new(format!("Request to subgraph \"{subgraph}\" failed."))
                    .with_code(codes::SUBGRAPH_REQUEST_FAILED)
            }
        }
        .with_extension("serviceName", Value::String(subgraph.to_string()));
        if path.is_empty() {
            error
        } else {
            error.with_path(path)
        }
    }

    /// A subgraph's own error, passed through with the path mapped to the client's.
    fn subgraph_error(
        &self,
        subgraph: &str,
        error: Value,
        path: Option<Vec<PathSegment>>,
    ) -> GraphQLError {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("Subgraph returned an error.")
            .to_string();
        let mut out = GraphQLError::new(message);
        if let Some(Value::Object(extensions)) = error.get("extensions") {
            out.extensions = extensions.clone();
        }
        if out.code().is_none() {
            out = out.with_code(codes::DOWNSTREAM_SERVICE_ERROR);
        }
        out = out.with_extension("serviceName", Value::String(subgraph.to_string()));
        match path {
            Some(path) if !path.is_empty() => out.with_path(path),
            _ => out,
        }
    }
}

async fn call_transport(
    transport: Arc<dyn SubgraphTransport>,
    request: SubgraphRequest,
    timeout: Duration,
) -> Result<Value, FetchFailure> {
    let subgraph = request.subgraph.clone();
    let outcome = match tokio::time::timeout(timeout, transport.execute(request)).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout),
    };
    match outcome {
        Ok(body @ Value::Object(_)) => Ok(body),
        Ok(_) => {
            tracing::warn!(%subgraph, "subgraph returned a non-object response body");
            Err(FetchFailure::Failed)
        }
        Err(TransportError::Timeout) => {
            tracing::warn!(%subgraph, ?timeout, "subgraph request timed out");
            Err(FetchFailure::TimedOut)
        }
        Err(error) => {
            tracing::warn!(%subgraph, %error, "subgraph request failed");
            Err(FetchFailure::Failed)
        }
    }
}

fn take_errors(body: &mut Value) -> Vec<Value> {
    match body.get_mut("errors").map(Value::take) {
        Some(Value::Array(errors)) => errors,
        _ => Vec::new(),
    }
}

fn to_path(segments: &[Value]) -> Vec<PathSegment> {
    segments
        .iter()
        .filter_map(|s| match s {
            Value::String(key) => Some(PathSegment::Key(key.clone())),
            Value::Number(n) => n.as_u64().map(|i| PathSegment::Index(i as usize)),
            _ => None,
        })
        .collect()
}
