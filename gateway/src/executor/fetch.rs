//! Root and entity fetches: build the subgraph request, call the transport, merge the result.

use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use serde_json::Map;
use tracing::Instrument;

use super::data::{
    apply_rewrites, deep_merge, deep_merge_ref, entity_path_at, for_each_entity,
    for_each_entity_mut, hash_value, select, select_equals, select_hash, selections_are_flat,
};
use super::{dedupe, Execution};
use crate::error::{codes, GraphQLError, PathSegment};
use crate::plan::{EntityFetch, EntityGroup, RootFetch};
use crate::transport::{SubgraphRequest, SubgraphTransport, TransportError};
use crate::value::Value;

/// Why a subgraph call gave no response; the client sees only this, never the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchFailure {
    TimedOut,
    Failed,
    /// The subgraph's circuit breaker is open for this many more seconds.
    CircuitOpen(u64),
    /// The subgraph's bulkhead is full.
    Overloaded,
}

/// Per `_entities` field: the deduplicated representations and where each result goes.
///
/// Entities are identified by their visit order along the group's paths, not by stored
/// paths: walking the merged data again in the same order finds them without building and
/// cloning a path per entity. Invariant this relies on: fetches running in parallel never
/// change what lies on each other's paths (the planner sequences dependent fetches), and
/// merges only add fields, so the walk at merge time visits the same entities in the same
/// order as the walk that built the representations.
struct GroupInput {
    representations: Vec<Value>,
    /// Per visited entity, in visit order: the index of its representation, if it has one.
    order: Vec<Option<usize>>,
}

impl GroupInput {
    /// Visit number of the first entity that sent representation `index`.
    fn first_visit(&self, index: usize) -> Option<usize> {
        self.order.iter().position(|o| *o == Some(index))
    }

    fn first_with_representation(&self) -> Option<usize> {
        self.order.iter().position(Option::is_some)
    }
}

