//! The storage service's gRPC server: workers store step outputs and artifacts here and
//! read them back, as streams of bounded chunks (see the proto): a `PutFile` stream's
//! content goes to the blob store as it arrives, a `GetFile` stream is read from it as it
//! is sent. Services may store and read any workspace's files; a user whose request a
//! service serves needs EDITOR to store and VIEWER to read. A file is only returned for
//! the workspace it belongs to.

use std::pin::Pin;

use bytes::Bytes;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::files::CHUNK_BYTES;
use flowfleet_runtime::proto::storage::v1::file_chunk::Part as GotPart;
use flowfleet_runtime::proto::storage::v1::put_file_chunk::Part as PutPart;
use flowfleet_runtime::proto::storage::v1::storage_service_server::StorageService;
use flowfleet_runtime::proto::storage::v1::{File, FileChunk, GetFileRequest, PutFileChunk};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use flowfleet_security::access::Target;
use flowfleet_security::identity::Role;
use flowfleet_security::service_auth::GrpcGuard;

use crate::domain::{ContentType, FileName, StoredFile};
use crate::files::uploads::NewFile;
use crate::files::Files;

pub struct StorageGrpc {
    pub files: Files,
    pub guard: GrpcGuard,
}

fn to_proto(f: &StoredFile, files: &Files) -> File {
    File {
        id: f.id.to_string(),
        workspace_id: f.workspace_id.to_string(),
        name: f.name.clone(),
        content_type: f.content_type.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
        download_url: files.download_url(f.id),
    }
}

fn optional_id(field: &str, value: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(field, value).map(Some)
    }
}

type FileStream = Pin<Box<dyn Stream<Item = Result<FileChunk, Status>> + Send>>;

#[tonic::async_trait]
impl StorageService for StorageGrpc {
    #[tracing::instrument(skip_all)]
    async fn put_file(
        &self,
        request: Request<Streaming<PutFileChunk>>,
    ) -> Result<Response<File>, Status> {
        let caller = self.guard.caller(&request).await?;
        let mut chunks = request.into_inner();
        let metadata = match chunks.next().await.transpose()?.and_then(|c| c.part) {
            Some(PutPart::Metadata(m)) => m,
            _ => {
                return Err(Status::invalid_argument(
                    "a PutFile stream starts with the file's metadata",
                ))
            }
        };
        let new = NewFile {
            workspace_id: parse_id("workspace_id", &metadata.workspace_id)?,
            owner_id: parse_id("owner_id", &metadata.owner_id)?,
            execution_id: optional_id("execution_id", &metadata.execution_id)?,
            workflow_id: optional_id("workflow_id", &metadata.workflow_id)?,
            name: FileName::parse(&metadata.name)?,
            content_type: ContentType::parse(&metadata.content_type)?,
        };
        let declared = u64::try_from(metadata.size).ok().filter(|s| *s > 0);
        let content = chunks.map(|chunk| match chunk {
            Ok(PutFileChunk {
                part: Some(PutPart::Content(bytes)),
            }) if bytes.len() <= CHUNK_BYTES => Ok(Bytes::from(bytes)),
            Ok(PutFileChunk {
                part: Some(PutPart::Content(_)),
            }) => Err(format!(
                "a content chunk is larger than {CHUNK_BYTES} bytes"
            )),
            Ok(_) => Err("only the first message may carry metadata".to_string()),
            Err(status) => Err(status.message().to_string()),
        });
        let file = self
            .files
            .upload((&caller).into(), new, declared, content)
            .await?;
        Ok(Response::new(to_proto(&file, &self.files)))
    }

    type GetFileStream = FileStream;

    #[tracing::instrument(skip_all)]
    async fn get_file(
        &self,
        request: Request<GetFileRequest>,
    ) -> Result<Response<Self::GetFileStream>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.get_ref();
        let id = parse_id("file_id", &r.file_id)?;
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        let file = self
            .files
            .file_in(
                (&caller).into(),
                workspace,
                id,
                Role::Viewer,
                Target::Workspace,
            )
            .await?;
        let content = self.files.read(&file, None).await?;
        let head = FileChunk {
            part: Some(GotPart::File(to_proto(&file, &self.files))),
        };
        // The blob store's chunks, cut to the message limit.
        let chunks = content.flat_map(|chunk| {
            let parts: Vec<Result<FileChunk, Status>> = match chunk {
                Ok(bytes) => (0..bytes.len())
                    .step_by(CHUNK_BYTES)
                    .map(|start| {
                        Ok(FileChunk {
                            part: Some(GotPart::Content(
                                bytes[start..(start + CHUNK_BYTES).min(bytes.len())].to_vec(),
                            )),
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(Status::from(ApiError::internal(e)))],
            };
            futures::stream::iter(parts)
        });
        let stream = futures::stream::once(async move { Ok(head) }).chain(chunks);
        Ok(Response::new(Box::pin(stream)))
    }
}
