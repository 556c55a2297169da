//! The storage service's HTTP endpoints beside `/graphql`:
//!
//! - `GET /files/{id}/content?expires=..&signature=..` serves a file's content
//!   to whoever holds a valid signed link (the link is the credential; it is
//!   verified before the file is looked up, so a bad link reveals nothing).
//! - `POST /files?workspaceId=..&name=..[&executionId=..]` uploads a raw body
//!   for an Editor (or above) of the workspace, with a bearer token.
//!
//! Errors are JSON: `{"error": {"code": "...", "message": "..."}}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::BytesMut;
use flowfleet_runtime::error::{parse_id, ApiError, ErrorCode};
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::{Role, TokenVerifier};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{content_disposition, ContentType, FileName, LinkError, StoredFile};
use crate::files::{Files, NewFile};

#[derive(Clone)]
struct HttpState {
    files: Files,
    access: Access,
    verifier: Arc<TokenVerifier>,
}

pub fn router(files: Files, access: Access, verifier: Arc<TokenVerifier>) -> Router {
    Router::new()
        .route("/files/{id}/content", get(download))
        .route("/files", post(upload))
        .with_state(HttpState {
            files,
            access,
            verifier,
        })
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
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
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
    let file = match s.files.file(id).await {
        Ok(Some(f)) => f,
        Ok(None) => return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such file"),
        Err(e) => return api_error(e),
    };
    match s.files.content(&file).await {
        Ok(bytes) => content_response(&file, Body::from(bytes)),
        Err(e) => api_error(e),
    }
}

/// The content as a download: its stored type, never sniffed by browsers, and
/// an attachment disposition so user content is not rendered on this origin.
fn content_response(file: &StoredFile, body: Body) -> Response {
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_str(&file.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size as u64));
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
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        headers.insert(header::ETAG, v);
    }
    (StatusCode::OK, headers, body).into_response()
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
    s.access
        .authorize(me, workspace, Role::Editor, Target::Workspace)
        .await
        .map_err(api_error)?;

    let too_large = |limit: u64| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the file is larger than the limit of {limit} bytes"),
        )
    };
    // A declared length over the limit is refused before reading anything.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        s.files.check_size(len).map_err(|e| too_large(e.limit))?;
    }
    // The body is read with a running count, so a body without (or lying
    // about) its length cannot exceed the limit in memory.
    let mut content = BytesMut::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("the upload could not be read: {e}"),
            )
        })?;
        s.files
            .check_size((content.len() + chunk.len()) as u64)
            .map_err(|e| too_large(e.limit))?;
        content.extend_from_slice(&chunk);
    }

    let file = s
        .files
        .put(
            NewFile {
                workspace_id: workspace,
                owner_id: me.user_id,
                execution_id,
                name,
                content_type,
            },
            content.freeze(),
        )
        .await
        .map_err(api_error)?;
    let body = serde_json::json!({
        "id": file.id,
        "workspaceId": file.workspace_id,
        "executionId": file.execution_id,
        "name": file.name,
        "contentType": file.content_type,
        "size": file.size,
        "sha256": file.sha256,
        "createdAt": flowfleet_runtime::clock::to_datetime(file.created_at),
        "downloadUrl": s.files.download_url(file.id),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