impl Execution<'_> {
    /// Returns how long the subgraph call took.
    pub(super) async fn root_fetch(&self, fetch: &RootFetch) -> Duration {
        let span = tracing::info_span!("subgraph_fetch", subgraph = %fetch.subgraph, kind = "root");
        // Built inside the span, so a request hook injects this fetch as the parent.
        let mut request = span.in_scope(|| {
            self.request(
                &fetch.subgraph,
                &fetch.operation,
                &fetch.variable_usages,
                Map::new(),
            )
        });
        // A mutation's root fetch may have applied even when its answer was lost.
        request.idempotent = !self.mutation;
        let error_path: Vec<PathSegment> = fetch
            .root_keys
            .first()
            .map(|k| vec![k.as_str().into()])
            .unwrap_or_default();
        let called = Instant::now();
        let response = self.call(request).instrument(span).await;
        let waited = called.elapsed();
        match response {
            Ok(body) => self.absorb_root(fetch, body),
            Err(failure) => {
                self.push_errors([self.fetch_failed(&fetch.subgraph, failure, error_path)]);
            }
        }
        waited
    }

    /// Takes in a root fetch's response (or, for a subscription, one event): its errors
    /// are recorded and its data merged at the root.
    pub(crate) fn absorb_root(&self, fetch: &RootFetch, shared: Arc<Value>) {
        let mut keep = None;
        let mut body = unshare(shared, &mut keep);
        let errors = take_errors(&mut body);
        self.push_errors(errors.into_iter().map(|e| {
            let path = e.get("path").and_then(Value::as_array).map(|p| to_path(p));
            self.subgraph_error(&fetch.subgraph, e, path)
        }));
        let Some(mut data) = take_field(&mut body, "data") else {
            return;
        };
        if !data.is_object() {
            return;
        }
        if !fetch.output_rewrites.is_empty() {
            apply_rewrites(data.to_mut(), &fetch.output_rewrites, self.schema);
        }
        let mut merged = self.data.lock().unwrap_or_else(|p| p.into_inner());
        match data {
            Cow::Owned(data) => deep_merge(&mut merged, data),
            Cow::Borrowed(data) => deep_merge_ref(&mut merged, data),
        }
    }

    /// The request that opens a subscription's event stream (its primary fetch).
    pub(crate) fn subscription_request(&self, fetch: &RootFetch) -> SubgraphRequest {
        self.request(
            &fetch.subgraph,
            &fetch.operation,
            &fetch.variable_usages,
            Map::new(),
        )
    }

    /// The client-safe error of a subscription whose upstream failed.
    pub(crate) fn subscription_failed(&self, fetch: &RootFetch) -> GraphQLError {
        let path = fetch
            .root_keys
            .first()
            .map(|k| vec![k.as_str().into()])
            .unwrap_or_default();
        self.fetch_failed(&fetch.subgraph, FetchFailure::Failed, path)
    }

    /// Returns how long the subgraph call took (zero when there was nothing to fetch).
    pub(super) async fn entity_fetch(&self, fetch: &EntityFetch) -> Duration {
        let mut inputs = self.collect_representations(fetch);
        let count: usize = inputs.iter().map(|g| g.representations.len()).sum();
        if count == 0 {
            // Nothing to resolve (e.g. every parent is null): no request at all.
            return Duration::ZERO;
        }
        let mut extra = Map::new();
        for (group, input) in fetch.groups.iter().zip(&mut inputs) {
            // Moved, not copied: only the slots are needed once the request is built.
            extra.insert(
                group.variable.clone(),
                Value::Array(std::mem::take(&mut input.representations)).into(),
            );
        }
        let span = tracing::info_span!(
            "subgraph_fetch",
            subgraph = %fetch.subgraph,
            kind = "entities",
            representations = count
        );
        let request = span.in_scope(|| {
            self.request(
                &fetch.subgraph,
                &fetch.operation,
                &fetch.variable_usages,
                extra,
            )
        });
        let called = Instant::now();
        let response = self.call(request).instrument(span).await;
        let waited = called.elapsed();
        let shared = match response {
            Ok(body) => body,
            Err(failure) => {
                let path = fetch
                    .groups
                    .iter()
                    .zip(&inputs)
                    .find_map(|(group, input)| {
                        let mut path =
                            self.entity_path(group, input.first_with_representation()?)?;
                        path.extend(group.first_field.as_deref().map(PathSegment::from));
                        Some(path)
                    })
                    .unwrap_or_default();
                self.push_errors([self.fetch_failed(&fetch.subgraph, failure, path)]);
                return waited;
            }
        };

        let mut keep = None;
        let mut body = unshare(shared, &mut keep);
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
                    let visit = inputs[group].first_visit(index)?;
                    let mut path = self.entity_path(&fetch.groups[group], visit)?;
                    path.extend(to_path(&p[2..]));
                    Some(path)
                });
                let path = path.or_else(|| {
                    fetch.groups.iter().zip(&inputs).find_map(|(group, input)| {
                        self.entity_path(group, input.first_with_representation()?)
                    })
                });
                self.subgraph_error(&fetch.subgraph, e, path)
            })
            .collect();
        self.push_errors(mapped);

        let Some(mut data) = take_field(&mut body, "data") else {
            return waited;
        };
        let mut merged = self.data.lock().unwrap_or_else(|p| p.into_inner());
        for (group, input) in fetch.groups.iter().zip(inputs) {
            let Some(mut results) = take_field(&mut data, &group.response_key) else {
                continue;
            };
            if !group.output_rewrites.is_empty() {
                if let Value::Array(items) = results.to_mut() {
                    for result in items {
                        apply_rewrites(result, &group.output_rewrites, self.schema);
                    }
                }
            }
            let mut results = match &mut results {
                Cow::Owned(Value::Array(items)) => Results::Owned(items),
                Cow::Borrowed(Value::Array(items)) => Results::Shared(items),
                _ => continue,
            };
            // Each result goes to every entity that sent its representation; the last of
            // them takes it by value instead of a copy (when this execution owns it).
            let mut remaining = vec![0usize; results.len()];
            for index in input.order.iter().flatten() {
                if let Some(n) = remaining.get_mut(*index) {
                    *n += 1;
                }
            }
            let mut visit = 0;
            for path in &group.paths {
                for_each_entity_mut(&mut merged, path, self.schema, &mut |entity| {
                    let slot = input.order.get(visit).copied().flatten();
                    visit += 1;
                    let Some(index) = slot else {
                        return;
                    };
                    if index >= remaining.len() {
                        return;
                    }
                    remaining[index] -= 1;
                    results.merge_into(entity, index, remaining[index] == 0);
                });
            }
            if visit != input.order.len() {
                tracing::warn!(
                    subgraph = %fetch.subgraph,
                    expected = input.order.len(),
                    found = visit,
                    "entities changed between building representations and merging results"
                );
            }
        }
        waited
    }

    /// The response path of the `visit`-th entity along a group's paths (for errors only).
    fn entity_path(&self, group: &EntityGroup, visit: usize) -> Option<Vec<PathSegment>> {
        let merged = self.data.lock().unwrap_or_else(|p| p.into_inner());
        entity_path_at(&merged, &group.paths, self.schema, visit)
    }

    fn collect_representations(&self, fetch: &EntityFetch) -> Vec<GroupInput> {
        let merged = self.data.lock().unwrap_or_else(|p| p.into_inner());
        fetch
            .groups
            .iter()
            .map(|group| {
                let mut representations: Vec<Value> = Vec::new();
                // Equal representations are sent once: hash -> indexes into `representations`.
                let mut seen: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
                let mut order = Vec::new();
                // Most entities repeat (the same product under many reviews): when the
                // selection allows, a repeat is recognized without building its
                // representation.
                let streaming =
                    group.input_rewrites.is_empty() && selections_are_flat(&group.requires);
                for path in &group.paths {
                    for_each_entity(&merged, path, self.schema, &mut |entity| {
                        let index = if streaming {
                            self.streamed_representation_index(
                                group,
                                entity,
                                &mut representations,
                                &mut seen,
                            )
                        } else {
                            self.representation_index(
                                group,
                                entity,
                                &mut representations,
                                &mut seen,
                            )
                        };
                        order.push(index);
                    });
                }
                GroupInput {
                    representations,
                    order,
                }
            })
            .collect()
    }

    /// Like [`Self::representation_index`], hashing and comparing without building first.
    fn streamed_representation_index(
        &self,
        group: &EntityGroup,
        entity: &Value,
        representations: &mut Vec<Value>,
        seen: &mut FxHashMap<u64, Vec<usize>>,
    ) -> Option<usize> {
        let hash = select_hash(entity, &group.requires, self.schema)?;
        let same = seen.entry(hash).or_default();
        if let Some(&index) = same
            .iter()
            .find(|&&i| select_equals(entity, &group.requires, self.schema, &representations[i]))
        {
            return Some(index);
        }
        let representation = select(entity, &group.requires, self.schema)?;
        add_representation(representations, same, representation)
    }

    /// Builds an entity's representation and returns its index among the distinct ones.
    fn representation_index(
        &self,
        group: &EntityGroup,
        entity: &Value,
        representations: &mut Vec<Value>,
        seen: &mut FxHashMap<u64, Vec<usize>>,
    ) -> Option<usize> {
        let mut representation = select(entity, &group.requires, self.schema)?;
        apply_rewrites(&mut representation, &group.input_rewrites, self.schema);
        let same = seen.entry(hash_value(&representation)).or_default();
        if let Some(&index) = same.iter().find(|&&i| representations[i] == representation) {
            return Some(index);
        }
        add_representation(representations, same, representation)
    }

    fn request(
        &self,
        subgraph: &str,
        query: &str,
        usages: &[String],
        mut variables: Map<String, serde_json::Value>,
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
            idempotent: true,
            encoded: Default::default(),
        }
    }

    /// Calls the subgraph, or joins an identical in-flight call when this execution may;
    /// a failure has already been logged with its internal details.
    async fn call(&self, request: SubgraphRequest) -> Result<Arc<Value>, FetchFailure> {
        let Some(cache) = self.cache else {
            return self.call_subgraph(request).await;
        };
        let caller = self.headers.get(http::header::AUTHORIZATION);
        let Some(cacheable) = cache.cacheable(&request, self.schema, caller) else {
            return self.call_subgraph(request).await;
        };
        if let Some(kept) = cache.get(&cacheable).await {
            return Ok(kept);
        }
        let answer = self.call_subgraph(request).await;
        if let Ok(value) = &answer {
            cache.put(cacheable, value).await;
        }
        answer
    }

    /// [`Self::call`] without the cache.
    async fn call_subgraph(&self, request: SubgraphRequest) -> Result<Arc<Value>, FetchFailure> {
        let timeout = self
            .transports
            .timeouts
            .get(&request.subgraph)
            .copied()
            .unwrap_or(self.timeout);
        if request.uploads.is_some() {
            let transport = self.transports.get(&request.subgraph);
            if !transport.supports_uploads() {
                tracing::warn!(subgraph = %request.subgraph, "files cannot be sent over this subgraph's transport");
                return Err(FetchFailure::Failed);
            }
            // Never shared: the files can be read once.
            return call_transport(transport, request, timeout)
                .await
                .map(Arc::new);
        }
        let Some(dedupe) = self.dedupe else {
            return call_transport(self.transports.get(&request.subgraph), request, timeout)
                .await
                .map(Arc::new);
        };
        let key = dedupe::Key::of(&request, &dedupe.ignored_headers);
        let fetch = call_transport(self.transports.get(&request.subgraph), request, timeout);
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
            FetchFailure::CircuitOpen(retry_after) => GraphQLError::new(format!(
                "Subgraph \"{subgraph}\" is unavailable: too many of its requests failed in a \
                 row. Try again in {retry_after} s."
            ))
            .with_code(codes::SUBGRAPH_CIRCUIT_OPEN)
            .with_extension("retryAfter", serde_json::Value::from(retry_after)),
            FetchFailure::Overloaded => GraphQLError::new(format!(
                "Subgraph \"{subgraph}\" is busy: too many requests are waiting for it. Try \
                 again shortly."
            ))
            .with_code(codes::SUBGRAPH_OVERLOADED),
        }
        .with_extension(
            "serviceName",
            serde_json::Value::String(subgraph.to_string()),
        );
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
        mut error: Value,
        path: Option<Vec<PathSegment>>,
    ) -> GraphQLError {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("Subgraph returned an error.")
            .to_string();
        let mut out = GraphQLError::new(message);
        if let Some(Value::Object(extensions)) = error.get_mut("extensions").map(Value::take) {
            out.extensions = extensions
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
        }
        if out.code().is_none() {
            out = out.with_code(codes::DOWNSTREAM_SERVICE_ERROR);
        }
        out = out.with_extension(
            "serviceName",
            serde_json::Value::String(subgraph.to_string()),
        );
        match path {
            Some(path) if !path.is_empty() => out.with_path(path),
            _ => out,
        }
    }
}

