//! The storage service's HTTP endpoints beside `/graphql` (the gateway process passes
//! `/files/...` on to them):
//!
//! - `GET /files/{id}/content?expires=..&signature=..` streams a file's content
//!   to whoever holds a valid signed link (the link is the credential; it is
//!   verified before the file is looked up, so a bad link reveals nothing), with
//!   its ETag (the SHA-256), `If-None-Match` answered by `304`, and single byte
//!   ranges (`Range`, `If-Range`) answered by `206`.
//! - `PUT /files?workspaceId=..&name=..` (or `POST`) stores the request body as a
//!   file for an EDITOR (or above) of the workspace, with a bearer token; the body
//!   streams to the blob store, so its size is bounded only by `storage.max_file_bytes`
//!   and the workspace's quota, checked against `Content-Length` before anything is read.
//!
//! Errors are JSON: `{"error": {"code": "...", "message": "..."}}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use flowfleet_runtime::error::{parse_id, ApiError, ErrorCode};
use flowfleet_security::identity::TokenVerifier;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ranges::{self, Selection};
use crate::domain::{content_disposition, ContentType, FileName, LinkError, StoredFile};
use crate::files::uploads::NewFile;
use crate::files::Files;

#[derive(Clone)]
struct HttpState {
    files: Files,
    verifier: Arc<TokenVerifier>,
}

pub fn router(files: Files, verifier: Arc<TokenVerifier>) -> Router {
    Router::new()
        .route("/files/{id}/content", get(download))
        .route("/files", put(upload).post(upload))
        .with_state(HttpState { files, verifier })
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

fn api_error(e: ApiError) -> Response {
    let status = match e.code {
        ErrorCode::Unauthenticated | ErrorCode::MfaRequired => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        // Retrying the same upload cannot help; 403 is what clients don't retry.
        ErrorCode::QuotaExceeded => StatusCode::FORBIDDEN,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SubscriptionLagged | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.code.as_str(), e.message)
}

#[derive(Debug, Deserialize)]
struct LinkParams {
    expires: Option<String>,
    signature: Option<String>,
}

#[tracing::instrument(skip_all, fields(file_id = %id))]
async fn download(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    Query(link): Query<LinkParams>,
    headers: HeaderMap,
) -> Response {
    match s
        .files
        .verify_link(&id, link.expires.as_deref(), link.signature.as_deref())
    {
        Ok(()) => {}
        Err(LinkError::Expired) => {
            return error(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this download link has expired; ask for a new one",
            )
        }
        Err(LinkError::Invalid) => {
            return error(StatusCode::FORBIDDEN, "FORBIDDEN", "invalid download link")
        }
    }
    // Only ids this service signed get here, but a signed file may since be gone.
    let Ok(id) = id.parse::<Uuid>() else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such file");
    };
    let file = match s.files.linked_file(id).await {
        Ok(Some(f)) => f,
        Ok(None) => return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such file"),
        Err(e) => return api_error(e),
    };
    let etag = format!("\"{}\"", file.sha256);
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if header_text(header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        insert_etag(response.headers_mut(), &etag);
        return response;
    }
    let size = file.size as u64;
    // `If-Range` with another validator asks for the whole (changed) content.
    let range_header = match header_text(header::IF_RANGE) {
        Some(v) if v.trim() != etag => None,
        _ => header_text(header::RANGE),
    };
    match ranges::select(range_header, size) {
        Selection::Unsatisfiable => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_NOT_SATISFIABLE",
                format!("the file has {size} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            response
        }
        Selection::Whole => match s.files.read(&file, None).await {
            Ok(stream) => content_response(
                &file,
                &etag,
                StatusCode::OK,
                size,
                Body::from_stream(stream),
            ),
            Err(e) => api_error(e),
        },
        Selection::Part(range) => match s.files.read(&file, Some(range.clone())).await {
            Ok(stream) => {
                let mut response = content_response(
                    &file,
                    &etag,
                    StatusCode::PARTIAL_CONTENT,
                    range.end - range.start,
                    Body::from_stream(stream),
                );
                let value = format!("bytes {}-{}/{size}", range.start, range.end - 1);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                response
            }
            Err(e) => api_error(e),
        },
    }
}

fn insert_etag(headers: &mut HeaderMap, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
}

/// The content as a download: its stored type, never sniffed by browsers, and
/// an attachment disposition so user content is not rendered on this origin.
fn content_response(
    file: &StoredFile,
    etag: &str,
    status: StatusCode,
    length: u64,
    body: Body,
) -> Response {
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_str(&file.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&file.name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=0"),
    );
    insert_etag(&mut headers, etag);
    (status, headers, body).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadParams {
    workspace_id: Option<String>,
    name: Option<String>,
    execution_id: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn upload(
    State(s): State<HttpState>,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match try_upload(&s, params, &headers, body).await {
        Ok(resp) => resp,
        Err(resp) => resp,
    }
}

async fn try_upload(
    s: &HttpState,
    params: UploadParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let caller = s.verifier.caller(headers).await;
    let me = caller.require().map_err(api_error)?;
    let workspace =
        parse_id("workspaceId", params.workspace_id.as_deref().unwrap_or("")).map_err(api_error)?;
    let name = FileName::parse(params.name.as_deref().unwrap_or("")).map_err(api_error)?;
    let execution_id = params
        .execution_id
        .as_deref()
        .map(|e| parse_id("executionId", e))
        .transpose()
        .map_err(api_error)?;
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => ContentType::parse(""),
        Some(v) => v
            .to_str()
            .map_err(|_| ApiError::bad_input("the Content-Type header is not text"))
            .and_then(ContentType::parse),
    }
    .map_err(api_error)?;
    // A declared length lets an upload that cannot fit be refused before it is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let file = s
        .files
        .upload(
            me.into(),
            NewFile {
                workspace_id: workspace,
                owner_id: me.user_id,
                execution_id,
                workflow_id: None,
                name,
                content_type,
            },
            declared,
            body.into_data_stream(),
        )
        .await
        .map_err(api_error)?;
    let body = serde_json::json!({
        "id": file.id,
        "workspaceId": file.workspace_id,
        "executionId": file.execution_id,
        "name": file.name,
        "contentType": file.content_type,
        "declaredContentType": file.declared_content_type,
        "sniffedContentType": file.sniffed_content_type,
        "size": file.size,
        "sha256": file.sha256,
        "createdAt": flowfleet_runtime::clock::to_datetime(file.created_at),
        "downloadUrl": s.files.download_url(file.id),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
