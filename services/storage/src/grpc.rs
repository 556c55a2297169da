//! The storage service's gRPC server: workers store step outputs and artifacts
//! here and read them back. Services may store and read any workspace's files; a user
//! whose request a service serves needs EDITOR to store and VIEWER to read. A file is
//! only returned for the workspace it belongs to.

use flowfleet_runtime::error::parse_id;
use flowfleet_runtime::proto::storage::v1::storage_service_server::StorageService;
use flowfleet_runtime::proto::storage::v1::{File, FileContent, GetFileRequest, PutFileRequest};
use tonic::{Request, Response, Status};

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

fn to_proto(f: &StoredFile) -> File {
    File {
        id: f.id.to_string(),
        workspace_id: f.workspace_id.to_string(),
        name: f.name.clone(),
        content_type: f.content_type.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
    }
}

#[tonic::async_trait]
impl StorageService for StorageGrpc {
    #[tracing::instrument(skip_all)]
    async fn put_file(&self, request: Request<PutFileRequest>) -> Result<Response<File>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.into_inner();
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        let new = NewFile {
            workspace_id: workspace,
            owner_id: parse_id("owner_id", &r.owner_id)?,
            execution_id: if r.execution_id.is_empty() {
                None
            } else {
                Some(parse_id("execution_id", &r.execution_id)?)
            },
            workflow_id: if r.workflow_id.is_empty() {
                None
            } else {
                Some(parse_id("workflow_id", &r.workflow_id)?)
            },
            name: FileName::parse(&r.name)?,
            content_type: ContentType::parse(&r.content_type)?,
        };
        let size = r.content.len() as u64;
        let content = futures::stream::iter([Ok::<_, std::convert::Infallible>(
            bytes::Bytes::from(r.content),
        )]);
        let file = self
            .files
            .upload((&caller).into(), new, Some(size), content)
            .await?;
        Ok(Response::new(to_proto(&file)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_file(
        &self,
        request: Request<GetFileRequest>,
    ) -> Result<Response<FileContent>, Status> {
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
        let mut content = Vec::with_capacity(file.size.max(0) as usize);
        let mut stream = self.files.read(&file, None).await?;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            content
                .extend_from_slice(&chunk.map_err(flowfleet_runtime::error::ApiError::internal)?);
        }
        Ok(Response::new(FileContent {
            file: Some(to_proto(&file)),
            content,
        }))
    }
}
