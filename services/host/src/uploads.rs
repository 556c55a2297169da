//! Files in GraphQL requests (the GraphQL multipart request specification), streamed to
//! the resolver that takes them.
//!
//! A multipart request carries `operations` (the GraphQL request, each file a `null`
//! placeholder in its variables), `map` (file field name → placeholder paths) and then
//! the files. [`read`] reads the first two and puts, at each placeholder, the file's
//! token: the string `upload:<field name>`, which the [`Upload`] scalar parses. The
//! files are left in the stream, in [`Uploads`] (request data): a resolver
//! [`take`](Uploads::take)s its file and reads it as it arrives, so a file is never held
//! in memory or written to disk here. Over HTTP the stream is the request body; in
//! process it is the gateway's multipart stream (one code path either way).
//!
//! Files are read in the order they were sent: taking one skips those before it, which
//! then can no longer be taken. (Mutations run one after another, so a request whose
//! files follow its mutations' order reads them all.)

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value as GqlValue};
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use flowfleet_runtime::error::ApiError;

const TOKEN_PREFIX: &str = "upload:";
const OPERATIONS_MAX_BYTES: u64 = 1024 * 1024;
const MAP_MAX_BYTES: u64 = 64 * 1024;

/// A file variable: names which file of the request it is. Resolvers hand it to
/// [`Uploads::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload(String);

/// A file sent with the request (GraphQL multipart request specification).
#[Scalar(name = "Upload")]
impl ScalarType for Upload {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        match value {
            GqlValue::String(s) if s.starts_with(TOKEN_PREFIX) => {
                Ok(Upload(s[TOKEN_PREFIX.len()..].to_string()))
            }
            _ => Err(InputValueError::custom(
                "an Upload is a file sent as a multipart request's part \
                 (https://github.com/jaydenseric/graphql-multipart-request-spec)",
            )),
        }
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(format!("{TOKEN_PREFIX}{}", self.0))
    }
}

/// A file as it arrives.
pub struct UploadedFile {
    /// The part's `filename`.
    pub file_name: Option<String>,
    /// The part's `Content-Type`, as the client declared it.
    pub content_type: Option<String>,
    pub content: BoxStream<'static, Result<Bytes, String>>,
}

/// The files still to come in a multipart request (request data).
pub struct Uploads {
    multipart: Mutex<multer::Multipart<'static>>,
}

impl Uploads {
    /// The file `upload` names, streaming. A file already skipped (or taken) is a
    /// `BAD_USER_INPUT` error.
    pub async fn take(&self, upload: &Upload) -> Result<UploadedFile, ApiError> {
        let mut multipart = self.multipart.lock().await;
        loop {
            let field = multipart.next_field().await.map_err(|e| {
                ApiError::bad_input(format!("the multipart request is malformed: {e}"))
            })?;
            let Some(field) = field else {
                return Err(ApiError::bad_input(format!(
                    "the file `{}` is not in the request (files are read in the order \
                     they were sent)",
                    upload.0
                )));
            };
            if field.name() != Some(upload.0.as_str()) {
                continue; // Dropping a field skips the rest of it.
            }
            return Ok(UploadedFile {
                file_name: field.file_name().map(str::to_string),
                content_type: field.content_type().map(|m| m.to_string()),
                content: field.map(|c| c.map_err(|e| e.to_string())).boxed(),
            });
        }
    }
}

/// Reads a multipart GraphQL request's `operations` and `map`: the request (with file
/// tokens at the mapped placeholders) and its files, still to be read.
pub async fn read<S>(content_type: &str, body: S) -> Result<(Value, Uploads), ApiError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::bad_input("the multipart Content-Type has no boundary"))?;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .for_field("operations", OPERATIONS_MAX_BYTES)
            .for_field("map", MAP_MAX_BYTES),
    );
    let mut multipart =
        multer::Multipart::with_constraints(OneChunkAtATime::new(body), boundary, constraints);
    let mut operations: Value = serde_json::from_str(&text(&mut multipart, "operations").await?)
        .map_err(|_| ApiError::bad_input("the `operations` field is not JSON"))?;
    let map: Map<String, Value> = serde_json::from_str(&text(&mut multipart, "map").await?)
        .map_err(|_| {
            ApiError::bad_input("the `map` field must be a JSON object of file names to paths")
        })?;
    for (name, paths) in map {
        for path in paths.as_array().into_iter().flatten() {
            let placeholder = path
                .as_str()
                .and_then(|p| p.strip_prefix("variables."))
                .and_then(|p| placeholder(&mut operations["variables"], p))
                .filter(|v| v.is_null())
                .ok_or_else(|| {
                    ApiError::bad_input(format!(
                        "the `map` entry `{name}` must point at null placeholders in \
                         `operations` (like `variables.file`)"
                    ))
                })?;
            *placeholder = Value::String(format!("{TOKEN_PREFIX}{name}"));
        }
    }
    Ok((
        operations,
        Uploads {
            multipart: Mutex::new(multipart),
        },
    ))
}

