//! File uploads: the GraphQL multipart request specification
//! (<https://github.com/jaydenseric/graphql-multipart-request-spec>), streamed through.
//!
//! A client sends `multipart/form-data` with an `operations` field (the GraphQL request,
//! files as `null` placeholders), a `map` field (file field name → paths of the placeholders
//! in `variables`), then the files. The gateway reads `operations` and `map`, plans the
//! operation, and the one subgraph request that uses the file variables is sent as the same
//! kind of multipart request, its file parts fed from the client's request as they arrive:
//! files are never held in memory or on disk by the gateway.
//!
//! Limits: `max_files` per request and `max_file_bytes` per file (exceeding it fails the
//! request with `PAYLOAD_TOO_LARGE`, and the subgraph sees a broken body, not a short file).
//! Multipart is a form encoding browsers send cross-site without a preflight, so a request
//! must carry a header a form cannot set (CSRF prevention, checked for every POST by
//! `http::browsers` before this module reads anything).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use futures::stream::{self, Stream, StreamExt};
use serde_json::{Map, Value};

use crate::error::RequestError;
use crate::request::GraphQLRequest;

/// Size bounds of upload requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Files per request; 0 refuses uploads.
    pub max_files: usize,
    pub max_file_bytes: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_files: 10,
            max_file_bytes: 50 * 1024 * 1024,
        }
    }
}

const OPERATIONS_MAX_BYTES: u64 = 1024 * 1024;
const MAP_MAX_BYTES: u64 = 64 * 1024;

/// An upload request whose `operations` and `map` have been read; the files follow.
pub(crate) struct UploadRequest {
    pub request: GraphQLRequest,
    pub files: Files,
}

/// The files still to come, and where they go. Taken by the one subgraph request that
/// uses them.
pub(crate) struct Files {
    /// (file field name, `variables.`-prefixed paths), in `map` order.
    pub map: Vec<(String, Vec<String>)>,
    multipart: multer::Multipart<'static>,
    pub too_large: Arc<AtomicBool>,
}

impl Files {
    /// Names of the variables that hold files.
    pub fn variables(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .map
            .iter()
            .flat_map(|(_, paths)| paths.iter())
            .filter_map(|p| p.strip_prefix("variables.")?.split('.').next())
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Uploads attached to one subgraph request. Cloning shares them: whoever sends the
/// request first takes them.
#[derive(Clone)]
pub struct SubgraphUploads {
    inner: Arc<Mutex<Option<Files>>>,
}

impl std::fmt::Debug for SubgraphUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubgraphUploads").finish_non_exhaustive()
    }
}

impl SubgraphUploads {
    pub(crate) fn new(files: Files) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Some(files))),
        }
    }

    /// The multipart body for the subgraph: `operations` (this request's body), `map`, then
    /// each mapped file as it arrives from the client. `None` if already taken.
    pub fn take_body(
        &self,
        operations: &str,
        boundary: &str,
    ) -> Option<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static> {
        let files = self.inner.lock().ok()?.take()?;
        let map: serde_json::Map<String, Value> = files
            .map
            .iter()
            .map(|(name, paths)| {
                (
                    name.clone(),
                    Value::Array(paths.iter().cloned().map(Value::String).collect()),
                )
            })
            .collect();
        let head = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"operations\"\r\n\
             content-type: application/json\r\n\r\n{operations}\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"map\"\r\n\
             content-type: application/json\r\n\r\n{}\r\n",
            Value::Object(map)
        );
        let forward = Forward {
            files,
            boundary: boundary.to_string(),
            field: None,
            done: false,
        };
        // Pulled by the subgraph request itself: each file chunk is read from the client
        // only when the subgraph's side asks for the next one, in the same task, so a
        // chunk is allocated and freed by one thread and at most one is in hand.
        let body = stream::once(async move { Ok(Bytes::from(head)) }).chain(stream::unfold(
            forward,
            |mut forward| async move {
                let item = forward.next().await?;
                Some((item, forward))
            },
        ));
        Some(body)
    }
}

/// The mapped file fields of the client's multipart stream, re-framed for the subgraph.
struct Forward {
    files: Files,
    boundary: String,
    /// The file being copied, between its header and its closing line.
    field: Option<multer::Field<'static>>,
    done: bool,
}

impl Forward {
    /// The next piece of the subgraph's body: a file's header, a chunk of it, the line
    /// ending it, or the closing boundary; `None` after that or after an error.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        if let Some(field) = self.field.as_mut() {
            return match field.chunk().await {
                Ok(Some(chunk)) => Some(Ok(chunk)),
                Ok(None) => {
                    self.field = None;
                    Some(Ok(Bytes::from_static(b"\r\n")))
                }
                Err(error) => Some(Err(self.fail(error))),
            };
        }
        loop {
            let field = match self.files.multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => {
                    self.done = true;
                    return Some(Ok(Bytes::from(format!("--{}--\r\n", self.boundary))));
                }
                Err(error) => return Some(Err(self.fail(error))),
            };
            let name = field.name().unwrap_or_default().to_string();
            if !self.files.map.iter().any(|(key, _)| *key == name) {
                continue; // Not mapped: not forwarded (and skipped by the parser).
            }
            let file_name = field
                .file_name()
                .unwrap_or("file")
                .replace(['"', '\r', '\n'], "_");
            let content_type = field
                .content_type()
                .map_or_else(|| "application/octet-stream".to_string(), |m| m.to_string());
            let header = format!(
                "--{}\r\ncontent-disposition: form-data; name=\"{name}\"; \
                 filename=\"{file_name}\"\r\ncontent-type: {content_type}\r\n\r\n",
                self.boundary
            );
            self.field = Some(field);
            return Some(Ok(Bytes::from(header)));
        }
    }

    /// Ends the body with `error`, remembering when it was a size limit.
    fn fail(&mut self, error: multer::Error) -> std::io::Error {
        self.done = true;
        if matches!(
            error,
            multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. }
        ) {
            self.files.too_large.store(true, Ordering::SeqCst);
        }
        std::io::Error::other(error.to_string())
    }
}