/// Adds a new distinct representation (`same` lists those with its hash) and returns its
/// index. A representation without `__typename` cannot be resolved (the entity matched no
/// type condition of `requires`): it is not added.
fn add_representation(
    representations: &mut Vec<Value>,
    same: &mut Vec<usize>,
    representation: Value,
) -> Option<usize> {
    representation.get("__typename")?;
    representations.push(representation);
    same.push(representations.len() - 1);
    Some(representations.len() - 1)
}

async fn call_transport(
    transport: Arc<dyn SubgraphTransport>,
    request: SubgraphRequest,
    timeout: Duration,
) -> Result<Value, FetchFailure> {
    let subgraph = request.subgraph.clone();
    let started = std::time::Instant::now();
    let outcome = match tokio::time::timeout(timeout, transport.execute(request)).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout),
    };
    let measured = match &outcome {
        Ok(Value::Object(_)) => "ok",
        Err(TransportError::Timeout) => "timeout",
        Err(TransportError::CircuitOpen { .. }) => "circuit_open",
        Err(TransportError::Overloaded) => "overloaded",
        _ => "failed",
    };
    crate::measure::subgraph_call(&subgraph, measured, started.elapsed());
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
        Err(TransportError::CircuitOpen { retry_after }) => {
            tracing::debug!(%subgraph, "circuit open: fetch refused");
            // Rounded up: "try again in 0 s" would be a lie.
            Err(FetchFailure::CircuitOpen(
                retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
            ))
        }
        Err(TransportError::Overloaded) => {
            tracing::warn!(%subgraph, "subgraph bulkhead full: fetch refused");
            Err(FetchFailure::Overloaded)
        }
        Err(error) => {
            tracing::warn!(%subgraph, %error, "subgraph request failed");
            Err(FetchFailure::Failed)
        }
    }
}