/// Hands multer one chunk per poll. Multer reads everything its stream has ready into
/// its buffer each time it is polled, so on a fast connection and a slower consumer (the
/// blob store) the whole file would pile up in memory; this stream says "not yet" (and
/// wakes its task at once) after every chunk, so multer holds about one chunk at a time.
/// (The gateway's multipart reader does the same for the same reason.)
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

fn placeholder<'v>(mut value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    for segment in path.split('.') {
        value = match value {
            Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?,
            Value::Object(map) => map.get_mut(segment)?,
            _ => return None,
        };
    }
    Some(value)
}

async fn text(
    multipart: &mut multer::Multipart<'static>,
    expected: &str,
) -> Result<String, ApiError> {
    let missing = || {
        ApiError::bad_input(format!(
            "a multipart GraphQL request starts with the `operations` and `map` fields; \
             `{expected}` is missing"
        ))
    };
    let field = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad_input(format!("the multipart request is malformed: {e}")))?
        .ok_or_else(missing)?;
    if field.name() != Some(expected) {
        return Err(missing());
    }
    field
        .text()
        .await
        .map_err(|e| ApiError::bad_input(format!("the `{expected}` field could not be read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &str) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::iter([Ok(Bytes::from(parts.replace('\n', "\r\n")))])
    }

    #[tokio::test]
    async fn files_stream_to_the_resolver_that_takes_them() {
        let request = "--b\ncontent-disposition: form-data; name=\"operations\"\n\n\
            {\"query\":\"mutation($f: Upload!, $g: Upload!) { a(f: $f) b(f: $g) }\",\"variables\":{\"f\":null,\"g\":null}}\n\
            --b\ncontent-disposition: form-data; name=\"map\"\n\n{\"0\":[\"variables.f\"],\"1\":[\"variables.g\"]}\n\
            --b\ncontent-disposition: form-data; name=\"0\"; filename=\"a.txt\"\ncontent-type: text/plain\n\nfirst\n\
            --b\ncontent-disposition: form-data; name=\"1\"; filename=\"b.txt\"\n\nsecond\n--b--\n";
        let (operations, uploads) = read("multipart/form-data; boundary=b", body(request))
            .await
            .unwrap();
        assert_eq!(operations["variables"]["f"], "upload:0");
        assert_eq!(operations["variables"]["g"], "upload:1");
        // Taking the second skips the first, which can then not be taken.
        let mut second = uploads.take(&Upload("1".into())).await.unwrap();
        assert_eq!(second.file_name.as_deref(), Some("b.txt"));
        let mut content = Vec::new();
        while let Some(chunk) = second.content.next().await {
            content.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(content, b"second");
        drop(second);
        let gone = uploads.take(&Upload("0".into())).await.err().unwrap();
        assert_eq!(gone.code.as_str(), "BAD_USER_INPUT");
    }

    #[tokio::test]
    async fn a_map_must_point_at_placeholders() {
        let request = "--b\ncontent-disposition: form-data; name=\"operations\"\n\n\
            {\"query\":\"{ a }\",\"variables\":{\"f\":\"x\"}}\n\
            --b\ncontent-disposition: form-data; name=\"map\"\n\n{\"0\":[\"variables.f\"]}\n--b--\n";
        let e = read("multipart/form-data; boundary=b", body(request))
            .await
            .err()
            .unwrap();
        assert!(e.message.contains("placeholders"), "{}", e.message);
        let e = read("multipart/form-data", body(request))
            .await
            .err()
            .unwrap();
        assert!(e.message.contains("boundary"), "{}", e.message);
    }
}