/// Reads `operations` and `map` from a multipart request; the files stay in the stream.
pub(crate) async fn read(
    content_type: &str,
    body: Body,
    limits: UploadLimits,
) -> Result<UploadRequest, RequestError> {
    if limits.max_files == 0 {
        return Err(RequestError::UnsupportedMediaType(
            "File uploads are disabled on this endpoint; send application/json.".into(),
        ));
    }
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        RequestError::BadRequest("The multipart Content-Type has no boundary.".into())
    })?;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .for_field("operations", OPERATIONS_MAX_BYTES)
            .for_field("map", MAP_MAX_BYTES)
            .per_field(limits.max_file_bytes),
    );
    let mut multipart = multer::Multipart::with_constraints(
        OneChunkAtATime::new(body.into_data_stream()),
        boundary,
        constraints,
    );

    let operations = text_field(&mut multipart, "operations").await?;
    let operations: Value = serde_json::from_str(&operations).map_err(|_| {
        RequestError::BadRequest("The `operations` field is not valid JSON.".into())
    })?;
    if operations.is_array() {
        return Err(RequestError::BadRequest(
            "Batched operations are not supported with file uploads; send one operation.".into(),
        ));
    }
    let mut request = GraphQLRequest::from_json(operations)?;

    let map = text_field(&mut multipart, "map").await?;
    let map: serde_json::Map<String, Value> = serde_json::from_str(&map).map_err(|_| {
        RequestError::BadRequest(
            "The `map` field must be a JSON object of file field names to path lists.".into(),
        )
    })?;
    if map.len() > limits.max_files {
        return Err(RequestError::PayloadTooLarge(format!(
            "The request has {} files; at most {} are accepted.",
            map.len(),
            limits.max_files
        )));
    }
    let mut entries = Vec::with_capacity(map.len());
    for (name, paths) in map {
        let paths: Vec<String> = paths
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let placeholder = |path: &String| {
            request
                .variables
                .as_mut()
                .and_then(|variables| variable_at_mut(variables, path))
                .is_some_and(|value| value.is_null())
        };
        if paths.is_empty() || !paths.iter().all(placeholder) {
            return Err(RequestError::BadRequest(format!(
                "The `map` entry `{name}` must list paths like `variables.file` that point \
                 at null placeholders in `operations`."
            )));
        }
        entries.push((name, paths));
    }
    Ok(UploadRequest {
        request,
        files: Files {
            map: entries,
            multipart,
            too_large: Arc::new(AtomicBool::new(false)),
        },
    })
}

async fn text_field(
    multipart: &mut multer::Multipart<'static>,
    expected: &str,
) -> Result<String, RequestError> {
    let missing = || {
        RequestError::BadRequest(format!(
            "A multipart GraphQL request starts with the `operations` and `map` fields; \
             `{expected}` is missing."
        ))
    };
    let field = multipart
        .next_field()
        .await
        .map_err(|e| match e {
            multer::Error::FieldSizeExceeded { .. } => {
                RequestError::PayloadTooLarge(format!("The `{expected}` field is too large."))
            }
            _ => RequestError::BadRequest("The multipart body is malformed.".into()),
        })?
        .ok_or_else(missing)?;
    if field.name() != Some(expected) {
        return Err(missing());
    }
    field.text().await.map_err(|e| match e {
        multer::Error::FieldSizeExceeded { .. } => {
            RequestError::PayloadTooLarge(format!("The `{expected}` field is too large."))
        }
        _ => RequestError::BadRequest("The multipart body is malformed.".into()),
    })
}

/// Hands multer one chunk per poll. Multer reads everything its stream has ready into its
/// buffer each time it is polled, so with a fast client and a slower subgraph a whole file
/// would pile up in the gateway's memory; this stream says "not yet" (and wakes its task
/// at once) after every chunk, so multer holds about one chunk at a time.
struct OneChunkAtATime<S> {
    inner: std::pin::Pin<Box<S>>,
    just_yielded: bool,
}

impl<S> OneChunkAtATime<S> {
    fn new(inner: S) -> Self {
        OneChunkAtATime {
            inner: Box::pin(inner),
            just_yielded: false,
        }
    }
}

impl<S: Stream> Stream for OneChunkAtATime<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        if self.just_yielded {
            self.just_yielded = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let next = self.inner.as_mut().poll_next(cx);
        self.just_yielded = matches!(next, std::task::Poll::Ready(Some(_)));
        next
    }
}

/// The value at `path` (`variables.a.0.b`, the `map` syntax) in a request's variables.
pub(crate) fn variable_at_mut<'v>(
    variables: &'v mut Map<String, Value>,
    path: &str,
) -> Option<&'v mut Value> {
    let mut segments = path.strip_prefix("variables.")?.split('.');
    let mut value = variables.get_mut(segments.next()?)?;
    for segment in segments {
        value = match value {
            Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?,
            Value::Object(map) => map.get_mut(segment)?,
            _ => return None,
        };
    }
    Some(value)
}