/// A response this execution alone holds is owned (its parts are moved into the merged
/// data); one that deduplication handed to several executions stays shared and is read in
/// place, so only the parts merged are copied. `keep` holds the shared response.
fn unshare(response: Arc<Value>, keep: &mut Option<Arc<Value>>) -> Cow<'_, Value> {
    match Arc::try_unwrap(response) {
        Ok(owned) => Cow::Owned(owned),
        Err(shared) => Cow::Borrowed(keep.insert(shared)),
    }
}

/// The field `key` of a response object: moved out when owned, borrowed when shared.
fn take_field<'a>(value: &mut Cow<'a, Value>, key: &str) -> Option<Cow<'a, Value>> {
    match value {
        Cow::Borrowed(value) => value.get(key).map(Cow::Borrowed),
        Cow::Owned(value) => value.get_mut(key).map(|field| Cow::Owned(field.take())),
    }
}

fn take_errors(body: &mut Cow<'_, Value>) -> Vec<Value> {
    match take_field(body, "errors") {
        Some(Cow::Owned(Value::Array(errors))) => errors,
        Some(Cow::Borrowed(Value::Array(errors))) => errors.clone(),
        _ => Vec::new(),
    }
}

/// The `_entities` results of one group, owned or shared (see [`unshare`]).
enum Results<'r> {
    Owned(&'r mut Vec<Value>),
    Shared(&'r [Value]),
}

impl Results<'_> {
    fn len(&self) -> usize {
        match self {
            Results::Owned(items) => items.len(),
            Results::Shared(items) => items.len(),
        }
    }

    /// Merges result `index` into `entity`; an owned result is moved on its `last` use.
    fn merge_into(&mut self, entity: &mut Value, index: usize, last: bool) {
        match self {
            Results::Owned(items) if last => deep_merge(entity, items[index].take()),
            Results::Owned(items) => deep_merge_ref(entity, &items[index]),
            Results::Shared(items) => deep_merge_ref(entity, &items[index]),
        }
    }
}

fn to_path(segments: &[Value]) -> Vec<PathSegment> {
    segments
        .iter()
        .filter_map(|s| match s {
            Value::String(key) => Some(PathSegment::Key(key.to_string())),
            Value::Number(n) => n.as_u64().map(|i| PathSegment::Index(i as usize)),
            _ => None,
        })
        .collect()
}
